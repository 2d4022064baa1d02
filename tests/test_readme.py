"""The README and docs/ cannot drift from the code: the generated config reference (docs/config.md) is regenerated
and compared; every relative link and #anchor resolves; every `--flag` shown on a command line is an option of that
command (and one named in a section about a command, of that command); every number the README quotes as measured
is in bench/README.md or data/demo/README.md (where measurements live); the commands table is the dispatcher's, the
demo's budget it shows is the code's, and no `--help` output is pasted anywhere."""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest

from core.config_reference import config_markdown
from search_spaces.space import DEMO_OVERRIDES
from tune.commands import COMMANDS
from tune.engine.arguments import DEMO_BUDGET

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
MEASUREMENTS = [ROOT / "bench" / "README.md", ROOT / "data" / "demo" / "README.md"]  # the one home of each number
REGENERATE = "python -m core.config_reference --markdown > docs/config.md"
# Lines that run another tool: their flags are that tool's, not ours (they may then be named in prose too).
OTHER_TOOLS = re.compile(r"^(?:[A-Z_]+=\S+\s+)*(?:ray|tensorboard|mlflow|optuna-dashboard|wandb|pip|make|apt-get|ssh|"
                         r"espeak-ng|git|chmod|source|export)\b")
PYTHON = r"(?:[A-Z_]+=\S+\s+)*(?:\S*/)?python3?"
NOT_MEASURED = {"3.10", "3.11"}  # Python versions the README names beside its measured figures


def doc_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _options(build: Callable[[], argparse.ArgumentParser]) -> frozenset[str]:
    """Every option of a parser: our ArgumentParser lists its actions (`arguments`); a plain argparse one (the
    scripts') shows them all in its usage line."""
    parser = build()
    if hasattr(parser, "arguments"):
        return frozenset(option for action in parser.arguments for option in action.option_strings)
    return frozenset(re.findall(r"--[a-z][a-z0-9-]*", parser.format_usage()))


@cache
def parsers() -> dict[str, frozenset[str]]:
    """Each command's options, by the names the docs call it (`audiotune X` and `python -m MODULE`)."""
    from core.cli import build_parser as train
    from tune.commands import build_parser as commands
    from tune.engine.arguments import build_parser as run
    from tune.final import build_parser as final
    from tune.predict import build_parser as predict
    from tune.report import build_parser as report
    from tune.submit import build_parser as submit

    spec = importlib.util.spec_from_file_location("make_demo_data", ROOT / "scripts" / "make_demo_data.py")
    assert spec is not None and spec.loader is not None
    script = sys.modules.setdefault("make_demo_data", importlib.util.module_from_spec(spec))
    spec.loader.exec_module(script)  # scripts/ is no package: loaded from its file

    found = {"run": _options(run), "final": _options(final), "predict": _options(predict),
             "report": _options(report), "train": _options(train), "audiotune": _options(commands),
             "scripts/make_demo_data.py": _options(script.build_parser),
             "core.config_reference": frozenset({"--markdown"})}
    found["submit"] = _options(submit) | found["run"]  # options submit does not know are tune.run's
    found["spaces"] = found["run"]
    for name, command in COMMANDS.items():
        found[command.module] = found[name]
    found["core.train"] = found["train"]
    return found


def all_options() -> frozenset[str]:
    return frozenset().union(*parsers().values())


# --- reading the markdown ---------------------------------------------------------------------------------------

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
SPAN = re.compile(r"`([^`\n]+)`")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
HEADING = re.compile(r"^(#{1,6}) (.+)$", re.MULTILINE)
MESSAGE = re.compile(r"(?:error|warning): ")


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def without_fences(markdown: str) -> str:
    return FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), markdown)


def command_of(line: str) -> str | None:
    """The command a shell line runs: a key of `parsers()`, `?` for `audiotune COMMAND` (any), `other` for another
    tool, None for no command (a bare flag or value)."""
    line = line.strip().lstrip("$ ")
    if OTHER_TOOLS.match(line):
        return "other"
    if match := re.match(r"(?:\S*/)?audiotune(?:\s+(\S+))?", line):
        sub = match.group(1)
        if sub is None or sub.startswith("-"):
            return "audiotune"
        return sub if sub in parsers() else "?"
    if match := re.match(PYTHON + r"\s+-m\s+([\w.]+)", line):
        return match.group(1) if match.group(1) in parsers() else "other"
    if match := re.match(PYTHON + r"\s+(\S+\.py)", line):
        return match.group(1) if match.group(1) in parsers() else "other"
    return None


def shell_lines(block: str) -> list[str]:
    joined = re.sub(r"\\\n\s*", " ", block)
    return [re.sub(r"\s+#\s.*$", "", line) for line in joined.splitlines()]  # without trailing comments


def command_lines(path: Path) -> list[tuple[str, str]]:
    """(command, line) for every shell line in a bash block or a code span that runs a command."""
    markdown = text(path)
    found = []
    for fence in FENCE.finditer(markdown):
        if fence.group(1) in ("bash", "sh", "console", "shell"):
            for line in shell_lines(fence.group(2)):
                for part in re.split(r"&&|;|\|", line):
                    if (command := command_of(part)) is not None:
                        found.append((command, part.strip()))
    for span in SPAN.finditer(without_fences(markdown)):
        if (command := command_of(span.group(1))) is not None:
            found.append((command, span.group(1)))
    return found


def other_tools_flags() -> set[str]:
    return {flag for path in DOCS for command, line in command_lines(path) if command == "other"
            for flag in FLAG.findall(line)}


def sections(markdown: str) -> list[tuple[str, str]]:
    """(heading, body) for each section of a document outside its fenced blocks, without command lines and
    quoted messages."""
    plain = without_fences(markdown)
    cuts = [(m.start(), m.group(2)) for m in HEADING.finditer(plain)]
    parts = [("", plain[:cuts[0][0]] if cuts else plain)]
    for (start, heading), (end, _) in zip(cuts, [*cuts[1:], (len(plain), "")], strict=True):
        parts.append((heading, plain[start:end].split("\n", 1)[1] if "\n" in plain[start:end] else ""))
    # command lines are checked against their own command; quoted messages may show a wrong flag on purpose
    return [(heading, SPAN.sub(lambda m: "" if command_of(m.group(1)) or MESSAGE.match(m.group(1)) else m.group(0),
                               body)) for heading, body in parts]


def heading_command(heading: str) -> str | None:
    for span in SPAN.findall(heading):
        command = command_of(span)
        if command in parsers() and command != "audiotune":
            return command
    return None


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: the rendered text, lower case, punctuation dropped, spaces as hyphens."""
    rendered = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", rendered).replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    found = set()
    for match in HEADING.finditer(without_fences(text(path))):
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return frozenset(found)


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


# --- what the docs promise ----------------------------------------------------------------------------------------

def broken_links(path: Path) -> list[str]:
    broken = []
    for target in LINK.findall(without_fences(text(path))):
        if re.match(r"[a-z]+:", target):  # https:, mailto: : not ours to check offline
            continue
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        if not linked.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and (linked.suffix != ".md" or anchor not in anchors(linked)):
            broken.append(f"{target} (no heading #{anchor} in {linked.relative_to(ROOT)})")
    return broken


def wrong_flags(path: Path) -> list[str]:
    wrong = []
    for command, line in command_lines(path):
        if command == "other":
            continue
        known = all_options() if command == "?" else parsers()[command]
        wrong += [f"{flag} in `{line}`" for flag in FLAG.findall(line) if flag not in known]
    everywhere = all_options() | other_tools_flags()
    for heading, body in sections(text(path)):
        command = heading_command(heading)
        known = parsers()[command] if command else everywhere
        where = f"section {heading!r} ({command})" if command else f"section {heading!r}"
        wrong += [f"{flag} in {where}" for flag in FLAG.findall(body) if flag not in known]
    return wrong


def measured_numbers(markdown: str) -> set[str]:
    """The figures a document quotes: decimals and durations in its prose and its output (text) blocks; commands,
    code spans and other blocks hold values a user types, not measurements."""
    output = "\n".join(f.group(2) for f in FENCE.finditer(markdown) if f.group(1) == "text")
    prose = SPAN.sub("", without_fences(markdown))
    found = set()
    for part in (prose, output):
        durations = r"(?<![\w.])\d+ min \d+ s\b"
        found.update(re.findall(durations, part))
        part = re.sub(durations, "", part)
        found.update(re.findall(r"(?<![\w.])\d+(?:\.\d+)? s\b", part))
        found.update(re.findall(r"(?<![\w.,])\d+\.\d+(?![\w.]*\d)", part))
    return found - NOT_MEASURED


@pytest.mark.parametrize("path", DOCS + MEASUREMENTS, ids=doc_id)
def test_every_link_resolves(path: Path) -> None:
    broken = broken_links(path)
    assert not broken, f"{doc_id(path)} links to what does not exist: {broken}"


@pytest.mark.parametrize("path", DOCS, ids=doc_id)
def test_every_flag_shown_is_an_option_of_its_command(path: Path) -> None:
    wrong = wrong_flags(path)
    assert not wrong, f"{doc_id(path)} shows flags its command does not have: {wrong}"


def test_every_measured_number_in_the_readme_has_its_home() -> None:
    homes = " ".join(text(path) for path in MEASUREMENTS)
    homeless = sorted(n for n in measured_numbers(text(README)) if not re.search(rf"(?<![\w.]){re.escape(n)}(?!\d)",
                                                                                 homes))
    assert not homeless, (f"README.md quotes figures that neither bench/README.md nor data/demo/README.md holds "
                          f"(measure them there and link): {homeless}")


def test_config_reference_is_current() -> None:
    written = (ROOT / "docs" / "config.md").read_text()
    assert written == config_markdown() + "\n", (
        f"docs/config.md is out of date with core/config.py: regenerate it with `{REGENERATE}`")


def test_commands_table_is_the_dispatchers() -> None:
    rows = dict(re.findall(r"^\| `audiotune (\w+)` \| `python -m ([\w.]+(?: --[\w-]+)?)` \|", text(README),
                           re.MULTILINE))
    expected = {name: " ".join([command.module if name != "train" else "core.train", *command.fixed])
                for name, command in COMMANDS.items()}
    assert rows == expected


def test_demo_budget_shown_is_the_codes() -> None:
    shown = re.search(r"(\d+) trials x (\d+) folds x (\d+) epochs", text(README))
    assert shown, "README.md should show the demo search's budget line"
    assert [int(n) for n in shown.groups()] == [DEMO_BUDGET["num_samples"], DEMO_OVERRIDES["data.k_fold"],
                                               DEMO_OVERRIDES["train.epochs"]]
    at_once = re.search(r"(\d+) trials at a time", text(README))
    assert at_once and int(at_once.group(1)) == DEMO_BUDGET["max_concurrent"], "README.md: the demo's trials at once"


def test_readme_is_a_first_hour() -> None:
    assert len(README.read_bytes()) <= 12 * 1024, "README.md is a user's first hour: move the rest into docs/"


@pytest.mark.parametrize("path", DOCS, ids=doc_id)
def test_no_pasted_help_output(path: Path) -> None:
    pasted = [line for line in text(path).splitlines() if line.startswith(("usage: ", "options:", "  -h, --help"))]
    assert not pasted, f"{doc_id(path)} pastes --help output (link to `audiotune COMMAND --help` instead): {pasted}"

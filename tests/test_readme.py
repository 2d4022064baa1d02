"""The README cannot drift from the code: the generated config reference (docs/config.md) is regenerated and
compared, every `--flag` it names is an option of a command (or of `ray start`), its commands table is the
dispatcher's, the demo's budget it shows is the code's, and no `--help` output is pasted into it."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

from core.config_reference import config_markdown
from search_spaces.space import DEMO_OVERRIDES
from tune.commands import COMMANDS
from tune.engine.arguments import DEMO_BUDGET

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
REGENERATE = "python -m core.config_reference --markdown > docs/config.md"
# other tools' flags the README shows: `ray start`, `tensorboard --logdir`, `mlflow ui --backend-store-uri`
OTHER_TOOLS_FLAGS = {"--head", "--port", "--dashboard-port", "--logdir", "--backend-store-uri"}


def test_config_reference_is_current() -> None:
    written = (ROOT / "docs" / "config.md").read_text()
    assert written == config_markdown() + "\n", (
        f"docs/config.md is out of date with core/config.py: regenerate it with `{REGENERATE}`")


def all_options() -> set[str]:
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
    demo_data = script.build_parser

    found = {"--markdown"}  # python -m core.config_reference --markdown
    for build in (run, final, predict, report, submit, train, commands):
        found.update(option for action in build().arguments for option in action.option_strings)
    found.update(re.findall(r"--[a-z][a-z0-9-]*", demo_data().format_usage()))  # a plain argparse: its usage line
    return found


def test_every_flag_the_readme_names_exists() -> None:
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", README))
    unknown = sorted(named - all_options() - OTHER_TOOLS_FLAGS)
    assert not unknown, f"README.md names flags no command has: {unknown}"


def test_commands_table_is_the_dispatchers() -> None:
    rows = dict(re.findall(r"^\| `audiotune (\w+)` \| `python -m ([\w.]+(?: --[\w-]+)?)` \|", README, re.MULTILINE))
    expected = {name: " ".join([command.module if name != "train" else "core.train", *command.fixed])
                for name, command in COMMANDS.items()}
    assert rows == expected


def test_demo_budget_shown_is_the_codes() -> None:
    shown = re.search(r"(\d+) trials x (\d+) folds x (\d+) epochs", README)
    assert shown, "README.md should show the demo search's budget line"
    assert [int(n) for n in shown.groups()] == [DEMO_BUDGET["num_samples"], DEMO_OVERRIDES["data.k_fold"],
                                               DEMO_OVERRIDES["train.epochs"]]


def test_no_pasted_help_output() -> None:
    pasted = [line for line in README.splitlines() if line.startswith(("usage: ", "options:", "  -h, --help"))]
    assert not pasted, f"README.md pastes --help output (link to `audiotune COMMAND --help` instead): {pasted}"

"""`audiotune COMMAND [options]`: one entry point for every command. Each command is the same as its `python -m`
form (which keeps working), with the same options, output and exit codes; `audiotune COMMAND --help` shows them.

The command's module is imported only once it is chosen, and each command parses its own command line before it
loads torch, Ray or Optuna: `--help` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from core.command_line import ArgumentParser

PACKAGE = "audiotune"


@dataclass(frozen=True)
class Command:
    module: str  # its `python -m` form; `main(argv) -> int` is called by name
    summary: str
    fixed: tuple[str, ...] = ()  # arguments the command always passes first


COMMANDS: dict[str, Command] = {
    "run": Command("tune.run", "cross-validated hyperparameter search (python -m tune.run)"),
    "final": Command("tune.final", "train the best config on train+valid, test once, write a model folder "
                                   "(python -m tune.final)"),
    "predict": Command("tune.predict", "run a model folder on new clips (python -m tune.predict)"),
    "report": Command("tune.report", "summarise a search's run folder (python -m tune.report)"),
    "submit": Command("tune.submit", "submit a search to a Ray cluster as a Ray Job (python -m tune.submit)"),
    "train": Command("core.cli", "one config over its folds, without Ray (python -m core.train)"),
    "spaces": Command("tune.run", "list the search spaces with every parameter and range "
                                  "(python -m tune.run --list-spaces)", fixed=("--list-spaces",)),
}

EXAMPLES = """examples:
  audiotune run --space whisper_balancing --demo          # a search on the bundled demo set, minutes on a CPU
  audiotune final --config runs/demo/best_config.json     # the winner trained once more, tested, saved
  audiotune predict --model runs/demo/final --data new_clips/ --out predictions.csv
"""


def version() -> str:
    """The installed distribution's version; in a checkout that was never installed, pyproject.toml's."""
    import importlib.metadata

    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        import tomllib

        pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
        try:
            return str(tomllib.loads(pyproject.read_text())["project"]["version"])
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "unknown"


def build_parser() -> ArgumentParser:
    width = max(map(len, COMMANDS))
    listing = "\n".join(f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items())
    p = ArgumentParser(
        prog="audiotune", formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="audiotune [--version] [--help] COMMAND [options]",
        description="Cross-validated hyperparameter search for audio classifiers (Ray Tune + Optuna).\n\n"
                    f"commands (audiotune COMMAND --help for each one's options):\n{listing}",
        epilog=EXAMPLES)
    p.add_argument("--version", action="version", version=f"audiotune {version()}")
    return p


def spaces_parser() -> ArgumentParser:
    return ArgumentParser(
        prog="audiotune spaces", description="List the search spaces: each one's base config and every parameter "
                                             "it searches, with its range (the same as python -m tune.run "
                                             "--list-spaces). Takes no options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  audiotune spaces\n  audiotune spaces | grep -A8 '^whisper_sam'\n")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not args or args[0].startswith("-"):
        parser.parse_args(args)  # --help and --version exit here
        parser.print_usage(sys.stderr)
        print("error: give a COMMAND: " + ", ".join(COMMANDS), file=sys.stderr)
        return 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r} (choices: {', '.join(COMMANDS)})", file=sys.stderr)
        return 2
    command = COMMANDS[name]
    if name == "spaces":
        spaces_parser().parse_args(rest)  # --help; anything else is an error (exit 2)
    if importlib.util.find_spec(command.module) is None:
        print(f"error: audiotune {name} needs the module {command.module}, which this installation lacks",
              file=sys.stderr)
        return 2
    return int(importlib.import_module(command.module).main([*command.fixed, *rest]) or 0)


if __name__ == "__main__":
    sys.exit(main())

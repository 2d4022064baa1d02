"""`audiotune COMMAND`: every command's --help answers without loading torch, Ray, Optuna, transformers or pandas
(checked in a fresh interpreter, both as `audiotune COMMAND --help` and as `python -m MODULE --help`) and ends with
real examples; `--version`; the dispatcher's errors; `spaces` is `tune.run --list-spaces`; the names --help lists for
registry keys are the registries' own."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tune.commands import COMMANDS, main, version

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "ray", "optuna", "transformers", "pandas")
# The `python -m` form of each command, as users' scripts call it.
MODULES = {"run": "tune.run", "final": "tune.final", "predict": "tune.predict", "submit": "tune.submit",
           "train": "core.train", "report": "tune.report"}

# Runs the help in a fresh interpreter, then prints (as JSON) the help text and the heavy packages it loaded.
PROBE = """
import contextlib, io, json, runpy, sys
how, target, heavy_names = sys.argv[1], sys.argv[2], set(sys.argv[3].split(","))
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        if how == "command":
            from tune.commands import main
            main([target, "--help"])
        else:
            sys.argv = [target, "--help"]
            runpy.run_module(target, run_name="__main__", alter_sys=True)
    except SystemExit as exit:
        code = exit.code
    else:
        code = "no exit"
heavy = sorted({name.split(".")[0] for name in sys.modules} & heavy_names)
print(json.dumps({"code": code, "help": out.getvalue(), "heavy": heavy}))
"""


def help_of(how: str, target: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "120"}
    done = subprocess.run([sys.executable, "-c", PROBE, how, target, ",".join(HEAVY)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


def examples(text: str) -> list[str]:
    """The example command lines at the end of a --help."""
    assert "\nexamples:\n" in text, text[-600:]
    tail = text.rsplit("\nexamples:\n", 1)[1]
    return [line.strip() for line in tail.splitlines() if line.strip().startswith(("python -m ", "audiotune "))]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_command_help_is_light_and_ends_with_examples(name: str) -> None:
    found = help_of("command", name)
    assert found["code"] == 0
    assert found["heavy"] == [], f"audiotune {name} --help imported {found['heavy']}"
    assert len(examples(found["help"])) >= 2


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_help_is_light(name: str) -> None:
    found = help_of("module", MODULES[name])
    assert found["code"] == 0
    assert found["heavy"] == [], f"python -m {MODULES[name]} --help imported {found['heavy']}"
    assert len(examples(found["help"])) >= 2
    assert found["help"] == help_of("command", name)["help"]  # the same command either way


def test_version_is_the_projects(capsys: pytest.CaptureFixture[str]) -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert version() == declared
    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0
    assert capsys.readouterr().out.strip() == f"audiotune {declared}"


def test_console_script_is_the_dispatcher() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, function = scripts["audiotune"].partition(":")
    assert getattr(importlib.import_module(module), function) is main


@pytest.mark.parametrize("argv", [[], ["bogus"], ["--frobnicate"]])
def test_no_or_unknown_command_is_one_line_and_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    if argv == ["--frobnicate"]:
        with pytest.raises(SystemExit) as exit:
            main(argv)
        assert exit.value.code == 2
    else:
        assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("error: ")
    assert "run, final, predict" in err or "unrecognized" in err


def test_spaces_is_list_spaces(capsys: pytest.CaptureFixture[str]) -> None:
    from tune.engine.experiment import list_spaces

    with pytest.raises(SystemExit) as exit:
        main(["spaces"])
    assert exit.value.code == 0
    out = capsys.readouterr().out
    assert out.strip() == list_spaces().strip()
    assert "whisper_balancing:" in out and "optim.lr:" in out


def test_commands_pass_arguments_through(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """`audiotune final ...` is tune.final's main with the same arguments: its own one-line error, exit 2."""
    missing = tmp_path / "nope.json"
    assert main(["final", "--config", str(missing)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {missing}: config file not found"


def test_registered_names_in_help_are_the_registries() -> None:
    from core.config_reference import REGISTERED
    from core.data.samplers import SAMPLERS
    from core.features import LOG_MELS
    from core.losses import LOSSES
    from core.metrics import METRICS
    from core.models import MODELS
    from core.models.conditioning import CONDITIONING
    from core.models.whisper import POOLINGS
    from core.optim import OPTIMIZERS, SCHEDULERS

    live = {"model.name": MODELS.names(), "model.pooling": POOLINGS.names(),
            "features.conditioning": CONDITIONING.names(), "features.normalize": LOG_MELS.names(),
            "loss.name": LOSSES.names(),
            "optim.name": OPTIMIZERS.names(),
            "optim.sam_base": [name for name in OPTIMIZERS.names() if name != "sam"],
            "optim.scheduler": SCHEDULERS.names(), "train.metric": METRICS.names(),
            "train.sampler": SAMPLERS.names()}
    assert {key: sorted(names) for key, names in REGISTERED.items()} == {k: sorted(v) for k, v in live.items()}, (
        "core/config_reference.py REGISTERED must list the registries' names (a registry entry was added or "
        "renamed)")

"""`--resume` as people type it: the exact command again with --resume appended is accepted (every flag equals
what run.json stores); only a flag that differs is refused, naming the stored value; --space may be left out.
Checked through tune.run's own argument checks (parse_settings) on a stored run; no Ray is started."""

from __future__ import annotations

from pathlib import Path

import pytest
import ray

from core.errors import UserError
from search_spaces import SPACES
from tune.engine.arguments import parse_args, settings_from_args
from tune.engine.experiment import parse_settings

SPACE = "whisper_balancing"


@pytest.fixture
def command(tmp_path: Path, toy_dataset: Path, toy_cache_dir: Path) -> list[str]:
    """A search's command line, and its run folder as the search left it (run.json + Tune's tuner.pkl)."""
    argv = ["--space", SPACE, "--demo", "--name", "it", "--storage", str(tmp_path / "runs"), "--data",
            str(toy_dataset), "--k-fold", "3", "--num-samples", "4", "--seed", "7", "--epochs", "2",
            "--set", f"data.cache_dir={toy_cache_dir}", "--set", "optim.weight_decay=0.01"]
    settings = settings_from_args(parse_args(argv), SPACES.get(SPACE))
    folder = tmp_path / "runs" / "it"
    folder.mkdir(parents=True)
    (folder / "run.json").write_bytes(settings.to_json())
    (folder / "tuner.pkl").write_bytes(b"")  # what Tuner.can_restore looks for
    return argv


def resumed(argv: list[str]) -> str:
    settings, space, _, _ = parse_settings(argv)
    assert not ray.is_initialized() and settings.space == space.name
    return space.name


def test_the_same_command_with_resume_appended_is_accepted(command: list[str]) -> None:
    """Was: "--demo, --k-fold, --num-samples, --seed cannot change them: drop it"."""
    assert resumed([*command, "--resume"]) == SPACE


def test_resume_needs_no_space(command: list[str]) -> None:
    """Was: "--space is required"."""
    without = [arg for i, arg in enumerate(command) if arg != "--space" and (i == 0 or command[i - 1] != "--space")]
    assert "--space" not in without
    assert resumed([*without, "--resume"]) == SPACE
    assert resumed(["--name", "it", "--storage", command[command.index("--storage") + 1], "--resume"]) == SPACE


@pytest.mark.parametrize(("change", "message"), [
    (("--epochs", "5"), "--epochs (stored: train.epochs=2)"),
    (("--num-samples", "9"), "--num-samples (stored: 4)"),
    (("--seed", "8"), "--seed (stored: 7)"),
    (("--k-fold", "4"), "--k-fold (stored: data.k_fold=3)"),
    (("--set", "optim.weight_decay=0.5"), "--set optim.weight_decay (stored: optim.weight_decay=0.01)"),
])
def test_only_a_differing_flag_is_refused_naming_the_stored_value(command: list[str], change: tuple[str, str],
                                                                  message: str) -> None:
    flag, value = change
    argv = list(command)
    if flag in argv and flag != "--set":
        argv[argv.index(flag) + 1] = value
    else:
        argv += [flag, value]
    with pytest.raises(UserError) as caught:
        parse_settings([*argv, "--resume"])
    text = str(caught.value)
    assert text.startswith("--resume continues 'it' with its stored settings (run.json); ") and message in text
    assert text.count("(stored:") == 1, text  # the equal flags are not named
    assert not ray.is_initialized()


def test_another_space_is_still_refused(command: list[str]) -> None:
    argv = [*command, "--resume"]
    argv[argv.index("--space") + 1] = "whisper_losses"
    with pytest.raises(UserError, match="searches space 'whisper_balancing', not 'whisper_losses'"):
        parse_settings(argv)

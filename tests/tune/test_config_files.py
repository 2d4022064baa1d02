"""`tune.run --config FILE` (YAML, JSON, or the run.json of an earlier search) gives the settings the same flags
give, the command line wins over the file, and a bad key is one line naming the file and the key (exit 2);
`tune.final --set` changes the config final training trains with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.toy_audio import make_toy_config

from search_spaces import SPACES
from tune.engine.arguments import RunSettings, parse_args, settings_from_args

SPACE = "whisper_balancing"


def settings(*argv: str) -> dict:
    """The run settings tune.run would save for `argv`, without the time they were made."""
    args = parse_args(list(argv))
    found = json.loads(settings_from_args(args, SPACES.get(args.space)).to_json())
    found.pop("created")
    return found


FLAGS = ("--space", SPACE, "--data", "clinic/manifest.csv", "--num-samples", "7", "--k-fold", "4",
         "--cpus-per-trial", "2", "--grace-period", "3", "--seed", "5", "--name", "pilot", "--fold-parallel",
         "--set", "optim.weight_decay=0.01", "--set", "train.batch_size=8", "--set", "data.filter_words=rabbit,red")


def test_yaml_file_gives_the_same_settings_as_the_flags(tmp_path: Path) -> None:
    path = tmp_path / "search.yaml"
    path.write_text(f"""# every flag is a top-level key (with - or _), config keys go under set:
space: {SPACE}
data: clinic/manifest.csv
num-samples: 7
k_fold: 4
cpus_per_trial: 2
grace-period: 3
seed: 5
name: pilot
fold_parallel: true
set:
  optim.weight_decay: 0.01
  train:
    batch_size: 8
  data.filter_words: [rabbit, red]
""")
    from_file = settings("--config", str(path))
    assert from_file == settings(*FLAGS)
    assert from_file["num_samples"] == 7 and from_file["base"]["data"]["k_fold"] == 4
    assert from_file["pinned"] == {"optim.weight_decay": 0.01, "train.batch_size": 8,
                                   "data.filter_words": ["rabbit", "red"]}


def test_json_file_with_set_as_a_list(tmp_path: Path) -> None:
    path = tmp_path / "search.json"
    path.write_text(json.dumps({"space": SPACE, "data": "clinic/manifest.csv", "num_samples": 7, "k-fold": 4,
                                "cpus-per-trial": 2, "grace_period": 3, "seed": 5, "name": "pilot",
                                "fold-parallel": True,
                                "set": ["optim.weight_decay=0.01", "train.batch_size=8",
                                        "data.filter_words=rabbit,red"]}))
    assert settings("--config", str(path)) == settings(*FLAGS)


def test_run_json_of_an_earlier_search_is_a_valid_input(tmp_path: Path) -> None:
    """A run.json as tune.run writes it (RunSettings.to_json, after the search recorded its splits.json there)
    starts the same search: same base config, budget, resources and pinned keys; not the old run's split file."""
    args = parse_args([*FLAGS, "--demo", "--epochs", "2", "--max-concurrent", "3"])
    earlier = settings_from_args(args, SPACES.get(SPACE))
    recorded = RunSettings(**{**json.loads(earlier.to_json()),
                              "base": earlier.config.with_overrides(
                                  {"data.splits_file": "/runs/pilot/splits.json"}).to_dict()})
    path = tmp_path / "run.json"
    path.write_bytes(recorded.to_json())
    again = settings("--config", str(path))
    expected = json.loads(earlier.to_json())
    expected.pop("created")
    assert again == expected
    assert again["demo"] is True and again["max_concurrent"] == 3 and again["base"]["train"]["epochs"] == 2
    assert again["base"]["data"]["splits_file"] == ""  # the new search records its own split


def test_command_line_wins_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "search.yaml"
    path.write_text(f"space: {SPACE}\nnum_samples: 7\nseed: 5\nset:\n  train.batch_size: 8\n  optim.lr: 1.0e-4\n")
    found = settings("--config", str(path), "--num-samples", "3", "--set", "train.batch_size=4")
    assert found["num_samples"] == 3 and found["seed"] == 5
    assert found["base"]["train"]["batch_size"] == 4 and found["base"]["optim"]["lr"] == pytest.approx(1e-4)
    assert found["pinned"] == {"train.batch_size": 4, "optim.lr": pytest.approx(1e-4)}
    # --data on the command line beats a run.json's base manifest
    run = tmp_path / "run.json"
    run.write_text(json.dumps({"space": SPACE, "base": {"data": {"manifest": "old.csv"}}}))
    stored = settings("--config", str(run))["base"]["data"]["manifest"]
    assert stored == str(Path("old.csv").absolute())  # stored absolute: trials run in folders of their own
    stored = settings("--config", str(run), "--data", "new.csv")["base"]["data"]["manifest"]
    assert stored == str(Path("new.csv").absolute())


@pytest.mark.parametrize(("text", "message"), [
    ("num_sample: 3\n", "unknown key 'num_sample' (choices: address, age_column, allow_changed_data, audio_root, "
                        "base,"),
    ("num_samples: ten\n", "key 'num_samples' must be an integer, got 'ten'"),
    ("demo: 1\n", "key 'demo' must be true or false, got 1"),
    ("set:\n  optim.lrr: 0.1\n", "set: unknown config key 'optim.lrr' (did you mean optim.lr?)"),
    ("set:\n  train.epochs: three\n", "set: train.epochs: expected int, got 'three'"),
    ("set: optim.lr=0.1\n", "'set' must be a mapping of config keys"),
    ("- space\n", "expected a mapping of settings (key: value), got list"),
    ("space: [unclosed\n", "not valid YAML"),
])
def test_a_bad_file_is_one_line_naming_file_and_key(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    text: str, message: str) -> None:
    from tune.engine.experiment import main

    path = tmp_path / "search.yaml"
    path.write_text(f"space: {SPACE}\n" + text if not text.startswith("- ") else text)
    assert main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {path}: "), err
    assert message in err


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tune.engine.experiment import main

    assert main(["--config", str(tmp_path / "nope.yaml")]) == 2
    assert capsys.readouterr().err == f"error: --config {tmp_path / 'nope.yaml'}: file not found\n"


def test_final_set_changes_the_config_final_training_uses(toy_dataset: Path, toy_cache_dir: Path,
                                                          tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tune.final import main as tune_final

    config = tmp_path / "config.json"
    make_toy_config(toy_dataset, toy_cache_dir, **{"train.epochs": 1, "train.batch_size": 8}).to_json(config)
    out = tmp_path / "model"
    assert tune_final(["--config", str(config), "--out", str(out), "--set", "train.batch_size=5",
                       "--set", "train.eval_batch_size=7"]) == 0
    trained = json.loads((out / "config.json").read_text())
    trained = trained.get("config", trained)
    assert trained["train"]["batch_size"] == 5 and trained["train"]["eval_batch_size"] == 7
    assert json.loads(config.read_text())["train"]["batch_size"] == 8  # the file itself is left as it was
    capsys.readouterr()
    assert tune_final(["--config", str(config), "--out", str(tmp_path / "m2"), "--set", "train.batch_sise=5"]) == 2
    assert capsys.readouterr().err == ("error: unknown config key 'train.batch_sise' "
                                       "(did you mean train.batch_size?)\n")

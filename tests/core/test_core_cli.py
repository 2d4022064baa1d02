"""`python -m core.train` as a real subprocess on the toy clips: trains every fold (or one), prints per-epoch lines
and the score (fold-mean curve at e*, ± sample std), writes per-fold JSON, models and a summary; evaluates saved
models; documents every config key in --help; turns bad input into one line and exit 2."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from support.toy_audio import make_toy_config

from core.cli import main
from core.config import Config, all_keys
from core.data.dataset import AudioData
from core.evaluate import predict, score
from core.train import train_fold

ROOT = Path(__file__).resolve().parents[2]
EPOCHS = 2


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # the tests' one thread per process
    return subprocess.run([sys.executable, "-m", "core.train", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def toy_config_file(toy_dataset: Path, toy_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli-config") / "config.json"
    make_toy_config(toy_dataset, toy_cache_dir, **{"train.epochs": EPOCHS}).to_json(path)
    return path


@pytest.fixture(scope="module")
def trained(toy_config_file: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(--out folder, stdout) of one run over every fold."""
    out = tmp_path_factory.mktemp("cli-run")
    done = run_cli("--config", str(toy_config_file), "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out, done.stdout


def test_runs_every_fold_and_summarises(trained: tuple[Path, str], toy_data: AudioData,
                                        toy_config_factory: Callable[..., Config]) -> None:
    out, stdout = trained
    folds = range(len(toy_data.splits.folds))
    epoch_lines = re.findall(r"^fold (\d+)  epoch (\d+)/(\d+)  loss ([\d.]+)  uar ([\d.]+).*$", stdout, re.M)
    assert [(int(f), int(e)) for f, e, *_ in epoch_lines] == [(f, e) for f in folds for e in range(1, EPOCHS + 1)]
    records = [json.loads((out / f"fold{f}.json").read_text()) for f in folds]
    # Fold 0 retrained here gives the same numbers as the subprocess (CPU training is deterministic).
    expected = list(train_fold(toy_config_factory(**{"train.epochs": EPOCHS}), toy_data, toy_data.splits.folds[0]))
    assert [e["metrics"] for e in records[0]["epochs"]] == [pytest.approx(r.metrics, rel=1e-6) for r in expected]
    assert records[0]["selected_epoch"] == expected[-1].best_epoch  # train.select = best
    saved = load_file(str(out / "fold0" / "model.safetensors"))  # fold0/ is a model folder
    for key, value in expected[-1].model.state_dict().items():
        torch.testing.assert_close(saved[f"model.{key}"], value, rtol=1e-5, atol=1e-6)
    # Each fold's record (and fold<N>/) is its own selected epoch's; the score is the search's: the fold-mean
    # curve at its best epoch e*, one epoch for all folds, with the folds' sample std there.
    for record in records:
        assert record["metrics"] == record["epochs"][record["selected_epoch"] - 1]["metrics"]
    curves = np.array([[e["metrics"]["uar"] for e in r["epochs"]] for r in records])  # [folds, epochs]
    best = int(np.argmax(curves.mean(axis=0)))
    uar = curves[:, best]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epoch"] == summary["score"]["epoch"] == best + 1
    assert summary["score"]["score"] == pytest.approx(uar.mean(), abs=1e-12)
    assert summary["mean"]["uar"] == pytest.approx(uar.mean()) and summary["std"]["uar"] == pytest.approx(
        uar.std(ddof=1))
    assert summary["per_fold"]["uar"] == pytest.approx(uar.tolist())
    final = stdout.strip().splitlines()[-1]
    assert final.startswith(f"fold mean over {len(records)} fold(s), best epoch {best + 1} of the fold-mean curve: "
                            f"uar {uar.mean():.4f} ± {uar.std(ddof=1):.4f}")


def test_eval_only_on_a_folds_validation_rows(trained: tuple[Path, str]) -> None:
    """The saved model of fold 1, evaluated again on fold 1's validation rows, scores what training reported for
    the selected epoch."""
    out, _ = trained
    done = run_cli("--eval-only", "--checkpoint", str(out / "fold1"), "--fold", "1", "--out", str(out))
    assert done.returncode == 0, done.stderr
    reported = json.loads((out / "fold1.json").read_text())["metrics"]
    evaluated = json.loads((out / "eval_fold1.json").read_text())
    assert evaluated["metrics"] == pytest.approx(reported, rel=1e-9)
    assert re.search(rf"^fold 1 valid \(\d+ clips\): uar {reported['uar']:.4f}", done.stdout, re.M)


def test_eval_only_on_the_test_set_with_an_exported_config(trained: tuple[Path, str], toy_data: AudioData,
                                                           toy_config_factory: Callable[..., Config],
                                                           tmp_path: Path) -> None:
    out, _ = trained
    config = toy_config_factory(**{"train.epochs": EPOCHS})
    export = tmp_path / "best_config.json"  # the shape tune.run exports
    export.write_text(json.dumps({"config": config.to_dict(), "metric": "uar", "score": {"mean": 0.5}}))
    done = run_cli("--config", str(export), "--eval-only", "--checkpoint", str(out / "fold0"), "--out",
                   str(tmp_path))
    assert done.returncode == 0, done.stderr
    evaluated = json.loads((tmp_path / "eval_test.json").read_text())
    # Independently: fold 0 trained in this process, scored on the held-out test rows.
    result = list(train_fold(config, toy_data, toy_data.splits.folds[0]))[-1]
    rows = toy_data.splits.test
    expected = score(toy_data, rows, predict(result.model, result.featurizer, toy_data, rows, torch.device("cpu"), 64))
    assert evaluated["clips"] == len(rows) and evaluated["metrics"] == pytest.approx(expected, rel=1e-6)


def test_one_fold_only(toy_config_file: Path, tmp_path: Path) -> None:
    done = run_cli("--config", str(toy_config_file), "--fold", "2", "--set", "train.epochs=1", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("fold ")]
    assert lines[0].startswith("fold 2  epoch 1/1") and lines[1].startswith("fold mean over 1 fold(s)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fold2", "fold2.json", "summary.json"]
    assert json.loads((tmp_path / "summary.json").read_text())["std"]["uar"] is None  # a sample std needs 2 folds


def test_help_documents_every_config_key() -> None:
    done = run_cli("--help")
    assert done.returncode == 0
    for option in ("--config", "--data", "--set", "--fold", "--out", "--eval-only", "--checkpoint"):
        assert option in done.stdout
    defaults = Config()
    for key in all_keys():
        value = defaults.get(key)
        shown = (",".join(value) or '""') if isinstance(value, list) else json.dumps(value)
        assert re.search(rf"^\s+{re.escape(key)} = {re.escape(shown)}(\s|$)", done.stdout, re.M), key
    assert re.search(r"optim\.scheduler = .*one of constant, one_cycle, reduce_on_plateau", done.stdout)


def test_bad_input_is_one_line_and_exit_2(toy_config_file: Path, capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    done = run_cli("--config", str(toy_config_file), "--set", "optim.lrr=1")
    assert done.returncode == 2
    assert done.stderr.strip() == "error: unknown config key 'optim.lrr' (did you mean optim.lr?)"
    cases = {
        ("--config", str(toy_config_file), "--fold", "7"): r"--fold 7: this config has folds 0\.\.2",
        ("--config", str(toy_config_file), "--data", str(tmp_path / "none.csv")): r"none\.csv: manifest not found",
        ("--config", str(tmp_path / "nope.json")): r"nope\.json: config file not found",
        ("--eval-only",): r"--eval-only and --checkpoint go together",
        ("--eval-only", "--checkpoint", str(tmp_path / "x")): r"--checkpoint .*x: not found",
        ("--eval-only", "--checkpoint", str(tmp_path)): r"--checkpoint .*: not a model folder \(no model\.json",
        ("--config", str(toy_config_file), "--set", "optim.name=sam", "--set", "train.precision=fp16"):
            r"train\.precision='fp16'",
    }
    for args, message in cases.items():
        assert main(list(args)) == 2, args
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and re.match(rf"error: .*{message}", err), (args, err)
    with pytest.raises(SystemExit) as exit_info:
        main(["--folds", "1"])
    assert exit_info.value.code == 2 and capsys.readouterr().err.count("\n") == 1

"""Settings files a user gives (`core.train`/`tune.final --config`, `tune.run --config` YAML/JSON, a run.json):
nothing in them is silently lost (a key given twice is refused), none exhausts memory or the stack (size, depth
and alias expansion are capped before any value is built), no message repeats more than an excerpt of a value,
a byte-order mark is accepted wherever one is read, and a run.json of one space is no settings file of another."""

from __future__ import annotations

import codecs
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from core.config import Config, load_config_file
from core.errors import ConfigError
from core.settings_files import MAX_BYTES, excerpt, read_settings
from tune.engine.experiment import main as tune_run
from tune.final import search_score

REPO = Path(__file__).resolve().parents[2]
SPACE = "whisper_balancing"
# Nine levels of ten aliases each: 10**9 values once expanded, in under 700 bytes.
LAUGHS = "\n".join([f"space: {SPACE}", 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
                   + [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
                   + ["num_samples: *a8", ""])


def one_error_line(capsys: pytest.CaptureFixture[str], path: Path) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {path}: "), err
    return err


def test_two_set_blocks_are_refused_naming_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """YAML keeps only the last of two `set:` blocks, silently: the first block's keys were lost."""
    path = tmp_path / "search.yaml"
    path.write_text(f"space: {SPACE}\nset:\n  optim.lr: 0.1\nnum_samples: 3\nset:\n  train.epochs: 2\n")
    assert tune_run(["--config", str(path)]) == 2
    err = one_error_line(capsys, path)
    assert "line 5: key 'set' given twice (first at line 2)" in err


def test_a_key_twice_inside_a_section_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "search.yaml"
    path.write_text(f"space: {SPACE}\nset:\n  optim.lr: 0.1\n  optim.lr: 0.2\n")
    assert tune_run(["--config", str(path)]) == 2
    assert "line 4: key 'optim.lr' given twice" in one_error_line(capsys, path)


def test_yaml_merge_keys_still_work(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("defaults: &d {lr: 1, epochs: 2}\nset:\n  <<: *d\n  lr: 3\n")
    assert read_settings(path)["set"] == {"lr": 3, "epochs": 2}


def test_json_duplicate_keys_are_refused(tmp_path: Path) -> None:
    for name in ("config.json", "search.json"):
        path = tmp_path / name
        path.write_text('{"optim": {"lr": 0.1}, "optim": {"lr": 0.2}}')
        with pytest.raises(ConfigError, match=r"key 'optim' given twice in one object"):
            load_config_file(path) if name == "config.json" else read_settings(path)


def test_billion_laughs_is_refused_fast(tmp_path: Path) -> None:
    """Was a minute of work ending in MemoryError (repr() of the expanded value in the error message). A
    subprocess with a time limit, so the old behaviour fails the test rather than the machine."""
    path = tmp_path / "laughs.yaml"
    path.write_text(LAUGHS)
    assert len(LAUGHS.encode()) < 700
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "tune.run", "--config", str(path)], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.count("\n") == 1 and "aliases expand to more than" in done.stderr, done.stderr[-2000:]
    assert time.monotonic() - started < 30


DEEP = 100_000


@pytest.mark.parametrize("body", [
    f'{{"space": "{SPACE}", "set": {"[" * DEEP + "]" * DEEP}}}',  # JSON
    f"space: {SPACE}\nset: {'[' * DEEP + ']' * DEEP}\n",  # YAML flow
    f"space: {SPACE}\nset:\n  {'- ' * DEEP}1\n",  # YAML block
], ids=["json", "yaml-flow", "yaml-block"])
def test_a_file_nested_100000_deep_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               body: str) -> None:
    """Was a RecursionError traceback (thousands of lines for YAML)."""
    path = tmp_path / ("deep.json" if body.startswith("{") else "deep.yaml")
    path.write_text(body)
    assert tune_run(["--config", str(path)]) == 2
    assert "nested too deeply" in one_error_line(capsys, path)


def test_a_file_too_large_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_bytes(b'{"a": "' + b"x" * MAX_BYTES + b'"}')
    with pytest.raises(ConfigError, match=r"big.json: [\d,]+ bytes; a config file is at most"):
        load_config_file(path)


def test_messages_show_only_an_excerpt_of_a_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    values = list(range(50_000))
    path = tmp_path / "search.yaml"
    path.write_text(f"space: {SPACE}\nnum_samples: {json.dumps(values)}\n")
    assert tune_run(["--config", str(path)]) == 2
    err = one_error_line(capsys, path)
    assert "must be an integer, got [0, 1, 2, 3, ...]" in err and len(err) < 300
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"optim": {"lr": ["x" * 10_000]}}))
    with pytest.raises(ConfigError) as caught:
        load_config_file(config)
    assert len(str(caught.value)) < 200, str(caught.value)
    assert len(excerpt({"a": [[["x" * 1000] * 1000] * 1000]})) <= 60


def test_a_byte_order_mark_is_accepted_everywhere(tmp_path: Path) -> None:
    """tune.final read best_config.json once more after training (the model card's evidence) without the BOM
    allowance: it trained the whole model, then failed and wrote nothing. Now both reads take it (and the second
    happens before training)."""
    export = {"config": {"optim": {"lr": 0.5}}, "metric": "uar", "validated": {"score": 0.7}}
    path = tmp_path / "best_config.json"
    path.write_bytes(codecs.BOM_UTF8 + json.dumps(export).encode())
    assert load_config_file(path).optim.lr == 0.5
    assert search_score(path) == {"metric": "uar", "validated": {"score": 0.7}}
    yaml_file = tmp_path / "search.yaml"
    yaml_file.write_bytes(codecs.BOM_UTF8 + f"space: {SPACE}\nnum_samples: 3\n".encode())
    assert read_settings(yaml_file) == {"space": SPACE, "num_samples": 3}


def test_a_run_json_of_another_space_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Its base (the Whisper settings) used to win under --space resnet_focal."""
    run = {"space": SPACE, "name": "x", "base": {"optim": {"lr": 0.001}}, "num_samples": 1, "cpus_per_trial": 1.0,
           "gpus_per_trial": None, "max_concurrent": None, "grace_period": 1, "seed": 0, "demo": False,
           "created": "2026-01-01T00:00:00"}
    path = tmp_path / "run.json"
    path.write_text(json.dumps(run))
    assert tune_run(["--config", str(path), "--space", "resnet_focal", "--storage", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"--config {path}: a run of space '{SPACE}' (its base config), not of --space resnet_focal" in err


def test_tune_final_on_a_config_with_a_byte_order_mark(toy_config_factory: Callable[..., Config],
                                                       tmp_path: Path) -> None:
    """End to end: trained, then failed on reading the file again, and wrote nothing. Now it writes its folder."""
    from tune.final import main as tune_final

    config = toy_config_factory(**{"train.epochs": 1})
    export = {"config": config.to_dict(), "metric": "uar",
              "validated": {"metric": "uar", "score": 0.6, "std": 0.1, "epoch": 1, "horizon": 1, "folds": [0.6]}}
    path = tmp_path / "best_config.json"
    path.write_bytes(codecs.BOM_UTF8 + json.dumps(export).encode())
    assert tune_final(["--config", str(path), "--out", str(tmp_path / "final")]) == 0
    report = json.loads((tmp_path / "final" / "report.json").read_text())
    assert report["cv_score"]["score"] == 0.6 and (tmp_path / "final" / "model.json").is_file()

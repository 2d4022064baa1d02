"""bench/gpu_check.py: its argument parsing and plan run anywhere (each planned tune.run command is one tune.run
accepts); on a machine without a CUDA GPU it says so in one line and exits 2."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from search_spaces import SPACES
from tune.engine.arguments import build_parser, settings_from_args

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu_check.py"


def load_script():  # bench/ is no package: loaded from its file
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_plan_is_what_the_issue_asks(tiny_whisper: Path, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--plan", "--weights", str(tiny_whisper)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    parts = {part["part"]: part for part in plan["parts"]}
    assert list(parts) == ["finetune_bf16", "fold_parallel", "encoder_pass", "lpft_trial"]
    assert plan["budget_seconds"] == 480
    finetune = parts["finetune_bf16"]["argv"]
    assert finetune[finetune.index("--num-samples") + 1] == "4"
    assert finetune[finetune.index("--gpus-per-trial") + 1] == "0.5"
    assert "train.precision=bf16" in finetune
    assert "--fold-parallel" in parts["fold_parallel"]["argv"]
    assert parts["encoder_pass"]["argv"] is None  # in-process: clips per second and torch's peak memory
    assert "whisper_lpft" in parts["lpft_trial"]["argv"]
    for name in ("finetune_bf16", "fold_parallel", "lpft_trial"):  # each is a command tune.run accepts
        argv = parts[name]["argv"][3:]  # after python -m tune.run
        args = build_parser().parse_args(argv)
        run = settings_from_args(args, SPACES.get(args.space))
        assert run.config.train.device == "cuda" and run.config.model.pretrained == str(tiny_whisper)
    assert run.config.train.probe_epochs == 1


def test_bad_flags_are_one_line_and_exit_2(capsys: pytest.CaptureFixture) -> None:
    script = load_script()
    with pytest.raises(SystemExit) as stopped:
        script.parse_args(["--parts", "finetune_bf16,warp_drive"])
    assert stopped.value.code == 2
    assert "--parts: unknown warp_drive" in capsys.readouterr().err
    assert script.parse_args(["--parts", "encoder_pass"]).parts == "encoder_pass"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the check would run")
def test_without_a_gpu_it_says_so_in_one_line_and_exits_2() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("gpu_check: no CUDA GPU on this machine")

#!/usr/bin/env python3
"""How near a probe trial is to its own arithmetic (issue #22): the head's forward/backward over a trial's folds
and epochs, against the trial's wall time in the search, both and their ratio (goal <= 2x), and where the rest goes.

Once the encoder pass is cached (core/models/frozen.py) a probe trial is a small MLP on a few thousand vectors, so
start-up, evaluation, data handling and Ray decide what it costs. Measured, all on one thread (a 1-CPU trial):
  own_arithmetic   a plain loop: the trial's heads (projection + classifier, same sizes, same batches) trained
                   fold after fold on the cached vectors in memory, forward + backward + AdamW step, every epoch;
  train_fold       `core.train.train_fold` over the k folds in this process (no Ray), split into:
                     build_model      the full classifier built per fold (pretrained encoder loaded from disk)
                     open_cache       keying the cache (hashing the encoder's weights) and memory-mapping it
                     evaluation       the per-epoch validation pass (`core.evaluate.predict` + metrics)
                     snapshots        the per-epoch CPU copy of the state a checkpoint holds, and torch.save of it
                   (what remains is the training loop itself: batches built from the manifest rows, the head);
  search_trial     `tune.run --space whisper_probe` with the space pinned to this config: each trial's
                   time_total_s as Ray reports it, and the command's wall time (Ray start, the driver's checks);
  imports          a fresh `python -c "import core.train"` (what a new trial actor pays once).
The JSON gives each figure in seconds and `ratio` = search_trial / own_arithmetic.

Usage:
    python bench/probe_trial.py --weights ../shared/models/whisper-tiny.en
    python bench/probe_trial.py --weights DIR --folds 5 --epochs 20 --trials 3
"""

from __future__ import annotations

import argparse
import io
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script: the repository's packages, whichever folder it runs from

import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.checks import check_config  # noqa: E402
from core.config import Config  # noqa: E402
from core.data.dataset import AudioData, prepare_data  # noqa: E402
from core.evaluate import predict, score  # noqa: E402
from core.models import MODELS  # noqa: E402
from core.models.frozen import with_cached_encoder  # noqa: E402
from core.models.whisper import POOLINGS  # noqa: E402
from core.train import cpu_copy, train_fold  # noqa: E402

# The trial: whisper_probe's base with one point of its space (pinned in the search too).
PINS = {"model.pooling": "audio", "model.layers": "last", "features.conditioning": "none", "loss.name": "ce",
        "optim.lr": 1e-3, "optim.weight_decay": 1e-2, "model.projection_dim": 256, "model.dropout": 0.1}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--weights", required=True, help="a pretrained Whisper folder (model.pretrained)")
    parser.add_argument("--data", default=str(REPO / "data" / "demo" / "manifest.csv"), help="manifest")
    parser.add_argument("--max-seconds", type=float, default=1.25, help="clip length (data.max_seconds)")
    parser.add_argument("--folds", type=int, default=5, help="k")
    parser.add_argument("--epochs", type=int, default=20, help="epochs per fold (whisper_probe's)")
    parser.add_argument("--trials", type=int, default=3, help="trials of the search (all the same config)")
    args = parser.parse_args()
    if not (Path(args.weights) / "config.json").is_file():
        parser.error(f"--weights {args.weights}: no pretrained Whisper folder there (config.json)")
    return args


def trial_config(args: argparse.Namespace, cache: Path) -> Config:
    from search_spaces import SPACES

    base = {**SPACES.get("whisper_probe").base, **PINS, "model.pretrained": str(Path(args.weights).resolve()),
            "data.manifest": args.data, "data.max_seconds": args.max_seconds, "data.cache_dir": str(cache),
            "data.k_fold": args.folds, "train.epochs": args.epochs, "train.device": "cpu"}
    return check_config(Config().with_overrides(base))


def timed(function: Any, *args: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    value = function(*args)
    return value, time.perf_counter() - started


def own_arithmetic(config: Config, data: AudioData, encoded: np.ndarray) -> float:
    """The heads' forward + backward + step over every fold and epoch, on the vectors in memory."""
    pooling = POOLINGS.names().index(config.model.pooling)
    vectors = torch.from_numpy(np.ascontiguousarray(encoded[:, -1, pooling]))  # the last layer, this pooling
    targets = torch.from_numpy(data.targets)
    total = 0.0
    for fold in data.splits.folds:
        head = torch.nn.Sequential(torch.nn.Linear(vectors.shape[1], config.model.projection_dim), torch.nn.GELU(),
                                   torch.nn.Dropout(config.model.dropout),
                                   torch.nn.Linear(config.model.projection_dim, data.num_outputs))
        optimizer = torch.optim.AdamW(head.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay)
        rng = np.random.default_rng(0)
        started = time.perf_counter()
        for _ in range(config.train.epochs):
            order = rng.permutation(fold.train)
            for start in range(0, len(order), config.train.batch_size):
                rows = torch.from_numpy(order[start:start + config.train.batch_size])
                loss = torch.nn.functional.cross_entropy(head(vectors[rows]), targets[rows])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        total += time.perf_counter() - started
    return total


def parts_of_train_fold(config: Config, data: AudioData) -> dict[str, float]:
    """What train_fold spends besides the head's training, each part as train_fold does it, over the k folds."""
    spec, device = MODELS.get(config.model.name), torch.device("cpu")
    build = cache = evaluation = snapshots = 0.0
    for fold in data.splits.folds:
        (model, featurizer), seconds = timed(lambda: (spec.build(config, data.num_outputs),
                                                      spec.featurizer(config)))
        build += seconds
        (probe, features), seconds = timed(with_cached_encoder, config, data, model, featurizer, device)
        cache += seconds
        for _ in range(config.train.epochs):
            started = time.perf_counter()
            outputs = predict(probe, features, data, fold.valid, device, config.train.eval_batch_size)
            score(data, fold.valid, outputs, config.data)
            evaluation += time.perf_counter() - started
            started = time.perf_counter()
            state = cpu_copy(probe.state_dict())
            torch.save({"model": state, "optimizer": {}}, io.BytesIO())
            snapshots += time.perf_counter() - started
    return {"build_model": build, "open_cache": cache, "evaluation": evaluation, "snapshots": snapshots}


def search_trials(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    pins = [item for key, value in PINS.items() for item in ("--set", f"{key}={value}")]
    argv = [sys.executable, "-m", "tune.run", "--space", "whisper_probe", "--data", args.data,
            "--num-samples", str(args.trials), "--max-concurrent", "1", "--cpus-per-trial", "1",
            "--k-fold", str(args.folds), "--epochs", str(args.epochs), "--grace-period", str(args.epochs),
            "--storage", str(scratch / "runs"), "--name", "probe-trial", *pins,
            "--set", f"model.pretrained={Path(args.weights).resolve()}", "--set", "train.device=cpu",
            "--set", f"data.max_seconds={args.max_seconds}", "--set", f"data.cache_dir={scratch / 'cache'}"]
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"probe_trial: the search failed:\n{done.stderr[-3000:]}")
    totals = []
    for result in sorted((scratch / "runs" / "probe-trial").glob("trial_*/result.json")):
        lines = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        totals.append(lines[-1]["time_total_s"])
    return {"command_seconds": wall, "trial_seconds": totals}


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="audiotune-probe-trial-") as folder:
        scratch = Path(folder)
        config = trial_config(args, scratch / "cache")
        data = prepare_data(config)
        _, encoder_pass = timed(lambda: list(train_fold(config.with_overrides({"train.epochs": 1}), data,
                                                        data.splits.folds[0])))
        (encoded_file,) = (scratch / "cache").glob("encoded-*.npy")
        encoded = np.load(encoded_file, mmap_mode="r")
        own = own_arithmetic(config, data, encoded)
        fold_seconds = []
        for fold in data.splits.folds:
            _, seconds = timed(lambda fold=fold: list(train_fold(config, data, fold)))
            fold_seconds.append(seconds)
        parts = parts_of_train_fold(config, data)
        _, imports = timed(lambda: subprocess.run([sys.executable, "-c", "import core.train"], cwd=REPO, check=True))
        search = search_trials(args, scratch)
    trial = statistics.median(search["trial_seconds"]) if search["trial_seconds"] else math.nan
    in_process = sum(fold_seconds)
    report = {
        "weights": Path(args.weights).name, "clips": int(len(data.targets)), "folds": args.folds,
        "epochs": args.epochs, "batch_size": config.train.batch_size, "threads": 1,
        "encoder_pass_and_first_epoch_seconds": round(encoder_pass, 2),
        "own_arithmetic_seconds": round(own, 4),
        "train_fold_seconds": round(in_process, 3),
        "train_fold_parts_seconds": {**{key: round(value, 3) for key, value in parts.items()},
                                     "rest_training_loop": round(in_process - sum(parts.values()), 3)},
        "imports_seconds": round(imports, 2),
        "search_trial_seconds": [round(value, 2) for value in search["trial_seconds"]],
        "search_command_seconds": round(search["command_seconds"], 1),
        "ratio": round(trial / own, 2), "ratio_train_fold": round(in_process / own, 2), "goal": 2.0,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

"""The search on a real Ray cluster on 127.0.0.1: submitted as a Ray Job (`tune.submit`), results in a `file://`
storage URI, and --fold-parallel trials whose folds run as actors in placement-group bundles with fractional GPUs
(on a second, two-node cluster whose worker node advertises one logical GPU)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from support.ray_cluster import gpu_cluster, ray_dashboard  # noqa: F401  (fixtures)

from core.config import load_config_file
from core.data.dataset import prepare_data
from core.train import train_fold

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]  # real Ray searches: minutes

REPO = Path(__file__).resolve().parents[2]


def cli(module: str, *args: str, env: dict[str, str] | None = None, timeout: int = 400
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=timeout)


def toy_options(data: Path, cache: Path) -> list[str]:
    return ["--space", "whisper_balancing", "--demo", "--data", str(data), "--set", "data.max_seconds=1.0",
            "--set", f"data.cache_dir={cache}", "--set", "train.batch_size=8", "--set", "train.device=cpu",
            "--epochs", "2", "--grace-period", "2"]


def test_submit_follow_runs_the_search_as_a_job(ray_dashboard: str, ray_env: dict[str, str],  # noqa: F811
                                                toy_dataset: Path, toy_cache_dir: Path, tmp_path: Path) -> None:
    from ray.job_submission import JobStatus, JobSubmissionClient

    storage = f"file://{tmp_path}/runs"
    done = cli("tune.submit", "--address", ray_dashboard, *toy_options(toy_dataset, toy_cache_dir),
               "--num-samples", "1", "--gpus-per-trial", "0", "--storage", storage, "--name", "job", "--follow",
               env=ray_env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    job_id = next(line.split()[-1] for line in lines if line.startswith("submitted job "))
    # The job ran our venv's interpreter (not the `python` on the PATH of `ray start`), joining the cluster.
    assert f"entrypoint: {sys.executable} -m tune.run " in done.stdout and done.stdout.count("--address auto") >= 1
    assert sum(" epoch 2/2 " in line for line in lines) == 1  # its log was streamed to us
    assert lines[-1] == f"job {job_id}: SUCCEEDED"
    client = JobSubmissionClient(ray_dashboard)  # asked independently of tune.submit
    assert client.get_job_status(job_id) == JobStatus.SUCCEEDED
    runtime_env = client.get_job_info(job_id).runtime_env
    assert runtime_env["working_dir"].startswith("gcs://") and "pip" not in runtime_env  # cluster has packages
    # Results went to the storage URI; the export is the leaderboard's winner, with the toy manifest.
    folder = tmp_path / "runs" / "job"
    export = json.loads((folder / "best_config.json").read_text())
    table = pd.read_csv(folder / "leaderboard.csv", dtype={"trial_id": str})
    assert len(table) == 1 and export["trial_id"] == table.iloc[0]["trial_id"]
    assert export["search"]["storage"] == f"{storage}/job"
    config = load_config_file(folder / "best_config.json")
    assert config.data.manifest == str(toy_dataset) and config.model.size == "micro"
    assert config.optim.lr == pytest.approx(table.iloc[0]["optim.lr"])


def test_submit_follow_exits_1_when_the_job_fails(ray_dashboard: str, ray_env: dict[str, str],  # noqa: F811
                                                  toy_cache_dir: Path, tmp_path: Path) -> None:
    """--remote-data skips the local data checks; the job's own check then fails it on the cluster."""
    missing = tmp_path / "nowhere" / "manifest.csv"
    done = cli("tune.submit", "--address", ray_dashboard, *toy_options(missing, toy_cache_dir), "--remote-data",
               "--pip", "never",
               "--storage", str(tmp_path / "runs"), "--name", "fails", "--follow", env=ray_env)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"error: {missing}: manifest not found" in done.stdout  # the job's one-line error, streamed
    assert done.stderr.strip().endswith(": FAILED")


@pytest.mark.parametrize(("options", "message"), [
    (["--space", "no_such_space"], "unknown search space 'no_such_space'"),
    (["--space", "whisper_balancing", "--data", "/nonexistent/manifest.csv"], "manifest not found"),
])
def test_submit_checks_options_before_contacting_the_cluster(options: list[str], message: str,
                                                             tmp_path: Path) -> None:
    # Nothing listens on port 9 (discard): reaching it would be a different error.
    done = cli("tune.submit", "--address", "http://127.0.0.1:9", *options, "--storage", str(tmp_path))
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: ") and message in errors[0]


def test_fold_parallel_folds_run_in_fractional_gpu_bundles(gpu_cluster: dict[str, str],  # noqa: F811
                                                           ray_env: dict[str, str], toy_dataset: Path,
                                                           toy_cache_dir: Path, tmp_path: Path) -> None:
    done = cli("tune.run", *toy_options(toy_dataset, toy_cache_dir), "--num-samples", "2", "--fold-parallel",
               "--cpus-per-trial", "0.5", "--gpus-per-trial", "0.5", "--storage", str(tmp_path), "--name", "fp",
               "--address", gpu_cluster["address"], env=ray_env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resources per trial: 0.05 CPU + 0.15 CPU, 0.1666 GPU + 0.15 CPU, 0.1666 GPU + 0.15 CPU, 0.1666 GPU" \
        in done.stdout
    table = pd.read_csv(tmp_path / "fp" / "leaderboard.csv", dtype={"trial_id": str})
    assert len(table) == 2
    for trial in table["trial_id"]:
        checkpoints = sorted((tmp_path / "fp" / f"trial_{trial}").glob("checkpoint_*"))
        last = checkpoints[-1]
        meta = json.loads((last / "trial.json").read_text())
        assert meta["epoch"] == 2 and [f["fold"] for f in meta["folds"]] == [0, 1, 2]
        driver = meta["trial"]
        pids = {f["placement"]["pid"] for f in meta["folds"]}
        assert len(pids) == 3 and driver["pid"] not in pids  # one actor process per fold
        for fold in meta["folds"]:
            where = fold["placement"]
            assert where["placement_group"] == driver["placement_group"] is not None  # the trial's own group
            assert where["node"] == gpu_cluster["gpu_node"]  # the only node with a GPU
            assert where["resources"]["GPU"] == pytest.approx(0.5 / 3, abs=1e-4)  # fractional GPU per fold
            assert where["resources"]["CPU"] == pytest.approx((0.5 - 0.05) / 3, abs=1e-4)
            state = torch.load(last / f"fold{fold['fold']}.pt", weights_only=True)  # every fold checkpointed
            assert state["progress"]["epoch"] == 2 and set(state) >= {"model", "optimizer", "random"}
    # Folds trained in actors score exactly as core alone trains them.
    export = json.loads((tmp_path / "fp" / "best_config.json").read_text())
    config = load_config_file(tmp_path / "fp" / "best_config.json")  # stops at e*, the validated epoch
    data = prepare_data(config)
    scores = [list(train_fold(config, data, fold))[-1].metrics["uar"] for fold in data.splits.folds]
    assert scores == pytest.approx(export["validated"]["folds"], abs=1e-12)


def test_probe_job_tells_whether_the_cluster_has_the_interpreter(ray_dashboard: str) -> None:  # noqa: F811
    """--pip auto adds pip requirements only when the probe job fails on the cluster."""
    from ray.job_submission import JobSubmissionClient

    from tune.engine.job_env import interpreter_and_env, interpreter_works

    client = JobSubmissionClient(ray_dashboard)
    assert interpreter_works(client, sys.executable)
    assert not interpreter_works(client, "/nonexistent/venv/bin/python")
    python, env = interpreter_and_env(client, None, "auto")
    assert python == sys.executable and "pip" not in env and env["working_dir"] == str(REPO)
    assert ".venv" in env["excludes"] and ".git" in env["excludes"] and "runs" in env["excludes"]
    python, env = interpreter_and_env(client, "/nonexistent/venv/bin/python", "auto")
    assert python == "/nonexistent/venv/bin/python" and "pip" in env  # (not submitted: it would install torch)
    pins = dict(line.split("==") for line in env["pip"]["packages"])
    constraints = (REPO / "requirements" / "constraints.txt").read_text()
    assert f"torch=={pins['torch']}" in constraints and "ray" not in pins and "pytest" not in pins


def test_submit_makes_local_paths_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tune.engine.job_env import absolute_paths

    monkeypatch.chdir(tmp_path)
    argv = ["--data", "d/m.csv", "--storage=runs", "--audio-root", "~/audio", "--set", "data.seed=1",
            "--storage", "s3://bucket/runs"]
    assert absolute_paths(argv) == ["--data", str(tmp_path / "d" / "m.csv"), f"--storage={tmp_path / 'runs'}",
                                    "--audio-root", str(Path.home() / "audio"), "--set", "data.seed=1",
                                    "--storage", "s3://bucket/runs"]


def test_trial_resources_follow_the_model_unless_given() -> None:
    from search_spaces import SPACES
    from tune.engine.arguments import build_parser, settings_from_args
    from tune.engine.resources import resolve_gpus

    def settings(*args: str):  # noqa: ANN202
        parsed = build_parser().parse_args(["--space", args[0], *args[1:]])
        return settings_from_args(parsed, SPACES.get(args[0]))

    assert settings("wav2vec2_contrastive").cpus_per_trial == 2.0  # the table: wav2vec2 needs more
    assert settings("resnet_focal").cpus_per_trial == 1.0
    assert settings("wav2vec2_contrastive", "--cpus-per-trial", "3").cpus_per_trial == 3.0
    assert settings("wav2vec2_contrastive").gpus_per_trial is None  # resolved against the cluster later
    assert resolve_gpus(None, "wav2vec2", available=4) == 0.5 and resolve_gpus(None, "whisper", 4) == 0.25
    assert resolve_gpus(None, "wav2vec2", available=0) == 0.0  # no GPUs: CPU trials
    assert resolve_gpus(0.75, "whisper", available=1) == 0.75

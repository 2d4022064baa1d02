"""A search on a real two-node Ray cluster (tests/support/netns_cluster.py: `ray start` head and worker, each in its own
network namespace with its own /tmp; data and --storage shared outside /tmp), submitted with `tune.submit`.
The worker node is lost (its raylet killed, then all its processes) while a trial trains there: that trial must
go on from its checkpoint on the head and the search must finish 2/2. Where each epoch ran is read from the
results, not from log wording.

Resources make the placement certain: each node has 1 CPU, each trial needs 1 (the job's driver needs none) and
the head's CPU is held by a placeholder actor until the worker is killed, so the first trial can only start on
the worker and can only go on on the head.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from support.netns_cluster import HEAD_IP, WORKER_IP, Node, TwoNodes, release, unavailable
from support.ray_cluster import CliProcess
from support.toy_audio import write_toy_dataset

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 4
NAME = "moves"


@pytest.fixture
def two_nodes(ray_env: dict[str, str], tmp_path: Path) -> Iterator[TwoNodes]:
    reason = unavailable()
    if reason:
        pytest.skip(f"two-node Ray cluster: {reason}")
    with TwoNodes(tmp_path, ray_env) as cluster:
        yield cluster


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """Seen by both nodes at the same path, outside their /tmp (as NFS would be)."""
    folder = Path(tempfile.mkdtemp(prefix="audiotune-two-nodes-", dir="/var/tmp"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def checkpoint_meta(trial_dir: Path) -> dict | None:
    """The trial's latest checkpoint's trial.json (num_to_keep=1: older ones vanish as we look)."""
    for folder in sorted(trial_dir.glob("checkpoint_*"), reverse=True):
        with contextlib.suppress(OSError, ValueError):
            return json.loads((folder / "trial.json").read_text())
    return None


def trial_running_on(node: Node, search: CliProcess, experiment: Path, seconds: float = 240) -> tuple[str, dict]:
    """(id, checkpoint meta) of the unfinished trial whose checkpointed epoch ran in one of `node`'s processes."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for folder in sorted(experiment.glob("trial_*")):
            meta = checkpoint_meta(folder)
            if meta is not None and meta["epoch"] < EPOCHS and meta["trial"]["pid"] in node.pids():
                return folder.name.removeprefix("trial_"), meta
        if search.process.poll() is not None:
            break
        time.sleep(0.5)
    raise AssertionError(f"no trial checkpointed on {node.namespace}; stdout:\n{search.stdout[-3000:]}\n"
                         f"stderr:\n{search.stderr[-3000:]}")


def results(experiment: Path, trial: str) -> list[dict]:
    return [json.loads(line) for line in (experiment / f"trial_{trial}" / "result.json").read_text().splitlines()]


def test_trial_on_a_lost_node_resumes_from_its_checkpoint_on_the_head(two_nodes: TwoNodes, shared_folder: Path
                                                                       ) -> None:
    data = write_toy_dataset(shared_folder / "toy")
    storage = shared_folder / "runs"
    experiment = storage / NAME
    with two_nodes.holding_cpus(two_nodes.head) as hold:  # the first trial can only start on the worker
        search = CliProcess(
            ["tune.submit", "--address", two_nodes.dashboard, "--follow", "--pip", "never",
             "--space", "whisper_balancing", "--demo", "--data", str(data), "--set", "data.max_seconds=1.0",
             "--set", "data.cache_dir=/tmp/audiotune-cache",  # inside each node's own /tmp: one cache per node
             "--set", "train.batch_size=8", "--set", "train.device=cpu",
             "--num-samples", "2", "--max-concurrent", "1", "--epochs", str(EPOCHS), "--grace-period", str(EPOCHS),
             "--cpus-per-trial", "1", "--gpus-per-trial", "0", "--storage", str(storage), "--name", NAME],
            two_nodes.env, REPO, prefix=two_nodes.head.enter())  # the client runs on the head
        try:
            moved, before = trial_running_on(two_nodes.worker, search, experiment)
            two_nodes.worker.lose()
            release(hold)  # now only the head has a free CPU
            code = search.finish(timeout=400)
        finally:
            if search.process.poll() is None:
                search.process.kill()
    assert code == 0, search.stdout[-3000:] + search.stderr[-3000:]
    assert re.fullmatch(r"job \S+: SUCCEEDED", search.lines[-1])

    # The search completed 2/2, each trial counted once.
    table = pd.read_csv(experiment / "leaderboard.csv", dtype={"trial_id": str})
    assert len(table) == 2 and table["trial_id"].is_unique and set(table["status"]) == {"finished"}
    assert moved in set(table["trial_id"].astype(str))

    # Where every epoch of the moved trial ran: first on the worker, then (after the kill) on the head.
    rows = [(r["epoch"], r["node_ip"]) for r in results(experiment, moved)]
    print(f"trial {moved}: (epoch, node) {rows}")
    on_worker = [epoch for epoch, ip in rows if ip == WORKER_IP]
    on_head = [epoch for epoch, ip in rows if ip == HEAD_IP]
    assert rows == [(e, WORKER_IP) for e in on_worker] + [(e, HEAD_IP) for e in on_head], rows
    assert on_worker == list(range(1, len(on_worker) + 1)) and before["epoch"] in on_worker
    # Resumed from its checkpoint: the head went on after a checkpointed epoch, not from epoch 1.
    assert on_head and 2 <= on_head[0] <= on_worker[-1] + 1, rows
    assert on_head == list(range(on_head[0], EPOCHS + 1)), rows
    after = checkpoint_meta(experiment / f"trial_{moved}")
    assert after is not None and after["epoch"] == EPOCHS
    assert after["trial"]["node"] != before["trial"]["node"]  # Ray node ids, as the trial recorded them

    # The other trial ran on the head throughout, in the node the moved trial ended on.
    (other,) = set(table["trial_id"].astype(str)) - {moved}
    assert {r["node_ip"] for r in results(experiment, other)} == {HEAD_IP}
    assert checkpoint_meta(experiment / f"trial_{other}")["trial"]["node"] == after["trial"]["node"]
    # Each node decoded the clips into its own cache, in its own /tmp.
    for node in two_nodes.nodes:
        assert list((node.tmp / "audiotune-cache").glob("clips-*.arrow")), node.namespace

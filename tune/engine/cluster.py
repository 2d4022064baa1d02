"""Starting or joining Ray. A local Ray binds to 127.0.0.1 only: nothing listens beyond loopback."""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Mapping
from typing import NoReturn

from core.errors import UserError
from tune.engine.private_api import exit_now, loopback_init_options

JOIN_TIMEOUT_S = 10.0  # how long an --address HOST:PORT may take to answer before we say nothing is there

LOOPBACK_ENV: Mapping[str, str] = {
    # With this set to 0, every Ray listener (GCS, raylet, object manager, dashboard) binds 127.0.0.1.
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    # The legacy output engine honours verbose=0 (no experiment banner or tables); our callback prints instead.
    "RAY_AIR_NEW_OUTPUT": "0",
    # Tune's experiment-sync warning fires on every small checkpoint of a short trial.
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    # Ctrl-C is ours (tune/engine/interrupt.py): we forward it to Tune as SIGUSR1 and then know the run was interrupted.
    "TUNE_DISABLE_SIGINT_HANDLER": "1",
}


def set_ray_environment() -> None:
    """Before any Ray import: loopback-only listeners and quiet output (the caller's environment wins)."""
    for key, value in LOOPBACK_ENV.items():
        os.environ.setdefault(key, value)


def start_ray(address: str | None, num_cpus: int | None = None, num_gpus: int | None = None) -> None:
    """Join the cluster at `address`, or start a new local one on loopback (the default).

    `address="local"` rather than None: with None, `ray.init` would join any cluster `ray start` left on this
    machine (or a stale address file), which is not what "local" promises.
    """
    set_ray_environment()
    import ray

    common = {"log_to_driver": False, "logging_level": "WARNING", "configure_logging": True}
    if address:
        check_reachable(address)
        try:
            ray.init(address=address, **common)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise UserError(f"--address {address}: cannot join ({str(error).splitlines()[0]})") from error
    else:
        ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
                 **loopback_init_options(), **common)


def exit_process(code: int) -> NoReturn:
    """End a CLI process that has loaded torch, transformers and Ray, skipping only the interpreter's teardown.

    Freeing those modules' objects one by one at exit took 5-7 s of a search's wall time here (bench/README.md,
    search_overhead). Everything a normal exit does that matters still happens, in the same order: other threads
    are waited for, then every exit hook runs (Ray's shutdown, logging's flush, a tracker's `finish`)."""
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    sys.stdout.flush()
    sys.stderr.flush()
    exit_now(code)


def check_reachable(address: str) -> None:
    """`ray.init` retries an address where nothing listens for minutes: ask the socket first, briefly."""
    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--address {address!r}: expected auto or HOST:PORT (e.g. 10.0.0.1:6379)")
    try:
        with socket.create_connection((host, int(port)), timeout=JOIN_TIMEOUT_S):
            pass
    except OSError as error:
        raise UserError(f"--address {address}: nothing answers there within {JOIN_TIMEOUT_S:g} s ({error}); "
                        "is the Ray head started (ray start --head)?") from error


def cluster_nodes() -> list[dict[str, float]]:
    """Resources of each live node of the joined cluster."""
    import ray

    return [dict(node["Resources"]) for node in ray.nodes() if node.get("Alive")]


def local_nodes() -> list[dict[str, float]]:
    """The one node a local Ray will have: this machine's CPUs and GPUs (known before Ray starts)."""
    return [{"CPU": float(os.cpu_count() or 1), "GPU": local_gpus()}]


def cluster_gpus() -> float:
    import ray

    return float(ray.cluster_resources().get("GPU", 0.0))


def local_gpus() -> float:
    """GPUs a local Ray would see: known before Ray starts, so a bad --gpus-per-trial fails without starting it."""
    import torch

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and not visible.strip():
        return 0.0
    return float(torch.cuda.device_count())

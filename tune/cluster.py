"""Starting or joining Ray. A local Ray binds to 127.0.0.1 only: nothing listens beyond loopback."""

from __future__ import annotations

import os
from collections.abc import Mapping

LOOPBACK_ENV: Mapping[str, str] = {
    # With this set to 0, every Ray listener (GCS, raylet, object manager, dashboard) binds 127.0.0.1.
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    # The legacy output engine honours verbose=0 (no experiment banner or tables); our callback prints instead.
    "RAY_AIR_NEW_OUTPUT": "0",
    # Tune's experiment-sync warning fires on every small checkpoint of a short trial.
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    # Ctrl-C is ours (tune/interrupt.py): we forward it to Tune as SIGUSR1 and then know the run was interrupted.
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
        ray.init(address=address, **common)
    else:
        ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
                 _node_ip_address="127.0.0.1", **common)


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

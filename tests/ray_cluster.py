"""One real local Ray head per test session, bound to 127.0.0.1, that the CLIs under test join with --address.

Started with `ray start --head --block` so that terminating that one process stops the whole cluster, and with
token authentication disabled (tests only) so subprocess clients need no token file.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"Ray head did not open 127.0.0.1:{port} within {seconds:.0f}s")


@pytest.fixture(scope="session")
def ray_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled",
                "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"})
    return env


@pytest.fixture(scope="session")
def ray_head(ray_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int | str]]:
    """A Ray head on loopback; yields its GCS address and dashboard (Jobs API) port."""
    port, dashboard = free_port(), free_port()
    ray = Path(sys.executable).parent / "ray"
    log = (tmp_path_factory.mktemp("ray") / "head.log").open("w")
    process = subprocess.Popen(
        [str(ray), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
         "--num-cpus=2", "--num-gpus=0", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
         f"--dashboard-port={dashboard}", "--disable-usage-stats"],
        env=ray_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port(port, 90)
        wait_for_port(dashboard, 90)
        yield {"address": f"127.0.0.1:{port}", "dashboard": dashboard, "pid": process.pid}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


@pytest.fixture(scope="session")
def ray_address(ray_head: dict[str, int | str]) -> str:
    return str(ray_head["address"])

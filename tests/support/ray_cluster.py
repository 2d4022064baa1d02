"""One real local Ray head per test session, bound to 127.0.0.1, that the CLIs under test join with --address.

Started with `ray start --head --block` so that terminating that one process stops the whole cluster, and with
token authentication disabled (tests only) so subprocess clients need no token file.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
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
    port, dashboard, agent = free_port(), free_port(), free_port()
    ray = Path(sys.executable).parent / "ray"
    log = (tmp_path_factory.mktemp("ray") / "head.log").open("w")
    process = subprocess.Popen(
        [str(ray), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
         "--num-cpus=2", "--num-gpus=0", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
         f"--dashboard-port={dashboard}", f"--dashboard-agent-listen-port={agent}", "--disable-usage-stats"],
        env=ray_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port(port, 90)
        wait_for_port(dashboard, 90)
        yield {"address": f"127.0.0.1:{port}", "dashboard": dashboard, "pid": process.pid}
    finally:
        # SIGTERM to `ray start` alone: it drains the node through the GCS, then stops its processes (~2 s).
        # Signalling the whole group kills the GCS first and the drain waits 30 s for it.
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


@pytest.fixture(scope="session")
def ray_address(ray_head: dict[str, int | str]) -> str:
    return str(ray_head["address"])


@pytest.fixture(scope="session")
def ray_dashboard(ray_head: dict[str, int | str]) -> str:
    """The session head's Jobs API / state API address."""
    return f"http://127.0.0.1:{ray_head['dashboard']}"


@pytest.fixture(scope="module")
def gpu_cluster(ray_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """A second, two-node cluster on 127.0.0.1 (`ray.cluster_utils.Cluster`): a 1-CPU head and a worker node with
    1 CPU and 1 *logical* GPU, so placement groups with fractional-GPU bundles are really scheduled (torch finds
    no CUDA and trains on CPU). `ray start` cannot add that worker here: with the loopback setting it refuses
    multi-node clusters. Module-scoped; yields the head's address and the GPU node's id."""
    with pytest.MonkeyPatch.context() as patch:
        for key in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_AUTH_MODE", "RAY_USAGE_STATS_ENABLED"):
            patch.setenv(key, ray_env[key])
        from ray.cluster_utils import Cluster

        loopback = {"node_ip_address": "127.0.0.1", "num_cpus": 1}
        cluster = Cluster(initialize_head=True, head_node_args={
            **loopback, "include_dashboard": False, "dashboard_agent_listen_port": free_port()})
        try:
            worker = cluster.add_node(**loopback, num_gpus=1, dashboard_agent_listen_port=free_port())
            yield {"address": cluster.address, "gpu_node": worker.node_id}
        finally:
            cluster.shutdown()


class CliProcess:
    """A CLI run as a subprocess whose stdout lines are collected as they come, so a test can act mid-run
    (kill a worker, SIGKILL or interrupt the driver). Own session: its leftovers can be found and ended."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, prefix: Sequence[str] = ()) -> None:
        """`prefix`: a command that runs ours, e.g. nsenter into another node's namespaces."""
        self.process = subprocess.Popen([*prefix, sys.executable, "-m", *args], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, env=env, cwd=cwd, start_new_session=True)
        self.lines: list[str] = []
        self.errors: list[str] = []
        self._changed = threading.Condition()
        self._readers = [threading.Thread(target=self._read, args=(stream, sink), daemon=True)
                         for stream, sink in ((self.process.stdout, self.lines), (self.process.stderr, self.errors))]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: object, sink: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self._changed:
                sink.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float = 180) -> re.Match[str]:
        """The first stdout line matching `pattern` (regex), waiting for it."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if match := regex.search(line):
                        return match
                left = deadline - time.monotonic()
                if left <= 0 or self.process.poll() is not None and not any(r.is_alive() for r in self._readers):
                    raise AssertionError(f"no line matching {pattern!r}; stdout:\n" + "\n".join(self.lines[-40:])
                                         + "\nstderr:\n" + "\n".join(self.errors[-40:]))
                self._changed.wait(min(left, 1.0))

    def finish(self, timeout: float = 300) -> int:
        code = self.process.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=10)
        return code

    @property
    def stdout(self) -> str:
        return "\n".join(self.lines)

    @property
    def stderr(self) -> str:
        return "\n".join(self.errors)

    def end_leftovers(self) -> None:
        """After a SIGKILLed local driver some Ray helpers outlive it (env-notes): end them, by pid, and only
        those of this process's session."""
        for pid in session_members(self.process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def session_members(session: int) -> list[int]:
    """Pids of live processes whose session id is `session` (from /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session and fields[0] != "Z":
            members.append(int(entry.name))
    return members

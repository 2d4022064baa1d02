"""A real two-node Ray cluster on one machine, for tests that need a second node (root only).

Each node runs `ray start` in a network namespace of its own, the two joined by a veth pair with two addresses of a
private test range (`10.213.0.1`, `10.213.0.2`) that exist only inside those namespaces. That is what confines a
multi-node Ray: it needs `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER` unset, and then it listens on every interface it has
(loopback aliases would leave it on all of the machine's). Each node also gets a mount namespace with a `/tmp` of
its own, as a second machine has: two nodes sharing `/tmp/ray` clean each other's runtime files. Whatever both
nodes must see (data, --storage) therefore lives outside `/tmp`, as on NFS.
The namespaces have no route out: Ray's guess of its address (a route towards 8.8.8.8) fails at once, and no
traffic leaves them.

Everything the cluster made is undone by `close()`, even after a failure: its processes are found by network
namespace (`ip netns pids`) and killed by pid; the namespaces (and with them the veth pair and the mounts) are
deleted. Never `ray stop`: it kills every Ray process on the machine, not only this cluster's.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

HEAD_IP, WORKER_IP = "10.213.0.1", "10.213.0.2"
GCS_PORT, DASHBOARD_PORT = 6379, 8265  # free by construction: nothing else lives in these namespaces
RAY = Path(sys.executable).parent / "ray"
# A Ray driver on a node that holds all its CPUs (an actor pinned there) until its stdin closes.
HOLD = """
import sys
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

@ray.remote
class Hold:
    def ready(self):
        return True

ray.init(address=sys.argv[1], logging_level="WARNING")
here = ray.get_runtime_context().get_node_id()
cpus = next(node["Resources"]["CPU"] for node in ray.nodes() if node["NodeID"] == here)
hold = Hold.options(num_cpus=cpus, scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False)).remote()
ray.get(hold.ready.remote())
print("holding", flush=True)
sys.stdin.read()
"""


def unavailable() -> str | None:
    """Why the two-node cluster cannot be made here, or None."""
    if os.geteuid() != 0:
        return "needs root (network and mount namespaces)"
    missing = [tool for tool in ("ip", "unshare", "nsenter") if shutil.which(tool) is None]
    if missing:
        return f"needs {', '.join(missing)}"
    for what, path in (("the interpreter", Path(sys.executable)), ("the repository", Path(__file__).parents[2])):
        if path.resolve().is_relative_to("/tmp"):  # the nodes could not import it, nor start in their folder
            return f"{what} {path} is under /tmp, which each node replaces with its own"
    probe = f"audiotune-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def sh(*args: str) -> None:
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip()}")


@dataclass
class Node:
    namespace: str
    ip: str
    tmp: Path  # bound over /tmp inside the node
    log: Path  # the output of its `ray start --block`
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def pids(self) -> list[int]:
        """Every process in the node's network namespace."""
        listed = subprocess.run(["ip", "netns", "pids", self.namespace], capture_output=True, text=True)
        return [int(pid) for pid in listed.stdout.split()]

    def pid_of(self, name: str) -> int:
        """The node's process named `name` (its /proc comm), e.g. `raylet`."""
        for pid in self.pids():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().strip() == name:
                    return pid
        raise LookupError(f"no {name} process on {self.namespace}")

    def lose(self) -> None:
        """The node dies as a machine does: its raylet first, then every process it had, at once (a raylet
        killed alone leaves its workers running, and reporting, until they notice)."""
        os.kill(self.pid_of("raylet"), signal.SIGKILL)
        kill_all(self)

    def enter(self) -> list[str]:
        """A command prefix that runs a command on this node: in its network and mount namespaces."""
        assert self.process is not None
        return ["nsenter", f"--target={self.process.pid}", "--net", "--mount", "--"]

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


class TwoNodes:
    """A head (`HEAD_IP`, GCS and dashboard/Jobs API on the default ports) and a worker (`WORKER_IP`).

    `env` is the environment of both `ray start`s; `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER` is removed from it (a worker
    refuses to join while it is 0). `folder` holds each node's /tmp, so their Ray logs outlive the test.
    """

    def __init__(self, folder: Path, env: dict[str, str], head_cpus: int = 1, worker_cpus: int = 1) -> None:
        tag = f"audiotune-{os.getpid()}"
        self.env = {k: v for k, v in env.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
        self.head = Node(f"{tag}-head", HEAD_IP, folder / "head-tmp", folder / "head.log")
        self.worker = Node(f"{tag}-worker", WORKER_IP, folder / "worker-tmp", folder / "worker.log")
        self.cpus = {self.head.namespace: head_cpus, self.worker.namespace: worker_cpus}

    @property
    def nodes(self) -> tuple[Node, Node]:
        return self.head, self.worker

    @property
    def dashboard(self) -> str:
        """The Jobs API, as seen from the head node."""
        return f"http://127.0.0.1:{DASHBOARD_PORT}"

    def start(self) -> TwoNodes:
        self._network()
        self._ray(self.head, "--head", f"--port={GCS_PORT}", "--include-dashboard=true",
                  f"--dashboard-port={DASHBOARD_PORT}")
        self._ray(self.worker, f"--address={HEAD_IP}:{GCS_PORT}")
        return self

    def _network(self) -> None:
        for node in self.nodes:
            sh("ip", "netns", "add", node.namespace)
        sh("ip", "link", "add", "veth0", "netns", self.head.namespace, "type", "veth",
           "peer", "name", "veth0", "netns", self.worker.namespace)
        for node in self.nodes:
            sh("ip", "-n", node.namespace, "addr", "add", f"{node.ip}/24", "dev", "veth0")
            sh("ip", "-n", node.namespace, "link", "set", "veth0", "up")
            sh("ip", "-n", node.namespace, "link", "set", "lo", "up")  # Ray's own local connections

    def _ray(self, node: Node, *options: str, seconds: float = 120) -> None:
        node.tmp.mkdir(parents=True)
        node.tmp.chmod(0o1777)
        # unshare: a mount namespace whose /tmp is the node's own; ip netns exec: the node's network.
        command = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                   'mount --bind "$0" /tmp && exec "$@"', str(node.tmp),
                   "ip", "netns", "exec", node.namespace,
                   str(RAY), "start", "--block", f"--node-ip-address={node.ip}",
                   f"--num-cpus={self.cpus[node.namespace]}", "--num-gpus=0", "--disable-usage-stats", *options]
        with node.log.open("wb") as log:
            node.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + seconds
        while "Ray runtime started." not in node.log.read_text(errors="replace"):
            if node.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start on {node.namespace} did not start:\n{node.log_tail()}")
            time.sleep(0.5)

    @contextlib.contextmanager
    def holding_cpus(self, node: Node, seconds: float = 120) -> Iterator[subprocess.Popen[str]]:
        """All of `node`'s CPUs taken (by an actor pinned there) until the block exits, or until the returned
        process is ended: what decides on which node the next task can start."""
        hold = subprocess.Popen([*node.enter(), sys.executable, "-c", HOLD, f"{node.ip}:{GCS_PORT}"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=self.env)
        try:
            held = threading.Timer(seconds, hold.kill)  # a stuck start fails the test, it does not hang it
            held.start()
            said = []
            for line in hold.stdout:  # type: ignore[union-attr]  (Ray may warn first)
                said.append(line)
                if line.strip() == "holding":
                    break
            held.cancel()
            if not said or said[-1].strip() != "holding":
                raise RuntimeError(f"could not hold the CPUs of {node.namespace}: {''.join(said)}")
            yield hold
        finally:
            release(hold)

    def close(self) -> None:
        """Stop both nodes and delete what `start` made; safe to call after any partial start."""
        for node in (self.worker, self.head):
            if node.process is not None and node.process.poll() is None:
                node.process.send_signal(signal.SIGTERM)  # `ray start --block` stops its node's processes
                with contextlib.suppress(subprocess.TimeoutExpired):
                    node.process.wait(timeout=30)
        for node in self.nodes:
            with contextlib.suppress(RuntimeError):  # the namespace goes below either way
                kill_all(node)  # what outlived `ray start`
            if node.process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    node.process.wait(timeout=10)
            subprocess.run(["ip", "netns", "del", node.namespace], capture_output=True)  # also its veth end

    def __enter__(self) -> TwoNodes:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()


def release(hold: subprocess.Popen[str]) -> None:
    """End a `holding_cpus` driver: its actor, and the CPUs it held, go with it."""
    if hold.poll() is None:
        with contextlib.suppress(OSError):
            hold.stdin.close()  # type: ignore[union-attr]
        try:
            hold.wait(timeout=30)
        except subprocess.TimeoutExpired:
            hold.kill()
            hold.wait()


def kill_all(node: Node) -> None:
    """SIGKILL every process of `node`, by pid, found by its network namespace (and only those)."""
    for _ in range(20):
        pids = node.pids()
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.25)
    raise RuntimeError(f"processes of {node.namespace} survive SIGKILL: {node.pids()}")

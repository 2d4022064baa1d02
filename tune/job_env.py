"""What a submitted job runs with: which interpreter, which files, which packages.

- Files: the repo as `working_dir` (what the job imports is the code you submitted), without .venv, .git, runs,
  caches and bytecode. Results never go there: --storage is made absolute (or is a URI).
- Interpreter: a Ray Job's entrypoint `python` is whatever is first on the PATH of `ray start` on the head, not
  your venv. We name an interpreter explicitly: this one (`sys.executable`) by default, which is right when the
  cluster runs from the same image or venv path (a probe job checks that it exists there with the packages).
- Packages: installing torch & co. per job is minutes and gigabytes per node, so `pip` goes into the runtime_env
  only when that interpreter lacks them (or --pip always). Then Ray builds a virtualenv on top of the cluster's
  Python (ray itself is not reinstalled: it must match the cluster) and the entrypoint is that env's `python`.
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Any

from core.errors import UserError
from tune.storage import is_uri

REPO = Path(__file__).resolve().parents[1]
EXCLUDES = [".venv", ".git", "runs", "**/__pycache__", "*.egg-info", ".pytest_cache", ".ruff_cache", "*.arrow",
            "data/cache"]
PATH_FLAGS = ("--data", "--audio-root", "--storage")
# Importable names of the packages a trial needs (ray is there by definition on a Ray cluster).
PROBE_MODULES = ("torch", "torchaudio", "transformers", "optuna", "sklearn", "pandas", "pyarrow", "soundfile")
NOT_PIP = {"ray", "pytest", "pytest-timeout", "ruff"}


def absolute_paths(argv: list[str]) -> list[str]:
    """The job runs in an unpacked copy of the repo: relative --data/--audio-root/--storage would point there."""
    out: list[str] = []
    pending: str | None = None
    for token in argv:
        if pending:
            out.append(_absolute(token))
            pending = None
            continue
        flag, sep, value = token.partition("=")
        if flag in PATH_FLAGS and sep:
            out.append(f"{flag}={_absolute(value)}")
        else:
            out.append(token)
            pending = token if token in PATH_FLAGS else None
    return out


def _absolute(value: str) -> str:
    return value if is_uri(value) else str(Path(value).expanduser().resolve())


def pinned_requirements(constraints: Path = REPO / "requirements" / "constraints.txt") -> list[str]:
    """The tested pins (requirements/constraints.txt) of everything a trial imports, minus ray and dev tools."""
    lines = [line.split("#")[0].strip() for line in constraints.read_text().splitlines()]
    return [line for line in lines if line and line.split("==")[0].strip().lower() not in NOT_PIP]


def runtime_env(pip: bool) -> dict[str, Any]:
    env: dict[str, Any] = {"working_dir": str(REPO), "excludes": list(EXCLUDES),
                           "env_vars": {"PYTHONUNBUFFERED": "1"}}
    if pip:
        env["pip"] = {"packages": pinned_requirements(), "pip_check": False}
    return env


def probe_entrypoint(python: str) -> str:
    check = (f"import importlib.util, sys; missing = [m for m in {PROBE_MODULES!r} "
             "if importlib.util.find_spec(m) is None]; print('missing:', missing); sys.exit(1 if missing else 0)")
    return shlex.join([python, "-c", check])


def submit(client: Any, wait: float = 90.0, **job: Any) -> str:
    """`client.submit_job`, retried while the head is still starting ("No available agent to submit job")."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return client.submit_job(**job)
        except RuntimeError as error:
            if "try again later" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(2)


def interpreter_works(client: Any, python: str, timeout: float = 120.0) -> bool:
    """A tiny job (no upload) that asks the cluster whether `python` exists there with the project's packages."""
    job_id = submit(client, entrypoint=probe_entrypoint(python), metadata={"tool": "audiotune-probe"})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = getattr(client.get_job_status(job_id), "value", "")
        if status in ("SUCCEEDED", "FAILED", "STOPPED"):
            return status == "SUCCEEDED"
        time.sleep(0.5)
    client.stop_job(job_id)
    raise UserError(f"--pip auto: the probe job {job_id} did not finish in {timeout:.0f}s; pass --pip never or "
                    "--pip always")


def interpreter_and_env(client: Any, python: str | None, pip: str) -> tuple[str, dict[str, Any]]:
    """(entrypoint interpreter, runtime_env) per the module docstring."""
    chosen = python or sys.executable
    use_pip = pip == "always" or (pip == "auto" and not interpreter_works(client, chosen))
    if use_pip:
        print("the cluster's interpreter lacks the project's packages: installing them into a job virtualenv "
              "(slow the first time on each node)", flush=True)
        return python or "python", runtime_env(pip=True)
    return chosen, runtime_env(pip=False)

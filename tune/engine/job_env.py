"""What a submitted job runs with: which interpreter, which files, which packages.

- Files: from a checkout (pyproject.toml beside the packages), the project root as `working_dir` (what the job
  imports is the code you submitted), without .venv, .git, runs, caches and bytecode; from an installed package,
  only its package folders (`core`, `tune`, `search_spaces`) as `py_modules`, never the site-packages folder they
  sit in (`upload`). Results never go there: --storage is made absolute (or is a URI).
- Interpreter: a Ray Job's entrypoint `python` is whatever is first on the PATH of `ray start` on the head, not
  your venv. We name an interpreter explicitly: this one (`sys.executable`) by default, which is right when the
  cluster runs from the same image or venv path (a probe job checks that it exists there with the packages).
- Packages: installing torch & co. per job is minutes and gigabytes per node, so `pip` goes into the runtime_env
  only when that interpreter lacks them (or --pip always). Then Ray builds a virtualenv on top of the cluster's
  Python (ray itself is not reinstalled: it must match the cluster) and the entrypoint is that env's `python`.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from core.errors import UserError
from tune.results.storage import is_uri

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "tune", "search_spaces")  # what a job imports of this project
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
    """The tested pins (requirements/constraints.txt) of everything a trial imports, minus ray and dev tools; an
    installed package has no such file: then its own declared dependencies."""
    if not constraints.is_file():
        declared = importlib.metadata.requires("audiotune") or []
        lines = [line for line in declared if "extra ==" not in line]
    else:
        lines = [line.split("#")[0].strip() for line in constraints.read_text().splitlines()]
    return [line for line in lines if line and _name(line) not in NOT_PIP]


def _name(requirement: str) -> str:
    for mark in "=<>!~[; ":
        requirement = requirement.split(mark)[0]
    return requirement.strip().lower()


def package_dirs() -> list[Path]:
    """The folders the project's packages are imported from (found without importing them)."""
    return [Path(importlib.util.find_spec(name).origin).resolve().parent for name in PACKAGES]  # type: ignore[union-attr,arg-type]


def project_root() -> Path | None:
    """The checkout the packages are imported from: their common folder when pyproject.toml is in it; None for an
    installed package (site-packages, a `pip install --target` folder)."""
    folders = package_dirs()
    root = folders[0].parent
    if all(folder.parent == root for folder in folders) and (root / "pyproject.toml").is_file():
        return root
    return None


def upload() -> dict[str, Any]:
    """The runtime_env keys that carry the project's code to the job (see the module's docstring)."""
    root = project_root()
    if root is not None:
        return {"working_dir": str(root), "excludes": list(EXCLUDES)}
    return {"py_modules": [str(folder) for folder in package_dirs()], "excludes": ["**/__pycache__"]}


def demo_data(run_argv: list[str], bundled: Path) -> tuple[dict[str, Any], list[str]]:
    """(runtime_env keys, tune.run arguments) for a search of the bundled demo set (no --data) from an installed
    package, whose upload does not carry the checkout's data/demo: that folder goes up as the job's working_dir
    and the job reads it there. Nothing to add from a checkout (the demo is in its working_dir), with --data, or
    with --resume (run.json names the data)."""
    given = any(token == "--data" or token.startswith("--data=") for token in run_argv)
    if given or "--resume" in run_argv or project_root() is not None:
        return {}, []
    if not bundled.is_file():
        raise UserError("no --data: the bundled demo set (data/demo) comes with a checkout of the project, not with "
                        "an installed package; pass --data MANIFEST")
    return {"working_dir": str(bundled.parent)}, ["--data", bundled.name]


def runtime_env(pip: bool) -> dict[str, Any]:
    env: dict[str, Any] = {**upload(), "env_vars": {"PYTHONUNBUFFERED": "1"}}
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

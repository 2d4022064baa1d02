"""What `tune.submit` uploads: from a checkout, the project root; from an installed package (a real wheel installed
with `pip install --target`, imported from there, not from this checkout), only the package folders, never the
folder they are installed in (site-packages)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
from pathlib import Path
import tune
from core.errors import UserError
from tune.engine.arguments import BUNDLED_DEMO
from tune.engine.job_env import demo_data, pinned_requirements, project_root, runtime_env, upload
try:
    demo_data([], BUNDLED_DEMO)
    demo = "no error"
except UserError as error:
    demo = str(error)
folder = Path(sys.argv[1])
(folder / "demo").mkdir()
(folder / "demo" / "manifest.csv").write_text("path,label\\n")
print(json.dumps({"tune": tune.__file__, "root": str(project_root()), "upload": upload(), "demo": demo,
                  "demo_given": demo_data(["--data", "/x.csv"], BUNDLED_DEMO),
                  "demo_bundled": demo_data([], folder / "demo" / "manifest.csv"),
                  "pins": pinned_requirements(), "env": runtime_env(pip=False)}))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project built as a wheel (from a copy of its sources, so the checkout gets no build/ folder) and
    installed without dependencies into a plain folder."""
    work = tmp_path_factory.mktemp("package")
    source = work / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for package in ("core", "tune", "search_spaces"):
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "data" / "demo", source / "data" / "demo")  # pyproject's data-files: the demo set
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(work / "wheel"), str(source)], check=True,
                   capture_output=True, timeout=600)
    wheel = next((work / "wheel").glob("audiotune-*.whl"))
    target = work / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True,
                   capture_output=True, timeout=600)
    return target


def probe(pythonpath: Path, cwd: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, str(cwd)], capture_output=True, text=True, cwd=cwd,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(pythonpath), "HOME": str(cwd)},
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.slow  # building the wheel: ~15 s idle, a minute under load
def test_an_installed_package_uploads_its_package_folders_only(installed: Path, tmp_path: Path) -> None:
    seen = probe(installed, tmp_path)
    assert seen["tune"] == str(installed / "tune" / "__init__.py")  # the installed copy, not this checkout
    assert seen["root"] == "None"
    assert seen["upload"] == {"py_modules": [str(installed / "core"), str(installed / "tune"),
                                             str(installed / "search_spaces")], "excludes": ["**/__pycache__"]}
    env = seen["env"]
    assert "working_dir" not in env and str(installed) not in env["py_modules"]  # never the whole install folder
    # The bundled demo is not in the wheel: a submission without --data says so instead of failing on the cluster;
    # where a demo folder exists beside the install, it goes up as the working_dir and the job reads it there.
    assert seen["demo"] == ("no --data: the bundled demo set (data/demo) comes with a checkout of the project, not "
                            "with an installed package; pass --data MANIFEST")
    assert seen["demo_given"] == [{}, []]
    assert seen["demo_bundled"] == [{"working_dir": str(tmp_path / "demo")}, ["--data", "manifest.csv"]]
    # Without requirements/constraints.txt (not installed), --pip installs the package's declared dependencies.
    pins = seen["pins"]
    assert any(pin.startswith("torch>=") for pin in pins) and not any(pin.startswith("ray") for pin in pins)
    assert not any("datasets" in pin or "pytest" in pin for pin in pins)  # extras are not dependencies
    from ray.runtime_env import RuntimeEnv

    assert RuntimeEnv(**env)["py_modules"] == env["py_modules"]  # a runtime_env Ray accepts


def test_a_checkout_uploads_the_project_root(tmp_path: Path) -> None:
    seen = probe(REPO, tmp_path)
    assert seen["tune"] == str(REPO / "tune" / "__init__.py") and seen["root"] == str(REPO)
    assert seen["upload"]["working_dir"] == str(REPO) and "py_modules" not in seen["upload"]
    assert ".venv" in seen["upload"]["excludes"] and ".git" in seen["upload"]["excludes"]
    assert seen["demo"] == "no error" and seen["demo_bundled"] == [{}, []]  # data/demo is in the working_dir
    assert any(pin.startswith("torch==") for pin in seen["pins"])  # the tested pins of the checkout

"""The layers' imports point down only: no import cycle among core/, tune/ and search_spaces/, and core/ never
imports ray, optuna, tune or search_spaces (it must run alone, `python -m core.train`).

The graph is read from the source with `ast`, every import statement wherever it stands: module level, inside a
function (a lazy import still closes a circle, it only hides it until the function runs) and inside an
`if __name__ == "__main__":` block (import-linter and pydeps count those too; `python -m core.train` therefore lives
in core/train/__main__.py, which nothing imports). An import is an edge to the module it names (`from pkg import
sub` names the submodule `pkg.sub`, `from pkg import NAME` the package), as pylint and import-linter count them; so a
package whose `__init__` imports its modules while they import a registry from it is a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "tune", "search_spaces")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def imported_names(path: Path, name: str) -> list[str]:
    """Every module name an `import` statement of the file asks for, wherever the statement is."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against this file's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            found.append(source)
            found.extend(f"{source}.{alias.name}" for alias in node.names)  # `from pkg import submodule`
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        graph[name] = {target for target in imported_names(path, name) if target in modules and target != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (depth-first search, white/grey/black)."""
    state: dict[str, int] = dict.fromkeys(graph, 0)
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state[nxt] == 1:
                return stack[stack.index(nxt):] + [nxt]
            if state[nxt] == 0 and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if state[start] == 0 and (cycle := visit(start)):
            return cycle
    return None


def test_the_graph_sees_the_imports_it_should() -> None:
    """Guards the reader itself: known edges (module-level, `from pkg import submodule`, function-level)."""
    graph = import_graph()
    assert "core.errors" in graph["core.config"]
    assert "core.losses.focal" in graph["core.losses.class_balanced"]
    assert "core.losses.focal" in graph["core.losses"]
    assert "core.checks" in graph["core.cli"]
    assert "core.cli" in graph["core.train.__main__"]  # `python -m core.train`
    assert "core.cli" not in graph["core.train"]
    assert "core.train" not in graph["core.model_folder"]  # it closed core.train -> core.cli -> here -> core.train
    assert "core.checks" in graph["tune.engine.trainable"]


def test_function_level_and_relative_imports_count(tmp_path: Path) -> None:
    module = tmp_path / "module.py"
    module.write_text("def late():\n    from core.checks import check_config\n    import ray\n"
                      "from . import sibling\n"
                      "if __name__ == '__main__':\n    from core.cli import main\n")
    found = imported_names(module, "core.data.module")
    assert {"core.checks", "ray", "core.data.sibling", "core.cli"} <= set(found)  # a __main__ block counts too


# Layers import downwards only (core <- search_spaces <- tune, checked below), so any cycle lies inside one package.
@pytest.mark.parametrize("package", [
    "core",
    "tune",
    "search_spaces",
])
def test_no_import_cycle(package: str) -> None:
    graph = {name: {t for t in targets if t.split(".")[0] == package}
             for name, targets in import_graph().items() if name.split(".")[0] == package}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_a_cycle_is_reported() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_config_is_the_bottom_of_core() -> None:
    """The schema imports nothing of the project but the errors it raises and the settings-file reader, which
    itself imports only the errors."""
    graph = import_graph()
    assert graph["core.config"] <= {"core", "core.errors", "core.settings_files"}
    assert graph["core.settings_files"] <= {"core", "core.errors"}


@pytest.mark.parametrize(("package", "forbidden"), [
    ("core", {"ray", "optuna", "tune", "search_spaces"}),  # core must run alone: `python -m core.train`
    ("search_spaces", {"ray", "tune"}),  # spaces are Optuna only: unit-tested without Ray
])
def test_layers_import_downwards_only(package: str, forbidden: set[str]) -> None:
    offenders = {name: sorted(roots & forbidden) for name, path in project_modules().items()
                 if name.split(".")[0] == package
                 and (roots := {target.split(".")[0] for target in imported_names(path, name)}) & forbidden}
    assert not offenders, f"{package} imports what it must not: {offenders}"


def test_results_never_reach_back_into_the_engine() -> None:
    """tune/results/ is what a finished search writes; the engine calls it, never the other way round (and the
    commands' rooms import the engine only to run a search)."""
    graph = import_graph()
    offenders = {name: sorted(t for t in targets if t.startswith("tune.engine") or t.split(".")[0] == "ray")
                 for name, targets in graph.items() if name.startswith("tune.results")}
    assert not any(offenders.values()), f"results import the engine or Ray: {offenders}"
    for command in ("tune.final", "tune.predict", "tune.report"):
        assert not {t for t in graph[command] if t.startswith("tune.engine")}, command


def private_imports(path: Path) -> list[str]:
    """`module.name` of every underscore name the file imports from a project module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PACKAGES:
            found += [f"{node.module}.{alias.name}" for alias in node.names
                      if alias.name.startswith("_") and not alias.name.startswith("__")]
    return found


def test_no_module_imports_another_modules_private_names() -> None:
    """`from core.x import _y` couples two modules through a name the first never promised: make it public, or keep
    that flow inside its module. Checked over the product, the benches, the scripts and the tests."""
    files = [*project_modules().values(), *sorted((ROOT / "bench").glob("*.py")),
             *sorted((ROOT / "scripts").glob("*.py")), *sorted((ROOT / "tests").rglob("*.py"))]
    found = [f"{path.relative_to(ROOT)}: {name}" for path in files for name in private_imports(path)]
    assert not found, "private names imported across modules: " + ", ".join(found)


def test_a_private_import_is_seen(tmp_path: Path) -> None:
    module = tmp_path / "module.py"
    module.write_text("from core.data.manifest import _secret, row_name\nfrom os import _exit\n"
                      "def late():\n    from tune.engine.cluster import _hidden\n")
    assert private_imports(module) == ["core.data.manifest._secret", "tune.engine.cluster._hidden"]


def test_the_commands_that_need_no_ray_import_none() -> None:
    """final, predict and report (and their --help) run in a fresh interpreter without Ray, Optuna's engine glue
    or tune.engine ever being imported; a search's result modules neither."""
    import subprocess
    import sys

    code = ("import sys\n"
            "import tune.final, tune.predict, tune.report, tune.commands\n"
            "import tune.results.page, tune.results.leaderboard, tune.results.export, tune.results.plots\n"
            "import tune.results.pareto, tune.results.aggregate, tune.results.storage\n"
            "loaded = sorted(m for m in sys.modules if m == 'ray' or m.startswith(('ray.', 'tune.engine')))\n"
            "print(','.join(loaded))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"loaded: {done.stdout.strip()}"

"""The layers' imports point down only: no import cycle among core/, tune/ and search_spaces/, and core/ never
imports ray, optuna, tune or search_spaces (it must run alone, `python -m core.train`).

The graph is read from the source with `ast`, module-level and function-level imports alike (a lazy import inside a
function still closes a circle, it only hides it until the function runs). An import is an edge to the module it
names (`from pkg import sub` names the submodule `pkg.sub`, `from pkg import NAME` the package), as pylint and
import-linter count them; so a package whose `__init__` imports its modules while they import a registry from it
is a cycle. The one block skipped is `if __name__ == "__main__":`, which runs only in a module started as a script
(then named `__main__`, not the module the graph knows).
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
    for node in ast.walk(without_main_block(ast.parse(path.read_text(), str(path)))):
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


def without_main_block(tree: ast.Module) -> ast.Module:
    def is_main_guard(node: ast.stmt) -> bool:
        return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
                and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__")

    tree.body = [node for node in tree.body if not is_main_guard(node)]
    return tree


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
    """Guards the reader itself: known edges (module-level, `from pkg import submodule`, function-level), and the
    `__main__` block skipped."""
    graph = import_graph()
    assert "core.errors" in graph["core.config"]
    assert "core.losses.focal" in graph["core.losses.class_balanced"]
    assert "core.losses.focal" in graph["core.losses"]
    assert "core.checks" in graph["core.cli"]
    assert "core.cli" not in graph["core.train"]
    assert "core.checks" in graph["tune.engine.trainable"]


def test_function_level_and_relative_imports_count(tmp_path: Path) -> None:
    module = tmp_path / "module.py"
    module.write_text("def late():\n    from core.checks import check_config\n    import ray\n"
                      "from . import sibling\n"
                      "if __name__ == '__main__':\n    from core.cli import main\n")
    found = imported_names(module, "core.data.module")
    assert {"core.checks", "ray", "core.data.sibling"} <= set(found)
    assert "core.cli" not in found


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
    """The schema imports nothing of the project but the errors it raises and the reader of settings files
    (core/settings_files.py: size/depth caps, duplicate keys, short excerpts), which itself imports only the
    errors."""
    assert import_graph()["core.config"] <= {"core", "core.errors", "core.settings_files"}
    assert import_graph()["core.settings_files"] <= {"core", "core.errors"}


@pytest.mark.parametrize(("package", "forbidden"), [
    ("core", {"ray", "optuna", "tune", "search_spaces"}),  # core must run alone: `python -m core.train`
    ("search_spaces", {"ray", "tune"}),  # spaces are Optuna only: unit-tested without Ray
])
def test_layers_import_downwards_only(package: str, forbidden: set[str]) -> None:
    offenders = {name: sorted(roots & forbidden) for name, path in project_modules().items()
                 if name.split(".")[0] == package
                 and (roots := {target.split(".")[0] for target in imported_names(path, name)}) & forbidden}
    assert not offenders, f"{package} imports what it must not: {offenders}"

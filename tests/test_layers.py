"""The layers' promises, read from the source with `ast` (every import, those inside functions
included): `pipelines/core/` knows no task, and the project's modules import each other without
a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

from pipelines.tasks import TASKS

ROOT = Path(__file__).resolve().parent.parent
# What core/ must not import: the task table, what assembles it, and every task's package (the
# table's tasks: a task added to it is covered with no change here).
TASK_LAYER = ("pipelines.tasks", "pipelines.studio", *(f"pipelines.{task}" for task in TASKS))


def module_name(path: Path) -> str:
    """pipelines/core/config.py -> pipelines.core.config; a package's __init__.py -> the package."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_files() -> dict[str, Path]:
    files = [ROOT / "app.py", *sorted((ROOT / "pipelines").rglob("*.py")), *sorted((ROOT / "ui").rglob("*.py"))]
    return {module_name(path): path for path in files}


MODULES = project_files()


def imported_modules(name: str, path: Path) -> list[tuple[str, int]]:
    """(module, line) for every import in the file, resolved to the most specific module of the
    project where there is one: `from pkg import mod` imports pkg.mod when that module exists,
    else pkg. Imports of modules outside the project are kept as written."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the package, one level up per extra dot
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                candidate = f"{module}.{alias.name}"
                found.append((candidate if candidate in MODULES else module, node.lineno))
    return found


def import_graph() -> dict[str, set[str]]:
    return {
        name: {module for module, _ in imported_modules(name, path) if module in MODULES and module != name}
        for name, path in MODULES.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (a list of modules, the first repeated at the end), or None."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" once fully explored
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return [*path[path.index(target) :], target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_files_are_found():
    assert {"app", "pipelines.core.config", "pipelines.tasks", "ui.common"} <= set(MODULES)
    assert {"pipelines.classification", "pipelines.text", "pipelines.image"} <= set(TASK_LAYER)
    assert all(layer in MODULES for layer in TASK_LAYER)  # each task is a package of the project


def test_core_imports_no_task():
    """pipelines/core is the lower layer: the task table and the task packages build on it, never
    the other way round (not even in an import inside a function)."""
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for name, path in MODULES.items()
        if name.startswith("pipelines.core")
        for module, line in imported_modules(name, path)
        if any(module == layer or module.startswith(layer + ".") for layer in TASK_LAYER)
    ]
    assert not wrong, "\n".join(wrong)


def test_the_modules_import_each_other_without_a_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_a_cycle_is_found():
    """The checker itself: a cycle through three modules is named, and a chain is not a cycle."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None

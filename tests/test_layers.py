"""The import graph of `finner/` is a ladder: no cycles, no library module reaching up into the Ray
wiring (`finner.pipeline`), and no `import finner...` hidden inside a function to dodge a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "finner"
TESTING = PACKAGE / "testing"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def finner_imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported finner module, line, inside a function) for every import of `path`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inside.update(id(child) for child in ast.walk(node) if child is not node)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from finner import schemas` imports the module finner.schemas
            names = [f"{node.module}.{alias.name}" if node.module == "finner" else node.module for alias in node.names]
        else:
            continue
        found += [(name, node.lineno, id(node) in inside) for name in names if name == "finner" or name.startswith("finner.")]
    return found


def is_testing(name: str) -> bool:
    return name == "finner.testing" or name.startswith("finner.testing.")


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for target, _, _ in finner_imports(path):
            while target not in modules and "." in target:  # `from finner.x import name` of a non-module name
                target = target.rsplit(".", 1)[0]
            if target in modules and target != name and not name.startswith(target + "."):
                edges[name].add(target)
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles():
    assert find_cycle(graph()) is None


def test_library_never_imports_the_ray_wiring():
    upward = [(m, t) for m, targets in graph().items() if not m.startswith("finner.pipeline") for t in targets if t.startswith("finner.pipeline")]
    assert upward == []


def test_only_tests_and_benchmarks_import_the_test_tooling():
    """`finner.testing` is test and benchmark tooling: no job and no other library module relies on it."""
    product = [p for p in [*PACKAGE.rglob("*.py"), *(REPO / "jobs").rglob("*.py")] if TESTING not in p.parents]
    reaching = [f"{path.relative_to(REPO)}:{line} {name}" for path in product for name, line, _ in finner_imports(path) if is_testing(name)]
    assert reaching == []


def test_no_finner_import_inside_a_function():
    hidden = [f"{path.relative_to(REPO)}:{line} {name}" for path in PACKAGE.rglob("*.py") for name, line, inside in finner_imports(path) if inside]
    assert hidden == []


def test_the_checker_sees_a_cycle_and_an_upward_import():
    """The checks above would fail on the shapes they guard against."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    source = "from finner import testing\ndef f():\n    from finner.pipeline.cli import run\n"
    tree_file = REPO / "tests" / "_layers_probe.py"
    tree_file.write_text(source)
    try:
        found = finner_imports(tree_file)
    finally:
        tree_file.unlink()
    assert found == [("finner.testing", 1, False), ("finner.pipeline.cli", 3, True)]
    assert is_testing(found[0][0]) and is_testing("finner.testing.chat_server") and not is_testing("finner.testing_data")

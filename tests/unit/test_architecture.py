"""The layout's rules, read from the source: data flows one way, engines share gnnmd.engine and never
import each other, kernels never import the network, no import circle, rooms of about 400 lines."""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "gnnmd"
ENGINES = ("sim", "openmm", "ase", "ipu")
#: About 400 lines: one concept per module.
MAX_MODULE_LINES = 420


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_imports(path: pathlib.Path) -> set[str]:
    """Modules of gnnmd that ``path`` imports when it runs (anywhere, lazily too; not for typing only)."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for node in ast.walk(block)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("gnnmd"):
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("gnnmd"))
    return found


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}
IMPORTS = {name: runtime_imports(path) for name, path in MODULES.items()}


def top_package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def known(module: str) -> str | None:
    """The gnnmd module an imported name lives in (``gnnmd.a.b.name`` -> ``gnnmd.a.b``)."""
    while module and module not in MODULES:
        module = module.rpartition(".")[0]
    return module or None


def test_engines_share_the_engine_layer_and_never_import_each_other():
    for name, imported in IMPORTS.items():
        source = top_package(name)
        targets = {top_package(m) for m in imported}
        if source in ENGINES:
            assert targets.isdisjoint(set(ENGINES) - {source}), f"{name} imports another engine"
        if source in ("engine", "static"):
            assert targets.isdisjoint(ENGINES), f"{name} imports an engine"


def test_kernels_never_import_the_network():
    for name, imported in IMPORTS.items():
        if top_package(name) == "kernels":
            assert not {m for m in imported if top_package(m) == "nn"}, f"{name} imports gnnmd.nn"


def test_no_import_circle():
    # A package's __init__ importing its own modules, and a module importing its own package's
    # __init__ for a sibling, are how packages are made, not circles.
    def edges(name: str) -> set[str]:
        out = {known(m) for m in IMPORTS[name]} - {None, name}
        return {t for t in out if not name.startswith(f"{t}.") and not t.startswith(f"{name}.")}

    graph = {name: edges(name) for name in MODULES}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in graph[node]:
            if state.get(target) == 1:
                cycle = path[path.index(target) :] + [target] if target in path else [node, target]
                pytest.fail(f"import circle: {' -> '.join(cycle)}")
            if target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_modules_are_rooms_of_one_concept():
    sizes = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    assert {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES} == {}

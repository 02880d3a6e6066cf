"""The import graph, built from the sources (imports inside functions included): the layers
dope_stream -> trainer -> infer -> dope_app only import downwards, and no modules import each other
in a circle. Imports under `if TYPE_CHECKING:` never run and are left out."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = ("dope_stream", "trainer", "infer", "dope_app")  # lowest first


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for layer in LAYERS for path in sorted((REPO / layer).rglob("*.py"))}


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imported_modules(name: str, path: Path) -> set[str]:
    """Our modules that `name` imports anywhere in its source (a package's `from . import x`
    counts as the submodule x when there is one)."""
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:  # `import a.b.c` of a function or attribute
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


GRAPH = {name: imported_modules(name, path) for name, path in MODULES.items()}


def layer_of(module: str) -> int:
    return LAYERS.index(module.split(".")[0])


def test_the_graph_is_built_from_every_module_including_function_level_imports():
    assert {"dope_stream.generate", "dope_stream.render.raster", "trainer.loop", "infer.inference", "dope_app.cli"} <= set(GRAPH)
    # generate.py imports the Ray source inside a function; the demo imports the stages inside functions
    assert "dope_stream.stream.ray_generate" in GRAPH["dope_stream.generate"]
    assert {"trainer.loop", "infer.inference"} <= GRAPH["dope_app.demo"]


def test_layers_import_only_downwards():
    upward = sorted(
        f"{module} imports {target}" for module, targets in GRAPH.items() for target in targets
        if layer_of(target) > layer_of(module)
    )
    assert upward == []


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("layer", ["dope_stream", "trainer", "infer", "dope_app"])
def test_no_import_cycles_within(layer):
    inside = {name: {t for t in targets if t.split(".")[0] == layer} for name, targets in GRAPH.items() if name.split(".")[0] == layer}
    assert cycles(inside) == []

"""The import graph of bertfast, read from the source (no module is imported): no cycles, and
every arrow points down (training stands beside the exporter, not on it; compat is the floor).

Every import counts, inside functions too: a lazy import still ties the two modules together
and is how the data <-> builtin_data circle hid. Only `if TYPE_CHECKING:` blocks are skipped.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "bertfast"

# Stages training must not stand on: they consume what it writes.
ABOVE_TRAINING = ("bertfast.exporter", "bertfast.runtime", "bertfast.serve", "bertfast.bench")
# Training reads data files with the readers `bertfast predict` uses, so a file means the same
# thing to both; they live in runtime/ until they move below both stages.
ALLOWED = {("bertfast.training.data", "bertfast.runtime.readers")}
# serve/__init__.py imports its app lazily and the app imports ServeConfig back from the
# package: a circle inside serve that is its owner's to break (ServeConfig in a module of its
# own). A cycle reaching outside these packages still fails.
KNOWN_CYCLES = ("bertfast.serve",)


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = ("bertfast", *path.relative_to(ROOT).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _type_checking_only(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return isinstance(test, (ast.Name, ast.Attribute)) and ast.unparse(test).endswith("TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Import nodes of a module, outside `if TYPE_CHECKING:` blocks."""
    todo = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        for child in ast.iter_child_nodes(node):
            if not _type_checking_only(child):
                todo.append(child)


def import_graph() -> dict[str, set[str]]:
    """Module -> the bertfast modules it imports (a name imported from a package that is itself
    a module counts as that module: `from .. import tasks` -> bertfast.tasks)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        edges = graph.setdefault(name, set())
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for t in targets:
                while t not in modules and "." in t:  # `import bertfast.x.y` of a name inside x
                    t = t.rsplit(".", 1)[0]
                if t in modules and t != name:
                    edges.add(t)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_in_a_cycle():
    unknown = [c for c in cycles(import_graph()) if not all(m.startswith(KNOWN_CYCLES) for m in c)]
    assert unknown == []


def test_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_training_does_not_import_the_stages_above_it():
    graph = import_graph()
    assert "bertfast.training.trainer" in graph
    upward = sorted((m, t) for m, ts in graph.items() if m.startswith("bertfast.training")
                    for t in ts if t.startswith(ABOVE_TRAINING) and (m, t) not in ALLOWED)
    assert upward == []


def test_compat_is_the_floor():
    # compat may raise bertfast's own error types, and errors.py imports nothing of bertfast.
    graph = import_graph()
    assert graph["bertfast.compat"] <= {"bertfast.errors"}
    assert graph["bertfast.errors"] == set()


def test_relative_imports_resolve():
    graph = import_graph()
    assert "bertfast.tasks" in graph["bertfast.training.trainer"]
    assert "bertfast.compat" in graph["bertfast.training.checkpoints"]
    assert "bertfast.training.texts" in graph["bertfast.training.builtin_data"]

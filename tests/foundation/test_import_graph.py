"""The import graph of src/cxrassist: no cycle (lazy imports inside functions count too) and the layers of
docs/ARCHITECTURE.md (the library never imports data/training/evaluation/cli; evaluation never imports training).

Read from the source with ``ast`` (nothing is imported), so a cycle held together by a function-level import is
caught like any other.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
#: Packages beside the library: they may import the library, never the other way round.
BESIDE = ("data", "training", "evaluation", "cli")


def _modules(src: Path = SRC) -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in (src / "cxrassist").rglob("*.py"):
        parts = list(path.relative_to(src).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def _in_type_checking(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """module -> the cxrassist modules it imports anywhere in its body (``if TYPE_CHECKING`` blocks excluded)."""
    mods = _modules(src)

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, (path, is_pkg) in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        package = mod if is_pkg else mod.rpartition(".")[0]
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom) or _in_type_checking(node, parents):
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*up, base] if base else up)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for target in targets:
                resolved = resolve(target) if target.startswith("cxrassist") else None
                if resolved and resolved != mod:
                    graph[mod].add(resolved)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
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
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_the_checker_sees_a_lazy_cycle(tmp_path: Path) -> None:
    pkg = tmp_path / "cxrassist"
    (pkg / "training").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "training" / "__init__.py").write_text("")
    (pkg / "training" / "tasks.py").write_text("def make():\n    from cxrassist.training.gan import BoneTask\n")
    (pkg / "training" / "gan.py").write_text("from .tasks import make\n")
    (pkg / "training" / "typed.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from cxrassist.training.tasks import make\n"
    )
    graph = import_graph(tmp_path)
    assert graph["cxrassist.training.gan"] == {"cxrassist.training.tasks"}
    assert graph["cxrassist.training.typed"] == set()
    assert cycles(graph) == [["cxrassist.training.gan", "cxrassist.training.tasks"]]


def test_no_import_cycle_in_src() -> None:
    graph = import_graph()
    assert len(graph) > 50 and "cxrassist.channels" in graph["cxrassist.pipeline"]  # the graph is really read
    assert cycles(graph) == []


def test_the_library_never_imports_what_sits_beside_it() -> None:
    graph = import_graph()
    bad = {m: sorted(t for t in ts if _area(t) in BESIDE) for m, ts in graph.items() if _area(m) not in BESIDE}
    assert {m: ts for m, ts in bad.items() if ts} == {}


def test_evaluation_depends_only_on_the_library_and_data() -> None:
    graph = import_graph()
    bad = {
        m: sorted(t for t in ts if _area(t) in ("training", "cli"))
        for m, ts in graph.items()
        if _area(m) == "evaluation"
    }
    assert {m: ts for m, ts in bad.items() if ts} == {}

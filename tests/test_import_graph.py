"""No two modules of the project import each other, directly or through a loop, counting imports
inside functions too (import-linter's contracts in pyproject.toml hold the layers; this holds the
rest). A loop is how a 'low' module ends up needing a 'high' one."""

import grimp

PACKAGES = ("access", "forecasting", "ingest", "dashboard", "tftsite", "bench", "protocols")


def _cycles(graph) -> list[list[str]]:
    modules = sorted(graph.modules)
    edges = {m: sorted(i for i in graph.find_modules_directly_imported_by(m) if i in graph.modules) for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
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

    for m in modules:
        if m not in index:
            visit(m)
    return found


def test_no_import_loops_between_project_modules():
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    assert _cycles(graph) == []


def test_the_loop_finder_finds_a_loop(tmp_path, monkeypatch):
    pkg = tmp_path / "looped"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from looped import b\n")
    (pkg / "b.py").write_text("def f():\n    from looped import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert _cycles(grimp.build_graph("looped", cache_dir=None)) == [["looped.a", "looped.b"]]

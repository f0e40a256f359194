"""The layout rules of docs/architecture.md, held against the code.

The import contracts themselves (layers, forbidden imports, independence)
are checked by ``lint-imports`` in ``make test``; this module runs the same
contracts from pytest, and adds what import-linter cannot say: no circle
between modules, and no module over the size limit without a stated reason.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("simulator", "ka_producer", "icc_bridge", "supplier_stub")
MAX_LINES = 450


def _pyproject() -> dict[str, object]:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def _graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, cache_dir=None)


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Every strongly connected set of two or more modules (Tarjan), each sorted."""
    modules = sorted(graph.modules)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(start: str) -> None:
        nonlocal counter
        work: list[tuple[str, list[str]]] = []
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        work.append((start, sorted(graph.find_modules_directly_imported_by(start))))
        while work:
            node, todo = work[-1]
            if todo:
                nxt = todo.pop()
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(graph.find_modules_directly_imported_by(nxt))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))

    for module in modules:
        if module not in index:
            visit(module)
    return found


def _is_package_init_edge(importer: str, imported: str) -> bool:
    """A package's ``__init__`` re-exporting its own modules is not a circle of two jobs."""
    return imported.startswith(importer + ".") or importer.startswith(imported + ".")


def test_import_contracts_hold() -> None:
    """lint-imports (layers, forbidden, independence) passes on the tree as it is."""
    exe = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(exe), "--config", str(REPO / "pyproject.toml")],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=110,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_no_import_circle_between_modules() -> None:
    graph = _graph()
    # A package imports its own modules in __init__ and they import the package's
    # siblings: drop the package-to-own-module edges before looking for circles.
    for importer in list(graph.modules):
        for imported in list(graph.find_modules_directly_imported_by(importer)):
            if _is_package_init_edge(importer, imported):
                graph.remove_import(importer=importer, imported=imported)
    assert _cycles(graph) == []


def test_the_circle_finder_finds_a_circle() -> None:
    graph = grimp.ImportGraph()
    for name in ("a", "b", "c"):
        graph.add_module(name)
    graph.add_import(importer="a", imported="b")
    graph.add_import(importer="b", imported="a")
    graph.add_import(importer="b", imported="c")
    assert _cycles(graph) == [["a", "b"]]


def _long_module_reasons() -> dict[str, str]:
    tool = _pyproject()["tool"]
    assert isinstance(tool, dict)
    reasons = tool["b2bsim"]["long-modules"]
    assert isinstance(reasons, dict)
    return {str(k): str(v) for k, v in reasons.items()}


def test_no_module_over_the_limit_without_a_reason() -> None:
    reasons = _long_module_reasons()
    too_long = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            lines = len(path.read_text(encoding="utf-8").splitlines())
            rel = path.relative_to(REPO).as_posix()
            if lines > MAX_LINES and not reasons.get(rel, "").strip():
                too_long[rel] = lines
    assert too_long == {}, (
        f"modules over {MAX_LINES} lines: split them, or give a one-line reason "
        "under [tool.b2bsim.long-modules] in pyproject.toml"
    )


def test_every_stated_reason_names_a_long_module() -> None:
    """A reason outlives its module's size: drop it once the module is split."""
    stale = {}
    for rel in _long_module_reasons():
        path = REPO / rel
        lines = len(path.read_text(encoding="utf-8").splitlines()) if path.is_file() else 0
        if lines <= MAX_LINES:
            stale[rel] = lines
    assert stale == {}


@pytest.mark.parametrize("component", ["ka_producer", "icc_bridge", "supplier_stub"])
def test_components_name_only_the_vocabulary(component: str) -> None:
    """Every import of simulator in a component names simulator.vocabulary."""
    graph = _graph()
    wrong = sorted(
        f"{importer} -> {imported}"
        for importer in graph.find_children(component)
        | graph.find_descendants(component)
        | {component}
        for imported in graph.find_modules_directly_imported_by(importer)
        if imported.split(".")[0] == "simulator"
        and not imported.startswith("simulator.vocabulary.")
    )
    assert wrong == []

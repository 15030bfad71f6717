"""The project's Python modules and the imports between them, read from the source with `ast` (nothing is imported,
so a module that would fail to import is still read).

An import counts wherever it is written: at the top of a module, inside a function, under a condition. An import
moved into a function to get round a circle is still that circle, only postponed to the first call.

Importing `a.b.c` also runs the `__init__` of `a` and `a.b`, but the graph has an edge to `a.b.c` alone: a package
that re-exports its submodules would otherwise stand in a circle with every one of them."""

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

# Folders of scripts run as `python bench/x.py`: each file is a top-level module (its folder is on sys.path first),
# and they import one another by bare name (`from queued_site import Site`, `from production_site import VIA_PROXY`).
SCRIPT_FOLDERS = ("bench", "scripts")


def project_modules(root: Path) -> dict[str, Path]:
    """Every module of the project by dotted name: the packages at the top of `root` (folders with an __init__.py)
    and the scripts of SCRIPT_FOLDERS."""
    modules = {}
    for package in sorted(path.parent for path in root.glob("*/__init__.py")):
        for path in sorted(package.rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    for folder in SCRIPT_FOLDERS:
        for path in sorted((root / folder).glob("*.py")):
            modules[path.stem] = path
    return modules


def imported_modules(tree: ast.AST, package: str | None) -> Iterator[tuple[str, ...]]:
    """What each import names, as the dotted names it may refer to, most specific first: `from a import b` is
    `a.b` when that is a module, else the name `b` defined in `a`. Relative imports are resolved against `package`
    (the package the module belongs to); with None they are left out."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield (alias.name,)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module
            elif package is None:
                continue
            else:
                anchor = package.rsplit(".", node.level - 1)[0]  # `from .` is the package, `from ..` its parent
                base = f"{anchor}.{node.module}" if node.module else anchor
            for alias in node.names:
                yield (f"{base}.{alias.name}", base) if alias.name != "*" else (base,)


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """For each module, the project modules it imports."""
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(), filename=str(path))
        imported = set()
        for candidates in imported_modules(tree, package):
            found = [candidate for candidate in candidates if candidate in modules]
            if found:
                imported.add(found[0])
        graph[name] = imported - {name}
    return graph


def strongly_connected(graph: dict[str, Iterable[str]]) -> list[set[str]]:
    """The strongly connected components of a directed graph (Tarjan's algorithm, without recursion so that a long
    chain of imports cannot reach Python's recursion limit). A component of more than one node is a circle."""
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(graph.get(start, ())))]
        index[start] = lowlink[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = lowlink[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(graph.get(successor, ()))))
                    break
                if successor in on_stack:
                    lowlink[node] = min(lowlink[node], index[successor])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    lowlink[parent] = min(lowlink[parent], lowlink[node])
                if lowlink[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    components.append(component)
    return components


def import_cycles(graph: dict[str, Iterable[str]]) -> list[set[str]]:
    """The groups of modules that import one another in a circle."""
    return [component for component in strongly_connected(graph) if len(component) > 1]

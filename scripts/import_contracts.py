"""The project's own import-linter contract type (pyproject.toml, [tool.importlinter] contract_types).

`acyclic`: no import cycle among the modules of the package. import-linter 2.1 ships layers, independence and
forbidden contracts: the layers forbid a cycle between two floors, but not one between the two rooms that share
a floor and import each other's modules (eval and inference), nor one inside a room. This contract looks at the
whole module graph import-linter built, so it counts every import the other contracts count: at module level,
inside a function, and under `if TYPE_CHECKING:` (the session's exclude_type_checking_imports = false).

    lint-imports            # from the repository root; tests/test_layering.py runs it
"""

from __future__ import annotations

from collections import deque

from grimp import ImportGraph
from importlinter import Contract, ContractCheck, fields, output


class AcyclicContract(Contract):
    """No module of `package` reaches itself again through the imports of modules of `package`."""

    type_name = "acyclic"

    package = fields.StringField()

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        modules = {m for m in graph.modules if m == self.package or m.startswith(self.package + ".")}
        edges = {m: sorted(t for t in graph.find_modules_directly_imported_by(m) if t in modules) for m in modules}
        cycles = [_one_cycle(component, edges) for component in _strongly_connected(edges)]
        lines = [[_line(graph, a, b) for a, b in zip(cycle, cycle[1:] + cycle[:1])] for cycle in cycles]
        return ContractCheck(kept=not cycles, metadata={"cycles": lines})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for cycle in check.metadata["cycles"]:
            output.print_error("Import cycle:", bold=True)
            output.new_line()
            for line in cycle:
                output.indent_cursor()
                output.print_error(line, bold=False)
            output.new_line()


def _strongly_connected(edges: dict[str, list[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(edges[child])))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def _one_cycle(component: list[str], edges: dict[str, list[str]]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first inside the component)."""
    start, members = component[0], set(component)
    parent: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in edges[node]:
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return path[::-1]
            if child in members and child not in parent:
                parent[child] = node
                queue.append(child)
    return component  # not reached: a strongly connected component holds a cycle through each member


def _line(graph: ImportGraph, importer: str, imported: str) -> str:
    """`importer -> imported (l. 12, 40)`: the import and the lines it stands on."""
    numbers = sorted({d["line_number"] for d in graph.get_import_details(importer=importer, imported=imported)})
    where = f" (l. {', '.join(map(str, numbers))})" if numbers else ""
    return f"{importer} -> {imported}{where}"

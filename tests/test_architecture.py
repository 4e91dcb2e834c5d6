"""The code's shape, checked on the source with ``ast``: no import cycle among our modules, and no
module using another module's private (``_name``) names. Imports inside functions count too: a
lazy import hides a cycle from the interpreter, not from the reader."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from movierec.settings import REPO_ROOT

PACKAGES = ("movierec", "server", "spark_jobs", "dags", "simulator", "experiments")


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of our packages (a package is its __init__)."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


MODULES = module_files()


def type_checking_only(tree: ast.Module) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:`` (never executed: no edge)."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(inner) for statement in node.body for inner in ast.walk(statement)}
    return skipped


def imported(module: str, tree: ast.Module) -> Iterator[tuple[str, str | None, ast.AST]]:
    """(our module imported, the name taken from it or None, node) for each import in ``tree``."""
    skipped = type_checking_only(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MODULES:
                    yield alias.name, None, node
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in MODULES:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                if submodule in MODULES:
                    yield submodule, None, node  # ``from package import module``
                else:
                    yield node.module, alias.name, node


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for target, _name, _node in imported(name, ast.parse(path.read_text(), str(path))):
            if target != name:
                graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
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


def test_the_checks_see_our_modules_and_their_imports() -> None:
    graph = import_graph()
    assert {"movierec.ingest.consume", "server.app", "spark_jobs.precompute", "dags.retrain"} <= set(graph)
    assert "movierec.lake" in graph["movierec.ingest.consume"]  # ``from movierec import lake``
    assert "movierec.serving_file" in graph["server.store"]


def test_cycles_finds_a_cycle_and_only_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_no_import_cycle_among_our_modules() -> None:
    assert cycles(import_graph()) == []


def private_uses(module: str, tree: ast.Module) -> Iterator[str]:
    """``from other import _name`` and ``other._name`` where ``other`` is another module of ours."""
    aliases: dict[str, str] = {}
    for target, name, node in imported(module, tree):
        if target == module:
            continue
        if name is not None and name.startswith("_") and not name.startswith("__"):
            yield f"{module}:{node.lineno} from {target} import {name}"
        if name is None:
            for alias in node.names:  # type: ignore[attr-defined]
                if isinstance(node, ast.ImportFrom) and f"{node.module}.{alias.name}" == target:
                    aliases[alias.asname or alias.name] = target
                elif isinstance(node, ast.Import) and alias.name == target and alias.asname:
                    aliases[alias.asname] = target
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            yield f"{module}:{node.lineno} {aliases[node.value.id]}.{node.attr}"


def test_private_uses_finds_both_spellings() -> None:
    source = "from movierec import lake\nfrom movierec.lake import _x\nlake._y()\n"
    found = list(private_uses("server.app", ast.parse(source)))
    assert found == ["server.app:2 from movierec.lake import _x", "server.app:3 movierec.lake._y"]


def test_no_module_uses_a_private_name_of_another() -> None:
    uses = [use for name, path in MODULES.items() for use in private_uses(name, ast.parse(path.read_text()))]
    assert uses == []

"""The import graph of genie/: no cycle, and no module imports a layer above its own.

Every import counts, function-local ones included (a local import kept only to dodge a cycle is still an
arrow up); imports under `if TYPE_CHECKING:` do not, as they never run. The files are parsed, not
imported, so the test also sees imports that a run would not reach.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

GENIE = Path(__file__).resolve().parents[1] / "genie"

# bottom to top: a module may import its own layer and the ones below it
LAYERS = (
    ("base", {"errors", "config", "outputs", "metric_keys", "progress"}),
    ("data", {"data"}),
    ("models", {"models"}),
    ("training", {"training"}),
    ("inference", {"inference"}),
    ("evaluation", {"evaluation"}),
    ("stages", {"stages"}),
    ("world", {"world"}),
    ("apps", {"train", "report", "cli", "demo"}),
)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(nodes: Iterable[ast.AST]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement in `nodes`, at any depth, except in the body of `if TYPE_CHECKING:`."""
    for node in nodes:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _import_nodes(node.orelse)  # the body never runs
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from _import_nodes(ast.iter_child_nodes(node))


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, function-local imports included; `from m import x` gives m and m.x
    (x may be a module)."""
    names = set()
    for node in _import_nodes([ast.parse(path.read_text())]):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif node.module:
            assert node.level == 0, f"{path}: relative import of {node.module}"
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def _module_name(path: Path) -> str:
    parts = path.relative_to(GENIE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """genie module -> the genie modules it imports (a name resolves to its longest module prefix)."""
    modules = {_module_name(p): p for p in GENIE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imported in imported_modules(path):
            parts = imported.split(".")
            prefixes = (".".join(parts[:n]) for n in range(len(parts), 0, -1))
            target = next((p for p in prefixes if p in modules), None)
            if target is not None and target != name:
                targets.add(target)
        graph[name] = targets
    return graph


def layer_of(module: str) -> int:
    """The layer index of a genie module, from its first name below genie (the package itself: base)."""
    top = module.split(".")[1] if "." in module else "errors"
    found = [i for i, (_, names) in enumerate(LAYERS) if top in names]
    assert found, f"{module} is in no layer: add genie.{top} to LAYERS in tests/test_imports.py"
    return found[0]


def test_no_module_imports_a_higher_layer():
    graph = import_graph()
    upward = sorted(
        f"{a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]})"
        for a, targets in graph.items()
        for b in targets
        if layer_of(b) > layer_of(a)
    )
    assert not upward, "\n".join(upward)


def test_no_import_cycle():
    graph = import_graph()
    done: set[str] = set()

    def cycle_from(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return path[path.index(module) :] + [module]
        if module in done:
            return None
        for target in sorted(graph[module]):
            if (found := cycle_from(target, [*path, module])) is not None:
                return found
        done.add(module)
        return None

    for module in sorted(graph):
        cycle = cycle_from(module, [])
        assert cycle is None, " -> ".join(cycle)


def test_play_and_evaluation_do_not_import_training_stages():
    """The layers allow evaluation/ to import training/; play and the evaluations use the trained world
    (genie.inference), never the loop."""
    offenders = {
        f"{path.relative_to(GENIE.parent)}: {name}"
        for folder in ("world", "evaluation")
        for path in (GENIE / folder).glob("*.py")
        for name in imported_modules(path)
        if name.split(".")[:2] == ["genie", "stages"] or name.startswith("genie.training.loop")
    }
    assert not offenders, offenders

"""
yolos_d2's packages import one way, down the layers, without cycles, and know nothing of the
repository around them: read from the source, every import (also those inside functions).
"""
import ast
import glob
import os
from typing import Dict, List, Set, Tuple

from conftest import REPO

PACKAGE_ROOT = os.path.join(REPO, "yolos_d2")

# Each part of yolos_d2 (a sub-package or top-level module) and its layer: a part imports only
# parts of lower layers. Parts of one layer do not import each other.
LAYERS = {
    "tools": 7,
    "inference": 6,
    "export": 6,
    "engine": 5,
    "config": 4,
    "checkpoint": 3,
    "data": 2,
    "evaluation": 2,
    "visualization": 2,
    "modeling": 1,
    "utils": 0,
}
# Top-level names of the repository that the installed package cannot rely on.
REPOSITORY_ONLY = {"benchmarks", "configs", "tests"}


def module_name(path: str) -> str:
    parts = os.path.relpath(path, REPO)[: -len(".py")].split(os.sep)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in glob.glob(os.path.join(PACKAGE_ROOT, "**", "*.py"), recursive=True)}


def imported_modules(name: str) -> List[Tuple[str, int]]:
    """(module, line) of each import in module ``name``: ``from X import y`` is X.y where that is a module."""
    path = MODULES[name]
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                found.append((submodule if submodule in MODULES else source, node.lineno))
    return found


def part_of(module: str) -> str:
    """The part of yolos_d2 holding ``module`` ("" for the package's own __init__)."""
    return module.split(".")[1] if module.count(".") else ""


def import_graph() -> Dict[str, Set[str]]:
    """yolos_d2 module -> the yolos_d2 modules it imports."""
    return {name: {m for m, _ in imported_modules(name) if m in MODULES and m != name} for name in MODULES}


def test_every_part_has_a_layer():
    parts = {part_of(m) for m in MODULES} - {""}
    assert parts == set(LAYERS), f"parts of yolos_d2 without a layer, or layers without a part: {parts ^ set(LAYERS)}"


def upward_imports(imports: Dict[str, List[Tuple[str, int]]]) -> List[str]:
    """What in ``imports`` (module -> (imported module, line)) does not go down the layers."""
    wrong = []
    for name, imported_lines in imports.items():
        part = part_of(name)
        if not part:  # yolos_d2/__init__.py imports the registering parts
            continue
        for imported, line in imported_lines:
            other = part_of(imported) if imported.startswith("yolos_d2.") else None
            if other and other != part and LAYERS[other] >= LAYERS[part]:
                wrong.append(f"{name}:{line}: {part} (layer {LAYERS[part]}) imports {imported} (layer {LAYERS[other]})")
    return wrong


def cycles_of(graph: Dict[str, Set[str]]) -> List[str]:
    """The import cycles found by a depth-first walk of ``graph`` (module -> modules it imports)."""
    state, cycles = {}, []

    def visit(module: str, stack: List[str]) -> None:
        state[module] = "open"
        for imported in sorted(graph.get(module, ())):
            if state.get(imported) == "open":
                cycles.append(" -> ".join(stack[stack.index(imported) :] + [imported]))
            elif imported not in state:
                visit(imported, stack + [imported])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return cycles


def test_imports_go_down_the_layers():
    wrong = upward_imports({name: imported_modules(name) for name in MODULES})
    assert not wrong, "imports that do not go down the layers:\n" + "\n".join(wrong)


def test_no_import_cycles():
    cycles = cycles_of(import_graph())
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checks_catch_an_upward_import_a_sibling_import_and_a_cycle():
    imports = {
        "yolos_d2.modeling.a": [("yolos_d2.engine.b", 3), ("yolos_d2.utils.c", 4)],
        "yolos_d2.export.d": [("yolos_d2.inference.e", 5), ("yolos_d2.engine.b", 6)],
    }
    assert upward_imports(imports) == [
        "yolos_d2.modeling.a:3: modeling (layer 1) imports yolos_d2.engine.b (layer 5)",
        "yolos_d2.export.d:5: export (layer 6) imports yolos_d2.inference.e (layer 6)",
    ]
    graph = {"m.a": {"m.b"}, "m.b": {"m.c"}, "m.c": {"m.a"}, "m.d": {"m.a"}}
    assert cycles_of(graph) == ["m.a -> m.b -> m.c -> m.a"]


def test_the_package_knows_nothing_of_the_repository():
    wrong = []
    for name, path in MODULES.items():
        for imported, line in imported_modules(name):
            if imported.split(".")[0] in REPOSITORY_ONLY:
                wrong.append(f"{path}:{line}: imports {imported}")
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "modules" and getattr(node.value, "id", None) == "sys":
                wrong.append(f"{path}:{node.lineno}: reads or writes sys.modules")
            if isinstance(node, ast.Constant) and node.value in {f"{d}/" for d in REPOSITORY_ONLY} | REPOSITORY_ONLY:
                wrong.append(f"{path}:{node.lineno}: names the repository's {node.value!r}")
    assert not wrong, "\n".join(wrong)

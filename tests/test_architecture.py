"""The package's layering (docs/architecture.md): every import of lungcad code, at module level or inside a function,
goes to the same or a lower layer; no two packages import each other (directly or round a cycle); no stage imports
the command line.

``lungcad/__init__.py`` is core: at module level it imports core only. It also serves the Python API's names lazily
(PEP 562: ``lungcad.detect`` imports ``lungcad.api`` on first access, through its ``_LAZY`` map and importlib, not an
import statement). Such a name is charged to whoever uses it: ``from lungcad import detect`` or ``lungcad.detect``
counts as an import of ``lungcad.api``, so a stage cannot reach the API (or ``lungcad.load_scan``, io) through the
package's front door either."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lungcad"

#: Layers from the bottom up: a unit may import its own layer and the ones below. A unit is a subpackage
#: (``lungcad.io``) or a top-level module (``lungcad.merge``).
LAYERS = [
    ("lungcad", "lungcad.errors", "lungcad.fileio", "lungcad.config", "lungcad.scan", "lungcad.schema",
     "lungcad.modeldir", "lungcad.progress", "lungcad.tfquiet"),
    ("lungcad.io",),
    ("lungcad.batch",),
    ("lungcad.synth",),
    ("lungcad.preprocess",),
    ("lungcad.candidates",),
    ("lungcad.merge",),
    ("lungcad.patches",),
    ("lungcad.fpr",),
    ("lungcad.risk",),
    ("lungcad.evaluate",),
    ("lungcad.visualize", "lungcad.sr"),
    ("lungcad.pipeline",),
    ("lungcad.pacs",),
    ("lungcad.train",),
    ("lungcad.demo", "lungcad.api"),
    ("lungcad.cli",),
]  # fmt: skip
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit_of(module: str) -> str:
    """The layered unit a module belongs to: ``lungcad.fpr.inference`` -> ``lungcad.fpr``."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def lazy_names(package: Path = PACKAGE) -> dict[str, str]:
    """The names ``lungcad/__init__.py`` serves lazily (its ``_LAZY`` map): name -> the module defining it."""
    tree = ast.parse((package / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_LAZY" for t in node.targets):
            return ast.literal_eval(node.value)
    return {}


def imported_modules(path: Path, package: Path = PACKAGE) -> list[tuple[int, str]]:
    """Every ``lungcad`` module ``path`` imports (line, name), module level or not; relative imports resolved; a
    lazily served name (``from lungcad import detect``, ``lungcad.detect``) as an import of its module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    name = module_name(path, package)
    parent = name if path.name == "__init__.py" else name.rpartition(".")[0]
    lazy = lazy_names(package)
    aliases = {"lungcad"}  # names bound to the package itself (import lungcad [as lc])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
            aliases |= {alias.asname for alias in node.names if alias.name == "lungcad" and alias.asname}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                kept = parent.split(".")[: len(parent.split(".")) - node.level + 1]
                base = ".".join(kept + ([base] if base else []))
            found.append((node.lineno, base))
            if base == "lungcad":
                found += [(node.lineno, lazy[alias.name]) for alias in node.names if alias.name in lazy]
    for node in ast.walk(tree):  # attribute use after import lungcad: lungcad.detect(...)
        used = isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
        if used and node.attr in lazy:
            found.append((node.lineno, lazy[node.attr]))
    return [(line, n) for line, n in found if n == "lungcad" or n.startswith("lungcad.")]


def import_graph(package: Path = PACKAGE) -> dict[str, dict[str, str]]:
    """unit -> {imported unit: first place ("path:line")}."""
    graph: dict[str, dict[str, str]] = {}
    for path in sorted(package.rglob("*.py")):
        source = unit_of(module_name(path, package))
        for line, name in imported_modules(path, package):
            target = unit_of(name)
            if target != source:
                graph.setdefault(source, {}).setdefault(target, f"{path.relative_to(package.parent)}:{line}")
    return graph


def upward_imports(package: Path = PACKAGE) -> list[str]:
    return [
        f"{where}: {source} imports {target}"
        for source, targets in import_graph(package).items()
        for target, where in targets.items()
        if RANK.get(target, -1) > RANK.get(source, -1)
    ]


def package_cycles(package: Path = PACKAGE) -> list[str]:
    graph = {s: set(t) for s, t in import_graph(package).items()}
    cycles = []
    for start in graph:  # depth-first search for a path back to ``start``
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    cycles.append(" -> ".join([*path, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    return sorted(set(cycles))


def command_line_imports(package: Path = PACKAGE) -> list[str]:
    return [
        f"{where}: {source} imports lungcad.cli"
        for source, targets in import_graph(package).items()
        if source != "lungcad.cli"
        for target, where in targets.items()
        if target == "lungcad.cli"
    ]


def test_every_unit_has_a_layer():
    units = {unit_of(module_name(p)) for p in PACKAGE.rglob("*.py")}
    assert units - set(RANK) == set(), "add the new package or module to LAYERS (and to docs/architecture.md)"


def test_nothing_imports_upward():
    assert not upward_imports(), "upward imports:\n" + "\n".join(upward_imports())


def test_no_package_cycles():
    assert not package_cycles(), "package cycles:\n" + "\n".join(package_cycles())


def test_no_stage_imports_the_command_line():
    assert not command_line_imports()


@pytest.mark.parametrize(
    "source, target, check",
    [
        ("lungcad.fpr", "lungcad.train", upward_imports),
        ("lungcad.candidates", "lungcad.merge", upward_imports),
        ("lungcad.io", "lungcad.cli", command_line_imports),
        ("lungcad.merge", "lungcad.candidates", package_cycles),  # candidates -> merge is not allowed either way
    ],
)
def test_the_checks_see_a_planted_import(tmp_path, source, target, check):
    """An import planted inside a function is caught (the walk is not vacuous)."""
    fake = copy_package(tmp_path)
    assert check(fake) == []
    planted = fake / Path(*source.split(".")[1:]) / "__init__.py"
    if not planted.exists():
        planted = planted.parent.with_suffix(".py")
    planted.write_text(planted.read_text() + f"\n\ndef _planted():\n    from {target}.x import y  # noqa\n")
    if check is package_cycles:  # plant the way back too
        back = fake / Path(*target.split(".")[1:]) / "__init__.py"
        back.write_text(back.read_text() + f"\n\ndef _back():\n    import {source}  # noqa\n")
    found = check(fake)
    assert found and source in found[0]


def copy_package(tmp_path: Path) -> Path:
    fake = tmp_path / "lungcad"
    for path in PACKAGE.rglob("*.py"):
        copy = fake / path.relative_to(PACKAGE)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(path.read_text())
    return fake


def test_the_lazy_names_are_the_packages_public_api():
    import lungcad

    lazy = lazy_names()
    assert {"detect", "evaluate_froc", "load_scan"} <= set(lazy) <= set(lungcad.__all__)
    for name, module in lazy.items():
        assert getattr(importlib.import_module(module), name) is getattr(lungcad, name)


@pytest.mark.parametrize(
    "module, code, target",
    [
        ("merge.py", "from lungcad import detect", "lungcad.api"),
        ("pipeline/run.py", "import lungcad as lc\n    lc.evaluate_froc", "lungcad.api"),
        ("scan.py", "import lungcad\n    lungcad.load_scan", "lungcad.io"),
    ],
)
def test_a_lazy_name_counts_as_an_import_of_its_module(tmp_path, module, code, target):
    """The package's lazy names are no back door: a stage using ``lungcad.detect`` imports the API upward."""
    fake = copy_package(tmp_path)
    planted = fake / module
    planted.write_text(planted.read_text() + f"\n\ndef _planted():\n    {code}\n")
    found = upward_imports(fake)
    assert len(found) == 1 and found[0].startswith(f"lungcad/{module}:") and found[0].endswith(target)

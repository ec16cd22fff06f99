"""The package's metadata (pyproject.toml) says what the code is and needs: the licence it ships, its classifiers, every
third-party module lungcad imports declared (at import time: a runtime dependency; inside a function: at least an
extra), extras that differ, and no project URL that is not the project's."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
#: Optional features whose packages the runtime never needs (the issue: scikit-image only for LIDC nodules and a
#: benchmark, TensorBoard only for training logs).
NOT_RUNTIME = {"scikit-image", "tensorboard", "highdicom", "distributed", "dicomweb-client", "pynetdicom", "pylidc"}


def _project() -> dict:
    return tomllib.loads(PYPROJECT.read_text())["project"]


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement (PEP 503), without version, extras or markers."""
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", requirement).group(0)).lower()


def _extras(project: dict) -> dict[str, set[str]]:
    """Each extra's distributions, its ``lungcad[...]`` self-references resolved."""
    raw = project["optional-dependencies"]

    def resolve(extra: str) -> set[str]:
        names = set()
        for req in raw[extra]:
            if req.startswith("lungcad["):
                for sub in req[len("lungcad[") : req.index("]")].split(","):
                    names |= resolve(sub.strip())
            else:
                names.add(_name(req))
        return names

    return {extra: resolve(extra) for extra in raw}


def test_the_declared_licence_is_the_file_shipped():
    project = _project()
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License") and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text  # the whole licence, not a stub
    # PEP 639: with a licence expression, licence classifiers are refused by setuptools >= 77
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]


def test_classifiers_say_what_the_package_is():
    classifiers = _project()["classifiers"]
    assert len(classifiers) == len(set(classifiers))
    assert all(re.fullmatch(r"[A-Z][^:]*( :: [^:]+)+", c) for c in classifiers), classifiers
    (status,) = [c for c in classifiers if c.startswith("Development Status ::")]
    assert "Alpha" in status or "Beta" in status  # research code, models trained on synthetic data
    assert "Programming Language :: Python :: 3 :: Only" in classifiers
    assert "Topic :: Scientific/Engineering :: Medical Science Apps." in classifiers
    assert any(c.startswith("Intended Audience :: Science/Research") for c in classifiers)


def test_project_urls_are_real_or_their_absence_is_explained():
    """No address is invented: either ``project.urls`` holds https addresses, or pyproject.toml says why it has none."""
    urls = _project().get("urls")
    if urls:
        assert all(str(u).startswith("https://") for u in urls.values()), urls
    else:
        assert re.search(r"^# project\.urls: none yet.*no public address", PYPROJECT.read_text(), re.M)


def test_extras_differ_and_test_covers_every_feature():
    project = _project()
    extras = _extras(project)
    runtime = {_name(r) for r in project["dependencies"]}
    features = {e for e in extras if e not in ("test", "dev")}
    for extra in features:
        assert extras[extra] and not extras[extra] <= runtime, extra  # each extra adds something
        assert extras[extra] <= extras["test"], extra  # the test suite tests every optional feature
    assert extras["test"] < extras["dev"]  # dev: the tests plus packaging
    assert {"pytest", "ruff"} <= extras["test"] and "build" in extras["dev"] - extras["test"]
    assert not runtime & NOT_RUNTIME, runtime & NOT_RUNTIME


def _third_party_imports() -> dict[str, dict[str, str]]:
    """{"module": {top-level module: a file}, "function": {...}}: the non-stdlib modules lungcad imports when a module
    is imported, and those it imports only inside functions (optional features)."""
    found: dict[str, dict[str, str]] = {"module": {}, "function": {}}
    for path in sorted((ROOT / "lungcad").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        at_import = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module]
            else:
                continue
            for name in names:
                root = name.split(".")[0]
                if root != "lungcad" and root not in sys.stdlib_module_names:
                    where = "module" if id(node) in at_import else "function"
                    found[where].setdefault(root, str(path.relative_to(ROOT)))
    return found


def test_every_imported_package_is_declared():
    """A module lungcad imports at import time is a runtime dependency; one imported inside a function is at least in
    an extra (found by the distributions this environment installed it from)."""
    project = _project()
    runtime = {_name(r) for r in project["dependencies"]}
    optional = set().union(*_extras(project).values())
    distributions = importlib.metadata.packages_distributions()
    imports = _third_party_imports()
    assert {"numpy", "pydicom", "keras"} <= set(imports["module"])  # the scan finds imports at all
    assert {"highdicom", "skimage"} <= set(imports["function"])
    undeclared = []
    for where, declared in (("module", runtime), ("function", runtime | optional)):
        for module, path in imports[where].items():
            names = {_name(d) for d in distributions.get(module, [])}
            assert names, f"{module} ({path}) is not installed here: cannot tell its distribution"
            if not names & declared:
                undeclared.append(f"{module} ({path}, imported in a {where}): {sorted(names)}")
    assert undeclared == []

"""The monorepo's own rules (issue 2), checked on the source tree.

- PEP 420: no package ships `src/pyv86/__init__.py`.
- Packages import each other only where the dependency table allows; `ne2k` and `pci` never
  import each other or the CPU, and `ne2k` imports nothing outside the standard library.
- Every package has one version source, and its CHANGELOG names that version.
- cpu, pci, ne2k keep their syntax Python 3.9-clean (they run on Debian's PyPy 3.9).
"""

from __future__ import annotations

import ast
import pathlib
import re
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = {
    "cpu": "cpu",
    "pci": "pci",
    "ne2k": "ne2k",
    "relay-client": "relay_client",
    "machine": "machine",
}
# Which first-party packages each one may import (the table in the README).
ALLOWED_SIBLINGS = {
    "cpu": set(),
    "pci": set(),
    "ne2k": set(),
    "relay-client": set(),
    "machine": {"cpu", "pci", "ne2k", "relay_client"},
}
# Third-party modules a package's *source* may import (tests may use more).
ALLOWED_THIRD_PARTY = {
    "cpu": set(),
    "pci": set(),
    "ne2k": set(),
    "relay-client": {"trio", "trio_websocket", "wsproto"},
    "machine": {"numpy", "trio"},
}
PYPY_CLEAN = ["cpu", "pci", "ne2k"]


def _sources(folder: str) -> list[pathlib.Path]:
    return sorted((ROOT / "packages" / folder / "src").rglob("*.py"))


def _imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("folder", list(PACKAGES))
def test_namespace_package_has_no_init(folder):
    assert not (ROOT / "packages" / folder / "src" / "pyv86" / "__init__.py").exists()


@pytest.mark.parametrize("folder", list(PACKAGES))
def test_imports_follow_the_dependency_table(folder):
    stdlib = set(sys.stdlib_module_names)
    bad = []
    for path in _sources(folder):
        for name in _imports(path):
            top = name.split(".")[0]
            if top == "pyv86":
                parts = name.split(".")
                sibling = parts[1] if len(parts) > 1 else ""
                if sibling != PACKAGES[folder] and sibling not in ALLOWED_SIBLINGS[folder]:
                    bad.append(f"{path.relative_to(ROOT)} imports {name}")
            elif top not in stdlib and top not in ALLOWED_THIRD_PARTY[folder]:
                bad.append(f"{path.relative_to(ROOT)} imports third-party {name}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("folder", list(PACKAGES))
def test_single_version_source_matches_changelog(folder):
    module = PACKAGES[folder]
    version_file = ROOT / "packages" / folder / "src" / "pyv86" / module / "_version.py"
    match = re.search(r'^__version__ = "([^"]+)"$', version_file.read_text(), re.M)
    assert match, f"{version_file} must define __version__ = \"...\""
    version = match.group(1)
    changelog = (ROOT / "packages" / folder / "CHANGELOG.md").read_text()
    assert f"({version})" in changelog or f"## {version}" in changelog, (
        f"{folder}/CHANGELOG.md does not name version {version}"
    )
    pyproject = (ROOT / "packages" / folder / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject, "the version must come from _version.py only"


@pytest.mark.parametrize("folder", PYPY_CLEAN)
def test_pypy_packages_parse_as_python_39(folder):
    """Debian's pypy3 is Python 3.9: `match`, PEP 604 unions at runtime and the like break it."""
    for path in _sources(folder):
        source = path.read_text()
        try:
            tree = ast.parse(source, filename=str(path), feature_version=(3, 9))
        except SyntaxError as exc:  # pragma: no cover - the failure message is the point
            pytest.fail(f"{path.relative_to(ROOT)} is not Python 3.9 syntax: {exc}")
        uses_future_annotations = any(
            isinstance(node, ast.ImportFrom) and node.module == "__future__"
            and any(a.name == "annotations" for a in node.names)
            for node in tree.body
        )
        if not uses_future_annotations:
            for node in ast.walk(tree):
                ann = getattr(node, "annotation", None) or getattr(node, "returns", None)
                if ann is not None and any(
                    isinstance(sub, ast.BinOp) and isinstance(sub.op, ast.BitOr)
                    for sub in ast.walk(ann)
                ):
                    pytest.fail(f"{path.relative_to(ROOT)}:{node.lineno} uses `X | Y` in an "
                                "annotation without `from __future__ import annotations`")


def test_machine_pins_its_siblings_compatibly():
    text = (ROOT / "packages" / "machine" / "pyproject.toml").read_text()
    for sibling in ("cpu", "pci", "ne2k", "relay-client"):
        assert re.search(rf'"pyv86-{sibling}~=[0-9][^"]*"', text), f"pyv86-{sibling} not pinned with ~="

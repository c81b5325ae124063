"""Sessions for the pyv86 monorepo, written once and parametrized over its packages.

    nox -l                         list every session
    nox -s tests                   every package on every interpreter it supports
    nox -s "tests(ne2k-pypy3)"     one package on one interpreter (or: nox -s tests -k ne2k)
    nox -s isolation               build each wheel, install it alone, run its smoke test
    nox -s lint typecheck e2e      ruff, mypy, the cross-package tests in tests/
    nox -s bench                   benchmarks that print figures (never assert times)
    nox -s demo                    the main job: boot the default machine with networking
"""

from __future__ import annotations

import glob
import json
import os
import pathlib
import shutil
import sys
import zipfile

import nox

ROOT = pathlib.Path(__file__).resolve().parent
CPYTHON = "3.11"
PYPY = "pypy3"  # Debian's pypy3 (PyPy 7.3, Python 3.9)

# folder -> (import name, runs on PyPy 3.9)
PACKAGES = {
    "cpu": ("pyv86.cpu", True),
    "pci": ("pyv86.pci", True),
    "ne2k": ("pyv86.ne2k", True),
    "relay-client": ("pyv86.relay_client", False),  # trio-websocket and Python 3.11 features
    "machine": ("pyv86.machine", True),  # the core is 3.9-clean; see the package README
}
# Sibling order for installing: a package's siblings must come first.
INSTALL_ORDER = ["cpu", "pci", "ne2k", "relay-client", "machine"]
SIBLINGS = {"machine": ["cpu", "pci", "ne2k", "relay-client"]}

nox.options.sessions = ["lint", "typecheck", "tests", "isolation", "e2e"]
nox.options.error_on_missing_interpreters = True


def _pkg(folder: str) -> str:
    return str(ROOT / "packages" / folder)


def _install_editable(session: nox.Session, folder: str, extras: str = "test") -> None:
    """Install a package (and the siblings it depends on) editable, with its test extras.

    On PyPy 3.9 siblings that need CPython 3.11 (relay-client) are left out: the machine
    declares them only for Python >= 3.11 and its core runs without them.
    """
    for sib in SIBLINGS.get(folder, []):
        if session.python == PYPY and not PACKAGES[sib][1]:
            continue
        session.install("-e", _pkg(sib))
    session.install("-e", f"{_pkg(folder)}[{extras}]" if extras else _pkg(folder))


def _test_matrix() -> list:
    params = []
    for folder, (_, pypy) in PACKAGES.items():
        params.append(nox.param(CPYTHON, folder, id=f"{folder}-py{CPYTHON}"))
        if pypy:
            params.append(nox.param(PYPY, folder, id=f"{folder}-{PYPY}"))
    return params


@nox.session
@nox.parametrize("python,package", _test_matrix())
def tests(session: nox.Session, package: str) -> None:
    """Run one package's own tests on one interpreter."""
    _install_editable(session, package)
    session.run(
        "pytest", "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(ROOT),
        str(ROOT / "packages" / package / "tests"), *session.posargs,
    )


@nox.session(python=CPYTHON)
@nox.parametrize("package", list(PACKAGES))
def isolation(session: nox.Session, package: str) -> None:
    """Build the wheel, install it alone in a fresh environment, import it, run its smoke test."""
    session.install("build")
    dist = pathlib.Path(session.create_tmp()) / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    for folder in [*SIBLINGS.get(package, []), package]:
        session.run("python", "-m", "build", "--wheel", "--outdir", str(dist), _pkg(folder),
                    silent=True)
    wheel = _wheel_for(dist, package)
    requires = _requires_dist(wheel)
    session.log(f"{wheel.name} declares: {requires or 'no dependencies'}")
    if package == "ne2k" and requires:
        session.error(f"pyv86-ne2k must have no runtime dependencies, found {requires}")
    # Siblings come from the wheels just built, never from an index.
    for sib in SIBLINGS.get(package, []):
        session.install("--no-deps", "--no-index", str(_wheel_for(dist, sib)))
    if requires:
        session.install(str(wheel))
    else:
        session.install("--no-index", str(wheel))  # proves it needs nothing at all
    session.run("python", "-m", "pip", "check")
    module = PACKAGES[package][0]
    session.run("python", "-c", f"import {module} as m; print(m.__name__, m.__version__)")
    # The smoke test runs from a scratch folder so only the installed wheel can be imported.
    session.install("pytest")
    smoke = ROOT / "packages" / package / "tests" / "test_smoke.py"
    session.chdir(session.create_tmp())
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider",
                "--import-mode=importlib", "-W", "error", str(smoke))


def _wheel_for(dist: pathlib.Path, folder: str) -> pathlib.Path:
    name = "pyv86_" + folder.replace("-", "_")
    found = sorted(dist.glob(f"{name}-*.whl"))
    if not found:
        raise RuntimeError(f"no wheel for {folder} in {dist}")
    return found[-1]


def _requires_dist(wheel: pathlib.Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        text = zf.read(meta).decode()
    return [line.split(":", 1)[1].strip() for line in text.splitlines()
            if line.startswith("Requires-Dist:") and "extra ==" not in line]


@nox.session(python=CPYTHON)
def lint(session: nox.Session) -> None:
    """ruff over every package, the root tests and this file."""
    session.install("ruff")
    session.run("ruff", "check", "packages", "tests", "noxfile.py", *session.posargs)


@nox.session(python=CPYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy over every package's source, with the shared settings in pyproject.toml."""
    session.install("mypy", "trio", "trio-websocket", "numpy")
    args = []
    for module, _ in PACKAGES.values():
        args += ["-p", module]
    session.run("mypy", *args, *session.posargs)


def _install_all(session: nox.Session) -> None:
    for folder in INSTALL_ORDER:
        session.install("-e", f"{_pkg(folder)}[test]")


@nox.session(python=CPYTHON)
def e2e(session: nox.Session) -> None:
    """Cross-package tests in tests/ (conformance across packages, the booted guest)."""
    _install_all(session)
    session.run("pytest", "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(ROOT),
                str(ROOT / "tests"), *session.posargs)


# Figures from both bench sessions of one `nox -s bench` run, for the ratio table.
_BENCH_FIGURES: dict = {}


@nox.session(python=[CPYTHON, PYPY])
def bench(session: nox.Session) -> None:
    """Run every package's benchmarks/bench_*.py; each prints its own figures.

    A benchmark also prints one line per figure as `BENCH {"name": ..., "value": ...,
    "unit": ...}` (JSON); the last bench session of the run prints the PyPy/CPython ratio of
    every figure measured on both interpreters in this one run.
    """
    on_pypy = session.python == PYPY
    for folder in INSTALL_ORDER:
        if on_pypy and not PACKAGES[folder][1]:
            continue
        scripts = sorted(glob.glob(str(ROOT / "packages" / folder / "benchmarks" / "bench_*.py")))
        if not scripts:
            continue
        _install_editable(session, folder, extras="")
        for script in scripts:
            session.log(f"--- {folder}: {os.path.basename(script)} on {session.python}")
            out = session.run("python", script, *session.posargs, silent=True) or ""
            print(out, end="")
            for line in out.splitlines():
                if line.startswith("BENCH "):
                    fig = json.loads(line[6:])
                    _BENCH_FIGURES.setdefault((folder, fig["name"], fig["unit"]), {})[
                        str(session.python)] = float(fig["value"])
    both = {k: v for k, v in _BENCH_FIGURES.items() if CPYTHON in v and PYPY in v}
    if on_pypy and both:
        session.log("PyPy / CPython, measured in this run (higher is better for rates):")
        for (folder, name, unit), v in sorted(both.items()):
            ratio = v[PYPY] / v[CPYTHON] if v[CPYTHON] else float("inf")
            print(f"  {folder:12} {name:40} {v[CPYTHON]:>12.4g} -> {v[PYPY]:>12.4g} {unit:10}"
                  f" x{ratio:.2f}")


@nox.session(python=CPYTHON)
def demo(session: nox.Session) -> None:
    """The main job: boot the default machine with networking, console on this terminal."""
    _install_all(session)
    session.run("pyv86", "run", *session.posargs, external=False)


if __name__ == "__main__":  # pragma: no cover - convenience for `python noxfile.py`
    sys.exit(nox.main())

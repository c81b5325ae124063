"""Smoke test: runs against the installed wheel alone (nox -s isolation) and in place."""

import re

import pyv86.machine


def test_version_is_pep440():
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+|a\d+|b\d+|rc\d+)?", pyv86.machine.__version__)

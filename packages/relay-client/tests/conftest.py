"""pytest glue for the relay-client tests."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # for relay_testlib (importlib import mode)


@pytest.fixture
def short_tmp() -> Iterator[str]:
    """A short directory for UNIX sockets (sun_path holds 107 bytes; tmp_path can be longer)."""
    path = tempfile.mkdtemp(prefix="rc-")
    yield path
    shutil.rmtree(path, ignore_errors=True)

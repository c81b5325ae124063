"""The run loop (work in progress)."""

from __future__ import annotations

from typing import Any


def run(cpu: Any, budget: int) -> int:
    raise NotImplementedError("instruction execution is being written")

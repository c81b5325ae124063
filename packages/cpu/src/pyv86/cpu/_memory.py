"""Small reference implementations of the CPU's consumers (tests, the conformance runner,
benchmarks and simple embedders).  A real machine provides its own (docs/architecture.md)."""

from __future__ import annotations

from typing import Dict, Tuple


class SimpleMemory:
    """``size`` bytes of RAM starting at physical 0; everything above reads as all ones."""

    def __init__(self, size: int) -> None:
        if size <= 0 or size % 4096:
            raise ValueError("memory size must be a positive multiple of 4096")
        self.ram = bytearray(size)
        self.page_kind = bytearray(size // 4096)  # all RAM (kind 0)

    def read(self, addr: int, size: int) -> int:
        return (1 << (8 * size)) - 1

    def write(self, addr: int, value: int, size: int) -> None:
        return None


class NullIO:
    """An empty I/O bus: reads return all ones, writes are recorded in ``writes``."""

    def __init__(self) -> None:
        self.writes: Dict[Tuple[int, int], int] = {}

    def read(self, port: int, size: int) -> int:
        return (1 << (8 * size)) - 1

    def write(self, port: int, value: int, size: int) -> None:
        self.writes[(port, size)] = value

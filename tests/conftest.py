"""Shared fixtures for the cross-package tests in tests/ (run by `nox -s e2e`).

Fixtures import the packages they need lazily, so a test whose sibling package is missing
skips with a clear reason instead of breaking collection of the whole folder.
"""

from __future__ import annotations

import os
import sys

import pytest

# pytest runs in importlib mode: make this folder's helper modules (``_switch``) importable
HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)


class PCIMachine:
    """A PCIBus with recording callbacks, driven like a guest through ports 0xCF8/0xCFC."""

    def __init__(self) -> None:
        pci = pytest.importorskip("pyv86.pci", reason="pyv86-pci is not installed")
        self.mapped: list = []
        self.lines: dict = {}
        self.events: list = []
        self.resets: list = []
        self.bus = pci.PCIBus(on_map=self._map, on_unmap=self._unmap,
                              on_pam=lambda *segment: self.events.append(("pam", *segment)),
                              irq_line=self._irq, on_reset=self.resets.append)

    def _map(self, region) -> None:
        self.events.append(("map", region.kind, region.base, region.size))
        self.mapped.append(region)

    def _unmap(self, region) -> None:
        self.events.append(("unmap", region.kind, region.base, region.size))
        self.mapped = [r for r in self.mapped if r is not region]

    def _irq(self, irq: int, level: int) -> None:
        self.events.append(("irq", irq, level))
        self.lines[irq] = level

    def read(self, slot: int, fn: int, reg: int, size: int = 4) -> int:
        self.bus.io_write(0xCF8, 0x80000000 | slot << 11 | fn << 8 | (reg & 0xFC), 4)
        return self.bus.io_read(0xCFC + (reg & 3), size)

    def write(self, slot: int, fn: int, reg: int, value: int, size: int = 4) -> None:
        self.bus.io_write(0xCF8, 0x80000000 | slot << 11 | fn << 8 | (reg & 0xFC), 4)
        self.bus.io_write(0xCFC + (reg & 3), value, size)


@pytest.fixture
def pci_machine() -> PCIMachine:
    """A fresh recording PCI machine (skips when pyv86-pci is not installed)."""
    return PCIMachine()

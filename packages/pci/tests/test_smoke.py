"""Smoke test: runs against the installed wheel alone (nox -s isolation) and in place.

It uses only the installed package and pytest: a guest-style enumeration through ports
0xCF8/0xCFC finds the chipset and a hosted device, sizes and maps its BAR and routes its pin.
"""

import re

import pyv86.pci
from pyv86.pci import Bar, DataFunction, PCIBus, config_header


def test_version_is_pep440():
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+|a\d+|b\d+|rc\d+)?", pyv86.pci.__version__)


def _cfg(bus, slot, reg, value=None):
    bus.io_write(0xCF8, 0x80000000 | slot << 11 | reg, 4)
    if value is None:
        return bus.io_read(0xCFC, 4)
    bus.io_write(0xCFC, value, 4)
    return None


def test_enumerate_size_map_and_route_a_hosted_device():
    mapped, lines = [], []
    bus = PCIBus(on_map=mapped.append, irq_line=lambda irq, level: lines.append((irq, level)))
    device = DataFunction(config_header(0x10EC, 0x8029, 0x020000, interrupt_pin=1),
                          bytes(256), [Bar(0, "io", 32)],
                          bar_read=lambda index, offset, size: 0x50 + offset)
    bus.add_device(device, slot=5)

    found = {slot: _cfg(bus, slot, 0) for slot in range(32) if _cfg(bus, slot, 0) != 0xFFFFFFFF}
    assert found == {0: 0x12378086, 1: 0x70008086, 5: 0x802910EC}

    _cfg(bus, 5, 0x10, 0xFFFFFFFF)
    assert _cfg(bus, 5, 0x10) == 0xFFFFFFE1  # 32 bytes of I/O
    _cfg(bus, 5, 0x10, 0xC100)
    _cfg(bus, 5, 0x04, 0x0001)  # I/O decoding on
    (region,) = mapped
    assert (region.kind, region.base, region.size) == ("io", 0xC100, 32)
    assert region.read(0x0A, 1) == 0x5A

    bus.config_write(1, 0, 0x61, 10, 1)  # PIRQB -> IRQ 10 (slot 5, INTA -> PIRQB)
    device.set_irq(1)
    assert lines[-1] == (10, 1)

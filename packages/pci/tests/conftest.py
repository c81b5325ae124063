"""Fixtures for pyv86-pci tests: a recording "machine" around a PCIBus and a test device."""

from __future__ import annotations

import pytest

from pyv86.pci import Bar, DataFunction, PCIBus, config_header


class Machine:
    """Records every callback the bus makes and keeps the mapped set like a machine would."""

    def __init__(self, **bus_kwargs):
        self.events = []
        self.mapped = []
        self.pam = {}
        self.lines = {}
        self.resets = []
        self.bus = PCIBus(on_map=self._map, on_unmap=self._unmap, on_pam=self._pam,
                          irq_line=self._irq, on_reset=self.resets.append, **bus_kwargs)

    def _map(self, region):
        assert all(r is not region for r in self.mapped), "mapped twice"
        self.events.append(("map", region.kind, region.base, region.size, region.bar))
        self.mapped.append(region)

    def _unmap(self, region):
        assert any(r is region for r in self.mapped), "unmapped a region never mapped"
        self.events.append(("unmap", region.kind, region.base, region.size, region.bar))
        self.mapped = [r for r in self.mapped if r is not region]

    def _pam(self, start, length, read_ram, write_ram):
        self.events.append(("pam", start, length, read_ram, write_ram))
        self.pam[start] = (length, read_ram, write_ram)

    def _irq(self, irq, level):
        self.events.append(("irq", irq, level))
        self.lines[irq] = level

    # Guest-style access through configuration mechanism #1.
    def select(self, slot, fn, reg, bus=0, enable=True):
        self.bus.io_write(0xCF8, (0x80000000 if enable else 0) | bus << 16 | slot << 11
                          | fn << 8 | (reg & 0xFC), 4)

    def read(self, slot, fn, reg, size=4, bus=0):
        self.select(slot, fn, reg, bus)
        return self.bus.io_read(0xCFC + (reg & 3), size)

    def write(self, slot, fn, reg, value, size=4, bus=0):
        self.select(slot, fn, reg, bus)
        self.bus.io_write(0xCFC + (reg & 3), value, size)


NIC_BARS = (Bar(0, "io", 32),)


def _make_device(*, bars=NIC_BARS, rom=None, pin=1, mask=None,
                vendor=0x10EC, device=0x8029, class_code=0x020000, bar_read=None):
    """A small NIC-like function described as data (RTL8029-shaped by default)."""
    cfg = config_header(vendor, device, class_code, interrupt_pin=pin,
                        subsystem_vendor_id=0x10EC, subsystem_id=0x8029)
    if mask is None:
        mask = bytearray(256)
        mask[0x04] = 0x47  # I/O, memory, bus master, parity error response
        mask[0x05] = 0x05  # SERR#, interrupt disable
        mask[0x0C] = 0xFF  # cache line size
        mask[0x0D] = 0xF8  # latency timer
        mask[0x40] = 0xFF  # a device-specific scratch register
        mask[0x41] = 0x0F  # and one with read-only high bits
    kwargs = {}
    if bar_read is not None:
        kwargs["bar_read"] = bar_read
    return DataFunction(cfg, mask, bars, rom=rom, **kwargs)


def _make_rom(vendor=0, device=0, size=1024, code_type=0, more=None, checksum=True):
    """An option ROM image: 55 AA header, PCIR at 0x1C with the given IDs, zero byte sum."""
    rom = bytearray(size)
    rom[0:3] = bytes([0x55, 0xAA, size // 512])
    rom[3] = 0xCB  # retf: an init entry that does nothing
    rom[0x18:0x1A] = (0x1C).to_bytes(2, "little")
    pcir = 0x1C
    rom[pcir:pcir + 4] = b"PCIR"
    rom[pcir + 4:pcir + 6] = vendor.to_bytes(2, "little")
    rom[pcir + 6:pcir + 8] = device.to_bytes(2, "little")
    rom[pcir + 0x0A:pcir + 0x0C] = (0x18).to_bytes(2, "little")
    rom[pcir + 0x0D:pcir + 0x10] = (0x020000).to_bytes(3, "little")
    rom[pcir + 0x10:pcir + 0x12] = (size // 512).to_bytes(2, "little")
    rom[pcir + 0x14] = code_type
    rom[pcir + 0x15] = 0x00 if more else 0x80
    rom[0x40:0x48] = b"iPXE-ish"
    if checksum and code_type == 0:
        rom[6] = (-sum(rom)) & 0xFF
    return bytes(rom) + (more or b"")


@pytest.fixture(scope="session")
def make_device():
    """Factory for test functions described as data (see _make_device)."""
    return _make_device


@pytest.fixture(scope="session")
def make_rom():
    """Factory for option ROM images (see _make_rom)."""
    return _make_rom


@pytest.fixture(scope="session")
def new_machine():
    """Factory for recording machines; keyword arguments go to PCIBus."""
    return Machine


@pytest.fixture
def machine():
    return Machine()


@pytest.fixture
def nic(machine):
    """The NIC-like test device hosted at 00:05.0 (INTA -> PIRQB)."""
    device = _make_device()
    machine.bus.add_device(device, slot=5)
    return device

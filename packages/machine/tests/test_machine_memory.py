"""Physical memory and the I/O bus (docs/architecture.md, "The CPU's consumers")."""

import pytest

from pyv86.machine.iobus import IOBus
from pyv86.machine.memory import KIND_MMIO, KIND_RAM, KIND_ROM, PhysicalMemory

MiB = 1 << 20


class FakeCPU:
    def __init__(self):
        self.invalidated = []

    def invalidate_code(self, start, length):
        self.invalidated.append((start, length))


def test_ram_pages_are_kind_zero_and_read_back_little_endian():
    m = PhysicalMemory(4 * MiB)
    assert m.page_kind[0x100] == KIND_RAM
    m.write(0x1000, 0x12345678, 4)
    assert m.ram[0x1000:0x1004] == b"\x78\x56\x34\x12"
    assert m.read(0x1001, 2) == 0x3456


def test_unbacked_memory_reads_all_ones_and_ignores_writes():
    m = PhysicalMemory(4 * MiB)
    assert m.page_kind[(4 * MiB) >> 12] == KIND_MMIO
    assert m.read(4 * MiB, 4) == 0xFFFFFFFF
    m.write(4 * MiB, 0, 4)
    assert m.read(4 * MiB, 1) == 0xFF
    assert m.read(0xFFFFFFFF, 1) == 0xFF


def test_vga_hole_is_never_ram():
    m = PhysicalMemory(4 * MiB)
    for addr in (0xA0000, 0xB8000, 0xBFFFF):
        assert m.page_kind[addr >> 12] == KIND_MMIO
        m.write(addr, 0x55, 1)
        assert m.read(addr, 1) == 0xFF
    assert m.ram[0xB8000] == 0


def test_access_straddling_ram_and_hole_is_split_per_byte():
    m = PhysicalMemory(4 * MiB)
    m.ram[0x9FFFF] = 0x42
    assert m.read(0x9FFFF, 2) == 0xFF42


def test_mmio_region_gets_offsets_and_sizes_then_unmap_restores_ram():
    m = PhysicalMemory(4 * MiB)
    cpu = FakeCPU()
    m.cpu = cpu
    log = []
    r = m.map_mmio(0x200000, 0x20, lambda off, size: 0xAB00 + off,
                   lambda off, v, size: log.append((off, v, size)), "dev")
    assert m.page_kind[0x200] == KIND_MMIO
    assert m.read(0x200004, 2) == 0xAB04
    m.write(0x200008, 0x1234, 2)
    assert log == [(8, 0x1234, 2)]
    assert m.read(0x200100, 4) == 0xFFFFFFFF  # same page, outside the region
    assert (0x200000, 0x20) in cpu.invalidated
    m.unmap_mmio(r)
    assert m.page_kind[0x200] == KIND_RAM


def test_overlapping_mmio_is_refused():
    m = PhysicalMemory(4 * MiB)
    m.map_mmio(0xFEC00000, 0x1000, lambda o, s: 0, lambda o, v, s: None)
    with pytest.raises(ValueError, match="overlaps"):
        m.map_mmio(0xFEC00800, 0x1000, lambda o, s: 0, lambda o, v, s: None)


@pytest.mark.parametrize("size", [0, 1024, 3 * MiB + 1, 0xF0000000, "64M"])
def test_bad_memory_sizes_are_refused(size):
    with pytest.raises(ValueError):
        PhysicalMemory(size)


def test_pam_reset_state_reads_bios_image_and_drops_writes():
    # i440FX datasheet 3.2.18: PAM = 0 sends reads and writes of 0xC0000-0xFFFFF to PCI.
    m = PhysicalMemory(4 * MiB)
    bios = bytes(range(256)) * 256  # 64 KiB, visible at 0xF0000
    m.load_bios(bios)
    assert m.read(0xF0010, 1) == 0x10
    assert m.read(0xFFFFFFF0 - 0xFFFFFFF0 + 0xFFFF0010, 1) == 0x10  # high alias
    m.write(0xF0010, 0x99, 1)
    assert m.read(0xF0010, 1) == 0x10
    assert m.read(0xC0000, 1) == 0xFF  # nothing below the image


def test_pam_shadowing_copy_then_write_protect():
    # SeaBIOS' shadow sequence: reads ROM / writes DRAM, copy, then DRAM read-only.
    m = PhysicalMemory(4 * MiB)
    m.load_bios(b"\xea" * 65536)
    m.set_pam(0xF0000, 0x10000, read_dram=False, write_dram=True)
    m.write(0xF0000, m.read(0xF0000, 1) ^ 0xFF, 1)  # write goes to DRAM, read still ROM
    assert m.read(0xF0000, 1) == 0xEA
    assert m.ram[0xF0000] == 0x15
    m.set_pam(0xF0000, 0x10000, read_dram=True, write_dram=False)
    assert m.page_kind[0xF0] == KIND_ROM
    assert m.read(0xF0000, 1) == 0x15
    m.write(0xF0000, 0x77, 1)
    assert m.read(0xF0000, 1) == 0x15
    m.set_pam(0xF0000, 0x10000, read_dram=True, write_dram=True)
    assert m.page_kind[0xF0] == KIND_RAM


def test_memory_state_round_trip_and_bad_state():
    m = PhysicalMemory(4 * MiB)
    m.set_pam(0xC0000, 0x4000, True, True)
    s = m.save_state()
    m2 = PhysicalMemory(4 * MiB)
    m2.restore_state(s)
    assert m2.page_kind[0xC0] == KIND_RAM
    with pytest.raises(ValueError, match="bytes"):
        PhysicalMemory(8 * MiB).restore_state(s)
    with pytest.raises(ValueError, match="version"):
        m2.restore_state({"version": 99})


def test_loader_copy_refuses_out_of_ram():
    m = PhysicalMemory(4 * MiB)
    with pytest.raises(ValueError, match="do not fit"):
        m.load(4 * MiB - 2, b"abcd")


class ByteDev:
    def __init__(self):
        self.regs = bytearray(4)

    def io_read(self, off, size):
        assert size == 1
        return self.regs[off]

    def io_write(self, off, value, size):
        assert size == 1
        self.regs[off] = value


def test_unmapped_ports_read_all_ones_and_ignore_writes():
    bus = IOBus()
    assert bus.read(0x1234, 1) == 0xFF
    assert bus.read(0x1234, 2) == 0xFFFF
    assert bus.read(0x1234, 4) == 0xFFFFFFFF
    bus.write(0x1234, 5, 4)


def test_wide_access_to_byte_device_is_split_little_endian():
    bus = IOBus()
    dev = ByteDev()
    bus.map_device(0x70, 4, dev, sizes=(1,))
    bus.write(0x70, 0x04030201, 4)
    assert bytes(dev.regs) == b"\x01\x02\x03\x04"
    assert bus.read(0x71, 2) == 0x0302
    assert bus.read(0x73, 2) == 0xFF04  # second byte is unmapped


def test_device_taking_wide_accesses_gets_them_whole():
    bus = IOBus()
    seen = []
    bus.map(0xC000, 0x20, lambda off, size: seen.append((off, size)) or 0xBEEF,
            lambda off, v, size: seen.append((off, v, size)))
    assert bus.read(0xC010, 2) == 0xBEEF
    bus.write(0xC010, 0x1234, 2)
    assert seen == [(0x10, 2), (0x10, 0x1234, 2)]


def test_overlapping_port_ranges_are_refused():
    bus = IOBus()
    bus.map_device(0x60, 1, ByteDev())
    with pytest.raises(ValueError, match="overlaps"):
        bus.map_device(0x5F, 4, ByteDev())
    with pytest.raises(ValueError):
        bus.map_device(0xFFFF, 2, ByteDev())

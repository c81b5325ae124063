"""Configuration mechanism #1 (PCI 3.0 3.2.2.3.2; 82441FX datasheet CONFADD/CONFDATA).

0xCF8 is a dword-only address register (bit 31 enable, 23:16 bus, 15:11 device, 10:8
function, 7:2 register); 0xCFC-0xCFF is the data window onto the selected dword.
"""

from __future__ import annotations

import pytest

from pyv86.pci import PCIBus


def test_enumeration_finds_chipset_and_device_and_nothing_else(machine, nic):
    found = {}
    for slot in range(32):
        for fn in range(8):
            ids = machine.read(slot, fn, 0x00)
            if ids != 0xFFFFFFFF:
                found[(slot, fn)] = ids
    assert found == {(0, 0): 0x12378086, (1, 0): 0x70008086, (5, 0): 0x802910EC}


def test_address_register_reads_back_dword_with_low_bits_and_reserved_bits_clear(machine):
    # Linux pci_check_type1: write 0x80000000, expect it back.
    machine.bus.io_write(0xCF8, 0x80000000, 4)
    assert machine.bus.io_read(0xCF8, 4) == 0x80000000
    machine.bus.io_write(0xCF8, 0xFFFFFFFF, 4)
    assert machine.bus.io_read(0xCF8, 4) == 0x80FFFFFC


def test_byte_and_word_writes_to_cf8_do_not_latch_the_address(machine):
    machine.bus.io_write(0xCF8, 0x80000000, 4)
    machine.bus.io_write(0xCFB, 0x01, 1)  # Linux pci_check_type1 does exactly this first
    machine.bus.io_write(0xCF8, 0x0000, 2)
    machine.bus.io_write(0xCFA, 0x1234, 2)
    assert machine.bus.io_read(0xCF8, 4) == 0x80000000
    assert machine.bus.io_read(0xCFC, 4) == 0x12378086


def test_byte_and_word_reads_of_cf8_read_all_ones_so_type2_probe_fails(machine):
    # Linux pci_check_type2 wants inb(0xCF8) == 0 after writing 0: must not match here.
    machine.bus.io_write(0xCF8, 0x00, 1)
    machine.bus.io_write(0xCFA, 0x00, 1)
    assert machine.bus.io_read(0xCF8, 1) == 0xFF
    assert machine.bus.io_read(0xCFA, 1) == 0xFF
    assert machine.bus.io_read(0xCF8, 2) == 0xFFFF


def test_disabled_address_reads_all_ones_and_ignores_writes(machine, nic):
    machine.select(5, 0, 0x3C, enable=False)
    assert machine.bus.io_read(0xCFC, 4) == 0xFFFFFFFF
    assert machine.bus.io_read(0xCFE, 2) == 0xFFFF
    machine.bus.io_write(0xCFC, 0x0B, 1)
    assert machine.read(5, 0, 0x3C, 1) == 0x00


@pytest.mark.parametrize("bus_number", [1, 2, 0x80, 0xFF])
def test_bus_other_than_zero_reads_all_ones_and_ignores_writes(machine, nic, bus_number):
    assert machine.read(5, 0, 0x00, bus=bus_number) == 0xFFFFFFFF
    assert machine.read(0, 0, 0x00, bus=bus_number) == 0xFFFFFFFF
    machine.write(5, 0, 0x3C, 0x0B, 1, bus=bus_number)
    assert machine.read(5, 0, 0x3C, 1) == 0x00


@pytest.mark.parametrize("fn", range(1, 8))
def test_absent_functions_of_a_present_single_function_slot_read_all_ones(machine, nic, fn):
    assert machine.read(5, fn, 0x00) == 0xFFFFFFFF
    assert machine.read(5, fn, 0x0C, 1) == 0xFF
    assert machine.read(0, fn, 0x00) == 0xFFFFFFFF


def test_every_sub_dword_read_matches_the_dword(machine, nic):
    dword = machine.read(5, 0, 0x08)  # revision + class code
    for offset in range(4):
        assert machine.read(5, 0, 0x08 + offset, 1) == (dword >> 8 * offset) & 0xFF
    for offset in range(3):  # word reads at every offset inside the dword, 0xCFD included
        assert machine.read(5, 0, 0x08 + offset, 2) == (dword >> 8 * offset) & 0xFFFF


def test_word_access_at_cfd_and_cfe_reaches_the_middle_and_upper_bytes(machine, nic):
    machine.write(5, 0, 0x40, 0x00000000)
    machine.select(5, 0, 0x40)
    machine.bus.io_write(0xCFD, 0xBEEF, 2)  # bytes 0x41 (mask 0x0F) and 0x42 (read-only)
    assert machine.read(5, 0, 0x40) == 0x00000F00
    machine.select(5, 0, 0x40)
    assert machine.bus.io_read(0xCFD, 2) == 0x000F


def test_access_straddling_the_end_of_the_data_window_reads_ones_beyond_it(machine, nic):
    machine.select(5, 0, 0x00)
    # A word at 0xCFF covers 0xCFF (config byte 3) and 0xD00 (not the bus: all ones).
    assert machine.bus.io_read(0xCFF, 2) == 0xFF80
    assert machine.bus.io_read(0xCFE, 4) == 0xFFFF8029


def test_dword_at_cfa_reaches_only_the_data_window_half(machine, nic):
    machine.select(5, 0, 0x00)
    assert machine.bus.io_read(0xCFA, 4) == 0x10ECFFFF
    machine.select(5, 0, 0x3C)
    machine.bus.io_write(0xCFA, 0x000BFFFF, 4)  # lanes at 0xCFC-0xCFD: line 0x0B, pin ro
    assert machine.bus.io_read(0xCF8, 4) == 0x8000283C  # address register untouched
    assert machine.read(5, 0, 0x3C, 1) == 0x0B


def test_register_bits_1_0_of_the_address_are_ignored(machine, nic):
    machine.bus.io_write(0xCF8, 0x80000000 | 5 << 11 | 0x02, 4)
    assert machine.bus.io_read(0xCFC, 4) == 0x802910EC


def test_function_number_selects_the_function(machine, make_device):
    machine.bus.add_device(make_device(device=0x0001), slot=7, fn=0)
    machine.bus.add_device(make_device(device=0x0002), slot=7, fn=3)
    assert machine.read(7, 0, 0x00) >> 16 == 0x0001
    assert machine.read(7, 3, 0x00) >> 16 == 0x0002
    assert machine.read(7, 1, 0x00) == 0xFFFFFFFF
    # Function 0 gained the multi-function bit, so a scan looks at functions 1-7.
    assert machine.read(7, 0, 0x0E, 1) & 0x80


def test_piix3_is_multi_function_and_host_bridge_is_not(machine):
    assert machine.read(1, 0, 0x0E, 1) == 0x80
    assert machine.read(0, 0, 0x0E, 1) == 0x00


def test_port_device_window_uses_offsets_from_cf8(machine, nic):
    window = machine.bus.port_device()
    window.io_write(0, 0x80000000 | 5 << 11, 4)
    assert window.io_read(4, 4) == 0x802910EC
    assert (PCIBus.PORT_BASE, PCIBus.PORT_COUNT) == (0xCF8, 8)


def test_ports_outside_the_bus_read_all_ones(machine):
    assert machine.bus.io_read(0xCF0, 4) == 0xFFFFFFFF
    machine.bus.io_write(0xCF0, 0, 4)  # ignored, no error


def test_latched_address_sees_a_device_added_afterwards(machine, make_device):
    machine.select(9, 0, 0x00)
    assert machine.bus.io_read(0xCFC, 4) == 0xFFFFFFFF
    machine.bus.add_device(make_device(), slot=9)
    assert machine.bus.io_read(0xCFC, 4) == 0x802910EC


def test_direct_config_access_validates_its_arguments(machine):
    with pytest.raises(ValueError, match="config access"):
        machine.bus.config_read(0, 0, 0xFE, 4)
    with pytest.raises(ValueError, match="PCI address"):
        machine.bus.config_write(32, 0, 0, 0, 1)
    assert machine.bus.config_read(31, 7, 0, 4) == 0xFFFFFFFF

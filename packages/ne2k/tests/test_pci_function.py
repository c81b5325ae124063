"""The RTL8029AS as a PCI function described as data (docs/architecture.md), checked
byte by byte against the RTL8029AS data sheet's configuration header."""

import pytest

from pyv86.ne2k import NE2000, PCIBar


def test_config_space_identifies_a_realtek_8029_ethernet_controller():
    fn = NE2000(model="rtl8029").pci_function()
    cfg = fn.config
    assert isinstance(cfg, bytes) and len(cfg) == 256
    assert cfg[0:4] == bytes.fromhex("ec102980")           # 10EC:8029
    assert cfg[0x08] == 0                                   # revision 0
    assert cfg[0x09:0x0C] == bytes([0x00, 0x00, 0x02])      # class 02/00/00
    assert cfg[0x0E] == 0                                   # header type 0
    assert cfg[0x3D] == 1                                   # INTA#
    assert int.from_bytes(cfg[0x10:0x14], "little") & 1 == 1  # BAR0 is I/O


def test_write_mask_allows_bar0_address_bits_and_interrupt_line_only():
    fn = NE2000(model="rtl8029").pci_function()
    m = fn.write_mask
    assert isinstance(m, bytes) and len(m) == 256
    assert int.from_bytes(m[0x10:0x14], "little") == 0xFFFFFFE0   # 32 bytes of I/O
    assert m[0x3C] == 0xFF
    assert m[0x00:0x04] == b"\x00" * 4 and m[0x08:0x0C] == b"\x00" * 4 and m[0x3D] == 0


def test_bars_describe_one_32_byte_io_bar_and_no_rom_by_default():
    fn = NE2000(model="rtl8029").pci_function()
    assert list(fn.bars) == [PCIBar(index=0, kind="io", size=32, prefetchable=False)]
    assert fn.rom is None
    assert NE2000(model="rtl8029", rom=b"\x55\xaa" + bytes(510)).pci_function().rom[:2] == b"\x55\xaa"


def test_bar_access_delegates_to_the_card_registers():
    card = NE2000(model="rtl8029")
    fn = card.pci_function()
    assert fn.bar_read(0, 0x00, 1) == card.io_read(0x00, 1) == 0x21
    assert (fn.bar_read(0, 0x0A, 1), fn.bar_read(0, 0x0B, 1)) == (0x50, 0x43)  # 'P', 'C'
    fn.bar_write(0, 0x0F, 0x40, 1)            # IMR = RDC
    assert card.io_read(0x00, 1) == 0x21
    assert fn.bar_read(1, 0, 4) == 0xFFFFFFFF  # no BAR 1
    assert fn.bar_read(0, 0x40, 2) == 0xFFFF   # outside the BAR


def test_card_interrupt_output_reaches_set_irq_assigned_by_the_bus():
    card = NE2000(model="rtl8029")
    fn = card.pci_function()
    assert fn is card.pci_function()
    levels = []
    fn.set_irq = levels.append
    fn.bar_write(0, 0x0F, 0x40, 1)            # IMR.RDC
    fn.bar_write(0, 0x0A, 0, 1)
    fn.bar_write(0, 0x0B, 0, 1)
    fn.bar_write(0, 0x00, 0x0A, 1)            # remote read of 0 bytes: RDC at once
    assert levels == [1] and fn.irq_level == 1
    fn.bar_write(0, 0x07, 0x40, 1)            # acknowledge RDC
    assert levels == [1, 0]


def test_isa_boards_have_no_pci_function():
    with pytest.raises(ValueError, match="ISA"):
        NE2000(model="ne2000").pci_function()

"""The RTL8029AS function from pyv86-ne2k, run through pyv86-pci's conformance checker and
hosted on the bus the way the machine does (00:05.0, INTA through PIRQB).

Realtek RTL8029AS datasheet: 10EC:8029, class 02/00/00, BAR0 32 bytes of I/O, INTA;
page 0 registers 0x0A/0x0B read 0x50/0x43 ('P', 'C').
"""

from __future__ import annotations

import pytest

ne2k = pytest.importorskip("pyv86.ne2k", reason="pyv86-ne2k is not installed")
conformance = pytest.importorskip("pyv86.pci.conformance", reason="pyv86-pci is not installed")

if not hasattr(ne2k.NE2000, "pci_function"):  # pragma: no cover - until ne2k grows it
    pytest.skip("pyv86-ne2k has no NE2000.pci_function() yet", allow_module_level=True)


def _card(**kwargs):
    sent = []
    card = ne2k.NE2000(model="rtl8029", mac="00:22:15:12:34:56", send=sent.append, **kwargs)
    return card, sent


def _option_rom(vendor, device, size=2048):
    """A minimal x86 option ROM with a PCIR structure (as Debian's iPXE: IDs 0000:0000)."""
    rom = bytearray(size)
    rom[0:4] = bytes([0x55, 0xAA, size // 512, 0xCB])
    rom[0x18:0x1A] = (0x1C).to_bytes(2, "little")
    rom[0x1C:0x20] = b"PCIR"
    rom[0x20:0x22] = vendor.to_bytes(2, "little")
    rom[0x22:0x24] = device.to_bytes(2, "little")
    rom[0x26:0x28] = (0x18).to_bytes(2, "little")
    rom[0x2C:0x2E] = (size // 512).to_bytes(2, "little")
    rom[0x31] = 0x80  # last image, code type 0 (x86)
    rom[6] = -sum(rom) & 0xFF
    return bytes(rom)


def test_rtl8029_function_passes_the_conformance_checker():
    card, _ = _card()
    findings = conformance.check_function(card.pci_function())
    assert findings == [], "\n".join(map(str, findings))


def test_rtl8029_with_a_zero_id_ipxe_style_rom_is_conformant_once_patched():
    card, _ = _card(rom=_option_rom(0, 0))
    function = card.pci_function()
    assert conformance.assert_conformant(function) is not None  # warnings allowed
    unpatched = conformance.check_function(function, patch_rom_ids=False)
    assert any("SeaBIOS skips it" in f.message for f in unpatched)


def test_rtl8029_hosted_at_00_05_0_enumerates_decodes_and_interrupts(pci_machine):
    card, sent = _card()
    m = pci_machine
    m.bus.add_device(card.pci_function())  # slot 5 is the bus's default
    assert m.read(5, 0, 0x00) == 0x802910EC
    assert m.read(5, 0, 0x08) >> 8 == 0x020000
    assert m.read(5, 0, 0x3D, 1) == 1  # INTA

    # SeaBIOS-style: size BAR0, place it, route PIRQs 10,10,11,11, enable I/O decoding.
    m.write(5, 0, 0x10, 0xFFFFFFFF)
    assert m.read(5, 0, 0x10) == 0xFFFFFFE1
    m.write(5, 0, 0x10, 0xC000)
    for pirq, irq in enumerate((10, 10, 11, 11)):
        m.write(1, 0, 0x60 + pirq, irq, 1)
    m.write(5, 0, 0x3C, m.bus.irq_of(5), 1)
    m.write(5, 0, 0x04, 0x0001, 2)
    (region,) = m.mapped
    assert (region.kind, region.base, region.size) == ("io", 0xC000, 32)
    assert m.bus.irq_of(5) == 10  # INTA of slot 5 -> PIRQB -> IRQ 10

    io = region
    io.read(0x1F, 1)  # reset port, as ne2k-pci's probe
    io.write(0x1F, 0, 1)
    io.write(0x00, 0x21, 1)  # page 0, stop, abort DMA
    assert (io.read(0x0A, 1), io.read(0x0B, 1)) == (0x50, 0x43)  # RTL8029 ID bytes
    io.write(0x0E, 0x49, 1)  # DCR: word-wide, loopback off, FIFO 8
    io.write(0x0D, 0x00, 1)  # TCR: normal
    io.write(0x07, 0xFF, 1)  # clear ISR
    io.write(0x0F, 0x3F, 1)  # IMR: everything
    io.write(0x00, 0x22, 1)  # start
    io.write(0x04, 0x40, 1)  # TPSR
    io.write(0x05, 60, 1)
    io.write(0x06, 0, 1)
    io.write(0x00, 0x26, 1)  # TXP
    assert len(sent) == 1 and len(sent[0]) == 60
    assert m.lines == {10: 1}  # PTX interrupt on the shared-level line
    io.write(0x07, 0xFF, 1)  # acknowledge
    assert m.lines == {10: 0}


def test_bus_state_round_trip_with_the_card_hosted(pci_machine):
    card, _ = _card()
    pci_machine.bus.add_device(card.pci_function())
    pci_machine.write(5, 0, 0x10, 0xC100)
    pci_machine.write(5, 0, 0x04, 0x0001, 2)
    state = pci_machine.bus.save_state()
    pci_machine.write(5, 0, 0x10, 0xC200)
    pci_machine.bus.restore_state(state)
    assert [(r.kind, r.base) for r in pci_machine.mapped] == [("io", 0xC100)]


def test_rtl8029_with_debians_ipxe_rom_maps_a_rom_seabios_accepts(pci_machine):
    import pathlib

    path = pathlib.Path("/usr/lib/ipxe/qemu/pxe-ne2k_pci.rom")
    if not path.exists():
        pytest.skip(f"{path} not installed (Debian package ipxe-qemu)")
    card, _ = _card(rom=path.read_bytes())
    function = card.pci_function()
    assert [f for f in conformance.check_function(function)
            if f.severity == conformance.ERROR] == []
    m = pci_machine
    m.bus.add_device(function)
    # SeaBIOS map_pcirom: size the ROM BAR, place it, enable it with memory decoding.
    m.write(5, 0, 0x30, 0xFFFFFFFE)
    size = (~m.read(5, 0, 0x30) & 0xFFFFFFFF) + 1
    assert size >= len(path.read_bytes()) and size & (size - 1) == 0
    m.write(5, 0, 0x30, 0xFEB00000 | 1)
    m.write(5, 0, 0x04, 0x0002, 2)
    (rom,) = [r for r in m.mapped if r.kind == "rom"]
    assert rom.read(0, 2) == 0xAA55
    pcir = rom.read(0x18, 2)
    assert rom.read(pcir, 4) == int.from_bytes(b"PCIR", "little")
    assert (rom.read(pcir + 4, 2), rom.read(pcir + 6, 2)) == (0x10EC, 0x8029)
    length = rom.read(2, 1) * 512
    assert sum(rom.data[:length]) & 0xFF == 0

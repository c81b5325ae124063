"""BARs, the ROM BAR and decoding (PCI 3.0 6.2.5: sizing with all ones, type bits read-only,
decoding follows command register bits 0 and 1; 6.3.1: expansion ROM BAR)."""

from __future__ import annotations

import pathlib

import pytest

from pyv86.pci import Bar, DataFunction, config_header, patch_rom_ids, rom_images
from pyv86.pci.conformance import ERROR, check_function

DEBIAN_IPXE = pathlib.Path("/usr/lib/ipxe/qemu")


class _Odd:
    """A function whose attributes are of the wrong type."""

    def __init__(self, config=None, rom=None):
        self.config = config if config is not None else bytes(config_header(1, 2, 0x020000))
        self.write_mask = bytes(256)
        self.bars = ()
        self.rom = rom

    def bar_read(self, index, offset, size):
        return 0

    def bar_write(self, index, offset, value, size):
        pass


@pytest.fixture
def multi(machine, make_device):
    """A function with an I/O BAR0, a prefetchable 4 KiB BAR1 and a 16-byte BAR3."""
    device = make_device(bars=[Bar(0, "io", 32), Bar(1, "mem", 4096, prefetchable=True),
                               Bar(3, "mem", 16)])
    machine.bus.add_device(device, slot=6)
    return device


def test_sizing_reads_back_the_size_mask_and_type_bits(machine, multi):
    for reg, want in ((0x10, 0xFFFFFFE1), (0x14, 0xFFFFF008), (0x1C, 0xFFFFFFF0)):
        machine.write(6, 0, reg, 0xFFFFFFFF)
        assert machine.read(6, 0, reg) == want


@pytest.mark.parametrize("reg", [0x18, 0x20, 0x24])
def test_unimplemented_bars_are_hardwired_to_zero(machine, multi, reg):
    machine.write(6, 0, reg, 0xFFFFFFFF)
    assert machine.read(6, 0, reg) == 0


def test_type_bits_are_read_only(machine, multi):
    machine.write(6, 0, 0x10, 0)
    machine.write(6, 0, 0x14, 0)
    assert machine.read(6, 0, 0x10) == 0x1  # I/O space indicator
    assert machine.read(6, 0, 0x14) == 0x8  # prefetchable, 32-bit


def test_relocation_drops_address_bits_below_the_size(machine, multi):
    machine.write(6, 0, 0x10, 0xC0F3)
    machine.write(6, 0, 0x14, 0xFEB01234)
    assert machine.read(6, 0, 0x10) == 0xC0E1
    assert machine.read(6, 0, 0x14) == 0xFEB01008


def test_io_bar_upper_bits_are_writable_as_seabios_sizing_needs(machine, multi):
    # SeaBIOS computes the size as ~(val & ~3) + 1 in 64 bits: upper 16 bits must read 1.
    machine.write(6, 0, 0x10, 0xFFFFFFFF)
    assert machine.read(6, 0, 0x10) >> 16 == 0xFFFF


def test_decoding_follows_command_bits_and_maps_each_kind(machine, multi):
    machine.write(6, 0, 0x10, 0xC000)
    machine.write(6, 0, 0x14, 0xFEB00000)
    machine.write(6, 0, 0x1C, 0xFEB01000)
    assert machine.events == []
    machine.write(6, 0, 0x04, 0x0001, 2)
    assert machine.events == [("map", "io", 0xC000, 32, 0)]
    machine.write(6, 0, 0x04, 0x0003, 2)
    assert machine.events[1:] == [("map", "mem", 0xFEB00000, 4096, 1),
                                  ("map", "mem", 0xFEB01000, 16, 3)]
    assert [r.prefetchable for r in machine.mapped] == [False, True, False]
    machine.events.clear()
    machine.write(6, 0, 0x04, 0x0000, 2)
    assert sorted(e[:2] for e in machine.events) == [("unmap", "io"), ("unmap", "mem"),
                                                     ("unmap", "mem")]
    assert machine.mapped == []


def test_moving_a_decoding_bar_unmaps_then_maps_and_rewriting_it_does_nothing(machine, multi):
    machine.write(6, 0, 0x10, 0xC000)
    machine.write(6, 0, 0x04, 0x0001, 2)
    machine.events.clear()
    machine.write(6, 0, 0x10, 0xC000)
    assert machine.events == []
    machine.write(6, 0, 0x10, 0xD000)
    assert machine.events == [("unmap", "io", 0xC000, 32, 0), ("map", "io", 0xD000, 32, 0)]


def test_sizing_while_decoding_unmaps_and_restoring_maps_again(machine, multi):
    # Guests that size with decoding on (as QEMU, a BAR at all ones decodes nothing).
    machine.write(6, 0, 0x14, 0xFEB00000)
    machine.write(6, 0, 0x04, 0x0002, 2)
    machine.events.clear()
    machine.write(6, 0, 0x14, 0xFFFFFFFF)
    assert machine.events == [("unmap", "mem", 0xFEB00000, 4096, 1)]
    machine.write(6, 0, 0x14, 0xFEB00000)
    assert machine.events[-1] == ("map", "mem", 0xFEB00000, 4096, 1)


def test_bars_at_zero_or_beyond_the_port_space_do_not_decode(machine, multi):
    machine.write(6, 0, 0x04, 0x0003, 2)
    assert machine.events == []  # all BARs at 0
    machine.write(6, 0, 0x10, 0x10000)
    assert machine.events == []  # I/O above 64 KiB: no x86 port reaches it
    machine.write(6, 0, 0x10, 0xFFE0)
    assert machine.events == [("map", "io", 0xFFE0, 32, 0)]


def test_region_access_reaches_the_function_with_index_and_offset(machine, make_device):
    calls = []
    device = make_device(bar_read=lambda i, off, size: calls.append((i, off, size)) or 0x42)
    device._bar_write = lambda i, off, value, size: calls.append((i, off, value, size))
    machine.bus.add_device(device, slot=8)
    machine.write(8, 0, 0x10, 0xC100)
    machine.write(8, 0, 0x04, 0x0001, 2)
    (region,) = machine.mapped
    assert region.read(0x10, 2) == 0x42
    region.write(0x1F, 0xAB, 1)
    assert calls == [(0, 0x10, 2), (0, 0x1F, 0xAB, 1)]
    assert (region.slot, region.fn, region.bar, region.end) == (8, 0, 0, 0xC120)


def test_command_decode_bits_are_writable_only_for_present_bar_kinds(machine, make_device):
    machine.bus.add_device(make_device(bars=[Bar(0, "io", 32)]), slot=8)
    machine.write(8, 0, 0x04, 0xFFFF, 2)
    command = machine.read(8, 0, 0x04, 2)
    assert command & 0x1 and not command & 0x2  # no memory BAR, no ROM
    assert command & 0xF800 == 0  # reserved


def test_status_error_bits_are_write_one_to_clear_and_others_read_only(machine, nic):
    space = machine.bus._spaces[5 << 3]  # set the error bits as the hardware would
    space.cfg[7] |= 0xF9
    space.cfg[6] |= 0x10  # capabilities list: read-only
    machine.write(5, 0, 0x06, 0x2100, 2)  # clear master abort and parity error
    assert machine.read(5, 0, 0x06, 2) == 0xD810
    machine.write(5, 0, 0x06, 0x0000, 2)
    assert machine.read(5, 0, 0x06, 2) == 0xD810


def test_rom_bar_sizes_enables_and_decodes_only_with_memory_space(machine, make_device,
                                                                   make_rom):
    rom = make_rom(0x10EC, 0x8029, size=3 * 512)
    machine.bus.add_device(make_device(rom=rom), slot=8)
    machine.write(8, 0, 0x30, 0xFFFFF800)  # SeaBIOS's sizing pattern
    assert machine.read(8, 0, 0x30) == 0xFFFFF800  # 2 KiB, enable bit clear
    machine.write(8, 0, 0x30, 0xFFFFFFFF)
    assert machine.read(8, 0, 0x30) == 0xFFFFF801  # bits 10:1 reserved
    machine.write(8, 0, 0x30, 0xFEBC0001)
    assert machine.events == []  # memory space still disabled
    machine.write(8, 0, 0x04, 0x0002, 2)
    assert machine.events == [("map", "rom", 0xFEBC0000, 2048, 6)]
    (region,) = machine.mapped
    assert region.read(0, 2) == 0xAA55
    assert region.data[:len(rom)] == rom and region.data[len(rom):] == b"\xff" * (2048 - len(rom))
    assert region.read(2047, 2) == 0xFFFF  # beyond the region: all ones
    machine.write(8, 0, 0x30, 0xFEBC0000)
    assert machine.events[-1] == ("unmap", "rom", 0xFEBC0000, 2048, 6)


def test_rom_bar_size_is_the_next_power_of_two_of_the_image(machine, make_device):
    machine.bus.add_device(make_device(rom=b"\x55\xaa" + bytes(40000)), slot=8)
    machine.write(8, 0, 0x30, 0xFFFFF800)
    assert machine.read(8, 0, 0x30) == 0xFFFF0000  # 64 KiB


def test_no_rom_means_a_hardwired_zero_rom_bar(machine, nic):
    machine.write(5, 0, 0x30, 0xFFFFFFFF)
    assert machine.read(5, 0, 0x30) == 0


def test_zero_pcir_ids_are_patched_and_the_checksum_kept(machine, make_device, make_rom):
    # Debian's iPXE ROMs carry 0000:0000 in their PCIR; SeaBIOS would skip them.
    rom = make_rom(0, 0)
    machine.bus.add_device(make_device(rom=rom), slot=8)
    patched = machine.bus.rom_image(8)
    (image,) = rom_images(patched)
    assert (image.vendor_id, image.device_id) == (0x10EC, 0x8029)
    assert sum(patched[:image.length]) & 0xFF == 0
    assert patched[6] != rom[6]  # the compensation is in iPXE's checksum byte


def test_rom_patching_can_be_switched_off_per_device_or_per_bus(new_machine, make_device,
                                                                make_rom):
    rom = make_rom(0, 0)
    m = new_machine(patch_rom_ids=False)
    m.bus.add_device(make_device(rom=rom), slot=8)
    m.bus.add_device(make_device(rom=rom), slot=9, patch_rom_ids=True)
    assert m.bus.rom_image(8)[:len(rom)] == rom
    assert rom_images(m.bus.rom_image(9))[0].vendor_id == 0x10EC


def test_patching_covers_every_x86_image_and_leaves_efi_images_as_built(make_rom):
    efi = make_rom(0xFFF3, 0, size=512, code_type=3, checksum=False)
    rom = make_rom(0, 0, size=1024, more=make_rom(0, 0, size=512, more=efi))
    images = rom_images(rom)
    assert [i.code_type for i in images] == [0, 0, 3]
    patched = patch_rom_ids(rom, 0x10EC, 0x8029)
    x86_a, x86_b, efi_image = rom_images(patched)
    assert all((i.vendor_id, i.device_id) == (0x10EC, 0x8029) for i in (x86_a, x86_b))
    assert sum(patched[:1024]) & 0xFF == 0 and sum(patched[1024:1536]) & 0xFF == 0
    assert patched[1536:] == efi  # the EFI image is byte for byte as built
    assert (efi_image.vendor_id, efi_image.device_id) == (0xFFF3, 0)


def test_matching_or_malformed_roms_are_left_alone(make_rom):
    good = make_rom(0x10EC, 0x8029)
    assert patch_rom_ids(good, 0x10EC, 0x8029) == good
    for junk in (b"", b"\x55", b"\x55\xaa" + bytes(30), b"\x00" * 64,
                 b"\x55\xaa\x01" + bytes(21) + b"\xff\xff" + bytes(100)):
        assert patch_rom_ids(junk, 0x10EC, 0x8029) == junk


@pytest.mark.parametrize("bars, message", [
    ([Bar(0, "io", 24)], "power of two"),
    ([Bar(0, "io", 512)], "4-256"),
    ([Bar(0, "mem", 8)], "16 bytes"),
    ([Bar(0, "mem", 1 << 31)], "1 GiB"),
    ([Bar(6, "mem", 4096)], "0-5"),
    ([Bar(0, "io", 32), Bar(0, "mem", 4096)], "twice"),
    ([Bar(0, "dma", 32)], "'io' or 'mem'"),
    ([Bar(0, "io", 32, prefetchable=True)], "prefetchable"),
])
def test_malformed_bar_descriptions_are_refused_clearly(machine, make_device, bars, message):
    with pytest.raises(ValueError, match=message):
        machine.bus.add_device(make_device(bars=bars), slot=8)
    assert machine.read(8, 0, 0) == 0xFFFFFFFF


def test_bad_hosting_requests_are_refused_clearly(machine, make_device):
    with pytest.raises(ValueError, match="slot 0"):
        machine.bus.add_device(make_device(), slot=0)
    with pytest.raises(ValueError, match="occupied"):
        machine.bus.add_device(make_device(), slot=1)
    with pytest.raises(ValueError, match="function 0 of slot 9"):
        machine.bus.add_device(make_device(), slot=9, fn=1)
    with pytest.raises(ValueError, match="0-31"):
        machine.bus.add_device(make_device(), slot=32)
    with pytest.raises(ValueError, match="0-7"):
        machine.bus.add_device(make_device(), slot=9, fn=8)
    with pytest.raises(ValueError, match="interrupt pin"):
        machine.bus.add_device(make_device(pin=5), slot=9)
    bridge_cfg = config_header(0x8086, 0x244E, 0x060400, header_type=1)
    with pytest.raises(ValueError, match="header type 0"):
        machine.bus.add_device(DataFunction(bridge_cfg, bytes(256)), slot=9)
    with pytest.raises(ValueError, match="256 bytes"):
        machine.bus.add_device(DataFunction(bytes(64), bytes(256)), slot=9)
    with pytest.raises(TypeError, match="lacks"):
        machine.bus.add_device(object(), slot=9)
    with pytest.raises(ValueError, match="config must be bytes"):
        machine.bus.add_device(_Odd(config="x" * 256), slot=9)
    with pytest.raises(ValueError, match="rom must be bytes"):
        machine.bus.add_device(_Odd(rom=12), slot=9)
    assert machine.read(9, 0, 0) == 0xFFFFFFFF


def test_read_only_header_registers_ignore_a_permissive_write_mask(machine, make_device):
    device = make_device(mask=b"\xff" * 256)
    machine.bus.add_device(device, slot=8)
    header = [machine.read(8, 0, reg) for reg in range(0, 0x40, 4)]
    for reg in range(0, 0x40, 4):
        machine.write(8, 0, reg, 0)
    assert machine.read(8, 0, 0x00) == header[0]  # IDs
    assert machine.read(8, 0, 0x08) == header[2]  # revision, class
    assert machine.read(8, 0, 0x0C) >> 16 == header[3] >> 16  # header type, BIST
    assert machine.read(8, 0, 0x2C) == header[11]  # subsystem IDs
    assert machine.read(8, 0, 0x3C) >> 8 == header[15] >> 8  # pin, Min_Gnt, Max_Lat


def test_a_memory_bar_ending_at_the_top_of_4_gib_does_not_decode(machine, multi):
    # As QEMU: the all-ones sizing value with decoding on must not map over the BIOS.
    machine.write(6, 0, 0x04, 0x0002, 2)
    machine.write(6, 0, 0x14, 0xFFFFF000)
    assert machine.events == []
    machine.write(6, 0, 0x14, 0xFFFFE000)
    assert machine.events == [("map", "mem", 0xFFFFE000, 4096, 1)]


@pytest.mark.parametrize("name", ["pxe-ne2k_pci.rom", "efi-ne2k_pci.rom"])
def test_debian_ipxe_ne2k_roms_are_patched_for_the_rtl8029(make_device, name):
    path = DEBIAN_IPXE / name
    if not path.exists():
        pytest.skip(f"{path} not installed (Debian package ipxe-qemu)")
    rom = path.read_bytes()
    images = rom_images(rom)
    assert (images[0].code_type, images[0].vendor_id, images[0].device_id) == (0, 0, 0)
    patched = patch_rom_ids(rom, 0x10EC, 0x8029)
    first = rom_images(patched)[0]
    assert (first.vendor_id, first.device_id) == (0x10EC, 0x8029)
    assert sum(patched[:first.length]) & 0xFF == 0  # SeaBIOS checks this before running it
    assert patched[first.length:] == rom[first.length:]
    findings = check_function(make_device(rom=rom))
    assert [f for f in findings if f.severity == ERROR] == []

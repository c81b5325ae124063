"""The Linux x86 boot protocol's 32-bit entry (Documentation/arch/x86/boot.rst) and ELF."""

import struct

import pytest
from _images import bzimage, elf

from pyv86.machine.loader import (
    BOOT_PARAMS,
    KernelImageError,
    load_bzimage,
    load_elf,
    parse_setup_header,
)
from pyv86.machine.memory import PhysicalMemory

MiB = 1 << 20


def zero_page(mem):
    return mem.read_bytes(BOOT_PARAMS, 4096)


def test_bzimage_protected_mode_part_goes_to_1mib_and_header_is_copied():
    mem = PhysicalMemory(32 * MiB)
    img = bzimage(b"\x90\x90\xf4")
    st = load_bzimage(mem, img, cmdline="console=ttyS0")
    assert st.entry == 0x100000 and st.protocol == 0x020F
    assert mem.read_bytes(0x100000, 3) == b"\x90\x90\xf4"
    zp = zero_page(mem)
    assert zp[0x202:0x206] == b"HdrS"
    assert zp[0x210] == 0xFF  # type_of_loader
    assert zp[0x211] & 0x01  # LOADED_HIGH
    assert not zp[0x211] & 0x40  # KEEP_SEGMENTS clear: the kernel loads its own
    cmd_ptr = struct.unpack_from("<I", zp, 0x228)[0]
    assert mem.read_bytes(cmd_ptr, 14) == b"console=ttyS0\0"


def test_e820_map_reports_low_ram_holes_and_high_ram():
    mem = PhysicalMemory(32 * MiB)
    load_bzimage(mem, bzimage())
    zp = zero_page(mem)
    n = zp[0x1E8]
    entries = [struct.unpack_from("<QQI", zp, 0x2D0 + 20 * i) for i in range(n)]
    assert (0, 0x9FC00, 1) in entries
    assert (0x100000, 31 * MiB, 1) in entries
    ram = [e for e in entries if e[2] == 1]
    assert all(not (e[0] < 0x100000 and e[0] + e[1] > 0xA0000) for e in ram)  # no RAM over the hole


def test_initrd_is_page_aligned_below_the_top_and_announced():
    mem = PhysicalMemory(32 * MiB)
    rd = bytes(range(256)) * 40
    st = load_bzimage(mem, bzimage(), initrd=rd)
    start, size = st.initrd_range
    assert start % 4096 == 0 and start + size <= 32 * MiB
    zp = zero_page(mem)
    assert struct.unpack_from("<II", zp, 0x218) == (start, size)
    assert mem.read_bytes(start, size) == rd


def test_initrd_respects_initrd_addr_max():
    mem = PhysicalMemory(64 * MiB)
    img = bytearray(bzimage())
    struct.pack_into("<I", img, 0x22C, 16 * MiB - 1)
    st = load_bzimage(mem, bytes(img), initrd=b"x" * 5000)
    assert st.initrd_range[0] + 5000 <= 16 * MiB


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b[:0x300], "only"),
    (lambda b: b"\x7fELF" + b[4:], "ELF"),
    (lambda b: b[:0x1FE] + b"\0\0" + b[0x200:], "0xAA55"),
    (lambda b: b[:0x202] + b"XXXX" + b[0x206:], "HdrS"),
    (lambda b: b[:0x206] + b"\x01\x02" + b[0x208:], "too old"),
    (lambda b: b[:0x211] + b"\x00" + b[0x212:], "zImage"),
    (lambda b: b[:1024], "truncated"),
])
def test_bad_bzimages_are_refused_with_a_reason(mutate, message):
    with pytest.raises(KernelImageError, match=message):
        parse_setup_header(mutate(bzimage()))


def test_kernel_too_big_for_memory_is_refused():
    mem = PhysicalMemory(16 * MiB)
    with pytest.raises(KernelImageError, match="MiB"):
        load_bzimage(mem, bzimage(init_size=32 * MiB))


def test_initrd_that_does_not_fit_is_refused():
    mem = PhysicalMemory(16 * MiB)
    with pytest.raises(KernelImageError, match="initrd"):
        load_bzimage(mem, bzimage(), initrd=bytes(16 * MiB))


def test_overlong_command_line_is_refused():
    mem = PhysicalMemory(16 * MiB)
    with pytest.raises(KernelImageError, match="command line"):
        load_bzimage(mem, bzimage(), cmdline="x" * 3000)


def test_elf_is_loaded_by_physical_address_with_bss_zeroed_and_virtual_entry_mapped():
    mem = PhysicalMemory(32 * MiB)
    mem.ram[0x200000 + 100:0x200000 + 200] = b"\xaa" * 100
    st = load_elf(mem, elf(b"\xf4" * 10, bss=0x100))
    assert st.entry == 0x200000
    assert mem.read_bytes(0x200000, 10) == b"\xf4" * 10
    assert mem.read_bytes(0x200000 + 100, 100) == bytes(100)
    zp = zero_page(mem)
    assert zp[0x202:0x206] == b"HdrS" and zp[0x210] == 0xFF


@pytest.mark.parametrize("kw, message", [
    ({"cls": 2}, "32-bit"),
    ({"machine": 62}, "i386"),
    ({"paddr": 0x80000, "vaddr": 0x80000}, "below 1 MiB"),
    ({"paddr": 40 * MiB, "vaddr": 40 * MiB}, "does not fit"),
])
def test_bad_elf_kernels_are_refused(kw, message):
    with pytest.raises(KernelImageError, match=message):
        load_elf(PhysicalMemory(32 * MiB), elf(**kw))

"""Boot Linux without firmware: the x86 boot protocol's 32-bit entry, or an ELF ``vmlinux``.

Follows Documentation/arch/x86/boot.rst ("32-bit boot protocol"): the protected-mode part of
a bzImage goes to 1 MiB, a zero page (``struct boot_params``) receives a copy of the kernel's
setup header plus an e820 map, the command line and the initrd location, and the CPU enters
``code32_start`` in flat protected mode with ``__BOOT_CS`` (0x10) and ``__BOOT_DS`` (0x18)
loaded, interrupts off, ESI pointing at the zero page.

An uncompressed ELF ``vmlinux`` is loaded by its program headers (physical addresses) and
entered the same way, skipping the decompressor.

Everything here works on bytes and a :class:`~pyv86.machine.memory.PhysicalMemory`; the CPU
state to set is returned as a :class:`BootState` for :func:`enter` to apply.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import List, Optional, Tuple

from .memory import PhysicalMemory

__all__ = [
    "BOOT_PARAMS",
    "BootState",
    "E820Entry",
    "KernelImageError",
    "e820_map",
    "enter",
    "load_bzimage",
    "load_elf",
    "load_kernel",
    "parse_setup_header",
]

MiB = 1 << 20
BOOT_PARAMS = 0x10000  # the zero page
CMDLINE_ADDR = 0x20000
GDT_ADDR = 0x30000
BOOT_STACK = 0x9000
KERNEL_LOW = 0x100000
MIN_PROTOCOL = 0x0203  # initrd_addr_max appeared in 2.03
E820_RAM, E820_RESERVED = 1, 2
LOADED_HIGH = 0x01
KEEP_SEGMENTS = 0x40
BOOT_CS, BOOT_DS = 0x10, 0x18
# flat 4 GiB segments: access byte | (flags nibble << 8), flags G=1 D/B=1
ATTR_CODE = 0x9A | (0xC0 << 8)
ATTR_DATA = 0x92 | (0xC0 << 8)


class KernelImageError(ValueError):
    """The kernel (or initrd) cannot be booted; the message says why."""


@dataclasses.dataclass(frozen=True)
class E820Entry:
    addr: int
    size: int
    type: int


@dataclasses.dataclass
class BootState:
    """What the CPU must hold at the kernel's 32-bit entry."""

    entry: int
    boot_params: int = BOOT_PARAMS
    gdt_base: int = GDT_ADDR
    gdt_limit: int = 4 * 8 - 1
    kind: str = "bzImage"
    protocol: int = 0
    kernel_range: Tuple[int, int] = (0, 0)
    initrd_range: Optional[Tuple[int, int]] = None


@dataclasses.dataclass(frozen=True)
class SetupHeader:
    setup_sects: int
    version: int
    loadflags: int
    code32_start: int
    initrd_addr_max: int
    cmdline_size: int
    pref_address: int
    init_size: int
    kernel_alignment: int
    relocatable: bool
    header_end: int  # one past the last header byte in the file (0x202 + jump offset)


def parse_setup_header(image: bytes) -> SetupHeader:
    """Check and decode a bzImage's setup header; KernelImageError on anything unusable."""
    if len(image) < 0x400:
        raise KernelImageError(f"not a bzImage: only {len(image)} bytes")
    if image[:4] == b"\x7fELF":
        raise KernelImageError("this is an ELF file (a vmlinux?), not a bzImage: pass it as "
                               "vmlinux= / --vmlinux")
    if image[0x1FE:0x200] != b"\x55\xaa":
        raise KernelImageError("not a bzImage: no boot sector signature 0xAA55 at 0x1FE")
    if image[0x202:0x206] != b"HdrS":
        raise KernelImageError("not a bzImage: no 'HdrS' setup header (a pre-2.0 zImage?)")
    version = struct.unpack_from("<H", image, 0x206)[0]
    if version < MIN_PROTOCOL:
        raise KernelImageError(
            f"boot protocol {version >> 8}.{version & 0xFF:02d} is too old; "
            f"at least {MIN_PROTOCOL >> 8}.{MIN_PROTOCOL & 0xFF:02d} is needed")
    loadflags = image[0x211]
    if not loadflags & LOADED_HIGH:
        raise KernelImageError("a zImage (loaded low) is not supported: build a bzImage")
    setup_sects = image[0x1F1] or 4
    header_end = 0x202 + image[0x201]
    cmdline_size = (struct.unpack_from("<I", image, 0x238)[0] if version >= 0x0206 else 0) or 255
    relocatable = bool(image[0x234]) if version >= 0x0205 else False
    kernel_alignment = struct.unpack_from("<I", image, 0x230)[0] if version >= 0x0205 else 0
    pref_address = struct.unpack_from("<Q", image, 0x258)[0] if version >= 0x020A else KERNEL_LOW
    init_size = struct.unpack_from("<I", image, 0x260)[0] if version >= 0x020A else 0
    if (setup_sects + 1) * 512 >= len(image):
        raise KernelImageError("bzImage is truncated: no protected-mode kernel after the setup")
    return SetupHeader(
        setup_sects=setup_sects,
        version=version,
        loadflags=loadflags,
        code32_start=struct.unpack_from("<I", image, 0x214)[0],
        initrd_addr_max=struct.unpack_from("<I", image, 0x22C)[0],
        cmdline_size=cmdline_size,
        pref_address=pref_address,
        init_size=init_size,
        kernel_alignment=kernel_alignment,
        relocatable=relocatable,
        header_end=min(header_end, 0x290),
    )


def e820_map(memory_size: int) -> List[E820Entry]:
    """The map a PC BIOS reports: low RAM, EBDA and BIOS area reserved, RAM from 1 MiB."""
    return [
        E820Entry(0, 0x9FC00, E820_RAM),
        E820Entry(0x9FC00, 0x400, E820_RESERVED),
        E820Entry(0xF0000, 0x10000, E820_RESERVED),
        E820Entry(KERNEL_LOW, memory_size - KERNEL_LOW, E820_RAM),
    ]


def _place_initrd(mem: PhysicalMemory, initrd: bytes, limit: int, kernel_end: int
                  ) -> Tuple[int, int]:
    top = min(limit + 1, mem.size) & ~0xFFF
    start = (top - len(initrd)) & ~0xFFF
    if start < kernel_end:
        raise KernelImageError(
            f"initrd of {len(initrd)} bytes does not fit between the kernel (ends at "
            f"{kernel_end:#x}) and {top:#x}: give the machine more memory")
    mem.load(start, initrd)
    return start, len(initrd)


def _write_zero_page(mem: PhysicalMemory, header_bytes: bytes, header_start: int,
                     cmdline: str, cmdline_max: int, initrd: Optional[Tuple[int, int]]) -> None:
    zp = bytearray(4096)
    zp[header_start:header_start + len(header_bytes)] = header_bytes
    # struct setup_header fields as the loader fills them
    zp[0x210] = 0xFF  # type_of_loader: undefined/other
    zp[0x211] = (zp[0x211] | LOADED_HIGH) & ~KEEP_SEGMENTS & 0xFF
    cmd = cmdline.encode()
    if b"\0" in cmd:
        raise KernelImageError("the command line contains a NUL byte")
    if len(cmd) > cmdline_max:
        raise KernelImageError(
            f"command line of {len(cmd)} bytes is longer than the kernel's {cmdline_max}")
    mem.load(CMDLINE_ADDR, cmd + b"\0")
    struct.pack_into("<I", zp, 0x228, CMDLINE_ADDR)
    if initrd is not None:
        struct.pack_into("<II", zp, 0x218, initrd[0], initrd[1])
    # screen_info: no VGA text console is advertised (orig_video_isVGA = 0)
    # e820 table
    entries = e820_map(mem.size)
    zp[0x1E8] = len(entries)
    for i, e in enumerate(entries):
        struct.pack_into("<QQI", zp, 0x2D0 + 20 * i, e.addr, e.size, e.type)
    # legacy memory fields
    struct.pack_into("<H", zp, 0x002, min((mem.size - MiB) // 1024, 0xFFFF))  # ext_mem_k
    struct.pack_into("<I", zp, 0x1E0, (mem.size - MiB) // 1024)  # alt_mem_k
    mem.load(BOOT_PARAMS, bytes(zp))


def _write_gdt(mem: PhysicalMemory) -> None:
    gdt = struct.pack("<QQQQ", 0, 0, 0x00CF9A000000FFFF, 0x00CF92000000FFFF)
    mem.load(GDT_ADDR, gdt)


def load_bzimage(mem: PhysicalMemory, image: bytes, *, cmdline: str = "",
                 initrd: Optional[bytes] = None) -> BootState:
    """Load a bzImage (and initrd) into ``mem``; return the CPU state for the 32-bit entry."""
    hdr = parse_setup_header(image)
    pm = image[(hdr.setup_sects + 1) * 512:]
    kernel_end = KERNEL_LOW + len(pm)
    # the decompressor needs init_size bytes from where the kernel finally runs
    run_at = hdr.pref_address if hdr.pref_address >= KERNEL_LOW else KERNEL_LOW
    need_end = max(kernel_end, run_at + hdr.init_size)
    if need_end > mem.size:
        raise KernelImageError(
            f"kernel needs memory up to {need_end:#x} ({-(-need_end // MiB)} MiB) but the "
            f"machine has {mem.size // MiB} MiB")
    mem.load(KERNEL_LOW, pm)
    rd = None
    if initrd is not None:
        limit = hdr.initrd_addr_max or 0x37FFFFFF
        rd = _place_initrd(mem, initrd, limit, need_end)
    _write_zero_page(mem, image[0x1F1:hdr.header_end], 0x1F1, cmdline,
                     max(0, hdr.cmdline_size), rd)
    _write_gdt(mem)
    return BootState(entry=hdr.code32_start or KERNEL_LOW, kind="bzImage",
                     protocol=hdr.version, kernel_range=(KERNEL_LOW, kernel_end),
                     initrd_range=rd)


def load_elf(mem: PhysicalMemory, image: bytes, *, cmdline: str = "",
             initrd: Optional[bytes] = None) -> BootState:
    """Load an uncompressed 32-bit ELF kernel (``vmlinux``) by physical address."""
    if len(image) < 52 or image[:4] != b"\x7fELF":
        raise KernelImageError("not an ELF file")
    if image[4] != 1 or image[5] != 1:
        raise KernelImageError("not a 32-bit little-endian ELF (an x86-64 vmlinux?)")
    e_type, e_machine = struct.unpack_from("<HH", image, 16)
    if e_machine != 3:
        raise KernelImageError(f"ELF machine {e_machine} is not i386 (3)")
    if e_type != 2:
        raise KernelImageError(f"ELF type {e_type} is not an executable")
    e_entry, e_phoff = struct.unpack_from("<II", image, 24)
    e_phentsize, e_phnum = struct.unpack_from("<HH", image, 42)
    if e_phentsize < 32 or e_phnum == 0 or e_phoff + e_phnum * e_phentsize > len(image):
        raise KernelImageError("ELF program headers are missing or truncated")
    lo, hi = 1 << 32, 0
    entry_phys = None
    segments = []
    for i in range(e_phnum):
        p_type, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz = struct.unpack_from(
            "<IIIIII", image, e_phoff + i * e_phentsize)
        if p_type != 1:  # PT_LOAD
            continue
        if p_filesz > p_memsz or p_offset + p_filesz > len(image):
            raise KernelImageError(f"ELF segment {i} is truncated or inconsistent")
        if p_paddr + p_memsz > mem.size:
            raise KernelImageError(
                f"ELF segment {i} at {p_paddr:#x}+{p_memsz:#x} does not fit in "
                f"{mem.size // MiB} MiB of memory")
        segments.append((p_offset, p_paddr, p_filesz, p_memsz))
        lo, hi = min(lo, p_paddr), max(hi, p_paddr + p_memsz)
        if p_paddr <= e_entry < p_paddr + p_memsz:
            entry_phys = e_entry
        elif p_vaddr <= e_entry < p_vaddr + p_memsz:
            entry_phys = e_entry - p_vaddr + p_paddr
    if not segments:
        raise KernelImageError("ELF file has no loadable segment")
    if entry_phys is None:
        raise KernelImageError(f"ELF entry point {e_entry:#x} lies in no loaded segment")
    if lo < KERNEL_LOW:
        raise KernelImageError(f"ELF loads below 1 MiB ({lo:#x}), over the boot data")
    for off, paddr, filesz, memsz in segments:
        mem.load(paddr, image[off:off + filesz])
        if memsz > filesz:
            mem.load(paddr + filesz, bytes(memsz - filesz))
    rd = _place_initrd(mem, initrd, 0x37FFFFFF, hi) if initrd is not None else None
    # a synthetic setup header: the kernel reads version, loadflags, cmdline and initrd
    hdr = bytearray(0x290 - 0x1F1)
    struct.pack_into("<H", hdr, 0x1FE - 0x1F1, 0xAA55)
    hdr[0x202 - 0x1F1:0x206 - 0x1F1] = b"HdrS"
    struct.pack_into("<H", hdr, 0x206 - 0x1F1, 0x020F)
    hdr[0x211 - 0x1F1] = LOADED_HIGH
    struct.pack_into("<I", hdr, 0x214 - 0x1F1, entry_phys)
    struct.pack_into("<I", hdr, 0x22C - 0x1F1, 0x37FFFFFF)
    struct.pack_into("<I", hdr, 0x238 - 0x1F1, 2047)
    _write_zero_page(mem, bytes(hdr), 0x1F1, cmdline, 2047, rd)
    _write_gdt(mem)
    return BootState(entry=entry_phys, kind="vmlinux", protocol=0x020F,
                     kernel_range=(lo, hi), initrd_range=rd)


def load_kernel(mem: PhysicalMemory, image: bytes, **kw) -> BootState:
    """bzImage or ELF, by content."""
    if image[:4] == b"\x7fELF":
        return load_elf(mem, image, **kw)
    return load_bzimage(mem, image, **kw)


def enter(cpu, state: BootState) -> None:
    """Put the CPU at the kernel's 32-bit entry (flat protected mode, IF=0, ESI=zero page)."""
    cpu.gdtr_base = state.gdt_base
    cpu.gdtr_limit = state.gdt_limit
    cpu.idtr_base = 0
    cpu.idtr_limit = 0
    cpu.set_register("cr0", (cpu.get_register("cr0") | 1) & ~0x80000000 & 0xFFFFFFFF)
    for name in ("es", "ss", "ds", "fs", "gs"):
        cpu.set_segment(name, BOOT_DS, 0, 0xFFFFFFFF, ATTR_DATA)
    cpu.set_segment("cs", BOOT_CS, 0, 0xFFFFFFFF, ATTR_CODE)
    cpu.set_eflags(0x2)
    for reg in ("eax", "ecx", "edx", "ebx", "ebp", "edi"):
        cpu.set_register(reg, 0)
    cpu.set_register("esi", state.boot_params)
    cpu.set_register("esp", BOOT_STACK)
    cpu.set_register("eip", state.entry)
    cpu.halted = False
    cpu.flush_caches()

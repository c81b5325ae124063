"""Physical memory as the CPU contract describes it (docs/architecture.md).

``ram`` is a bytearray the CPU indexes directly on pages whose ``page_kind`` byte is
:data:`KIND_RAM` (0) or :data:`KIND_ROM` (1, writes dropped). Every other page goes through
:meth:`PhysicalMemory.read` / :meth:`PhysicalMemory.write`, which dispatch to memory-mapped
regions, to a ROM image, or read all ones when nothing is there.

The legacy area 0xA0000-0xBFFFF (VGA window) is never RAM. 0xC0000-0xFFFFF follows the
i440FX PAM registers: the host bridge calls :meth:`PhysicalMemory.set_pam` with, per segment,
whether reads and writes go to DRAM (the "shadow") or to the bus (a loaded BIOS image, else
nothing).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

__all__ = [
    "KIND_MMIO",
    "KIND_RAM",
    "KIND_ROM",
    "PAGE_SHIFT",
    "PAGE_SIZE",
    "MemoryRegion",
    "PhysicalMemory",
]

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
KIND_RAM = 0  # plain RAM: the CPU reads and writes ``ram`` directly
KIND_ROM = 1  # RAM-backed but read-only (shadow BIOS with PAM write disabled)
KIND_MMIO = 2  # everything else: ``read``/``write`` dispatch
PAGES_4G = 1 << (32 - PAGE_SHIFT)
VGA_START, VGA_END = 0xA0000, 0xC0000
LEGACY_START, LEGACY_END = 0xA0000, 0x100000
BIOS_START = 0xC0000
_ONES = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF, 8: 0xFFFFFFFFFFFFFFFF}

ReadFn = Callable[[int, int], int]
WriteFn = Callable[[int, int, int], None]


class MemoryRegion:
    """A memory-mapped range: ``read(offset, size)`` and ``write(offset, value, size)``."""

    __slots__ = ("length", "name", "read", "start", "write")

    def __init__(self, start: int, length: int, read: ReadFn, write: WriteFn, name: str = ""):
        self.start = start
        self.length = length
        self.read = read
        self.write = write
        self.name = name

    def __repr__(self) -> str:
        return f"MemoryRegion({self.name!r}, {self.start:#x}+{self.length:#x})"


class PhysicalMemory:
    """RAM of ``size`` bytes (a multiple of 4 KiB, at most 3.5 GiB) plus MMIO and ROM."""

    def __init__(self, size: int):
        if not isinstance(size, int) or size < 2 * 1024 * 1024:
            raise ValueError(f"memory size must be an int of at least 2 MiB, got {size!r}")
        if size % PAGE_SIZE:
            raise ValueError(f"memory size must be a multiple of 4 KiB, got {size:#x}")
        if size > 0xE0000000:
            raise ValueError(f"memory size {size:#x} overlaps the PCI hole at 0xE0000000")
        self.size = size
        self.ram = bytearray(size)
        self.page_kind = bytearray([KIND_MMIO]) * PAGES_4G
        self.page_kind[: size >> PAGE_SHIFT] = bytes(size >> PAGE_SHIFT)
        self._regions: List[MemoryRegion] = []
        self._page_regions: Dict[int, List[MemoryRegion]] = {}
        self.bios: Optional[bytes] = None  # image visible below 1 MiB when PAM reads the bus
        # PAM state per 16 KiB segment of 0xC0000-0xFFFFF: (read_dram, write_dram)
        self._pam: List[Tuple[bool, bool]] = [(False, False)] * 16
        self.cpu: Any = None  # set by the machine; used to invalidate decoded code
        self._apply_legacy(LEGACY_START, LEGACY_END)

    # -- the CPU's slow path ------------------------------------------------------------
    def read(self, addr: int, size: int) -> int:
        addr &= 0xFFFFFFFF
        end = addr + size - 1
        if (addr >> PAGE_SHIFT) != (end >> PAGE_SHIFT):  # straddles a page: byte by byte
            value = 0
            for i in range(size):
                value |= self.read((addr + i) & 0xFFFFFFFF, 1) << (8 * i)
            return value
        page = addr >> PAGE_SHIFT
        kind = self.page_kind[page]
        if kind != KIND_MMIO:
            return int.from_bytes(self.ram[addr:addr + size], "little")
        regions = self._page_regions.get(page)
        if regions:
            for r in regions:
                off = addr - r.start
                if 0 <= off and off + size <= r.length:
                    return r.read(off, size) & _ONES[size]
            if size > 1:  # partly covered: split
                value = 0
                for i in range(size):
                    value |= self.read(addr + i, 1) << (8 * i)
                return value
        if BIOS_START <= addr < LEGACY_END:
            return self._legacy_read(addr, size)
        return _ONES[size]

    def write(self, addr: int, value: int, size: int) -> None:
        addr &= 0xFFFFFFFF
        value &= _ONES[size]
        end = addr + size - 1
        if (addr >> PAGE_SHIFT) != (end >> PAGE_SHIFT):
            for i in range(size):
                self.write((addr + i) & 0xFFFFFFFF, (value >> (8 * i)) & 0xFF, 1)
            return
        page = addr >> PAGE_SHIFT
        kind = self.page_kind[page]
        if kind == KIND_RAM:
            self.ram[addr:addr + size] = value.to_bytes(size, "little")
            return
        if kind == KIND_ROM:
            return
        regions = self._page_regions.get(page)
        if regions:
            for r in regions:
                off = addr - r.start
                if 0 <= off and off + size <= r.length:
                    r.write(off, value, size)
                    return
            if size > 1:
                for i in range(size):
                    self.write(addr + i, (value >> (8 * i)) & 0xFF, 1)
                return
        if BIOS_START <= addr < LEGACY_END:
            self._legacy_write(addr, value, size)

    # -- bulk access for loaders and devices (physical, bypassing MMIO) ----------------
    def load(self, addr: int, data: bytes) -> None:
        """Copy ``data`` into RAM at ``addr`` (loader use); invalidates decoded code."""
        if addr < 0 or addr + len(data) > self.size:
            raise ValueError(
                f"{len(data)} bytes at {addr:#x} do not fit in {self.size >> 20} MiB of RAM")
        self.ram[addr:addr + len(data)] = data
        if self.cpu is not None:
            self.cpu.invalidate_code(addr, len(data))

    def read_bytes(self, addr: int, length: int) -> bytes:
        if addr < 0 or addr + length > self.size:
            raise ValueError(f"{length} bytes at {addr:#x} are outside RAM")
        return bytes(self.ram[addr:addr + length])

    # -- memory-mapped regions ----------------------------------------------------------
    def map_mmio(self, start: int, length: int, read: ReadFn, write: WriteFn,
                 name: str = "") -> MemoryRegion:
        """Map a region; its pages stop being RAM for the CPU while it is mapped."""
        if length <= 0 or start < 0 or start + length > 1 << 32:
            raise ValueError(f"bad MMIO range {start:#x}+{length:#x}")
        for r in self._regions:
            if start < r.start + r.length and r.start < start + length:
                raise ValueError(f"MMIO range {start:#x}+{length:#x} overlaps {r!r}")
        region = MemoryRegion(start, length, read, write, name)
        self._regions.append(region)
        for page in range(start >> PAGE_SHIFT, ((start + length - 1) >> PAGE_SHIFT) + 1):
            self._page_regions.setdefault(page, []).append(region)
            self.page_kind[page] = KIND_MMIO
        self._changed(start, length)
        return region

    def unmap_mmio(self, region: MemoryRegion) -> None:
        if region not in self._regions:
            raise ValueError(f"{region!r} is not mapped")
        self._regions.remove(region)
        first = region.start >> PAGE_SHIFT
        last = (region.start + region.length - 1) >> PAGE_SHIFT
        for page in range(first, last + 1):
            lst = self._page_regions.get(page, [])
            if region in lst:
                lst.remove(region)
            if not lst:
                self._page_regions.pop(page, None)
                self._restore_page_kind(page)
        self._changed(region.start, region.length)

    def regions(self) -> List[MemoryRegion]:
        return list(self._regions)

    # -- legacy area and PAM ------------------------------------------------------------
    def load_bios(self, image: bytes) -> None:
        """A firmware image: visible at the top of 4 GiB and, through PAM, below 1 MiB."""
        if len(image) not in (64 * 1024, 128 * 1024, 256 * 1024):
            raise ValueError(f"BIOS image must be 64, 128 or 256 KiB, got {len(image)} bytes")
        self.bios = bytes(image)
        top = (1 << 32) - len(image)
        self.map_mmio(top, len(image), self._bios_high_read, _ignore_write, "bios-high")
        self._apply_legacy(LEGACY_START, LEGACY_END)

    def _bios_high_read(self, off: int, size: int) -> int:
        assert self.bios is not None
        return int.from_bytes(self.bios[off:off + size], "little")

    def set_pam(self, start: int, length: int, read_dram: bool, write_dram: bool) -> None:
        """Host bridge callback: route reads/writes of a 0xC0000-0xFFFFF range."""
        if start < BIOS_START or start + length > LEGACY_END or length <= 0:
            raise ValueError(f"PAM range {start:#x}+{length:#x} is outside 0xC0000-0xFFFFF")
        for seg in range((start - BIOS_START) >> 14, ((start + length - 1 - BIOS_START) >> 14) + 1):
            self._pam[seg] = (bool(read_dram), bool(write_dram))
        self._apply_legacy(start, start + length)

    def pam_state(self) -> List[Tuple[bool, bool]]:
        return list(self._pam)

    def _legacy_kind(self, page: int) -> int:
        addr = page << PAGE_SHIFT
        if addr < BIOS_START or addr >= self.size:
            return KIND_MMIO
        rd, wr = self._pam[(addr - BIOS_START) >> 14]
        if rd and wr:
            return KIND_RAM
        if rd:
            return KIND_ROM
        return KIND_MMIO

    def _restore_page_kind(self, page: int) -> None:
        addr = page << PAGE_SHIFT
        if LEGACY_START <= addr < LEGACY_END:
            self.page_kind[page] = self._legacy_kind(page)
        elif addr < self.size:
            self.page_kind[page] = KIND_RAM
        else:
            self.page_kind[page] = KIND_MMIO

    def _apply_legacy(self, start: int, end: int) -> None:
        for page in range(start >> PAGE_SHIFT, end >> PAGE_SHIFT):
            if page in self._page_regions:
                continue
            self.page_kind[page] = self._legacy_kind(page)
        self._changed(start, end - start)

    def _changed(self, start: int, length: int) -> None:
        if self.cpu is not None:
            self.cpu.invalidate_code(start, length)

    # -- legacy area slow path (pages whose PAM segment reads the bus) ------------------
    def _legacy_read(self, addr: int, size: int) -> int:
        bios = self.bios
        if bios is not None:
            off = addr - (LEGACY_END - len(bios))
            if off >= 0:
                return int.from_bytes(bios[off:off + size], "little")
        return _ONES[size]

    def _legacy_write(self, addr: int, value: int, size: int) -> None:
        if addr < self.size and self._pam[(addr - BIOS_START) >> 14][1]:
            self.ram[addr:addr + size] = value.to_bytes(size, "little")

    # -- state --------------------------------------------------------------------------
    def save_state(self) -> dict:
        return {"version": 1, "size": self.size, "pam": [[r, w] for r, w in self._pam]}

    def restore_state(self, state: dict) -> None:
        if not isinstance(state, dict) or state.get("version") != 1:
            raise ValueError(f"memory state: unsupported version {state.get('version')!r}"
                             if isinstance(state, dict) else "memory state must be a dict")
        if state.get("size") != self.size:
            raise ValueError(f"memory state is for {state.get('size')!r} bytes, "
                             f"this machine has {self.size}")
        pam = state.get("pam")
        if not isinstance(pam, list) or len(pam) != 16:
            raise ValueError("memory state: 'pam' must be a list of 16 [read, write] pairs")
        self._pam = [(bool(p[0]), bool(p[1])) for p in pam]
        self._apply_legacy(LEGACY_START, LEGACY_END)


def _ignore_write(off: int, value: int, size: int) -> None:
    return None

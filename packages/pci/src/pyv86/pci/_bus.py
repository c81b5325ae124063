"""PCIBus: configuration mechanism #1, BAR decoding, PAM, PIRQ routing, state.

The bus sits behind I/O ports 0xCF8-0xCFF and reports everything the rest of the machine has
to do through callbacks given at construction (all optional, all plain callables):

- ``on_map(region)`` / ``on_unmap(region)``: a :class:`Region` (BAR or ROM) starts or stops
  decoding; ``on_unmap`` receives the very object ``on_map`` received.
- ``on_pam(start, length, read_ram, write_ram)``: a PAM segment of 0xC0000-0xFFFFF changed.
- ``irq_line(isa_irq, level)``: the PCI side of an ISA IRQ line changed level (shared level:
  high while any routed function asserts its pin).
- ``on_reset(reason)``: the guest wrote the reset control register 0xCF9 with RCPU set;
  ``reason`` is :data:`RESET_HARD` or :data:`RESET_SOFT`.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from ._chipset import (
    I440FX,
    PAM_FIRST,
    PAM_LAST,
    PIIX3,
    PIRQ_FIRST,
    pam_segments,
    pirq_route,
)
from ._protocol import IrqLine, PCIFunction
from ._rom import patch_rom_ids

CONFIG_ADDRESS = 0xCF8
RESET_CONTROL = 0xCF9
CONFIG_DATA = 0xCFC
PORT_BASE = 0xCF8
PORT_COUNT = 8  # the bus owns ports 0xCF8-0xCFF

RESET_HARD = "pci-cf9-hard"
RESET_SOFT = "pci-cf9-soft"

STATE_VERSION = 1

# Command register bits.
CMD_IO = 0x0001
CMD_MEMORY = 0x0002
CMD_INTX_DISABLE = 0x0400
# Status register.
STATUS_INTERRUPT = 0x0008
STATUS_RW1C = 0xF900  # parity, SERR#, master/target abort, master data parity error
# The address register keeps enable, bus, device, function and register (bits 1:0 read 0).
ADDRESS_MASK = 0x80FFFFFC

# Header bytes the bus keeps read-only whatever a function's write mask says: vendor and
# device ID, revision, class code, header type, BIST (not emulated), CardBus CIS pointer,
# subsystem IDs, capabilities pointer, reserved bytes, interrupt pin, Min_Gnt, Max_Lat.
READ_ONLY_OFFSETS = (
    0x00, 0x01, 0x02, 0x03, 0x08, 0x09, 0x0A, 0x0B, 0x0E, 0x0F,
    *range(0x28, 0x30), *range(0x34, 0x3C), 0x3D, 0x3E, 0x3F,
)

ROM_INDEX = 6  # bar index the ROM BAR uses in Region.bar and in the bus internals
ROM_MIN_SIZE = 2048
IO_LIMIT = 0x10000  # x86 port space: I/O BARs above it decode nothing the CPU can reach
MEM_LIMIT = 0xFFFFFFFF  # a region ending at the top of 4 GiB counts as unmapped (as QEMU)

_OnMap = Callable[["Region"], None]
_OnPam = Callable[[int, int, bool, bool], None]
_IrqCb = Callable[[int, int], None]
_OnReset = Callable[[str], None]


def _nothing(*args: object) -> None:
    return None


class Region:
    """An address range a function decodes: a BAR (kind "io" or "mem") or its ROM ("rom").

    ``read(offset, size)`` and ``write(offset, value, size)`` take offsets from ``base``
    (the I/O-port device protocol of docs/architecture.md). For a ROM, ``data`` holds the
    whole ``size`` bytes (the image padded with 0xFF) and writes are ignored.
    """

    __slots__ = (
        "bar",
        "base",
        "data",
        "fn",
        "kind",
        "prefetchable",
        "read",
        "size",
        "slot",
        "write",
    )

    def __init__(self, kind: str, base: int, size: int, slot: int, fn: int, bar: int,
                 read: Callable[[int, int], int], write: Callable[[int, int, int], None],
                 prefetchable: bool = False, data: Optional[bytes] = None) -> None:
        self.kind = kind
        self.base = base
        self.size = size
        self.slot = slot
        self.fn = fn
        self.bar = bar
        self.read = read
        self.write = write
        self.prefetchable = prefetchable
        self.data = data

    @property
    def end(self) -> int:
        """One past the last address."""
        return self.base + self.size

    def __repr__(self) -> str:
        what = "ROM" if self.bar == ROM_INDEX else f"BAR{self.bar}"
        return (f"Region({self.kind} {self.base:#x}+{self.size:#x}, "
                f"00:{self.slot:02x}.{self.fn} {what})")


class _BarInfo:
    __slots__ = ("index", "kind", "mask", "prefetchable", "size", "type_bits")

    def __init__(self, index: int, kind: str, size: int, prefetchable: bool) -> None:
        self.index = index
        self.kind = kind
        self.size = size
        self.prefetchable = prefetchable
        if kind == "io":
            self.type_bits = 0x1
            self.mask = ~(size - 1) & 0xFFFFFFFC
        elif kind == "mem":
            self.type_bits = 0x8 if prefetchable else 0x0
            self.mask = ~(size - 1) & 0xFFFFFFF0
        else:  # ROM
            self.type_bits = 0x0
            self.mask = (~(size - 1) & 0xFFFFF800) | 0x1


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _describe_bars(function: PCIFunction, where: str) -> List[Optional[_BarInfo]]:
    bars: List[Optional[_BarInfo]] = [None] * 7
    try:
        descriptions = list(function.bars)
    except TypeError as exc:
        raise ValueError(f"{where}: bars must be a sequence of BAR descriptions") from exc
    for bar in descriptions:
        index, kind, size = getattr(bar, "index", None), getattr(bar, "kind", None), \
            getattr(bar, "size", None)
        prefetchable = bool(getattr(bar, "prefetchable", False))
        if not isinstance(index, int) or not 0 <= index <= 5:
            raise ValueError(f"{where}: BAR index must be 0-5, got {index!r}")
        if bars[index] is not None:
            raise ValueError(f"{where}: BAR {index} is described twice")
        if kind not in ("io", "mem"):
            raise ValueError(f"{where}: BAR {index} kind must be 'io' or 'mem', got {kind!r}")
        if not isinstance(size, int) or not _is_pow2(size):
            raise ValueError(f"{where}: BAR {index} size must be a power of two, got {size!r}")
        if kind == "io" and not 4 <= size <= 256:
            raise ValueError(f"{where}: I/O BAR {index} size must be 4-256 bytes "
                             f"(PCI 3.0 6.2.5.1), got {size}")
        if kind == "mem" and not 16 <= size <= 1 << 30:
            # A 2 GiB 32-bit BAR could only sit at 0x80000000 and end at the top of 4 GiB,
            # which decodes nothing here (as in QEMU): refuse it rather than never map it.
            raise ValueError(f"{where}: memory BAR {index} size must be 16 bytes to 1 GiB, "
                             f"got {size}")
        if kind == "io" and prefetchable:
            raise ValueError(f"{where}: I/O BAR {index} cannot be prefetchable")
        bars[index] = _BarInfo(index, kind, size, prefetchable)
    return bars


def _as_bytes(value: object, where: str, name: str) -> bytes:
    if isinstance(value, (str, int)) or value is None:
        raise ValueError(f"{where}: {name} must be bytes, got {type(value).__name__}")
    try:
        return bytes(value)  # type: ignore[call-overload]
    except TypeError as exc:
        raise ValueError(f"{where}: {name} must be bytes, got {type(value).__name__}") from exc


class _Space:
    """The live configuration space of one hosted function and its decoding state."""

    __slots__ = ("bars", "cfg", "devfn", "eff_level", "fn", "function", "intx_disable",
                 "pin", "pirq", "power_on", "raw_level", "regions", "rom_data", "rw1c",
                 "slot", "wmask")

    def __init__(self, function: PCIFunction, slot: int, fn: int,
                 patch_rom: bool) -> None:
        where = f"PCI function 00:{slot:02x}.{fn}"
        config = _as_bytes(function.config, where, "config")
        if len(config) != 256:
            raise ValueError(f"{where}: config must be 256 bytes, got {len(config)}")
        fmask = _as_bytes(function.write_mask, where, "write_mask")
        if len(fmask) != 256:
            raise ValueError(f"{where}: write_mask must be 256 bytes, got {len(fmask)}")
        if config[0x0E] & 0x7F != 0:
            raise ValueError(f"{where}: only header type 0 functions can be hosted, "
                             f"got {config[0x0E] & 0x7F:#x}")
        vendor = config[0] | config[1] << 8
        if vendor == 0xFFFF:
            raise ValueError(f"{where}: vendor ID 0xFFFF means 'no function'")
        pin = config[0x3D]
        if pin > 4:
            raise ValueError(f"{where}: interrupt pin must be 0 (none) or 1-4 (INTA-INTD), "
                             f"got {pin}")
        self.function = function
        self.slot = slot
        self.fn = fn
        self.devfn = slot << 3 | fn
        self.pin = pin
        self.pirq = (slot + pin - 1) % 4 if pin else -1
        self.bars = _describe_bars(function, where)

        rom = function.rom
        self.rom_data: Optional[bytes] = None
        if rom is not None:
            rom = _as_bytes(rom, where, "rom")
            if not 0 < len(rom) <= 16 << 20:
                raise ValueError(f"{where}: ROM must be 1 byte to 16 MiB, got {len(rom)}")
            if patch_rom:
                rom = patch_rom_ids(rom, vendor, config[2] | config[3] << 8)
            size = max(ROM_MIN_SIZE, 1 << (len(rom) - 1).bit_length())
            self.rom_data = rom + b"\xff" * (size - len(rom))
            self.bars[ROM_INDEX] = _BarInfo(ROM_INDEX, "rom", size, False)

        # The effective write mask: the function's mask for its own registers, the bus's
        # semantics for identity, command, status, BARs, ROM BAR and interrupt line/pin.
        wmask = bytearray(fmask)
        for off in READ_ONLY_OFFSETS:
            wmask[off] = 0
        wmask[0x06] = wmask[0x07] = 0  # status: read-only or write-1-to-clear (rw1c)
        decode = 0
        if any(b is not None and b.kind == "io" for b in self.bars):
            decode |= CMD_IO
        if any(b is not None and b.kind in ("mem", "rom") for b in self.bars):
            decode |= CMD_MEMORY
        command_mask = ((fmask[4] | fmask[5] << 8) & 0x07FC) | decode
        wmask[0x04] = command_mask & 0xFF
        wmask[0x05] = command_mask >> 8
        self.intx_disable = bool(command_mask & CMD_INTX_DISABLE) and pin != 0
        cfg = bytearray(config)
        for i in range(7):
            info = self.bars[i]
            off = 0x30 if i == ROM_INDEX else 0x10 + 4 * i
            if info is None:
                mask = value = 0  # unimplemented BAR: hardwired to zero
            else:
                mask = info.mask
                value = int.from_bytes(cfg[off:off + 4], "little") & mask
                # Type bits come from the description; the ROM starts disabled.
                value = value & ~0x1 if i == ROM_INDEX else value | info.type_bits
            wmask[off:off + 4] = mask.to_bytes(4, "little")
            cfg[off:off + 4] = value.to_bytes(4, "little")
        wmask[0x3C] = 0xFF
        # Decoding and the interrupt status bit start off whatever the description says.
        command = (cfg[4] | cfg[5] << 8) & ~(decode | CMD_INTX_DISABLE)
        cfg[4], cfg[5] = command & 0xFF, command >> 8
        status = (cfg[6] | cfg[7] << 8) & ~(STATUS_RW1C | STATUS_INTERRUPT)
        cfg[6], cfg[7] = status & 0xFF, status >> 8
        self.wmask = bytes(wmask)
        self.rw1c = STATUS_RW1C
        self.power_on = bytes(cfg)
        self.cfg = cfg
        self.regions: List[Optional[Region]] = [None] * 7
        self.raw_level = 0
        self.eff_level = 0

    @property
    def vendor_device(self) -> Tuple[int, int]:
        c = self.cfg
        return c[0] | c[1] << 8, c[2] | c[3] << 8

    def dword(self, off: int) -> int:
        c = self.cfg
        return c[off] | c[off + 1] << 8 | c[off + 2] << 16 | c[off + 3] << 24

    def wanted_base(self, index: int) -> Optional[int]:
        """Where BAR/ROM ``index`` should decode now, or None."""
        info = self.bars[index]
        if info is None:
            return None
        command = self.cfg[4]
        if index == ROM_INDEX:
            value = self.dword(0x30)
            if not (command & CMD_MEMORY and value & 0x1):
                return None
            base = value & 0xFFFFF800 & info.mask
            limit = MEM_LIMIT
        elif info.kind == "io":
            if not command & CMD_IO:
                return None
            base = self.dword(0x10 + 4 * index) & info.mask
            limit = IO_LIMIT
        else:
            if not command & CMD_MEMORY:
                return None
            base = self.dword(0x10 + 4 * index) & info.mask
            limit = MEM_LIMIT
        if base == 0 or base + info.size > limit:
            return None
        return base

    def make_region(self, index: int, base: int) -> Region:
        info = self.bars[index]
        assert info is not None
        if index == ROM_INDEX:
            data = self.rom_data
            assert data is not None
            size = info.size

            def rom_read(offset: int, n: int, data: bytes = data, size: int = size) -> int:
                if 0 <= offset and offset + n <= size:
                    return int.from_bytes(data[offset:offset + n], "little")
                return (1 << (8 * n)) - 1

            return Region("rom", base, size, self.slot, self.fn, index, rom_read, _nothing,
                          data=data)
        read = self.function.bar_read
        write = self.function.bar_write

        def bar_read(offset: int, n: int, read: Any = read, i: int = index) -> int:
            return read(i, offset, n)

        def bar_write(offset: int, value: int, n: int, write: Any = write,
                      i: int = index) -> None:
            write(i, offset, value, n)

        return Region(info.kind, base, info.size, self.slot, self.fn, index, bar_read,
                      bar_write, prefetchable=info.prefetchable)


def _address_of(slot: int, fn: int) -> str:
    return f"00:{slot:02x}.{fn}"


class PCIBus:
    """Bus 0 of an i440FX/PIIX3 PC: the host bridge at 00:00.0, PIIX3 at 00:01.0.

    The machine forwards I/O ports 0xCF8-0xCFF (``PORT_BASE``, ``PORT_COUNT``) to
    :meth:`io_read` / :meth:`io_write` (absolute port numbers) or maps
    :meth:`port_device` (offsets from 0xCF8), and hosts devices with :meth:`add_device`.
    """

    PORT_BASE = PORT_BASE
    PORT_COUNT = PORT_COUNT

    def __init__(
        self,
        *,
        on_map: Optional[_OnMap] = None,
        on_unmap: Optional[_OnMap] = None,
        on_pam: Optional[_OnPam] = None,
        irq_line: Optional[_IrqCb] = None,
        on_reset: Optional[_OnReset] = None,
        patch_rom_ids: bool = True,
    ) -> None:
        self.on_map: _OnMap = on_map or _nothing
        self.on_unmap: _OnMap = on_unmap or _nothing
        self.on_pam: _OnPam = on_pam or _nothing
        self.irq_line: _IrqCb = irq_line or _nothing
        self.on_reset: _OnReset = on_reset or _nothing
        self.patch_rom_ids = patch_rom_ids
        self._spaces: Dict[int, _Space] = {}
        self._address = 0
        self._target: Optional[_Space] = None
        self._reg = 0
        self._reset_control = 0
        self._pirq_count = [0, 0, 0, 0]
        self._routes: List[Optional[int]] = [None, None, None, None]
        self._isa_level: Dict[int, int] = {}
        self._pam: List[Tuple[int, int, bool, bool]] = []
        self.host_bridge = I440FX()
        self.isa_bridge = PIIX3()
        self._host = self._add(self.host_bridge, 0, 0, False)
        self._isa = self._add(self.isa_bridge, 1, 0, False)
        self._pam = pam_segments(self._host.cfg)

    # -- hosting ---------------------------------------------------------------------------

    def add_device(self, function: PCIFunction, slot: int = 5, fn: int = 0, *,
                   patch_rom_ids: Optional[bool] = None) -> None:
        """Host ``function`` at 00:slot.fn (slot 2-31, fn 0-7; fn 0 of the slot first).

        Raises ValueError for a bad address, an occupied one or a malformed description.
        Adding function 1-7 sets the multi-function bit of the slot's function 0, as a
        multi-function device has it. ``patch_rom_ids`` (default: the bus's setting) makes
        the ROM's PCIR IDs match the function's IDs, fixing the checksum.
        """
        if not isinstance(slot, int) or not 0 <= slot <= 31:
            raise ValueError(f"PCI slot must be 0-31, got {slot!r}")
        if not isinstance(fn, int) or not 0 <= fn <= 7:
            raise ValueError(f"PCI function number must be 0-7, got {fn!r}")
        if slot == 0:
            raise ValueError("slot 0 holds the i440FX host bridge (single-function)")
        if slot << 3 | fn in self._spaces:
            raise ValueError(f"{_address_of(slot, fn)} is already occupied")
        if fn and slot << 3 not in self._spaces:
            raise ValueError(f"add function 0 of slot {slot} before function {fn}")
        patch = self.patch_rom_ids if patch_rom_ids is None else patch_rom_ids
        self._add(function, slot, fn, patch)
        if fn:
            first = self._spaces[slot << 3]
            first.cfg[0x0E] |= 0x80
            first.power_on = first.power_on[:0x0E] + bytes([first.power_on[0x0E] | 0x80]) \
                + first.power_on[0x0F:]

    def _add(self, function: PCIFunction, slot: int, fn: int, patch: bool) -> _Space:
        missing = [name for name in ("config", "write_mask", "bars", "rom", "bar_read",
                                     "bar_write") if not hasattr(function, name)]
        if missing:
            raise TypeError(f"{function!r} is not a PCI function described as data: it "
                            f"lacks {', '.join(missing)} (see pyv86.pci.PCIFunction)")
        space = _Space(function, slot, fn, patch)
        try:
            function.set_irq = self._make_irq(space)
        except AttributeError as exc:
            raise TypeError(f"{function!r}: the bus cannot assign set_irq ({exc})") from exc
        self._spaces[space.devfn] = space
        self._latch(self._address)
        # Optional: a function that already asserts its pin says so in ``irq_level``.
        level = getattr(function, "irq_level", 0)
        if isinstance(level, int) and level:
            function.set_irq(1)
        return space

    def functions(self) -> Iterator[Tuple[int, int, PCIFunction]]:
        """(slot, fn, function) of every hosted function, bridges included, in order."""
        for devfn in sorted(self._spaces):
            space = self._spaces[devfn]
            yield space.slot, space.fn, space.function

    def regions(self) -> List[Region]:
        """Every region currently decoding (the ones ``on_map`` announced)."""
        return [r for devfn in sorted(self._spaces)
                for r in self._spaces[devfn].regions if r is not None]

    def rom_image(self, slot: int, fn: int = 0) -> Optional[bytes]:
        """The ROM as the guest sees it (patched, padded to the ROM BAR size), or None."""
        space = self._spaces.get(slot << 3 | fn)
        return None if space is None else space.rom_data

    # -- configuration mechanism #1 ------------------------------------------------------

    def port_device(self) -> _PortWindow:
        """An I/O-port device (offsets from 0xCF8) for a machine's IOBus."""
        return _PortWindow(self)

    def io_read(self, port: int, size: int) -> int:
        """Read ``size`` (1, 2 or 4) bytes at I/O ``port``; ports other than 0xCF8-0xCFF
        covered by the access read as all ones (nothing of the bus answers there)."""
        if CONFIG_DATA <= port and port + size <= 0xD00:
            target = self._target
            if target is None:
                return (1 << (8 * size)) - 1
            off = self._reg + (port & 3)
            return int.from_bytes(target.cfg[off:off + size], "little")
        if port == CONFIG_ADDRESS and size == 4:
            return self._address
        if port == RESET_CONTROL and size == 1:
            return self._reset_control
        value = 0
        for i in range(size):
            p = port + i
            if CONFIG_DATA <= p <= 0xCFF:
                byte = self.io_read(p, 1)
            else:
                byte = 0xFF
            value |= byte << (8 * i)
        return value

    def io_write(self, port: int, value: int, size: int) -> None:
        """Write ``size`` (1, 2 or 4) bytes at I/O ``port``. Byte and word writes to
        0xCF8-0xCFB do not latch the address register; only a byte write to 0xCF9 reaches
        the reset control register."""
        if CONFIG_DATA <= port and port + size <= 0xD00:
            target = self._target
            if target is not None:
                self._write(target, self._reg + (port & 3), value, size)
            return
        if port == CONFIG_ADDRESS and size == 4:
            self._latch(value)
            return
        if port == RESET_CONTROL and size == 1:
            self._write_reset_control(value & 0xFF)
            return
        for i in range(size):
            p = port + i
            if CONFIG_DATA <= p <= 0xCFF:
                self.io_write(p, value >> (8 * i), 1)

    def _latch(self, value: int) -> None:
        value &= ADDRESS_MASK
        self._address = value
        self._reg = value & 0xFC
        if value & 0x80000000 and not value & 0x00FF0000:
            self._target = self._spaces.get((value >> 8) & 0xFF)
        else:
            self._target = None  # disabled, or a type 1 cycle to a bus nobody bridges to

    def _write_reset_control(self, value: int) -> None:
        # 82371SB RC register: bit 1 SRST selects a hard (system) reset, bit 2 RCPU starts
        # the reset and reads back 0. PIIX4's FULL_RST (bit 3) is honoured as hard too.
        self._reset_control = value & 0x0A
        if value & 0x04:
            self.on_reset(RESET_HARD if value & 0x0A else RESET_SOFT)

    # -- direct config access (firmware shortcuts, tests, debuggers) ----------------------

    @staticmethod
    def _check_access(slot: int, fn: int, offset: int, size: int) -> int:
        if not (isinstance(slot, int) and 0 <= slot <= 31 and isinstance(fn, int)
                and 0 <= fn <= 7):
            raise ValueError(f"bad PCI address: slot {slot!r}, function {fn!r}")
        if size not in (1, 2, 4) or not isinstance(offset, int) or \
                not 0 <= offset <= 256 - size:
            raise ValueError(f"bad config access: offset {offset!r}, size {size!r}")
        return slot << 3 | fn

    def config_read(self, slot: int, fn: int, offset: int, size: int) -> int:
        """Read like the guest would through 0xCFC; absent functions read all ones."""
        space = self._spaces.get(self._check_access(slot, fn, offset, size))
        if space is None:
            return (1 << (8 * size)) - 1
        return int.from_bytes(space.cfg[offset:offset + size], "little")

    def config_write(self, slot: int, fn: int, offset: int, value: int, size: int) -> None:
        """Write like the guest would through 0xCFC; absent functions ignore it."""
        space = self._spaces.get(self._check_access(slot, fn, offset, size))
        if space is not None:
            self._write(space, offset, value, size)

    def _write(self, space: _Space, off: int, value: int, size: int) -> None:
        cfg = space.cfg
        wmask = space.wmask
        for i in range(size):
            o = off + i
            byte = (value >> (8 * i)) & 0xFF
            if o == 6 or o == 7:
                cfg[o] &= ~(byte & (space.rw1c >> (8 * (o - 6)))) & 0xFF
            else:
                m = wmask[o]
                if m:
                    cfg[o] = (cfg[o] & ~m) | (byte & m)
        end = off + size
        if off < 0x34 and end > 0x04:
            if off < 0x06:
                self._update_intx(space)
            self._update_regions(space)
        if space is self._host and off <= PAM_LAST and end > PAM_FIRST:
            self._update_pam(False)
        elif space is self._isa and off < PIRQ_FIRST + 4 and end > PIRQ_FIRST:
            self._update_routes()

    # -- decoding ------------------------------------------------------------------------

    def _update_regions(self, space: _Space) -> None:
        for index in range(7):
            if space.bars[index] is None:
                continue
            current = space.regions[index]
            base = space.wanted_base(index)
            if current is not None and current.base == base:
                continue
            if current is not None:
                space.regions[index] = None
                self.on_unmap(current)
            if base is not None:
                region = space.make_region(index, base)
                space.regions[index] = region
                self.on_map(region)

    def _update_pam(self, report_all: bool) -> None:
        new = pam_segments(self._host.cfg)
        old = self._pam
        self._pam = new
        for i, segment in enumerate(new):
            if report_all or segment != old[i]:
                self.on_pam(*segment)

    # -- interrupts ----------------------------------------------------------------------

    def _make_irq(self, space: _Space) -> IrqLine:
        if not space.pin:
            def no_pin(level: int) -> None:
                return None
            return no_pin

        def set_irq(level: int, space: _Space = space, bus: PCIBus = self) -> None:
            level = 1 if level else 0
            if level == space.raw_level:
                return
            space.raw_level = level
            if space.intx_disable:
                if level:
                    space.cfg[6] |= STATUS_INTERRUPT
                else:
                    space.cfg[6] &= ~STATUS_INTERRUPT & 0xFF
            bus._update_intx(space)

        return set_irq

    def _update_intx(self, space: _Space) -> None:
        if not space.pin:
            return
        masked = space.intx_disable and space.cfg[5] & (CMD_INTX_DISABLE >> 8)
        level = 0 if masked else space.raw_level
        if level == space.eff_level:
            return
        space.eff_level = level
        self._pirq_count[space.pirq] += 1 if level else -1
        irq = self._routes[space.pirq]
        if irq is not None:
            self._report_line(irq)

    def _line_level(self, irq: int) -> int:
        routes, count = self._routes, self._pirq_count
        for q in range(4):
            if routes[q] == irq and count[q]:
                return 1
        return 0

    def _report_line(self, irq: int, force: bool = False) -> None:
        level = self._line_level(irq)
        if force or self._isa_level.get(irq, 0) != level:
            self._isa_level[irq] = level
            self.irq_line(irq, level)

    def _update_routes(self, force: bool = False) -> None:
        cfg = self._isa.cfg
        old = set(r for r in self._routes if r is not None) | \
            set(irq for irq, level in self._isa_level.items() if level)
        self._routes = [pirq_route(cfg[PIRQ_FIRST + q]) for q in range(4)]
        lines = old | set(r for r in self._routes if r is not None)
        for irq in sorted(lines):
            self._report_line(irq, force)

    def pirq_routes(self) -> List[Optional[int]]:
        """The ISA IRQ each of PIRQA-D is routed to now (None: disabled)."""
        return list(self._routes)

    def irq_of(self, slot: int, fn: int = 0) -> Optional[int]:
        """The ISA IRQ a hosted function's INTx pin reaches now, or None."""
        space = self._spaces.get(slot << 3 | fn)
        if space is None or not space.pin:
            return None
        return self._routes[space.pirq]

    # -- reset and state -----------------------------------------------------------------

    def reset(self) -> None:
        """Power-on values in every config space (PCI RST#): decoding off, PAM and PIRQ at
        their reset values; unmap/PAM/IRQ callbacks report the changes. Function pin levels
        are kept (the machine resets the devices, which lower their pins)."""
        self._install({devfn: space.power_on for devfn, space in self._spaces.items()},
                      None, 0, 0, report_all=False)

    def replay(self) -> None:
        """Report the whole current state again: every PAM segment, every decoding region
        (``on_map``) and every routed ISA line's level. For a machine that rebuilt its
        memory map or interrupt controller from scratch."""
        for segment in self._pam:
            self.on_pam(*segment)
        for region in self.regions():
            self.on_map(region)
        self._update_routes(force=True)

    def save_state(self) -> Dict[str, Any]:
        """A versioned plain-data snapshot of the bus and every config space."""
        return {
            "version": STATE_VERSION,
            "config_address": self._address,
            "reset_control": self._reset_control,
            "functions": [
                {
                    "slot": space.slot,
                    "fn": space.fn,
                    "vendor_id": space.vendor_device[0],
                    "device_id": space.vendor_device[1],
                    "config": bytes(space.cfg),
                    "irq_level": space.raw_level,
                }
                for _, space in sorted(self._spaces.items())
            ],
        }

    def restore_state(self, state: Dict[str, Any]) -> None:
        """Restore a :meth:`save_state` snapshot taken with the same functions hosted at
        the same addresses. Raises ValueError naming the problem for a malformed, newer or
        mismatching state, before changing anything. Afterwards every region is unmapped and
        mapped again, every PAM segment and routed IRQ line reported."""
        configs, levels, address, reset_control = self._validate(state)
        self._install(configs, levels, address, reset_control, report_all=True)

    def _validate(self, state: Any) -> Tuple[Dict[int, bytes], Dict[int, int], int, int]:
        def bad(msg: str) -> ValueError:
            return ValueError(f"pyv86.pci bus state: {msg}")

        def integer(d: Dict[str, Any], key: str, lo: int, hi: int, where: str) -> int:
            if key not in d:
                raise bad(f"{where}missing key {key!r}")
            v = d[key]
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise bad(f"{where}{key} must be an int in {lo}..{hi}, got {v!r}")
            return v

        if not isinstance(state, dict):
            raise bad(f"expected a dict, got {type(state).__name__}")
        version = state.get("version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise bad(f"missing or non-integer 'version' ({version!r})")
        if version > STATE_VERSION:
            raise bad(f"version {version} is newer than this pyv86-pci understands "
                      f"({STATE_VERSION})")
        if version < 1:
            raise bad(f"unknown version {version}")
        address = integer(state, "config_address", 0, 0xFFFFFFFF, "")
        reset_control = integer(state, "reset_control", 0, 0xFF, "")
        functions = state.get("functions")
        if not isinstance(functions, list):
            raise bad("'functions' must be a list")
        configs: Dict[int, bytes] = {}
        levels: Dict[int, int] = {}
        for n, entry in enumerate(functions):
            where = f"functions[{n}]: "
            if not isinstance(entry, dict):
                raise bad(f"{where}expected a dict, got {type(entry).__name__}")
            slot = integer(entry, "slot", 0, 31, where)
            fn = integer(entry, "fn", 0, 7, where)
            devfn = slot << 3 | fn
            space = self._spaces.get(devfn)
            if space is None:
                raise bad(f"{where}no function is hosted at {_address_of(slot, fn)}")
            if devfn in configs:
                raise bad(f"{where}{_address_of(slot, fn)} appears twice")
            config = entry.get("config")
            if not isinstance(config, (bytes, bytearray)) or len(config) != 256:
                raise bad(f"{where}config must be 256 bytes")
            vendor = integer(entry, "vendor_id", 0, 0xFFFF, where)
            device = integer(entry, "device_id", 0, 0xFFFF, where)
            ids = (config[0] | config[1] << 8, config[2] | config[3] << 8)
            if (vendor, device) != space.vendor_device or ids != space.vendor_device:
                raise bad(f"{where}{_address_of(slot, fn)} holds "
                          f"{space.vendor_device[0]:04x}:{space.vendor_device[1]:04x} here, "
                          f"the state has {vendor:04x}:{device:04x}")
            levels[devfn] = integer(entry, "irq_level", 0, 1, where)
            configs[devfn] = bytes(config)
        missing = sorted(set(self._spaces) - set(configs))
        if missing:
            names = ", ".join(_address_of(d >> 3, d & 7) for d in missing)
            raise bad(f"no config space for hosted function(s) {names}")
        return configs, levels, address, reset_control

    def _install(self, configs: Dict[int, bytes], levels: Optional[Dict[int, int]],
                 address: int, reset_control: int, report_all: bool) -> None:
        # Stop all decoding first so the machine never sees two regions overlap.
        for space in self._spaces.values():
            for index, region in enumerate(space.regions):
                if region is not None:
                    space.regions[index] = None
                    self.on_unmap(region)
        for devfn, space in self._spaces.items():
            wanted = configs[devfn]
            # Read-only bits keep the hosted function's values whatever the state says.
            keep = space.power_on
            new = bytearray(space.cfg)
            for o in range(256):
                m = space.wmask[o]
                new[o] = (keep[o] & ~m) | (wanted[o] & m)
            status = (space.power_on[6] | space.power_on[7] << 8) | \
                ((wanted[6] | wanted[7] << 8) & space.rw1c)
            # Keep the multi-function bit a later add_device may have set.
            new[0x0E] = space.cfg[0x0E]
            new[6], new[7] = status & 0xFF, status >> 8
            space.cfg[:] = new
            if levels is not None:
                space.raw_level = levels[devfn]
            if space.intx_disable and space.raw_level:
                space.cfg[6] |= STATUS_INTERRUPT
        self._reset_control = reset_control & 0x0A
        self._latch(address)
        for space in self._spaces.values():
            self._update_regions(space)
        self._update_pam(report_all)
        # Recount the pins, then report every line that is or was routed.
        self._pirq_count = [0, 0, 0, 0]
        for space in self._spaces.values():
            space.eff_level = 0
            self._update_intx_count_only(space)
        self._update_routes(force=report_all)

    def _update_intx_count_only(self, space: _Space) -> None:
        if not space.pin:
            return
        masked = space.intx_disable and space.cfg[5] & (CMD_INTX_DISABLE >> 8)
        space.eff_level = 0 if masked else space.raw_level
        if space.eff_level:
            self._pirq_count[space.pirq] += 1


class _PortWindow:
    """Ports 0xCF8-0xCFF as an I/O-port device (offsets from the base)."""

    __slots__ = ("_bus",)

    def __init__(self, bus: PCIBus) -> None:
        self._bus = bus

    def io_read(self, offset: int, size: int) -> int:
        return self._bus.io_read(PORT_BASE + offset, size)

    def io_write(self, offset: int, value: int, size: int) -> None:
        self._bus.io_write(PORT_BASE + offset, value, size)

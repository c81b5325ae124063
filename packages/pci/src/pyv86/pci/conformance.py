"""A conformance checker any PCI function described as data can be run through.

:func:`check_function` hosts the function on a private :class:`~pyv86.pci.PCIBus` and
drives it the way SeaBIOS and Linux do, through ports 0xCF8/0xCFC: it reads the identity
and header type, sizes and relocates every BAR and the ROM BAR, toggles decoding and watches
the map/unmap callbacks, writes all-ones and zeros over the whole space and checks that the
read-only registers stay put, and routes the interrupt pin through the PIIX3. It returns a
list of :class:`Finding` (empty: conformant); :func:`assert_conformant` raises
:class:`ConformanceError` with a readable report when any finding is an error.

The checker never calls ``bar_read``/``bar_write`` (they may have side effects on the
device). While it runs it assigns the function's ``set_irq`` and calls it; the previous
value is put back afterwards. :func:`check_bus` enumerates a whole bus the same way.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any, Callable, Dict, List, Optional, Tuple

from ._bus import PCIBus, Region
from ._protocol import PCIFunction
from ._rom import CODE_TYPE_X86, image_checksum, rom_images

ERROR = "error"
WARNING = "warning"

# Registers the PCI Local Bus Specification 3.0 (6.2) makes read-only: name -> (offset, size).
READ_ONLY_REGISTERS: Dict[str, Tuple[int, int]] = {
    "vendor ID": (0x00, 2),
    "device ID": (0x02, 2),
    "revision ID": (0x08, 1),
    "class code": (0x09, 3),
    "header type": (0x0E, 1),
    "CardBus CIS pointer": (0x28, 4),
    "subsystem vendor ID": (0x2C, 2),
    "subsystem ID": (0x2E, 2),
    "capabilities pointer": (0x34, 1),
    "interrupt pin": (0x3D, 1),
    "Min_Gnt": (0x3E, 1),
    "Max_Lat": (0x3F, 1),
}


@dataclasses.dataclass(frozen=True)
class Finding:
    """One way a function departs from the PCI specification or from the bus contract."""

    check: str  # identity, header, bar, rom, command, status, interrupt, read-only, ...
    message: str
    offset: Optional[int] = None  # the configuration register concerned, if one is
    severity: str = ERROR  # ERROR or WARNING

    def __str__(self) -> str:
        where = f" @{self.offset:#04x}" if self.offset is not None else ""
        return f"{self.severity}: [{self.check}{where}] {self.message}"


class ConformanceError(AssertionError):
    """Raised by :func:`assert_conformant`; ``findings`` lists every finding."""

    def __init__(self, subject: str, findings: List[Finding]) -> None:
        self.findings = findings
        lines = [f"{subject} is not a conformant PCI function:"]
        lines += [f"  - {f}" for f in findings]
        super().__init__("\n".join(lines))


class _Probe:
    """A guest's view of one function on a private bus, plus the callbacks it saw."""

    SLOT = 5

    def __init__(self, function: PCIFunction, patch_rom_ids: bool) -> None:
        self.mapped: List[Region] = []
        self.events: List[Tuple[str, Any]] = []
        self.lines: List[Tuple[int, int]] = []
        self.bus = PCIBus(on_map=self._on_map, on_unmap=self._on_unmap,
                          irq_line=lambda irq, level: self.lines.append((irq, level)),
                          patch_rom_ids=patch_rom_ids)
        self.function = function

    def _on_map(self, region: Region) -> None:
        self.events.append(("map", region))
        self.mapped.append(region)

    def _on_unmap(self, region: Region) -> None:
        self.events.append(("unmap", region))
        if region in self.mapped:
            self.mapped.remove(region)
        else:
            self.events.append(("unmap-unknown", region))

    def host(self) -> None:
        self.bus.add_device(self.function, slot=self.SLOT)

    def read(self, reg: int, size: int = 4, slot: int = SLOT) -> int:
        self.bus.io_write(0xCF8, 0x80000000 | slot << 11 | (reg & 0xFC), 4)
        return self.bus.io_read(0xCFC + (reg & 3), size)

    def write(self, reg: int, value: int, size: int = 4, slot: int = SLOT) -> None:
        self.bus.io_write(0xCF8, 0x80000000 | slot << 11 | (reg & 0xFC), 4)
        self.bus.io_write(0xCFC + (reg & 3), value, size)


def _bars_of(function: PCIFunction) -> Dict[int, Any]:
    return {int(getattr(b, "index", -1)): b for b in function.bars}


def check_function(function: PCIFunction, *, seed: int = 0x8029,
                   patch_rom_ids: bool = True) -> List[Finding]:
    """Run every check on ``function``; return the findings (an empty list: conformant).

    Never raises for a bad function: a check that blows up becomes a finding. ``seed``
    drives the random configuration traffic of the read-only check; ``patch_rom_ids=False``
    checks the ROM as it is instead of as the bus would present it by default.
    """
    findings: List[Finding] = []

    def add(check: str, message: str, offset: Optional[int] = None,
            severity: str = ERROR) -> None:
        findings.append(Finding(check, message, offset, severity))

    try:
        config = bytes(function.config)
        mask = bytes(function.write_mask)
    except Exception as exc:  # a description that is not even bytes
        add("description", f"config/write_mask are not bytes: {exc!r}")
        return findings
    if len(config) != 256 or len(mask) != 256:
        add("description", f"config and write_mask must be 256 bytes each, got "
            f"{len(config)} and {len(mask)}")
        return findings

    previous_irq = getattr(function, "set_irq", None)
    probe = _Probe(function, patch_rom_ids)
    try:
        probe.host()
    except (ValueError, TypeError, AttributeError) as exc:
        add("description", f"the bus refuses to host it: {exc}")
        return findings
    try:
        for check in (_check_description, _check_identity, _check_command, _check_status,
                      _check_bars, _check_rom, _check_interrupt, _check_capabilities,
                      _check_read_only):
            before = len(findings)
            try:
                check(function, config, mask, probe, add, seed)
            except Exception as exc:  # the checker reports, it does not crash
                del findings[before:]
                add(check.__name__[7:], f"check raised {exc!r}")
            # Every check leaves decoding off and the space at its power-on values.
            probe.bus.reset()
    finally:
        try:
            function.set_irq = previous_irq  # type: ignore[assignment]
        except Exception:  # pragma: no cover - a read-only attribute was caught above
            pass
    return findings


def assert_conformant(function: PCIFunction, *, allow_warnings: bool = True,
                      seed: int = 0x8029, patch_rom_ids: bool = True) -> List[Finding]:
    """Raise :class:`ConformanceError` if :func:`check_function` finds an error (or, with
    ``allow_warnings=False``, a warning); return the findings otherwise."""
    findings = check_function(function, seed=seed, patch_rom_ids=patch_rom_ids)
    bad = [f for f in findings if f.severity == ERROR or not allow_warnings]
    if bad:
        raise ConformanceError(repr(function), findings)
    return findings


_Add = Callable[..., None]


def _check_description(function: PCIFunction, config: bytes, mask: bytes, probe: _Probe,
                       add: _Add, seed: int) -> None:
    for name, (off, size) in READ_ONLY_REGISTERS.items():
        if any(mask[off:off + size]):
            add("description", f"write_mask marks the read-only {name} writable "
                "(the bus keeps it read-only)", off, WARNING)
    bars = _bars_of(function)
    for index, bar in sorted(bars.items()):
        off = 0x10 + 4 * index
        low = config[off]
        if not any(config[off:off + 4]):
            continue  # left for the bus to fill in, as the contract allows
        if bar.kind == "io" and not low & 0x1:
            add("description", f"BAR{index} is described as I/O but config has a memory "
                "BAR there (the bus uses the description)", off, WARNING)
        if bar.kind == "mem" and (low & 0x1 or bool(low & 0x8) != bool(bar.prefetchable)):
            add("description", f"BAR{index} type bits in config ({low & 0xF:#x}) do not match "
                "the description (the bus uses the description)", off, WARNING)
    for index in range(6):
        if index not in bars and any(config[0x10 + 4 * index:0x14 + 4 * index]):
            add("description", f"BAR{index} is not described but config holds "
                f"{config[0x10 + 4 * index:0x14 + 4 * index].hex()}", 0x10 + 4 * index,
                WARNING)
    rom = function.rom
    if rom is not None:
        vendor, device = config[0] | config[1] << 8, config[2] | config[3] << 8
        for n, img in enumerate(rom_images(bytes(rom))):
            if img.code_type == CODE_TYPE_X86 and (img.vendor_id, img.device_id) != (vendor,
                                                                                   device):
                add("description", f"ROM image {n} PCIR carries {img.vendor_id:04x}:"
                    f"{img.device_id:04x}, not {vendor:04x}:{device:04x}: the bus patches "
                    "them (patch_rom_ids)", 0x30, WARNING)
    command = config[4] | config[5] << 8
    if bars and command & 0x3:
        add("command", f"command register powers on with decoding enabled ({command:#06x}); "
            "PCI 3.0 6.2.2 requires 0 after reset", 0x04, WARNING)


def _check_identity(function: PCIFunction, config: bytes, mask: bytes, probe: _Probe,
                    add: _Add, seed: int) -> None:
    ids = probe.read(0x00)
    vendor, device = ids & 0xFFFF, ids >> 16
    if vendor in (0x0000, 0xFFFF):
        add("identity", f"vendor ID {vendor:#06x} is not a valid vendor", 0x00)
    if device == 0xFFFF:
        add("identity", "device ID 0xffff is not a valid device", 0x02)
    if (vendor, device) != (config[0] | config[1] << 8, config[2] | config[3] << 8):
        add("identity", "IDs read through 0xCFC differ from config", 0x00)
    class_code = probe.read(0x08) >> 8
    if class_code == 0:
        add("identity", "class code 0 (a pre-PCI-2.0 device): drivers match on class",
            0x09, WARNING)
    header = probe.read(0x0C) >> 16 & 0xFF
    if header & 0x7F != 0:
        add("header", f"header type {header & 0x7F:#x}: a device must use type 0", 0x0E)
    # An address this function does not occupy must read all ones.
    if probe.read(0x00, slot=6) != 0xFFFFFFFF:
        add("identity", "an empty slot does not read all ones", 0x00)


def _check_command(function: PCIFunction, config: bytes, mask: bytes, probe: _Probe,
                   add: _Add, seed: int) -> None:
    bars = _bars_of(function)
    has_io = any(b.kind == "io" for b in bars.values())
    has_mem = any(b.kind == "mem" for b in bars.values()) or function.rom is not None
    before = probe.read(0x04, 2)
    probe.write(0x04, 0xFFFF, 2)
    ones = probe.read(0x04, 2)
    probe.write(0x04, 0x0000, 2)
    zeros = probe.read(0x04, 2)
    writable = ones ^ zeros
    if has_io and not writable & 0x1:
        add("command", "I/O space enable (bit 0) is not writable but the function has an "
            "I/O BAR", 0x04)
    if not has_io and writable & 0x1:
        add("command", "I/O space enable is writable without an I/O BAR", 0x04)
    if has_mem and not writable & 0x2:
        add("command", "memory space enable (bit 1) is not writable but the function has "
            "a memory BAR or a ROM", 0x04)
    if not has_mem and writable & 0x2:
        add("command", "memory space enable is writable without a memory BAR or ROM", 0x04)
    if (ones | zeros) & 0xF800:
        add("command", f"reserved command bits 15:11 read back set ({ones:#06x})", 0x04)
    if zeros & 0x3 and bars:
        add("command", "decoding cannot be switched off", 0x04)
    if probe.mapped:
        add("command", f"regions stay mapped with decoding off: {probe.mapped}", 0x04)
    probe.write(0x04, before, 2)


def _check_status(function: PCIFunction, config: bytes, mask: bytes, probe: _Probe,
                  add: _Add, seed: int) -> None:
    before = probe.read(0x06, 2)
    probe.write(0x06, 0xFFFF, 2)
    after = probe.read(0x06, 2)
    if after & 0xF900:
        add("status", f"error bits 15:11/8 still set after writing ones ({after:#06x}); they "
            "are write-1-to-clear", 0x06)
    if (after ^ before) & ~0xF900 & 0xFFFF:
        add("status", f"read-only status bits changed on a write ({before:#06x} -> "
            f"{after:#06x})", 0x06)
    if before & 0x0007:
        add("status", f"reserved status bits 2:0 read set ({before:#06x})", 0x06, WARNING)


def _check_bars(function: PCIFunction, config: bytes, mask: bytes, probe: _Probe,
                add: _Add, seed: int) -> None:
    bars = _bars_of(function)
    for index in range(6):
        off = 0x10 + 4 * index
        old = probe.read(off)
        probe.write(off, 0xFFFFFFFF)
        sized = probe.read(off)
        probe.write(off, old)
        if probe.read(off) != old:
            add("bar", f"BAR{index} does not take back its old value {old:#010x}", off)
        bar = bars.get(index)
        if bar is None:
            if sized != 0:
                add("bar", f"unimplemented BAR{index} reads {sized:#010x} after sizing; "
                    "it must be hardwired to 0", off)
            continue
        if bar.kind == "io":
            if not sized & 0x1 or sized & 0x2:
                add("bar", f"I/O BAR{index} low bits {sized & 3:#x}: bit 0 must read 1, bit 1 "
                    "0", off)
            size = (~(sized & 0xFFFFFFFC) + 1) & 0xFFFFFFFF
            base, cmd = 0xC000, 0x1
        else:
            if sized & 0x1 or sized & 0x6:
                add("bar", f"memory BAR{index} type bits {sized & 0x7:#x}: want a 32-bit "
                    "memory BAR", off)
            if bool(sized & 0x8) != bool(bar.prefetchable):
                add("bar", f"memory BAR{index} prefetchable bit disagrees with the "
                    "description", off)
            size = (~(sized & 0xFFFFFFF0) + 1) & 0xFFFFFFFF
            base, cmd = 0x80000000, 0x2
        if size != bar.size:
            add("bar", f"BAR{index} sizes as {size:#x} bytes, described as {bar.size:#x}", off)
            continue
        if size & (size - 1):
            add("bar", f"BAR{index} size {size:#x} is not a power of two", off)
            continue
        # Relocation: a naturally aligned address reads back, low address bits drop.
        base = base & ~(size - 1) or size
        probe.write(off, base | (size >> 1 if size > 0x10 else 0))
        got = probe.read(off)
        want = base | (sized & (0x3 if bar.kind == "io" else 0xF))
        if got != want:
            add("bar", f"BAR{index} written with {base:#x} (+ unaligned bits) reads back "
                f"{got:#010x}, want {want:#010x}", off)
            continue
        # Decoding follows the command register and the map callbacks follow decoding.
        probe.events.clear()
        probe.write(0x04, cmd, 2)
        maps = [r for kind, r in probe.events if kind == "map"]
        if len(maps) != 1 or (maps[0].base, maps[0].size, maps[0].bar) != (base, size, index):
            add("bar", f"enabling decoding of BAR{index} at {base:#x} announced {maps!r}", off)
        elif maps[0].kind != bar.kind:
            add("bar", f"BAR{index} mapped as {maps[0].kind}, described as {bar.kind}", off)
        moved = base + size if base + 2 * size <= (0x10000 if bar.kind == "io" else
                                                   0xFFFFFFFF) else base - size
        if moved <= 0:  # no second place for a BAR this large: skip the move check
            probe.write(0x04, 0, 2)
            probe.write(off, old)
            continue
        probe.events.clear()
        probe.write(off, moved)
        kinds = [kind for kind, _ in probe.events]
        if kinds != ["unmap", "map"] or not probe.mapped or probe.mapped[-1].base != moved:
            add("bar", f"moving decoding BAR{index} to {moved:#x} announced {probe.events!r}",
                off)
        probe.write(0x04, 0, 2)
        if probe.mapped:
            add("bar", f"BAR{index} still mapped after decoding was turned off", off)
        if any(kind == "unmap-unknown" for kind, _ in probe.events):
            add("bar", f"BAR{index}: the bus unmapped a region it never mapped", off)
        probe.write(off, old)


def _check_rom(function: PCIFunction, config: bytes, mask: bytes, probe: _Probe,
               add: _Add, seed: int) -> None:
    rom = function.rom
    old = probe.read(0x30)
    probe.write(0x30, 0xFFFFF800)  # SeaBIOS's sizing pattern (PCI_ROM_ADDRESS_MASK)
    sized = probe.read(0x30)
    probe.write(0x30, 0xFFFFFFFF)
    with_enable = probe.read(0x30)
    probe.write(0x30, old)
    if rom is None:
        if sized or with_enable:
            add("rom", f"no ROM but the ROM BAR reads {with_enable:#010x} after sizing; it "
                "must be hardwired to 0", 0x30)
        return
    size = (~(sized & 0xFFFFF800) + 1) & 0xFFFFFFFF
    if size < 2048 or size & (size - 1) or size < len(rom):
        add("rom", f"ROM BAR sizes as {size:#x} bytes for a {len(rom)}-byte image", 0x30)
        return
    if not with_enable & 0x1:
        add("rom", "ROM address decode enable (bit 0) is not writable", 0x30)
    if with_enable & 0x7FE:
        add("rom", f"reserved ROM BAR bits 10:1 read set ({with_enable:#010x})", 0x30)
    base = 0xFE000000 & ~(size - 1)
    probe.events.clear()
    probe.write(0x30, base | 0x1)
    if probe.mapped:
        add("rom", "ROM decodes with memory space disabled in the command register", 0x30)
    probe.write(0x04, 0x2, 2)
    roms = [r for r in probe.mapped if r.kind == "rom"]
    if len(roms) != 1 or (roms[0].base, roms[0].size) != (base, size):
        add("rom", f"enabling the ROM at {base:#x} announced {probe.events!r}", 0x30)
        return
    region = roms[0]
    if region.read(0, 2) != 0xAA55:
        add("rom", f"ROM image does not start with 55 AA (reads {region.read(0, 2):#06x})",
            0x30)
        return
    image = bytes(region.read(i, 1) for i in range(min(size, len(rom))))
    vendor, device = config[0] | config[1] << 8, config[2] | config[3] << 8
    images = rom_images(image)
    if not images or images[0].pcir < 0:
        add("rom", "ROM has no PCI data structure ('PCIR'): firmware will not run it", 0x30)
        return
    if not any(img.code_type == CODE_TYPE_X86 for img in images):
        add("rom", "ROM has no x86 image (code type 0): SeaBIOS will not run it", 0x30,
            WARNING)
    for n, img in enumerate(images):
        if img.code_type == CODE_TYPE_X86 and (img.vendor_id, img.device_id) != (vendor,
                                                                                device):
            add("rom", f"ROM image {n} PCIR carries {img.vendor_id:04x}:{img.device_id:04x}, "
                f"the function is {vendor:04x}:{device:04x}: SeaBIOS skips it", 0x30)
        if img.code_type == CODE_TYPE_X86 and image_checksum(image, img):
            add("rom", f"x86 ROM image {n} bytes do not sum to zero", 0x30)
    probe.write(0x30, old & ~0x1)
    if any(r.kind == "rom" for r in probe.mapped):
        add("rom", "ROM still decodes after its enable bit was cleared", 0x30)
    probe.write(0x04, 0, 2)


def _check_interrupt(function: PCIFunction, config: bytes, mask: bytes, probe: _Probe,
                     add: _Add, seed: int) -> None:
    for value in (0x0B, 0xFF, 0x00):
        probe.write(0x3C, value, 1)
        if probe.read(0x3C, 1) != value:
            add("interrupt", f"interrupt line does not hold {value:#04x}", 0x3C)
            break
    pin = probe.read(0x3D, 1)
    if pin > 4:
        add("interrupt", f"interrupt pin {pin} (want 0 or 1-4)", 0x3D)
        return
    if pin == 0:
        return
    set_irq = getattr(function, "set_irq", None)
    if not callable(set_irq):
        add("interrupt", "set_irq is not callable after the bus assigned it", 0x3D)
        return
    for pirq in range(4):  # PIRQA-D -> IRQ 9, 10, 11, 5
        probe.write(0x60 + pirq, (9, 10, 11, 5)[pirq], 1, slot=1)
    want = (9, 10, 11, 5)[(_Probe.SLOT + pin - 1) % 4]
    probe.lines.clear()
    set_irq(1)
    set_irq(1)  # repeats are tolerated
    if probe.lines != [(want, 1)]:
        add("interrupt", f"asserting INT{'ABCD'[pin - 1]} of slot {_Probe.SLOT} gave "
            f"{probe.lines}, want [({want}, 1)] (swizzle (slot + pin - 1) % 4)", 0x3D)
    command = probe.read(0x04, 2)
    probe.write(0x04, command | 0x0400, 2)
    if probe.read(0x04, 2) & 0x0400:  # PCI 2.3 interrupt disable is implemented
        if probe.lines[-1:] != [(want, 0)]:
            add("interrupt", "setting interrupt disable did not release the line", 0x04)
        if not probe.read(0x06, 2) & 0x0008:
            add("interrupt", "interrupt status (status bit 3) is clear while the pin is "
                "asserted", 0x06)
        probe.write(0x04, command, 2)
    set_irq(0)
    if probe.lines[-1:] != [(want, 0)]:
        add("interrupt", f"deasserting the pin left the line at {probe.lines[-1:]}", 0x3D)
    if probe.read(0x06, 2) & 0x0008:
        add("interrupt", "interrupt status stays set after the pin was released", 0x06)


def _check_capabilities(function: PCIFunction, config: bytes, mask: bytes, probe: _Probe,
                        add: _Add, seed: int) -> None:
    status = probe.read(0x06, 2)
    pointer = probe.read(0x34, 1)
    if not status & 0x0010:
        if pointer:
            add("capabilities", f"capabilities pointer {pointer:#04x} without status bit 4",
                0x34, WARNING)
        return
    seen = set()
    while pointer:
        if pointer & 0x3 or not 0x40 <= pointer <= 0xFC:
            add("capabilities", f"capability pointer {pointer:#04x} is not a dword in "
                "0x40-0xFC", 0x34)
            return
        if pointer in seen:
            add("capabilities", f"capability list loops at {pointer:#04x}", 0x34)
            return
        seen.add(pointer)
        pointer = probe.read(pointer + 1, 1)


def _check_read_only(function: PCIFunction, config: bytes, mask: bytes, probe: _Probe,
                     add: _Add, seed: int) -> None:
    baseline = {name: probe.read(off & 0xFC) >> 8 * (off & 3) & ((1 << 8 * size) - 1)
                for name, (off, size) in READ_ONLY_REGISTERS.items()}
    device_specific = bytes(probe.read(o, 1) for o in range(0x40, 0x100))
    rng = random.Random(seed)
    patterns = [0xFFFFFFFF, 0x00000000, 0xA5A5A5A5, 0x5A5A5A5A]
    for value in patterns:  # every dword of the space, like a careless guest
        for reg in range(0, 0x100, 4):
            probe.write(reg, value)
    for _ in range(2000):  # random traffic of every access size and alignment
        size = rng.choice((1, 2, 4))
        reg = rng.randrange(0, 0x100 - size + 1)
        if size > 1:
            reg &= ~(size - 1)
        probe.write(reg, rng.getrandbits(32) & ((1 << 8 * size) - 1), size)
    for name, (off, size) in READ_ONLY_REGISTERS.items():
        now = probe.read(off & 0xFC) >> 8 * (off & 3) & ((1 << 8 * size) - 1)
        if now != baseline[name]:
            add("read-only", f"{name} changed from {baseline[name]:#x} to {now:#x}", off)
    for o in range(0x40, 0x100):
        now = probe.read(o, 1)
        stuck = ~mask[o] & 0xFF
        if (now ^ device_specific[o - 0x40]) & stuck:
            add("read-only", f"device-specific register {o:#04x} changed bits outside its "
                f"write mask {mask[o]:#04x}", o)
    if any(kind == "unmap-unknown" for kind, _ in probe.events):
        add("bar", "the bus unmapped a region it never mapped during random traffic")


def check_bus(bus: PCIBus) -> List[Finding]:
    """Enumerate ``bus`` like Linux's pci_scan_slot and check the result: every hosted
    function is found, multi-function bits are consistent, the chipset is where a PC has
    it; then run :func:`check_function` on each hosted function."""
    findings: List[Finding] = []

    def read(slot: int, fn: int, reg: int) -> int:
        bus.io_write(0xCF8, 0x80000000 | slot << 11 | fn << 8 | reg, 4)
        return bus.io_read(0xCFC, 4)

    found = {}
    for slot in range(32):
        ids = read(slot, 0, 0)
        if ids == 0xFFFFFFFF:
            for fn in range(1, 8):
                if read(slot, fn, 0) != 0xFFFFFFFF:
                    findings.append(Finding("enumeration", f"00:{slot:02x}.{fn} answers but "
                                            "function 0 of its slot does not"))
            continue
        found[(slot, 0)] = ids
        multi = read(slot, 0, 0x0C) >> 16 & 0x80
        for fn in range(1, 8):
            ids_fn = read(slot, fn, 0)
            if ids_fn != 0xFFFFFFFF:
                if not multi:
                    findings.append(Finding("enumeration", f"00:{slot:02x}.{fn} is hidden: "
                                            "function 0 lacks the multi-function bit", 0x0E))
                found[(slot, fn)] = ids_fn
    hosted = {(slot, fn) for slot, fn, _ in bus.functions()}
    if set(found) != hosted:
        findings.append(Finding("enumeration", f"enumeration found {sorted(found)}, the bus "
                                f"hosts {sorted(hosted)}"))
    if found.get((0, 0)) != 0x12378086:
        findings.append(Finding("enumeration", "00:00.0 is not the i440FX (8086:1237)"))
    if found.get((1, 0)) != 0x70008086:
        findings.append(Finding("enumeration", "00:01.0 is not the PIIX3 (8086:7000)"))
    for slot, fn, function in bus.functions():
        for f in check_function(function):
            findings.append(dataclasses.replace(
                f, message=f"00:{slot:02x}.{fn}: {f.message}"))
    return findings

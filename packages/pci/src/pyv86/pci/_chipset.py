"""The two chipset functions every PCIBus carries: i440FX host bridge and PIIX3 ISA bridge.

Both are functions described as data like any other; the bus gives their PAM and PIRQ
registers their effect when they sit at 00:00.0 and 00:01.0. Values follow Intel's 82441FX
(PMC) and 82371SB (PIIX3) datasheets; registers firmware writes are writable with the
datasheet's masks, and only PAM, PIRQ routing and the reset control port have side effects.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

from ._protocol import BarDescription, IrqLine, config_header


def _no_irq(level: int) -> None:
    """Chipset functions have no INTx pin."""


def _set(buf: bytearray, offset: int, value: int, size: int = 1) -> None:
    buf[offset:offset + size] = value.to_bytes(size, "little")


class _Chipset:
    """Common plumbing: data only, no BARs, no ROM, no interrupt pin."""

    config: bytes
    write_mask: bytes
    bars: Sequence[BarDescription] = ()
    rom: Optional[bytes] = None

    def __init__(self) -> None:
        self.set_irq: IrqLine = _no_irq

    def bar_read(self, index: int, offset: int, size: int) -> int:
        return (1 << (8 * size)) - 1

    def bar_write(self, index: int, offset: int, value: int, size: int) -> None:
        return None


# PAM registers 0x59-0x5F of the i440FX: (register, bit shift, start, length). PAM0's low
# nibble is reserved; its high nibble governs the 64 KiB BIOS area at 0xF0000.
PAM_SEGMENTS: Tuple[Tuple[int, int, int, int], ...] = (
    (0x5A, 0, 0xC0000, 0x4000),
    (0x5A, 4, 0xC4000, 0x4000),
    (0x5B, 0, 0xC8000, 0x4000),
    (0x5B, 4, 0xCC000, 0x4000),
    (0x5C, 0, 0xD0000, 0x4000),
    (0x5C, 4, 0xD4000, 0x4000),
    (0x5D, 0, 0xD8000, 0x4000),
    (0x5D, 4, 0xDC000, 0x4000),
    (0x5E, 0, 0xE0000, 0x4000),
    (0x5E, 4, 0xE4000, 0x4000),
    (0x5F, 0, 0xE8000, 0x4000),
    (0x5F, 4, 0xEC000, 0x4000),
    (0x59, 4, 0xF0000, 0x10000),
)
PAM_FIRST, PAM_LAST = 0x59, 0x5F
PAM_READ_ENABLE = 0x1  # per nibble: reads go to DRAM (else to the ROM / PCI side)
PAM_WRITE_ENABLE = 0x2  # per nibble: writes go to DRAM (else to the ROM side: dropped)


def pam_segments(config: Sequence[int]) -> List[Tuple[int, int, bool, bool]]:
    """(start, length, read_ram, write_ram) of the 13 PAM segments for a host bridge config."""
    out = []
    for reg, shift, start, length in PAM_SEGMENTS:
        nibble = (config[reg] >> shift) & 0x3
        out.append((start, length, bool(nibble & PAM_READ_ENABLE),
                    bool(nibble & PAM_WRITE_ENABLE)))
    return out


class I440FX(_Chipset):
    """82441FX PCI and memory controller (PMC), 8086:1237, the host bridge at 00:00.0."""

    VENDOR_ID = 0x8086
    DEVICE_ID = 0x1237

    def __init__(self) -> None:
        super().__init__()
        cfg = config_header(self.VENDOR_ID, self.DEVICE_ID, 0x060000, revision=0x02,
                            status=0x0280)
        mask = bytearray(256)
        _set(cfg, 0x04, 0x0006, 2)  # memory access and bus master: hardwired on
        _set(mask, 0x04, 0x0140, 2)  # parity error response, SERR# enable
        mask[0x0D] = 0xF8  # master latency timer, bits 7:3
        cfg[0x0D] = 0x00
        # PMC configuration, DRAM control/timing; no side effects in an emulator.
        for off, reset, wmask in (
            (0x50, 0x00, 0xEF), (0x51, 0x01, 0x80), (0x52, 0x00, 0xFF), (0x53, 0x80, 0xF0),
            (0x54, 0x00, 0xFF), (0x55, 0x00, 0xFF), (0x56, 0x00, 0xFF), (0x57, 0x01, 0xDF),
            (0x58, 0x10, 0xFF), (0x68, 0x00, 0xC0), (0x70, 0x00, 0xF8), (0x71, 0x10, 0xFF),
            (0x72, 0x02, 0x78), (0x90, 0x00, 0xFF), (0x91, 0x00, 0x11), (0x93, 0x00, 0xFF),
        ):
            cfg[off] = reset
            mask[off] = wmask
        for off in range(0x60, 0x68):  # DRAM row boundaries
            cfg[off] = 0x01
            mask[off] = 0xFF
        # PAM0-PAM6: reset value 0 (all of 0xC0000-0xFFFFF goes to the ROM / PCI side).
        mask[0x59] = 0x30
        for off in range(0x5A, 0x60):
            mask[off] = 0x33
        self.config = bytes(cfg)
        self.write_mask = bytes(mask)

    def __repr__(self) -> str:
        return "I440FX()"


# PIIX3 PIRQ route control registers PIRQRCA-D: bit 7 disables routing, bits 3:0 the ISA IRQ.
PIRQ_FIRST = 0x60
PIRQ_DISABLE = 0x80
PIRQ_RESET = 0x80
# ISA IRQs a PIRQ may be routed to (82371SB: 0-2, 8 and 13 are reserved values).
PIRQ_VALID_IRQS = frozenset((3, 4, 5, 6, 7, 9, 10, 11, 12, 14, 15))


def pirq_route(value: int) -> Optional[int]:
    """The ISA IRQ a PIRQRC register value routes to, or None (disabled or reserved)."""
    if value & PIRQ_DISABLE:
        return None
    irq = value & 0x0F
    return irq if irq in PIRQ_VALID_IRQS else None


class PIIX3(_Chipset):
    """82371SB PIIX3 function 0 (PCI to ISA bridge), 8086:7000, at 00:01.0, multi-function."""

    VENDOR_ID = 0x8086
    DEVICE_ID = 0x7000

    def __init__(self) -> None:
        super().__init__()
        cfg = config_header(self.VENDOR_ID, self.DEVICE_ID, 0x060100, revision=0x00,
                            status=0x0200, header_type=0x80)
        mask = bytearray(256)
        _set(cfg, 0x04, 0x0007, 2)  # I/O, memory and bus master: hardwired on
        _set(mask, 0x04, 0x0008, 2)  # special cycle enable
        for off, reset, wmask in (
            (0x4C, 0x4D, 0x7F),  # ISA I/O recovery timer
            (0x4E, 0x03, 0xFF), (0x4F, 0x00, 0x03),  # X-bus chip select
            (0x60, PIRQ_RESET, 0x8F), (0x61, PIRQ_RESET, 0x8F),
            (0x62, PIRQ_RESET, 0x8F), (0x63, PIRQ_RESET, 0x8F),
            (0x69, 0x02, 0xFE),  # top of memory
            (0x6A, 0x00, 0xFF), (0x6B, 0x00, 0x80),  # misc status
            (0x70, 0x80, 0xCF), (0x71, 0x80, 0xCF),  # motherboard IRQ routing
            (0x76, 0x0C, 0x87), (0x77, 0x0C, 0x87),  # motherboard DMA
            (0x78, 0x02, 0xFF), (0x79, 0x00, 0xFF),  # programmable chip select
            (0x80, 0x00, 0x7F),  # APIC base address relocation
            (0x82, 0x00, 0x0F),  # deterministic latency control
            (0xA0, 0x08, 0x1F), (0xA2, 0x00, 0xFF), (0xA3, 0x00, 0x01),  # SMI control/enable
            (0xA4, 0x00, 0xFF), (0xA5, 0x00, 0xFF), (0xA6, 0x00, 0xFF), (0xA7, 0x00, 0x80),
            (0xA8, 0x0F, 0xFF),  # fast off timer
            (0xAA, 0x00, 0xFF), (0xAB, 0x00, 0x01),  # SMI request
            (0xAC, 0x00, 0xFF), (0xAE, 0x00, 0xFF),  # clock throttle timers
        ):
            cfg[off] = reset
            mask[off] = wmask
        self.config = bytes(cfg)
        self.write_mask = bytes(mask)

    def __repr__(self) -> str:
        return "PIIX3()"

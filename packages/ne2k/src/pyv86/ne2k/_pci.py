"""The RTL8029AS as "a PCI function described as data" (docs/architecture.md).

This module never imports ``pyv86.pci``: the bus checks the object structurally.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Callable, Optional, Tuple

if TYPE_CHECKING:  # pragma: no cover
    from ._card import NE2000

VENDOR_REALTEK = 0x10EC
DEVICE_RTL8029 = 0x8029
CLASS_ETHERNET = 0x020000
IO_BAR_SIZE = 32


@dataclasses.dataclass(frozen=True)
class PCIBar:
    """One base address register of the function."""

    index: int
    kind: str          # "io" or "mem"
    size: int          # a power of two, in bytes
    prefetchable: bool = False


def _rtl8029_config() -> Tuple[bytes, bytes]:
    cfg = bytearray(256)
    mask = bytearray(256)
    cfg[0x00:0x02] = VENDOR_REALTEK.to_bytes(2, "little")
    cfg[0x02:0x04] = DEVICE_RTL8029.to_bytes(2, "little")
    # command 0 (the bus enables decoding), status 0: no capabilities list
    cfg[0x08] = 0x00                                    # revision 0
    cfg[0x09:0x0C] = CLASS_ETHERNET.to_bytes(3, "little")  # 02/00/00 Ethernet controller
    cfg[0x0E] = 0x00                                    # header type 0, single function
    cfg[0x10:0x14] = (0x00000001).to_bytes(4, "little")  # BAR0: I/O space indicator
    cfg[0x2C:0x2E] = VENDOR_REALTEK.to_bytes(2, "little")  # subsystem vendor
    cfg[0x2E:0x30] = DEVICE_RTL8029.to_bytes(2, "little")  # subsystem id
    cfg[0x3D] = 0x01                                    # interrupt pin INTA#
    # Writable bits: command I/O space enable (the chip has no memory BAR and is no bus
    # master), BAR0 address bits 31:5 (32 bytes of I/O), the interrupt line register.
    mask[0x04] = 0x01
    mask[0x10:0x14] = (0xFFFFFFE0).to_bytes(4, "little")
    mask[0x3C] = 0xFF
    return bytes(cfg), bytes(mask)


def _no_irq(level: int) -> None:
    return None


class RTL8029Function:
    """The PCI function of an RTL8029AS card: configuration data plus BAR0 access.

    ``set_irq`` is assigned by the bus; the card drives it with its interrupt level (0/1)
    whenever that changes. ``irq_level`` tells the current level (for a bus attaching late).
    """

    def __init__(self, card: NE2000, rom: Optional[bytes] = None) -> None:
        self._card = card
        self.config, self.write_mask = _rtl8029_config()
        self.bars: Tuple[PCIBar, ...] = (PCIBar(index=0, kind="io", size=IO_BAR_SIZE),)
        if rom is not None:
            rom = bytes(rom)
            if not rom:
                raise ValueError("an expansion ROM image cannot be empty")
        self.rom: Optional[bytes] = rom
        self.set_irq: Callable[[int], None] = _no_irq

    @property
    def irq_level(self) -> int:
        return self._card.irq_level

    def bar_read(self, index: int, offset: int, size: int) -> int:
        if index != 0 or not 0 <= offset < IO_BAR_SIZE:
            return (1 << (8 * size)) - 1 if size in (1, 2, 4) else 0
        return self._card.io_read(offset, size)

    def bar_write(self, index: int, offset: int, value: int, size: int) -> None:
        if index != 0 or not 0 <= offset < IO_BAR_SIZE:
            return
        self._card.io_write(offset, value, size)

    def __repr__(self) -> str:
        return f"RTL8029Function(10ec:8029, card={self._card!r})"

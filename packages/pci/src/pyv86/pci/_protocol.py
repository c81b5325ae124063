"""The contract between the bus and a hosted function: "a PCI function described as data".

Producers (for example ``pyv86.ne2k``) never import this package; they provide an object with
the attributes below and the bus checks it structurally (``typing.Protocol``). See
``docs/architecture.md``, section "A PCI function described as data".
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Protocol, Sequence

IrqLine = Callable[[int], None]


class BarDescription(Protocol):
    """One base address register: ``index`` 0-5, ``kind`` "io" or "mem", ``size`` a power of two."""

    @property
    def index(self) -> int: ...

    @property
    def kind(self) -> str: ...

    @property
    def size(self) -> int: ...

    @property
    def prefetchable(self) -> bool: ...


class PCIFunction(Protocol):
    """A PCI function described as data (header type 0).

    ``config`` and ``write_mask`` are 256 bytes each. The bus owns the semantics of the
    command and status registers, the BARs, the ROM BAR and the interrupt line; the write mask
    governs every other byte (identity, class, revision, header type and interrupt pin stay
    read-only whatever the mask says). ``set_irq`` is assigned by the bus: the function calls
    it with 0 or 1 to drive its INTx pin.
    """

    @property
    def config(self) -> bytes: ...

    @property
    def write_mask(self) -> bytes: ...

    @property
    def bars(self) -> Sequence[BarDescription]: ...

    @property
    def rom(self) -> Optional[bytes]: ...

    set_irq: IrqLine

    def bar_read(self, index: int, offset: int, size: int) -> int: ...

    def bar_write(self, index: int, offset: int, value: int, size: int) -> None: ...


@dataclasses.dataclass(frozen=True)
class Bar:
    """A ready-made :class:`BarDescription`."""

    index: int
    kind: str
    size: int
    prefetchable: bool = False


def _no_irq(level: int) -> None:
    """The INTx pin of a function that is not hosted goes nowhere."""


def _ones(index: int, offset: int, size: int) -> int:
    return (1 << (8 * size)) - 1


def _ignore(index: int, offset: int, value: int, size: int) -> None:
    return None


class DataFunction:
    """A ready-made :class:`PCIFunction`: configuration bytes plus BAR access callables.

    Useful for tests, for simple devices and as an example of the contract; a device package
    is free to write its own class instead.
    """

    def __init__(
        self,
        config: bytes,
        write_mask: bytes,
        bars: Sequence[BarDescription] = (),
        rom: Optional[bytes] = None,
        bar_read: Callable[[int, int, int], int] = _ones,
        bar_write: Callable[[int, int, int, int], None] = _ignore,
    ) -> None:
        self.config = bytes(config)
        self.write_mask = bytes(write_mask)
        self.bars = tuple(bars)
        self.rom = None if rom is None else bytes(rom)
        self._bar_read = bar_read
        self._bar_write = bar_write
        self.set_irq: IrqLine = _no_irq

    def bar_read(self, index: int, offset: int, size: int) -> int:
        return self._bar_read(index, offset, size)

    def bar_write(self, index: int, offset: int, value: int, size: int) -> None:
        self._bar_write(index, offset, value, size)

    def __repr__(self) -> str:
        vendor = self.config[0] | self.config[1] << 8
        device = self.config[2] | self.config[3] << 8
        return f"DataFunction({vendor:04x}:{device:04x}, bars={list(self.bars)!r})"


def config_header(
    vendor_id: int,
    device_id: int,
    class_code: int,
    *,
    revision: int = 0,
    interrupt_pin: int = 0,
    subsystem_vendor_id: int = 0,
    subsystem_id: int = 0,
    header_type: int = 0,
    status: int = 0,
) -> bytearray:
    """256 bytes of a type-0 configuration space with the given identity, all else zero.

    ``class_code`` is the 24-bit base/sub-class/programming-interface value (0x020000 for an
    Ethernet controller). BARs start at zero: the bus fills in their type bits.
    """
    cfg = bytearray(256)
    cfg[0x00:0x02] = (vendor_id & 0xFFFF).to_bytes(2, "little")
    cfg[0x02:0x04] = (device_id & 0xFFFF).to_bytes(2, "little")
    cfg[0x06:0x08] = (status & 0xFFFF).to_bytes(2, "little")
    cfg[0x08] = revision & 0xFF
    cfg[0x09:0x0C] = (class_code & 0xFFFFFF).to_bytes(3, "little")
    cfg[0x0E] = header_type & 0xFF
    cfg[0x2C:0x2E] = (subsystem_vendor_id & 0xFFFF).to_bytes(2, "little")
    cfg[0x2E:0x30] = (subsystem_id & 0xFFFF).to_bytes(2, "little")
    cfg[0x3D] = interrupt_pin & 0xFF
    return cfg

"""The I/O port bus: ``(base, length)`` ranges mapped to ``io_read``/``io_write`` handlers.

Unmapped ports read all ones and ignore writes. A device declares which access sizes it
takes (``sizes``, default 1, 2 and 4); a wider access to a byte-only device, or one that
runs past the end of a range, is split into byte accesses, little-endian, each going to
whatever is mapped at its port (as an ISA bus splits a 16-bit cycle).
"""

from __future__ import annotations

from typing import Callable, Iterable, List, Optional

__all__ = ["IOBus", "IORange"]

_ONES = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF}


class IORange:
    __slots__ = ("base", "length", "name", "read", "sizes", "write")

    def __init__(self, base: int, length: int, read: Callable[[int, int], int],
                 write: Callable[[int, int, int], None], sizes: int, name: str):
        self.base = base
        self.length = length
        self.read = read
        self.write = write
        self.sizes = sizes  # bit mask: 1, 2, 4
        self.name = name

    def __repr__(self) -> str:
        return f"IORange({self.name!r}, {self.base:#x}+{self.length})"


class IOBus:
    """64 KiB of I/O ports. ``read``/``write`` are the CPU's ``io`` interface."""

    def __init__(self) -> None:
        self._map: List[Optional[IORange]] = [None] * 0x10000
        self.unmapped_reads = 0
        self.unmapped_writes = 0

    def map(self, base: int, length: int, read: Callable[[int, int], int],
            write: Callable[[int, int, int], None], *, sizes: Iterable[int] = (1, 2, 4),
            name: str = "") -> IORange:
        """Map ports ``base .. base+length-1``; raise ValueError on overlap or bad range."""
        if not (0 <= base and length > 0 and base + length <= 0x10000):
            raise ValueError(f"bad I/O range {base:#x}+{length}")
        mask = 0
        for s in sizes:
            if s not in (1, 2, 4):
                raise ValueError(f"bad access size {s}")
            mask |= s
        for port in range(base, base + length):
            other = self._map[port]
            if other is not None:
                raise ValueError(f"I/O range {name or '?'} {base:#x}+{length} overlaps {other!r}")
        rng = IORange(base, length, read, write, mask, name)
        for port in range(base, base + length):
            self._map[port] = rng
        return rng

    def map_device(self, base: int, length: int, device, *, sizes: Iterable[int] = (1, 2, 4),
                   name: str = "") -> IORange:
        """Map an object with the architecture's ``io_read``/``io_write`` methods."""
        return self.map(base, length, device.io_read, device.io_write, sizes=sizes,
                        name=name or type(device).__name__)

    def unmap(self, rng: IORange) -> None:
        for port in range(rng.base, rng.base + rng.length):
            if self._map[port] is rng:
                self._map[port] = None

    def lookup(self, port: int) -> Optional[IORange]:
        return self._map[port & 0xFFFF]

    def ranges(self) -> List[IORange]:
        seen: List[IORange] = []
        for r in self._map:
            if r is not None and (not seen or seen[-1] is not r):
                seen.append(r)
        return seen

    # -- the CPU's interface ------------------------------------------------------------
    def read(self, port: int, size: int) -> int:
        port &= 0xFFFF
        rng = self._map[port]
        if rng is not None:
            off = port - rng.base
            if rng.sizes & size and off + size <= rng.length:
                return rng.read(off, size) & _ONES[size]
        elif size == 1:
            self.unmapped_reads += 1
            return 0xFF
        if size == 1:
            return rng.read(port - rng.base, 1) & 0xFF  # type: ignore[union-attr]
        value = 0
        for i in range(size):
            value |= self.read((port + i) & 0xFFFF, 1) << (8 * i)
        return value

    def write(self, port: int, value: int, size: int) -> None:
        port &= 0xFFFF
        value &= _ONES[size]
        rng = self._map[port]
        if rng is not None:
            off = port - rng.base
            if rng.sizes & size and off + size <= rng.length:
                rng.write(off, value, size)
                return
        elif size == 1:
            self.unmapped_writes += 1
            return
        if size == 1:
            rng.write(port - rng.base, value, 1)  # type: ignore[union-attr]
            return
        for i in range(size):
            self.write((port + i) & 0xFFFF, (value >> (8 * i)) & 0xFF, 1)

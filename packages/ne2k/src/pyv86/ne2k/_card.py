"""The boards: NE2000 (ISA, 16-bit), NE1000 (ISA, 8-bit) and RTL8029AS (PCI).

A board is the DP8390 core plus the NE2000 ASIC: the data port at offset 0x10, the reset
port at 0x1F, the station-address PROM and the buffer RAM. The board never learns its base
address (offsets only) and never calls into an interrupt controller: its interrupt output is
the ``irq(level)`` callback.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

from . import _dp8390 as chip
from ._mac import MacLike, format_mac, parse_mac, parse_prefix, random_mac
from ._pci import RTL8029Function
from .translate import translate_frame

MODELS = ("ne2000", "ne1000", "rtl8029")
MAC_MODES = ("randomise", "preserve_mac_from_state_image", "mac_address_translation")
STATE_VERSION = 1

_MODEL_ALIASES = {
    "ne2000": "ne2000", "ne2k": "ne2000", "ne2000-isa": "ne2000",
    "ne1000": "ne1000",
    "rtl8029": "rtl8029", "rtl8029as": "rtl8029", "ne2k-pci": "rtl8029", "ne2k_pci": "rtl8029",
}

# model -> (RAM start, RAM size, byte-only board)
_LAYOUT = {
    "ne2000": (0x4000, 0x4000, False),
    "ne1000": (0x2000, 0x2000, True),
    "rtl8029": (0x4000, 0x8000, False),
}

DATA_PORT = 0x10
RESET_PORT = 0x1F
WINDOW = 0x20

_MASKS = (0, 0xFF, 0xFFFF, 0, 0xFFFFFFFF)

Send = Callable[[bytes], None]
Line = Callable[[int], None]


def _prom_image(mac: bytes, doubled: bool) -> bytes:
    """The 16-byte station PROM: MAC, zeros, 'WW' at bytes 14 and 15. A 16-bit board shows
    each byte twice (byte i at remote addresses 2i and 2i+1); an 8-bit board shows it once,
    mirrored at 0x10-0x1F."""
    prom = bytearray(16)
    prom[0:6] = mac
    prom[14] = prom[15] = 0x57
    if doubled:
        return bytes(b for b in prom for _ in (0, 1))
    return bytes(prom) * 2


class _RealtekCore(chip.DP8390):
    """The RTL8029AS's DP8390 with its page 3 configuration registers."""

    def __init__(self, *, full_duplex: bool, **kw: Any) -> None:
        self.full_duplex_default = full_duplex
        self.cr9346 = 0
        self.config2 = 0
        self.config3 = 0
        self.hltclk = 0x52
        self.bpage = 0
        super().__init__(realtek=True, **kw)
        self.load_config()

    def load_config(self) -> None:
        """Configuration as auto-loaded from the 93C46 EEPROM."""
        self.cr9346 = 0
        self.config2 = 0x00                 # PL=00: auto-detect media, no boot ROM
        self.config3 = 0x40 if self.full_duplex_default else 0x00
        self.hltclk = 0x52
        self.halted = False

    def read_page3(self, off: int) -> int:
        if off == 1:
            return self.cr9346 & 0xCE   # EEDO (bit 0) reads 0: no EEPROM bit-banging
        if off == 2:
            return self.bpage
        if off == 3:
            return 0x00                 # CONFIG0: no BNC, no jumper mode
        if off == 5:
            return self.config2
        if off == 6:
            return self.config3
        if off == 8:
            return 0x00                 # CSNSAV
        return 0xFF

    def write_page3(self, off: int, value: int) -> None:
        if off == 1:
            if value & 0xC0 == 0x40:    # EEM=01 auto-load: reload and return to normal
                self.load_config()
                return
            self.cr9346 = value & 0xCE
        elif off == 2:
            self.bpage = value
        elif off == 5 and self.cr9346 & 0xC0 == 0xC0:
            self.config2 = value & 0xF3
        elif off == 6 and self.cr9346 & 0xC0 == 0xC0:
            self.config3 = value & 0x76
        elif off == 9:
            if value == 0x48:           # 'H': halt the clock
                self.halted = True
            elif value == 0x52:         # 'R': run
                self.halted = False
            self.hltclk = value


class NE2000:
    """An NE2000-compatible card.

    ``model``: ``"ne2000"`` (ISA, 16 KiB), ``"ne1000"`` (ISA 8-bit, 8 KiB) or ``"rtl8029"``
    (PCI RTL8029AS, 32 KiB, page 3, 32-bit data port). ``mac``: the card's address (text or 6
    bytes); random (see ``mac_prefix``) when omitted. ``send(frame)`` receives every frame the
    card puts on the wire; ``irq(level)`` its interrupt output. Both may be assigned later.

    Keyword-only: ``mac_prefix`` (e.g. ``"00:22:15"``; default a locally administered
    address), ``wire_speed`` (bits per second; 0 completes a transmit at once, otherwise TXP
    stays set for the frame's wire time: drive it with :meth:`advance`), ``full_duplex``
    (RTL8029 CONFIG3.FUDUP as loaded from EEPROM), ``io_base`` and ``isa_irq`` (ISA board
    properties for the machine: the card itself never uses them), ``rom`` (PCI expansion ROM
    image), ``randbytes`` (randomness source for MACs, default ``os.urandom``).
    """

    def __init__(self, model: str = "ne2000", mac: Optional[MacLike] = None,
                 send: Optional[Send] = None, irq: Optional[Line] = None, *,
                 mac_prefix: Optional[MacLike] = None, wire_speed: int = 0,
                 full_duplex: bool = False, io_base: int = 0x300, isa_irq: int = 9,
                 rom: Optional[bytes] = None,
                 randbytes: Optional[Callable[[int], bytes]] = None) -> None:
        if not isinstance(model, str) or model.lower() not in _MODEL_ALIASES:
            raise ValueError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
        self._model = _MODEL_ALIASES[model.lower()]
        if isinstance(wire_speed, bool) or not isinstance(wire_speed, int) or wire_speed < 0:
            raise ValueError(f"wire_speed must be a non-negative int (bit/s), got {wire_speed!r}")
        if not isinstance(io_base, int) or not 0 <= io_base <= 0xFFE0 or io_base % 0x20:
            raise ValueError(f"io_base must be a multiple of 0x20 below 0x10000, got {io_base!r}")
        if not isinstance(isa_irq, int) or not 0 <= isa_irq <= 15:
            raise ValueError(f"isa_irq must be 0-15, got {isa_irq!r}")
        self._prefix = None if mac_prefix is None else parse_prefix(mac_prefix)
        self._randbytes = randbytes
        wire = parse_mac(mac) if mac is not None else self._random_mac()
        if wire[0] & 1:
            raise ValueError(f"a card's MAC must be unicast, got multicast {mac!r}")
        if rom is not None and (not isinstance(rom, (bytes, bytearray)) or not rom):
            raise ValueError("rom must be a non-empty bytes object (an expansion ROM image)")
        if not isinstance(full_duplex, bool):
            raise ValueError(f"full_duplex must be a bool, got {full_duplex!r}")
        self._wire_mac = wire
        self._guest_mac = wire
        self._io_base = io_base
        self._isa_irq = isa_irq
        self.send: Optional[Send] = send
        self.irq: Optional[Line] = irq
        self._pci: Optional[RTL8029Function] = None
        self._rom = rom
        ram_start, ram_size, byte_only = _LAYOUT[self._model]
        self._byte_only = byte_only
        prom = _prom_image(wire, doubled=not byte_only)
        core: chip.DP8390
        if self._model == "rtl8029":
            core = _RealtekCore(full_duplex=full_duplex, ram_start=ram_start,
                                ram_size=ram_size, prom=prom, wire_speed=wire_speed)
        else:
            core = chip.DP8390(ram_start=ram_start, ram_size=ram_size, prom=prom,
                               byte_only=byte_only, wire_speed=wire_speed)
        core.irq_out = self._line
        core.wire_out = self._wire
        self.chip = core
        self._dma_read = core.dma_read
        self._dma_write = core.dma_write
        self._stats_extra = {"tx_translated": 0, "rx_translated": 0}

    # --------------------------------------------------------------------- properties
    @property
    def model(self) -> str:
        return self._model

    @property
    def mac(self) -> bytes:
        """The address on the wire."""
        return self._wire_mac

    @property
    def guest_mac(self) -> bytes:
        """The address the guest sees in the PROM (differs from :attr:`mac` only while
        translating)."""
        return self._guest_mac

    @property
    def translating(self) -> bool:
        return self._guest_mac != self._wire_mac

    @property
    def io_base(self) -> int:
        return self._io_base

    @property
    def isa_irq(self) -> int:
        return self._isa_irq

    @property
    def irq_level(self) -> int:
        return self.chip.irq_level

    @property
    def schedule(self) -> Optional[Callable[[float], None]]:
        """Optional callback told the wire time (seconds) of each transmission that started,
        so a host can call :meth:`advance` when it is over (only with ``wire_speed``)."""
        return self.chip.schedule

    @schedule.setter
    def schedule(self, fn: Optional[Callable[[float], None]]) -> None:
        self.chip.schedule = fn

    def __repr__(self) -> str:
        return f"NE2000(model={self._model!r}, mac={format_mac(self._wire_mac)!r})"

    # ------------------------------------------------------------------------- lines
    def _line(self, level: int) -> None:
        irq = self.irq
        if irq is not None:
            irq(level)
        fn = self._pci
        if fn is not None:
            fn.set_irq(level)

    def _wire(self, frame: bytes) -> None:
        if self._guest_mac != self._wire_mac:
            frame = translate_frame(frame, self._guest_mac, self._wire_mac)
            self._stats_extra["tx_translated"] += 1
        send = self.send
        if send is not None:
            send(frame)

    # ----------------------------------------------------------------------- I/O ports
    def io_read(self, offset: int, size: int) -> int:
        """Read ``size`` (1, 2 or 4) bytes at ``offset`` from the card's base."""
        if offset == DATA_PORT and not self._byte_only and (size == 4 or size == 2 or size == 1):
            return self._dma_read(size)   # the hot path: frames are drained through here
        if size != 1 and size != 2 and size != 4:
            raise ValueError(f"I/O access size must be 1, 2 or 4, got {size!r}")
        if offset == DATA_PORT:
            if self._byte_only and size > 1:
                # An 8-bit board: the bus splits the access into byte transfers.
                c = self.chip
                v = 0
                for i in range(size):
                    v |= c.dma_read(1) << (8 * i)
                return v
            return self.chip.dma_read(size)
        if 0 <= offset < 0x10:
            if size == 1:
                return self.chip.read_reg(offset)
            v = 0
            for i in range(size):  # wider accesses split into byte accesses
                o = offset + i
                v |= (self.chip.read_reg(o) if o < 0x10 else 0xFF) << (8 * i)
            return v
        if offset == RESET_PORT:
            self._reset_port()
            return 0
        return (1 << (8 * size)) - 1

    def io_write(self, offset: int, value: int, size: int) -> None:
        """Write ``size`` (1, 2 or 4) bytes at ``offset`` from the card's base."""
        if offset == DATA_PORT and not self._byte_only and (size == 4 or size == 2 or size == 1):
            self._dma_write(value & _MASKS[size], size)
            return
        if size != 1 and size != 2 and size != 4:
            raise ValueError(f"I/O access size must be 1, 2 or 4, got {size!r}")
        value &= (1 << (8 * size)) - 1
        if offset == DATA_PORT:
            if self._byte_only and size > 1:
                for i in range(size):
                    self.chip.dma_write((value >> (8 * i)) & 0xFF, 1)
                return
            self.chip.dma_write(value, size)
            return
        if 0 <= offset < 0x10:
            for i in range(size):
                if offset + i < 0x10:
                    self.chip.write_reg(offset + i, (value >> (8 * i)) & 0xFF)
            return
        # 0x1F: a write ends the reset the read started (the reset already happened);
        # 0x11-0x1E: nothing there (Windows probes touch them).

    def _reset_port(self) -> None:
        self.chip.reset()

    # -------------------------------------------------------------------- the wire side
    def receive(self, frame: bytes) -> bool:
        """Offer a frame from the wire (no FCS). False when the card is stopped, in
        loopback, filtering it out, or its ring is full (the frame is then lost).
        ``frame`` may be any bytes-like object."""
        if type(frame) is not bytes:
            frame = bytes(frame)
        if self._guest_mac != self._wire_mac:
            c = self.chip
            if (frame[:6] == self._guest_mac and not c.rcr & chip.RCR_PRO
                    and c.cr & chip.CR_STA and not c.cr & chip.CR_STP):
                # On the wire this card is the fresh MAC: a frame for the image's MAC is for
                # the machine that keeps it (the original or a preserving clone).
                c.stats["rx_dropped_filtered"] += 1
                return False
            frame = translate_frame(frame, self._wire_mac, self._guest_mac)
            self._stats_extra["rx_translated"] += 1
        return self.chip.receive(frame)

    def advance(self, seconds: float) -> None:
        """Let modelled wire time pass; completes a transmission whose time is up."""
        self.chip.advance(seconds)

    def next_event(self) -> Optional[float]:
        """Seconds until the transmission in progress completes, or None."""
        return self.chip.next_event()

    def reset(self) -> None:
        """Hardware reset (power-on, ISA RESET, PCI RST#): the chip's reset state and, on the
        RTL8029, the configuration reloaded from EEPROM. Buffer RAM is kept."""
        c = self.chip
        if isinstance(c, _RealtekCore):
            c.load_config()
        c.reset()

    # ---------------------------------------------------------------------------- PCI
    def pci_function(self) -> RTL8029Function:
        """The card's PCI function described as data (RTL8029 only; one per card)."""
        if self._model != "rtl8029":
            raise ValueError(f"a {self._model} is an ISA board and has no PCI function")
        if self._pci is None:
            self._pci = RTL8029Function(self, rom=self._rom)
        return self._pci

    # ---------------------------------------------------------------------- statistics
    def statistics(self) -> Dict[str, Any]:
        """Counters and state for humans and tests (see the README for the keys)."""
        c = self.chip
        out: Dict[str, Any] = dict(c.stats)
        out.update(self._stats_extra)
        out.update({
            "model": self._model,
            "mac": format_mac(self._wire_mac),
            "guest_mac": format_mac(self._guest_mac),
            "translating": self.translating,
            "running": bool(c.cr & chip.CR_STA) and not c.cr & chip.CR_STP,
            "irq_level": c.irq_level,
            "tx_in_progress": c.tx_frame is not None,
            "full_duplex": bool(getattr(c, "config3", 0) & 0x40),
        })
        return out

    # ---------------------------------------------------------------------------- MACs
    def _random_mac(self) -> bytes:
        return random_mac(self._prefix, self._randbytes)

    def _set_macs(self, guest: bytes, wire: bytes) -> None:
        self._guest_mac = guest
        self._wire_mac = wire
        self.chip.set_prom(_prom_image(guest, doubled=not self._byte_only))

    # --------------------------------------------------------------------------- state
    def save_state(self) -> Dict[str, Any]:
        from ._state import save
        return save(self)

    def restore_state(self, state: Dict[str, Any], mac_mode: str = "randomise") -> None:
        """Restore :meth:`save_state` output. ``mac_mode``: ``"randomise"`` (a fresh MAC in
        PROM, in the station address registers PAR0-5 and on the wire), ``"preserve_mac_from_state_image"`` (the image's MAC), or
        ``"mac_address_translation"`` (the guest keeps the image's MAC, the wire gets a fresh
        one, frames are translated). Raises ValueError naming what is wrong; on error the
        card is unchanged."""
        from ._state import restore
        restore(self, state, mac_mode)

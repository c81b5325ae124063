"""Versioned save/restore of a card: a plain dict (ints, bools, floats, bytes, None).

Schema, version 1 (see the README for the meaning of each register)::

    {
      "version": 1,
      "model": "ne2000" | "ne1000" | "rtl8029",
      "guest_mac": bytes(6),        # what PROM shows (the image's MAC)
      "wire_mac": bytes(6),         # what the wire carries (differs only while translating)
      "registers": {"cr", "isr", "imr", "dcr", "tcr", "rcr", "tsr", "rsr", "ncr", "pstart",
                    "pstop", "bnry", "curr", "tpsr", "rnpp", "lnpp", "cntr0", "cntr1",
                    "cntr2": 0-255; "tbcr", "rsar", "rbcr", "clda": 0-65535},
      "par": bytes(6), "mar": bytes(8),
      "ram": bytes(RAM size of the model),
      "dma": "idle" | "read" | "write",
      "overflow": bool,             # receiving stopped until the driver recovers
      "tx_frame": bytes | None,     # a transmission on the wire (TXP still set)
      "tx_loopback": bool, "tx_remaining": float (seconds of wire time left),
      "realtek": None | {"cr9346", "config2", "config3", "hltclk", "bpage": 0-255,
                         "full_duplex_default": bool},
    }

A state from a newer version, of another model, or malformed in any way is refused with a
``ValueError`` naming the field; the card is then unchanged.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Dict, Optional

from . import _dp8390 as chip
from ._card import MAC_MODES, _RealtekCore

if TYPE_CHECKING:  # pragma: no cover
    from ._card import NE2000

VERSION = 1

_REG8 = ("cr", "isr", "imr", "dcr", "tcr", "rcr", "tsr", "rsr", "ncr", "pstart", "pstop",
         "bnry", "curr", "tpsr", "rnpp", "lnpp", "cntr0", "cntr1", "cntr2")
_REG16 = ("tbcr", "rsar", "rbcr", "clda")
_DMA = {"idle": chip._DMA_IDLE, "read": chip._DMA_READ, "write": chip._DMA_WRITE}
_DMA_NAMES = {v: k for k, v in _DMA.items()}
_RTL = ("cr9346", "config2", "config3", "hltclk", "bpage")


def save(card: NE2000) -> Dict[str, Any]:
    c = card.chip
    regs = {name: int(getattr(c, name)) for name in _REG8 + _REG16}
    realtek: Optional[Dict[str, Any]] = None
    if isinstance(c, _RealtekCore):
        realtek = {name: int(getattr(c, name)) for name in _RTL}
        realtek["full_duplex_default"] = bool(c.full_duplex_default)
    return {
        "version": VERSION,
        "model": card.model,
        "guest_mac": bytes(card.guest_mac),
        "wire_mac": bytes(card.mac),
        "registers": regs,
        "par": bytes(c.par),
        "mar": bytes(c.mar),
        "ram": bytes(c.mem[c.ram_start:c.ram_end]),
        "dma": _DMA_NAMES[c.dma],
        "overflow": bool(c.overflow),
        "tx_frame": None if c.tx_frame is None else bytes(c.tx_frame),
        "tx_loopback": bool(c.tx_loop),
        "tx_remaining": float(c.tx_remaining),
        "realtek": realtek,
    }


def _bytes(state: Dict[str, Any], key: str, length: Optional[int]) -> bytes:
    v = state.get(key)
    if not isinstance(v, (bytes, bytearray)):
        raise ValueError(f"state field {key!r} must be bytes, got {type(v).__name__}")
    if length is not None and len(v) != length:
        raise ValueError(f"state field {key!r} must be {length} bytes, got {len(v)}")
    return bytes(v)


def _int(d: Dict[str, Any], key: str, limit: int, where: str) -> int:
    if key not in d:
        raise ValueError(f"state field {where}{key!r} is missing")
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= limit:
        raise ValueError(f"state field {where}{key!r} must be an int 0-{limit}, got {v!r}")
    return v


def _bool(d: Dict[str, Any], key: str) -> bool:
    v = d.get(key)
    if not isinstance(v, bool):
        raise ValueError(f"state field {key!r} must be a bool, got {v!r}")
    return v


def restore(card: NE2000, state: Dict[str, Any], mac_mode: str) -> None:
    if mac_mode == "randomize":
        mac_mode = "randomise"
    if mac_mode not in MAC_MODES:
        raise ValueError(f"unknown mac_mode {mac_mode!r}; choose one of {', '.join(MAC_MODES)}")
    if not isinstance(state, dict):
        raise ValueError(f"a card state is a dict, got {type(state).__name__}")
    version = state.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ValueError(f"state field 'version' must be an int, got {version!r}")
    if version > VERSION:
        raise ValueError(f"state version {version} is newer than this pyv86-ne2k ({VERSION})")
    if version < 1:
        raise ValueError(f"state version {version} is not a known version")
    model = state.get("model")
    if model != card.model:
        raise ValueError(f"state is of model {model!r}, this card is {card.model!r}")
    guest_mac = _bytes(state, "guest_mac", 6)
    wire_mac = _bytes(state, "wire_mac", 6)
    if guest_mac[0] & 1 or wire_mac[0] & 1:
        raise ValueError("state MAC addresses must be unicast")
    regs = state.get("registers")
    if not isinstance(regs, dict):
        raise ValueError("state field 'registers' must be a dict")
    values = {name: _int(regs, name, 0xFF, "registers.") for name in _REG8}
    values.update({name: _int(regs, name, 0xFFFF, "registers.") for name in _REG16})
    par = _bytes(state, "par", 6)
    mar = _bytes(state, "mar", 8)
    c = card.chip
    ram = _bytes(state, "ram", c.ram_end - c.ram_start)
    dma = state.get("dma")
    if not isinstance(dma, str) or dma not in _DMA:
        raise ValueError(f"state field 'dma' must be one of {sorted(_DMA)}, got {dma!r}")
    overflow = _bool(state, "overflow")
    tx_frame = state.get("tx_frame")
    if tx_frame is not None:
        tx_frame = _bytes(state, "tx_frame", None)
        if len(tx_frame) > chip.MAX_FRAME:
            raise ValueError(f"state field 'tx_frame' is longer than {chip.MAX_FRAME} bytes")
    tx_loop = _bool(state, "tx_loopback")
    tx_remaining = state.get("tx_remaining")
    if (isinstance(tx_remaining, bool) or not isinstance(tx_remaining, (int, float))
            or not math.isfinite(tx_remaining) or tx_remaining < 0):
        raise ValueError(f"state field 'tx_remaining' must be a finite float >= 0, "
                         f"got {tx_remaining!r}")
    realtek = state.get("realtek")
    rtl: Optional[Dict[str, Any]] = None
    if card.model == "rtl8029":
        if not isinstance(realtek, dict):
            raise ValueError("state field 'realtek' must be a dict for an rtl8029")
        rtl = {name: _int(realtek, name, 0xFF, "realtek.") for name in _RTL}
        rtl["full_duplex_default"] = _bool(realtek, "full_duplex_default")
    elif realtek is not None:
        raise ValueError(f"state field 'realtek' must be None for a {card.model}")

    # Everything validated: apply.
    if mac_mode == "preserve_mac_from_state_image":
        new_guest = new_wire = guest_mac
    elif mac_mode == "mac_address_translation":
        new_guest = guest_mac
        new_wire = card._random_mac()
        while new_wire == guest_mac:   # pragma: no cover - 2**-46 odds
            new_wire = card._random_mac()
    else:
        new_guest = new_wire = card._random_mac()
    before = c.irq_level
    for name, v in values.items():
        setattr(c, name, v)
    c.tcr &= 0x1F
    c.rcr &= 0x3F
    c.dcr &= 0x7F
    c.imr &= 0x7F
    # randomise: the card's station address moves to the fresh MAC too, as in v86 (whose
    # PAR registers are the card's MAC). The driver still sends with the MAC it cached, a
    # learning relay answers that MAC, and the card filters the answers out: networking stops
    # until the driver re-reads the PROM (the seed document's breakage, and its workaround).
    c.par[:] = new_wire if mac_mode == "randomise" else par
    c.mar[:] = mar
    c.mem[c.ram_start:c.ram_end] = ram
    c.dma = _DMA[dma]
    c.overflow = overflow
    c.tx_frame = tx_frame
    c.tx_loop = tx_loop
    c.tx_remaining = float(tx_remaining)
    if tx_frame is not None:
        c.cr |= chip.CR_TXP
    else:
        c.cr &= ~chip.CR_TXP
    if rtl is not None and isinstance(c, _RealtekCore):
        for name in _RTL:
            setattr(c, name, rtl[name])
        c.full_duplex_default = rtl["full_duplex_default"]
        c.halted = rtl["hltclk"] == 0x48
    c._wrap()
    card._set_macs(new_guest, new_wire)
    level = 1 if (c.isr & c.imr & 0x7F) else 0
    c.irq_level = level
    if level != before:
        c.irq_out(level)

"""MAC address helpers: parsing, formatting and random addresses.

A MAC is handled as ``bytes`` of length 6 everywhere in this package. Parsing accepts the
usual spellings (``52:54:00:12:34:56``, ``52-54-00-12-34-56``, ``5254.0012.3456``,
``525400123456``) and a 6-byte ``bytes``/``bytearray``; anything else is a ``ValueError``
that names the problem.
"""

from __future__ import annotations

import os
from typing import Callable, Optional, Union

MacLike = Union[str, bytes, bytearray]

#: The prefix v86 gives its cards (00:22:15:xx:xx:xx).
V86_PREFIX = b"\x00\x22\x15"

BROADCAST = b"\xff" * 6

_HEX = "0123456789abcdefABCDEF"


def parse_mac(value: MacLike) -> bytes:
    """Return the 6 bytes of a MAC address given as text or bytes; ValueError if malformed."""
    if isinstance(value, (bytes, bytearray)):
        if len(value) != 6:
            raise ValueError(f"a MAC address has 6 bytes, got {len(value)}")
        return bytes(value)
    if not isinstance(value, str):
        raise ValueError(f"a MAC address must be text or 6 bytes, got {type(value).__name__}")
    text = value.strip()
    digits = _split_mac_text(text)
    if digits is None:
        raise ValueError(
            f"not a MAC address: {value!r} (expected six hex octets like 52:54:00:12:34:56)")
    return bytes(int(d, 16) for d in digits)


def _split_mac_text(text: str) -> Optional[list]:
    if not text or any(c not in _HEX and c not in ":-." for c in text):
        return None
    for sep in (":", "-"):
        if sep in text:
            parts = text.split(sep)
            if len(parts) != 6 or any(not 1 <= len(p) <= 2 for p in parts):
                return None
            if any(c in ":-." for p in parts for c in p):
                return None
            return parts
    if "." in text:  # Cisco style: 5254.0012.3456
        parts = text.split(".")
        if len(parts) != 3 or any(len(p) != 4 for p in parts):
            return None
        joined = "".join(parts)
        return [joined[i:i + 2] for i in range(0, 12, 2)]
    if len(text) == 12:
        return [text[i:i + 2] for i in range(0, 12, 2)]
    return None


def format_mac(mac: Union[bytes, bytearray]) -> str:
    """``b"RT\\x00\\x124V"`` -> ``"52:54:00:12:34:56"``; ValueError unless 6 bytes."""
    if not isinstance(mac, (bytes, bytearray)) or len(mac) != 6:
        raise ValueError(f"a MAC address has 6 bytes, got {mac!r}")
    return ":".join(f"{b:02x}" for b in mac)


def parse_prefix(value: MacLike) -> bytes:
    """A MAC prefix of 0 to 5 octets (``"00:22:15"``); ValueError if malformed or multicast."""
    if isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
    elif isinstance(value, str):
        text = value.strip()
        if text == "":
            raw = b""
        else:
            parts = text.replace("-", ":").split(":")
            if any(len(p) not in (1, 2) or any(c not in _HEX for c in p) for p in parts):
                raise ValueError(f"not a MAC prefix: {value!r} (expected octets like 00:22:15)")
            raw = bytes(int(p, 16) for p in parts)
    else:
        raise ValueError(f"a MAC prefix must be text or bytes, got {type(value).__name__}")
    if len(raw) > 5:
        raise ValueError(f"a MAC prefix has at most 5 octets, got {len(raw)}")
    if raw and raw[0] & 0x01:
        raise ValueError(f"MAC prefix {value!r} is a multicast prefix; cards need unicast")
    return raw


def random_mac(prefix: Optional[MacLike] = None,
               randbytes: Optional[Callable[[int], bytes]] = None) -> bytes:
    """A random unicast MAC.

    Without a prefix: a locally administered unicast address (first octet ``xxxxxx10``).
    With a prefix (e.g. ``"00:22:15"`` as v86 uses): the prefix followed by random octets.
    ``randbytes(n)`` supplies randomness (default ``os.urandom``), for reproducible tests.
    """
    rb = randbytes or os.urandom
    if prefix is None:
        raw = bytearray(rb(6))
        if len(raw) != 6:
            raise ValueError("randbytes returned the wrong number of bytes")
        raw[0] = (raw[0] & 0xFC) | 0x02
        return bytes(raw)
    head = parse_prefix(prefix)
    tail = rb(6 - len(head))
    if len(tail) != 6 - len(head):
        raise ValueError("randbytes returned the wrong number of bytes")
    mac = bytearray(head + tail)
    if not head:
        mac[0] = (mac[0] & 0xFC) | 0x02
    return bytes(mac)


def is_multicast(mac: Union[bytes, bytearray]) -> bool:
    """True for group addresses (including broadcast): bit 0 of the first octet."""
    return bool(mac[0] & 1)


def is_locally_administered(mac: Union[bytes, bytearray]) -> bool:
    """True when bit 1 of the first octet is set."""
    return bool(mac[0] & 2)

"""MAC address translation of Ethernet frames: a pure module (bytes in, bytes out).

After a state image is restored with ``mac_address_translation`` the guest keeps using the
image's MAC (the *old* one) while the wire carries a fresh one (the *new* one). Outgoing
frames are rewritten old -> new, incoming frames new -> old, everywhere the address is
carried:

=====================================  ===========================================
layer                                  field rewritten (when equal to the address)
=====================================  ===========================================
Ethernet (also inside 802.1Q, 802.1ad  destination, source
and 0x9100 tags, up to 8 tags)
ARP (0x0806) and RARP (0x8035)         sender and target hardware address
DHCP/BOOTP (IPv4 UDP port 67 or 68)    ``chaddr`` (htype 1, hlen 6); option 61 client
                                       identifier of type 1, also in the ``file`` and
                                       ``sname`` fields under option 52 (overload);
                                       UDP checksum recomputed (stays zero if zero)
IPv6 neighbour discovery (ICMPv6 133   source and target link-layer address options;
RS, 134 RA, 135 NS, 136 NA, 137        ICMPv6 checksum recomputed
redirect)
DHCPv6 (UDP port 546 or 547, also      client and server identifier (options 1, 2) of
nested in relay messages)              type DUID-LLT and DUID-LL; client link-layer
                                       address (option 79); UDP checksum recomputed
=====================================  ===========================================

IPv6 packets may carry hop-by-hop and destination-options extension headers before the
ICMPv6 or UDP header. A layer that is truncated or malformed (a bad length, an option
running past its packet, a fragment, a checksum that did not verify before rewriting) is
left byte for byte as it was, as is everything inside it; the outer layers that did parse
are still rewritten. Nothing here raises on any input. Translating old -> new and then
new -> old gives back the original bytes, provided the new address did not already appear
in a rewritten field.
"""

from __future__ import annotations

from typing import List, Optional, Union

__all__ = ["MacTranslation", "translate_frame"]

_VLAN_TYPES = (0x8100, 0x88A8, 0x9100)
_MAX_TAGS = 8
_MAX_RELAY_DEPTH = 8

Buffer = Union[bytes, bytearray]


def translate_frame(frame: Buffer, old: bytes, new: bytes) -> bytes:
    """Return ``frame`` with every covered occurrence of MAC ``old`` replaced by ``new``.

    ``old`` and ``new`` are 6-byte MACs (see :func:`pyv86.ne2k.parse_mac`). A frame in which
    ``old`` does not appear at all is returned as is.
    """
    if len(old) != 6 or len(new) != 6:
        raise ValueError("translate_frame needs two 6-byte MAC addresses")
    old = bytes(old)
    new = bytes(new)
    if not isinstance(frame, (bytes, bytearray)):
        frame = bytes(frame)
    if old == new or old not in frame:
        return bytes(frame)
    buf = bytearray(frame)
    try:
        _ethernet(buf, old, new)
    except Exception:  # pragma: no cover - defensive: the parsers are bounds-checked
        return bytes(frame)
    return bytes(buf)


class MacTranslation:
    """The two directions of one translation: the guest's ``old`` MAC and the wire's ``new``."""

    def __init__(self, guest_mac: bytes, wire_mac: bytes) -> None:
        if len(guest_mac) != 6 or len(wire_mac) != 6:
            raise ValueError("MacTranslation needs two 6-byte MAC addresses")
        self.guest_mac = bytes(guest_mac)
        self.wire_mac = bytes(wire_mac)

    def outgoing(self, frame: Buffer) -> bytes:
        """Guest -> wire: old -> new."""
        return translate_frame(frame, self.guest_mac, self.wire_mac)

    def incoming(self, frame: Buffer) -> bytes:
        """Wire -> guest: new -> old."""
        return translate_frame(frame, self.wire_mac, self.guest_mac)


# ------------------------------------------------------------------------ helpers
def _u16(buf: bytearray, i: int) -> int:
    return (buf[i] << 8) | buf[i + 1]


def _swap(buf: bytearray, i: int, old: bytes, new: bytes) -> None:
    if buf[i:i + 6] == old:
        buf[i:i + 6] = new


def _fold_ok(data: Buffer) -> bool:
    """True when the one's complement sum over ``data`` (checksum field included) is -0."""
    if len(data) & 1:
        data = bytes(data) + b"\x00"
    return int.from_bytes(data, "big") % 0xFFFF == 0


def _checksum(data: Buffer) -> int:
    """The Internet checksum of ``data`` (checksum field zeroed by the caller)."""
    if len(data) & 1:
        data = bytes(data) + b"\x00"
    x = int.from_bytes(data, "big")
    s = x % 0xFFFF
    if s == 0 and x:
        s = 0xFFFF
    return (~s) & 0xFFFF


# ------------------------------------------------------------------------- layers
def _ethernet(buf: bytearray, old: bytes, new: bytes) -> None:
    n = len(buf)
    if n < 14:
        return
    _swap(buf, 0, old, new)
    _swap(buf, 6, old, new)
    off = 12
    ethertype = _u16(buf, off)
    tags = 0
    while ethertype in _VLAN_TYPES:
        tags += 1
        if tags > _MAX_TAGS or off + 6 > n:
            return
        off += 4
        ethertype = _u16(buf, off)
    off += 2
    if ethertype == 0x0806 or ethertype == 0x8035:
        _arp(buf, off, old, new)
    elif ethertype == 0x0800:
        _ipv4(buf, off, old, new)
    elif ethertype == 0x86DD:
        _ipv6(buf, off, old, new)


def _arp(buf: bytearray, off: int, old: bytes, new: bytes) -> None:
    if off + 8 > len(buf):
        return
    hlen = buf[off + 4]
    plen = buf[off + 5]
    if _u16(buf, off) != 1 or hlen != 6:
        return
    if off + 8 + 2 * (6 + plen) > len(buf):
        return
    _swap(buf, off + 8, old, new)               # sender hardware address
    _swap(buf, off + 8 + 6 + plen, old, new)    # target hardware address


def _ipv4(buf: bytearray, off: int, old: bytes, new: bytes) -> None:
    n = len(buf)
    if off + 20 > n or buf[off] >> 4 != 4:
        return
    ihl = (buf[off] & 0x0F) * 4
    total = _u16(buf, off + 2)
    if ihl < 20 or total < ihl or off + total > n:
        return
    if _u16(buf, off + 6) & 0x3FFF:   # a fragment (MF or an offset): not parsed
        return
    if buf[off + 9] != 17:
        return
    u = off + ihl
    end = off + total
    if u + 8 > end:
        return
    length = _u16(buf, u + 4)
    if length < 8 or u + length > end:
        return
    sport = _u16(buf, u)
    dport = _u16(buf, u + 2)
    if sport not in (67, 68) and dport not in (67, 68):
        return
    pseudo = bytes(buf[off + 12:off + 20]) + b"\x00\x11" + length.to_bytes(2, "big")
    _udp_payload(buf, pseudo, u, length, old, new, _dhcp4_sites)


def _ipv6(buf: bytearray, off: int, old: bytes, new: bytes) -> None:
    n = len(buf)
    if off + 40 > n or buf[off] >> 4 != 6:
        return
    end = off + 40 + _u16(buf, off + 4)
    if end > n:
        return
    nh = buf[off + 6]
    cur = off + 40
    hops = 0
    while nh in (0, 60):  # hop-by-hop and destination options
        hops += 1
        if hops > 8 or cur + 8 > end:
            return
        nh = buf[cur]
        cur += (buf[cur + 1] + 1) * 8
        if cur > end:
            return
    src_dst = bytes(buf[off + 8:off + 40])
    length = end - cur
    if nh == 58:
        _ndp(buf, src_dst, cur, length, old, new)
    elif nh == 17:
        if cur + 8 > end:
            return
        ulen = _u16(buf, cur + 4)
        if ulen < 8 or cur + ulen > end:
            return
        if _u16(buf, cur) not in (546, 547) and _u16(buf, cur + 2) not in (546, 547):
            return
        pseudo = src_dst + ulen.to_bytes(4, "big") + b"\x00\x00\x00\x11"
        _udp_payload(buf, pseudo, cur, ulen, old, new, _dhcp6_sites)


def _udp_payload(buf: bytearray, pseudo: bytes, u: int, length: int, old: bytes, new: bytes,
                 finder) -> None:
    csum = _u16(buf, u + 6)
    if csum and not _fold_ok(pseudo + bytes(buf[u:u + length])):
        return   # the checksum did not verify: leave the datagram alone
    sites = finder(buf, u + 8, u + length, old)
    if not sites:
        return
    for i in sites:
        buf[i:i + 6] = new
    if csum:
        buf[u + 6] = 0
        buf[u + 7] = 0
        c = _checksum(pseudo + bytes(buf[u:u + length]))
        if c == 0:
            c = 0xFFFF   # UDP sends a computed zero as all ones
        buf[u + 6] = c >> 8
        buf[u + 7] = c & 0xFF


def _dhcp4_options(buf: bytearray, i: int, end: int, old: bytes, sites: List[int]) -> Optional[int]:
    """Walk a DHCP option area; returns the overload value (0 if none), None if malformed."""
    overload = 0
    while i < end:
        code = buf[i]
        if code == 0:
            i += 1
            continue
        if code == 255:
            break
        if i + 2 > end:
            return None
        ln = buf[i + 1]
        if i + 2 + ln > end:
            return None
        if code == 61 and ln == 7 and buf[i + 2] == 1 and buf[i + 3:i + 9] == old:
            sites.append(i + 3)
        elif code == 52 and ln == 1:
            overload = buf[i + 2] & 3
        i += 2 + ln
    return overload


def _dhcp4_sites(buf: bytearray, p: int, end: int, old: bytes) -> List[int]:
    sites: List[int] = []
    if end - p < 236:
        return sites
    if buf[p + 1] == 1 and buf[p + 2] == 6 and buf[p + 28:p + 34] == old:
        sites.append(p + 28)
    if end - p >= 240 and buf[p + 236:p + 240] == b"\x63\x82\x53\x63":
        overload = _dhcp4_options(buf, p + 240, end, old, sites)
        if overload is None:
            return []
        if overload & 1 and _dhcp4_options(buf, p + 108, p + 236, old, sites) is None:
            return []
        if overload & 2 and _dhcp4_options(buf, p + 44, p + 108, old, sites) is None:
            return []
    return sites


def _dhcp6_sites(buf: bytearray, p: int, end: int, old: bytes) -> List[int]:
    sites: List[int] = []
    if not _dhcp6_message(buf, p, end, old, sites, 0):
        return []
    return sites


def _dhcp6_message(buf: bytearray, p: int, end: int, old: bytes, sites: List[int],
                   depth: int) -> bool:
    if p >= end or depth > _MAX_RELAY_DEPTH:
        return False
    mtype = buf[p]
    i = p + (34 if mtype in (12, 13) else 4)
    if i > end:
        return False
    while i < end:
        if i + 4 > end:
            return False
        code = _u16(buf, i)
        ln = _u16(buf, i + 2)
        d = i + 4
        if d + ln > end:
            return False
        if code in (1, 2) and ln >= 4:
            duid_type = _u16(buf, d)
            hw = _u16(buf, d + 2)
            if duid_type == 1 and ln == 14 and hw == 1 and buf[d + 8:d + 14] == old:
                sites.append(d + 8)       # DUID-LLT: type, hardware type, time, address
            elif duid_type == 3 and ln == 10 and hw == 1 and buf[d + 4:d + 10] == old:
                sites.append(d + 4)       # DUID-LL: type, hardware type, address
        elif code == 79 and ln == 8 and _u16(buf, d) == 1 and buf[d + 2:d + 8] == old:
            sites.append(d + 2)           # client link-layer address (RFC 6939)
        elif code == 9:                   # relay message: a nested DHCPv6 message
            if not _dhcp6_message(buf, d, d + ln, old, sites, depth + 1):
                return False
        i = d + ln
    return True


_NDP_OPTIONS_AT = {133: 8, 134: 16, 135: 24, 136: 24, 137: 40}


def _ndp(buf: bytearray, src_dst: bytes, c: int, length: int, old: bytes, new: bytes) -> None:
    if length < 4:
        return
    start = _NDP_OPTIONS_AT.get(buf[c])
    if start is None or length < start:
        return
    end = c + length
    pseudo = src_dst + length.to_bytes(4, "big") + b"\x00\x00\x00\x3a"
    if not _fold_ok(pseudo + bytes(buf[c:end])):
        return
    sites = []
    i = c + start
    while i < end:
        if i + 2 > end:
            return
        olen = buf[i + 1] * 8
        if olen == 0 or i + olen > end:
            return
        if buf[i] in (1, 2) and olen >= 8 and buf[i + 2:i + 8] == old:
            sites.append(i + 2)
        i += olen
    if not sites:
        return
    for i in sites:
        buf[i:i + 6] = new
    buf[c + 2] = 0
    buf[c + 3] = 0
    csum = _checksum(pseudo + bytes(buf[c:end]))
    buf[c + 2] = csum >> 8
    buf[c + 3] = csum & 0xFF

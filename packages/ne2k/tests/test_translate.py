"""MAC translation (pyv86.ne2k.translate), checked with a real packet library (dpkt):
packets are built with dpkt, translated, parsed back with dpkt, and their checksums are
compared with the ones dpkt computes itself."""

from __future__ import annotations

import struct

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyv86.ne2k import MacTranslation, translate_frame

OLD = bytes.fromhex("002215aabbcc")
NEW = bytes.fromhex("0a1122334455")
ROUTER = bytes.fromhex("525400000001")
BCAST = b"\xff" * 6


def eth(dst: bytes, src: bytes, etype: int, payload: bytes) -> bytes:
    return dst + src + struct.pack(">H", etype) + payload


def vlan(inner_type: int, payload: bytes, tags: list[tuple[int, int]]) -> bytes:
    """802.1Q (0x8100) / 802.1ad (0x88a8) tags, outermost first."""
    out = b""
    for tpid, vid in tags:
        out += struct.pack(">HH", tpid, vid)
    return out + struct.pack(">H", inner_type) + payload


def arp(op: int, sha: bytes, tha: bytes) -> bytes:
    return bytes(dpkt.arp.ARP(op=op, sha=sha, spa=b"\x0a\x00\x02\x0f", tha=tha,
                              tpa=b"\x0a\x00\x02\x02"))


def udp4(sport: int, dport: int, payload: bytes, checksum: bool = True) -> bytes:
    u = dpkt.udp.UDP(sport=sport, dport=dport, data=payload)
    u.ulen = 8 + len(payload)
    ip = dpkt.ip.IP(src=b"\x00\x00\x00\x00", dst=b"\xff\xff\xff\xff", p=17, data=u)
    ip.len = 20 + u.ulen
    raw = bytes(ip)
    if not checksum:
        raw = raw[:26] + b"\x00\x00" + raw[28:]
    return raw


def dhcp(chaddr: bytes, client_id: bytes | None = None, extra_opts=()) -> bytes:
    opts = [(dpkt.dhcp.DHCP_OPT_MSGTYPE, b"\x01")]
    if client_id is not None:
        opts.append((61, b"\x01" + client_id))
    opts += list(extra_opts)
    return bytes(dpkt.dhcp.DHCP(chaddr=chaddr, opts=opts, xid=0x1234))


def ip6(src: bytes, dst: bytes, nxt: int, upper) -> bytes:
    p = dpkt.ip6.IP6(src=src, dst=dst, nxt=nxt, hlim=255, data=upper)
    p.plen = len(bytes(upper))
    return bytes(p)


LL_SRC = bytes.fromhex("fe80000000000000022215fffeaabbcc")
ALL_NODES = bytes.fromhex("ff020000000000000000000000000001")
ALL_ROUTERS = bytes.fromhex("ff020000000000000000000000000002")


def icmp6(mtype: int, body: bytes) -> dpkt.icmp6.ICMP6:
    m = dpkt.icmp6.ICMP6(type=mtype, code=0)
    m.data = body
    return m


def lla(opt_type: int, mac: bytes) -> bytes:
    return bytes([opt_type, 1]) + mac


def checksum_ok_ipv6(frame: bytes) -> bool:
    """Let dpkt recompute the upper-layer checksum and compare."""
    e = dpkt.ethernet.Ethernet(frame)
    p = e.data
    have = p.data.sum
    p.data.sum = 0
    again = dpkt.ip6.IP6(bytes(p))
    return again.data.sum == have


def udp_checksum_ok_ipv4(frame: bytes) -> bool:
    e = dpkt.ethernet.Ethernet(frame)
    ip = e.data
    have = ip.data.sum
    ip.data.sum = 0
    ip.sum = 0
    again = dpkt.ip.IP(bytes(ip))
    return again.data.sum == have


def both_ways(frame: bytes) -> bytes:
    out = translate_frame(frame, OLD, NEW)
    assert translate_frame(out, NEW, OLD) == frame       # round trip gives the original
    return out


# Ethernet and ARP ---------------------------------------------------------------------------
def test_ethernet_source_and_destination_are_rewritten_and_others_left():
    f = eth(ROUTER, OLD, 0x0800, bytes(46))
    assert both_ways(f) == eth(ROUTER, NEW, 0x0800, bytes(46))
    g = eth(OLD, ROUTER, 0x88B5, OLD + bytes(40))          # unknown type: payload untouched
    assert both_ways(g) == eth(NEW, ROUTER, 0x88B5, OLD + bytes(40))
    b = eth(BCAST, ROUTER, 0x0800, bytes(46))
    assert both_ways(b) == b


@pytest.mark.parametrize("etype", [0x0806, 0x8035])
def test_arp_and_rarp_sender_and_target_hardware_addresses(etype):
    request = eth(BCAST, OLD, etype, arp(1, OLD, b"\x00" * 6))
    out = dpkt.arp.ARP(both_ways(request)[14:])
    assert out.sha == NEW and out.tha == b"\x00" * 6
    reply = eth(OLD, ROUTER, etype, arp(2, ROUTER, OLD))   # v86 misses the target field
    out = dpkt.arp.ARP(both_ways(reply)[14:])
    assert out.sha == ROUTER and out.tha == NEW


@pytest.mark.parametrize("tags", [[(0x8100, 5)], [(0x88A8, 100), (0x8100, 5)],
                                  [(0x9100, 7), (0x8100, 8)]])
def test_arp_inside_802_1q_and_802_1ad_tags(tags):
    f = BCAST + OLD + vlan(0x0806, arp(1, OLD, OLD), tags)
    out = both_ways(f)
    body = out[14 + 4 * len(tags):]
    a = dpkt.arp.ARP(body)
    assert out[6:12] == NEW and a.sha == NEW and a.tha == NEW


# DHCP ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("sport, dport", [(68, 67), (67, 68)])
def test_dhcp_chaddr_and_client_identifier_with_udp_checksum_recomputed(sport, dport):
    f = eth(BCAST, OLD, 0x0800, udp4(sport, dport, dhcp(OLD, OLD)))
    assert udp_checksum_ok_ipv4(f)
    out = both_ways(f)
    e = dpkt.ethernet.Ethernet(out)
    d = dpkt.dhcp.DHCP(e.data.data.data)
    assert d.chaddr[:6] == NEW and dict(d.opts)[61] == b"\x01" + NEW
    assert e.data.data.sum != 0 and udp_checksum_ok_ipv4(out)


def test_dhcp_zero_udp_checksum_stays_zero():
    f = eth(BCAST, OLD, 0x0800, udp4(68, 67, dhcp(OLD, OLD), checksum=False))
    out = both_ways(f)
    e = dpkt.ethernet.Ethernet(out)
    assert e.data.data.sum == 0 and dpkt.dhcp.DHCP(e.data.data.data).chaddr[:6] == NEW


def test_dhcp_with_a_bad_udp_checksum_is_left_alone():
    f = bytearray(eth(BCAST, OLD, 0x0800, udp4(68, 67, dhcp(OLD, OLD))))
    f[14 + 20 + 6] ^= 0x5A
    out = both_ways(bytes(f))
    assert out[6:12] == NEW and out[14:] == bytes(f[14:])


def test_dhcp_client_identifier_of_other_types_is_not_touched():
    f = eth(BCAST, OLD, 0x0800, udp4(68, 67, dhcp(OLD, extra_opts=[(61, b"\x00" + OLD)])))
    d = dpkt.dhcp.DHCP(dpkt.ethernet.Ethernet(both_ways(f)).data.data.data)
    assert dict(d.opts)[61] == b"\x00" + OLD


def test_dhcp_client_identifier_in_overloaded_file_field():
    raw = bytearray(dhcp(OLD, extra_opts=[(52, b"\x01")]))
    raw[108:108 + 10] = bytes([61, 7, 1]) + OLD + b"\xff"
    f = eth(BCAST, OLD, 0x0800, udp4(68, 67, bytes(raw)))
    out = both_ways(f)
    payload = out[14 + 28:]
    assert payload[108 + 3:108 + 9] == NEW and udp_checksum_ok_ipv4(out)


def test_dhcp_fragments_and_other_udp_ports_are_not_parsed():
    f = bytearray(eth(BCAST, OLD, 0x0800, udp4(68, 67, dhcp(OLD, OLD))))
    f[14 + 6] = 0x20  # MF: a first fragment
    assert both_ways(bytes(f))[14:] == bytes(f[14:])
    g = eth(BCAST, OLD, 0x0800, udp4(1000, 2000, dhcp(OLD, OLD)))
    assert both_ways(g)[14:] == g[14:]


# IPv6 neighbour discovery -------------------------------------------------------------------
NDP_CASES = {
    "router solicitation": (133, b"\x00" * 4 + lla(1, OLD)),
    "router advertisement": (134, b"\x40\x00\x07\x08" + b"\x00" * 8 + lla(1, OLD)),
    "neighbour solicitation": (135, b"\x00" * 4 + LL_SRC + lla(1, OLD)),
    "neighbour advertisement": (136, b"\x60" + b"\x00" * 3 + LL_SRC + lla(2, OLD)),
    "redirect": (137, b"\x00" * 4 + LL_SRC + ALL_NODES + lla(2, OLD)),
}


@pytest.mark.parametrize("name", list(NDP_CASES))
def test_ndp_link_layer_address_options_with_icmpv6_checksum_recomputed(name):
    mtype, body = NDP_CASES[name]
    f = eth(bytes.fromhex("333300000001"), OLD, 0x86DD,
            ip6(LL_SRC, ALL_ROUTERS, 58, icmp6(mtype, body)))
    assert checksum_ok_ipv6(f)
    out = both_ways(f)
    assert out[-6:] == NEW and out[6:12] == NEW
    assert checksum_ok_ipv6(out)


def test_ndp_behind_a_hop_by_hop_header_and_inside_a_vlan():
    mtype, body = NDP_CASES["neighbour solicitation"]
    upper = bytes(icmp6(mtype, body))
    # compute a correct checksum with dpkt first (no extension header), then insert one
    plain = dpkt.ip6.IP6(ip6(LL_SRC, ALL_ROUTERS, 58, icmp6(mtype, body)))
    upper = bytes(plain.data)
    hbh = bytes([58, 0]) + b"\x01\x04\x00\x00\x00\x00"           # PadN
    hdr = bytearray(bytes(plain)[:40])
    hdr[4:6] = struct.pack(">H", len(hbh) + len(upper))
    hdr[6] = 0
    f = eth(bytes.fromhex("333300000001"), OLD, 0x8100,
            struct.pack(">HH", 42, 0x86DD) + bytes(hdr) + hbh + upper)
    out = both_ways(f)
    assert out[-6:] == NEW
    inner = out[18 + 40 + 8:]
    fixed = dpkt.ip6.IP6(bytes(plain)[:40] + inner)
    have = fixed.data.sum
    fixed.data.sum = 0
    assert dpkt.ip6.IP6(bytes(fixed)).data.sum == have


def test_ndp_option_with_zero_length_leaves_the_packet_alone():
    mtype, body = NDP_CASES["neighbour solicitation"]
    bad = body + bytes([14, 0, 0, 0, 0, 0, 0, 0])  # length 0 is invalid (RFC 4861)
    f = eth(ROUTER, OLD, 0x86DD, ip6(LL_SRC, ALL_ROUTERS, 58, icmp6(mtype, bad)))
    out = both_ways(f)
    assert out[14:] == f[14:]


# DHCPv6 -------------------------------------------------------------------------------------
def duid_llt(mac: bytes) -> bytes:
    return struct.pack(">HHI", 1, 1, 0x2A2A2A2A) + mac


def duid_ll(mac: bytes) -> bytes:
    return struct.pack(">HH", 3, 1) + mac


def opt6(code: int, data: bytes) -> bytes:
    return struct.pack(">HH", code, len(data)) + data


def dhcp6_frame(msg: bytes, sport=546, dport=547) -> bytes:
    u = dpkt.udp.UDP(sport=sport, dport=dport, data=msg)
    u.ulen = 8 + len(msg)
    return eth(bytes.fromhex("333300010002"), OLD, 0x86DD,
               ip6(LL_SRC, bytes.fromhex("ff020000000000000000000000010002"), 17, u))


@pytest.mark.parametrize("duid", [duid_llt, duid_ll], ids=["DUID-LLT", "DUID-LL"])
def test_dhcpv6_client_and_server_identifiers(duid):
    msg = b"\x01\x12\x34\x56" + opt6(1, duid(OLD)) + opt6(2, duid(OLD)) + opt6(8, b"\x00\x00")
    f = dhcp6_frame(msg)
    assert checksum_ok_ipv6(f)
    out = both_ways(f)
    assert out.count(NEW) == 3 and OLD not in out and checksum_ok_ipv6(out)


def test_dhcpv6_relay_forward_nested_message_and_client_link_layer_option():
    inner = b"\x01\x00\x00\x01" + opt6(1, duid_ll(OLD))
    relay = (b"\x0c\x00" + LL_SRC + LL_SRC + opt6(79, b"\x00\x01" + OLD) + opt6(9, inner))
    out = both_ways(dhcp6_frame(relay, 547, 547))
    assert out.count(NEW) == 3 and checksum_ok_ipv6(out)


def test_dhcpv6_duid_en_is_not_touched():
    msg = b"\x01\x00\x00\x01" + opt6(1, struct.pack(">HI", 2, 9) + OLD)
    out = both_ways(dhcp6_frame(msg))
    assert out[14:] == dhcp6_frame(msg)[14:]


# malformed input ----------------------------------------------------------------------------
ALL_BUILT = [
    eth(BCAST, OLD, 0x0806, arp(1, OLD, OLD)),
    eth(BCAST, OLD, 0x0800, udp4(68, 67, dhcp(OLD, OLD))),
    eth(ROUTER, OLD, 0x86DD, ip6(LL_SRC, ALL_ROUTERS, 58, icmp6(*NDP_CASES["redirect"]))),
    dhcp6_frame(b"\x01\x00\x00\x01" + opt6(1, duid_llt(OLD))),
    BCAST + OLD + vlan(0x0806, arp(1, OLD, OLD), [(0x88A8, 1), (0x8100, 2)]),
]


@pytest.mark.parametrize("index", range(len(ALL_BUILT)))
def test_every_truncation_of_every_covered_packet_passes_without_raising(index):
    frame = ALL_BUILT[index]
    for n in range(len(frame) + 1):
        cut = frame[:n]
        out = translate_frame(cut, OLD, NEW)
        assert len(out) == n
        assert translate_frame(out, NEW, OLD) == cut
        if n < 14:
            assert out == cut


def test_mac_translation_object_translates_both_directions():
    t = MacTranslation(guest_mac=OLD, wire_mac=NEW)
    f = eth(BCAST, OLD, 0x0806, arp(1, OLD, b"\x00" * 6))
    assert t.incoming(t.outgoing(f)) == f and NEW in t.outgoing(f)
    with pytest.raises(ValueError):
        MacTranslation(OLD, b"short")


@settings(max_examples=300, deadline=2000)
@given(data=st.binary(max_size=400), positions=st.lists(st.integers(0, 400), max_size=6),
       etype=st.sampled_from([0x0800, 0x86DD, 0x0806, 0x8035, 0x8100, 0x88A8, 0x1234]))
def test_random_frames_never_raise_and_round_trip_when_the_new_mac_is_absent(
        data, positions, etype):
    buf = bytearray(eth(OLD, ROUTER, etype, data))
    for p in positions:
        if p + 6 <= len(buf):
            buf[p:p + 6] = OLD
    frame = bytes(buf)
    out = translate_frame(frame, OLD, NEW)
    assert len(out) == len(frame)
    if NEW not in frame:
        assert translate_frame(out, NEW, OLD) == frame


@st.composite
def covered_packets(draw):
    """A covered packet with random contents, optionally VLAN-tagged, in which OLD appears in
    a random subset of the fields the translation covers."""
    other = draw(st.binary(min_size=6, max_size=6).filter(lambda m: m not in (OLD, NEW)))
    pick = lambda: OLD if draw(st.booleans()) else other  # noqa: E731
    kind = draw(st.sampled_from(["arp", "rarp", "dhcp", "dhcp0", "ndp", "dhcp6"]))
    src = pick()
    if kind in ("arp", "rarp"):
        etype, payload = (0x0806 if kind == "arp" else 0x8035), arp(draw(st.integers(1, 4)), pick(), pick())
    elif kind in ("dhcp", "dhcp0"):
        filler = draw(st.binary(max_size=40).filter(lambda b: OLD not in b))
        etype = 0x0800
        payload = udp4(68, 67, dhcp(pick(), pick(), [(12, filler or b"x")]), checksum=kind == "dhcp")
    elif kind == "ndp":
        mtype, body = NDP_CASES[draw(st.sampled_from(list(NDP_CASES)))]
        body = body[:-6] + pick() + lla(1, pick())  # the message's option, then a second one
        etype, payload = 0x86DD, ip6(LL_SRC, ALL_ROUTERS, 58, icmp6(mtype, body))
    else:
        msg = (bytes([draw(st.integers(1, 11))]) + b"\x00\x00\x07"
               + opt6(1, draw(st.sampled_from([duid_ll, duid_llt]))(pick()))
               + opt6(2, duid_ll(pick()))
               + opt6(25, draw(st.binary(max_size=20).filter(lambda b: OLD not in b))))
        u = dpkt.udp.UDP(sport=546, dport=547, data=msg)
        u.ulen = 8 + len(msg)
        etype, payload = 0x86DD, ip6(LL_SRC, ALL_ROUTERS, 17, u)
    tags = draw(st.lists(st.tuples(st.sampled_from([0x8100, 0x88A8]), st.integers(0, 4095)),
                         max_size=2))
    return pick() + src + vlan(etype, payload, tags), len(tags), kind


@settings(max_examples=300, deadline=2000)
@given(case=covered_packets())
def test_random_covered_packets_lose_every_old_mac_keep_valid_checksums_and_round_trip(case):
    frame, ntags, kind = case
    out = translate_frame(frame, OLD, NEW)
    assert translate_frame(out, NEW, OLD) == frame
    assert OLD not in out                       # every place it appeared is a covered field
    inner = out[:12] + out[12 + 4 * ntags:]     # strip the tags for dpkt
    if kind in ("ndp", "dhcp6"):
        assert checksum_ok_ipv6(inner)
    elif kind == "dhcp":
        assert udp_checksum_ok_ipv4(inner)
    elif kind == "dhcp0":
        assert dpkt.ethernet.Ethernet(inner).data.data.sum == 0

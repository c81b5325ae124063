"""Property tests (hypothesis): random register traffic and random frames.

Invariants: nothing raises into the host, nothing is written outside the card's RAM (the
PROM and the unbacked space keep their bytes), every call returns (hypothesis' deadline
bounds each example), the interrupt line always equals ``bool(ISR & IMR & 0x7F)``, and
frames the guest drains are exactly the frames the host gave (padded to 60)."""

from __future__ import annotations

import zlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyv86.ne2k import NE2000

MAC = bytes.fromhex("525400aabbcc")
SETTINGS = settings(max_examples=150, deadline=2000,
                    suppress_health_check=[HealthCheck.too_slow])

offsets = st.integers(min_value=0, max_value=0x1F)
sizes = st.sampled_from([1, 1, 1, 2, 4])
frames = st.binary(min_size=0, max_size=1600)
op = st.one_of(
    st.tuples(st.just("w"), offsets, st.integers(0, 0xFFFFFFFF), sizes),
    st.tuples(st.just("r"), offsets, sizes),
    st.tuples(st.just("rx"), frames),
    st.tuples(st.just("rx_mine"), frames),
    st.tuples(st.just("adv"), st.one_of(st.floats(min_value=-1, max_value=1), st.just(float("nan")))),
    st.tuples(st.just("reset")),
)


def _outside_ram_untouched(card: NE2000) -> bool:
    c = card.chip
    mem = c.mem
    prom = bytes(mem[0:6]) if card.model == "ne1000" else bytes(mem[0:12:2])
    return (len(mem) == 0x10000 and prom == card.guest_mac
            and mem[0x20:c.ram_start] == b"\xff" * (c.ram_start - 0x20)
            and mem[c.ram_end:] == b"\xff" * (0x10000 - c.ram_end))


@SETTINGS
@given(model=st.sampled_from(["ne2000", "ne1000", "rtl8029"]),
       wire_speed=st.sampled_from([0, 10_000_000]),
       up=st.booleans(), ops=st.lists(op, max_size=120))
def test_random_register_traffic_never_raises_escapes_memory_or_desyncs_the_irq_line(
        model, wire_speed, up, ops):
    levels: list[int] = []
    sent: list[bytes] = []
    card = NE2000(model=model, mac=MAC, send=sent.append, irq=levels.append,
                  wire_speed=wire_speed)
    if up:  # start from a running card (Linux's bring-up) so that traffic reaches the ring
        _linux_up(card)
    for o in ops:
        kind = o[0]
        if kind == "w":
            _, off, val, size = o
            card.io_write(off, val, size)
        elif kind == "r":
            _, off, size = o
            v = card.io_read(off, size)
            assert 0 <= v < 1 << (8 * size)
        elif kind == "rx":
            assert card.receive(o[1]) in (True, False)
        elif kind == "rx_mine":
            assert card.receive(MAC + o[1]) in (True, False)
        elif kind == "adv":
            card.advance(o[1])
        else:
            card.reset()
        c = card.chip
        assert card.irq_level == (1 if c.isr & c.imr & 0x7F else 0)
        assert (levels[-1] if levels else 0) == card.irq_level
        assert 0 <= c.rsar <= 0xFFFF and 0 <= c.rbcr <= 0xFFFF
    assert _outside_ram_untouched(card)
    assert all(60 <= len(f) <= 1518 for f in sent)


def _linux_up(card: NE2000) -> None:
    for off, val in [(0, 0x21), (14, 0x49), (10, 0), (11, 0), (12, 0x20), (13, 2), (4, 0x40),
                     (1, 0x4C), (3, 0x7F), (2, 0x80), (7, 0xFF), (15, 0), (0, 0x61)]:
        card.io_write(off, val, 1)
    for i in range(6):
        card.io_write(1 + i, MAC[i], 1)
    for off, val in [(7, 0x4C), (0, 0x21), (7, 0xFF), (15, 0x3F), (0, 0x22), (13, 0),
                     (12, 0x04)]:
        card.io_write(off, val, 1)


def _linux_drain(card: NE2000) -> list[bytes]:
    """lib8390 ei_receive with the ne2k-pci 32-bit block input."""
    out = []
    io_w, io_r = card.io_write, card.io_read
    for _ in range(100):
        io_w(0, 0x62, 1)
        curr = io_r(7, 1)
        io_w(0, 0x22, 1)
        this = io_r(3, 1) + 1
        if this >= 0x80:
            this = 0x4C
        if this == curr:
            break
        for off, val in ((10, 4), (11, 0), (8, 0), (9, this), (0, 0x0A)):
            io_w(off, val, 1)
        h = io_r(0x10, 4)
        io_w(7, 0x40, 1)
        status, nxt, count = h & 0xFF, (h >> 8) & 0xFF, h >> 16
        length = count - 4
        expect = this + 1 + ((length + 4) >> 8)
        assert nxt in (expect, expect + 1, expect - 52, expect + 1 - 52)
        assert status & 0x0F == 1 and 60 <= length <= 1518
        addr = (this << 8) + 4
        for off, val in ((10, length & 0xFF), (11, length >> 8), (8, addr & 0xFF),
                         (9, addr >> 8), (0, 0x0A)):
            io_w(off, val, 1)
        buf = bytearray()
        for _ in range(length >> 2):
            buf += io_r(0x10, 4).to_bytes(4, "little")
        if length & 2:
            buf += io_r(0x10, 2).to_bytes(2, "little")
        if length & 1:
            buf.append(io_r(0x10, 1))
        io_w(7, 0x40, 1)
        out.append(bytes(buf))
        io_w(3, (nxt if nxt < 0x80 else 0x4C) - 1, 1)
    io_w(7, 0x05, 1)
    return out


@SETTINGS
@given(payloads=st.lists(st.binary(min_size=0, max_size=1504), min_size=1, max_size=30),
       drain_every=st.integers(1, 8))
def test_random_frames_come_out_of_the_ring_exactly_as_linux_drains_them(payloads, drain_every):
    card = NE2000(model="rtl8029", mac=MAC)
    _linux_up(card)
    expected, got = [], []
    for i, p in enumerate(payloads):
        f = MAC + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + p
        if card.receive(f):
            expected.append(f + bytes(max(0, 60 - len(f))))
        if i % drain_every == 0:
            got += _linux_drain(card)
    got += _linux_drain(card)
    assert got == expected
    assert card.io_read(7, 1) & 0x10 or len(expected) == len(payloads)


def _hash(mac: bytes) -> int:
    reflected = zlib.crc32(mac) ^ 0xFFFFFFFF
    return int(f"{reflected:032b}"[::-1], 2) >> 26


@SETTINGS
@given(dst=st.binary(min_size=6, max_size=6), rcr=st.integers(0, 0x1F),
       mar=st.binary(min_size=8, max_size=8), mine=st.booleans())
def test_address_filter_matches_the_data_sheet_rules(dst, rcr, mar, mine):
    card = NE2000(model="ne2000", mac=MAC)
    _linux_up(card)
    card.io_write(0, 0x62, 1)
    for i in range(8):
        card.io_write(8 + i, mar[i], 1)
    card.io_write(0, 0x22, 1)
    card.io_write(12, rcr, 1)
    if mine:
        dst = MAC
    if rcr & 0x10:
        want = True
    elif dst == b"\xff" * 6:
        want = bool(rcr & 0x04)
    elif dst[0] & 1:
        idx = _hash(dst)
        want = bool(rcr & 0x08) and bool(mar[idx >> 3] & (1 << (idx & 7)))
    else:
        want = dst == MAC
    assert card.receive(dst + bytes(54)) is want

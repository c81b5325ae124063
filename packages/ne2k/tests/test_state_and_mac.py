"""Versioned state save/restore in the three MAC modes (with frames in the ring and traffic
after the restore), the MAC helpers, and the modelled wire time of a transmission."""

from __future__ import annotations

import copy
import struct

import pytest

from pyv86.ne2k import (
    NE2000,
    STATE_VERSION,
    V86_PREFIX,
    format_mac,
    is_locally_administered,
    is_multicast,
    parse_mac,
    random_mac,
)

IMAGE_MAC = bytes.fromhex("002215aabbcc")
PEER = bytes.fromhex("525400000001")


def linux_up(card: NE2000, mac: bytes) -> None:
    """lib8390 __NS8390_init(dev, 1) with the ne2k-pci ring (0x4c..0x80)."""
    for off, val in [(0, 0x21), (14, 0x49), (10, 0), (11, 0), (12, 0x20), (13, 2), (4, 0x40),
                     (1, 0x4C), (3, 0x7F), (2, 0x80), (7, 0xFF), (15, 0), (0, 0x61)]:
        card.io_write(off, val, 1)
    for i in range(6):
        card.io_write(1 + i, mac[i], 1)
    for off, val in [(7, 0x4C), (0, 0x21), (7, 0xFF), (15, 0x3F), (0, 0x22), (13, 0),
                     (12, 0x04)]:
        card.io_write(off, val, 1)


def prom_mac(card: NE2000) -> bytes:
    """ne2k-pci probe: 32 byte reads in word mode from remote address 0."""
    for off, val in [(0, 0x21), (14, 0x49), (10, 32), (11, 0), (8, 0), (9, 0), (0, 0x0A)]:
        card.io_write(off, val, 1)
    prom = bytes(card.io_read(0x10, 1) for _ in range(32))
    card.io_write(0, 0x22, 1)
    return prom[:6]


def drain(card: NE2000) -> list[bytes]:
    out = []
    for _ in range(64):
        card.io_write(0, 0x62, 1)
        curr = card.io_read(7, 1)
        card.io_write(0, 0x22, 1)
        this = card.io_read(3, 1) + 1
        if this >= 0x80:
            this = 0x4C
        if this == curr:
            break
        for off, val in ((10, 4), (11, 0), (8, 0), (9, this), (0, 0x0A)):
            card.io_write(off, val, 1)
        h = card.io_read(0x10, 4)
        nxt, count = (h >> 8) & 0xFF, h >> 16
        n = count - 4
        addr = (this << 8) + 4
        for off, val in ((10, n & 0xFF), (11, n >> 8), (8, addr & 0xFF), (9, addr >> 8),
                         (0, 0x0A)):
            card.io_write(off, val, 1)
        words = b"".join(card.io_read(0x10, 2).to_bytes(2, "little") for _ in range((n + 1) // 2))
        out.append(words[:n])
        card.io_write(3, (nxt if nxt < 0x80 else 0x4C) - 1, 1)
        card.io_write(7, 0x45, 1)
    return out


def transmit(card: NE2000, frame: bytes) -> None:
    n = len(frame) + (len(frame) & 1)
    data = frame + bytes(n - len(frame))
    for off, val in ((10, n & 0xFF), (11, n >> 8), (8, 0), (9, 0x40), (0, 0x12)):
        card.io_write(off, val, 1)
    for i in range(0, n, 2):
        card.io_write(0x10, data[i] | data[i + 1] << 8, 2)
    card.io_write(7, 0x40, 1)
    for off, val in ((5, len(frame) & 0xFF), (6, len(frame) >> 8), (4, 0x40), (0, 0x26)):
        card.io_write(off, val, 1)


def arp_request(sha: bytes) -> bytes:
    return (b"\xff" * 6 + sha + b"\x08\x06" + struct.pack(">HHBBH", 1, 0x0800, 6, 4, 1) + sha
            + b"\x0a\x00\x02\x0f" + b"\x00" * 6 + b"\x0a\x00\x02\x02" + bytes(18))


def arp_reply_to(tha: bytes) -> bytes:
    return (tha + PEER + b"\x08\x06" + struct.pack(">HHBBH", 1, 0x0800, 6, 4, 2) + PEER
            + b"\x0a\x00\x02\x02" + tha + b"\x0a\x00\x02\x0f" + bytes(18))


def to(mac: bytes, n: int, seed: int) -> bytes:
    return mac + PEER + b"\x08\x00" + bytes((seed + i) & 0xFF for i in range(n - 14))


@pytest.fixture
def image():
    """A running guest card with three unread frames in its ring, saved."""
    card = NE2000(model="rtl8029", mac=IMAGE_MAC)
    linux_up(card, prom_mac(card))
    frames = [to(IMAGE_MAC, n, n) for n in (60, 700, 1514)]
    for f in frames:
        assert card.receive(f)
    return card.save_state(), frames


def test_state_is_versioned_plain_data(image):
    state, _ = image

    def plain(v):
        if isinstance(v, dict):
            return all(isinstance(k, str) and plain(x) for k, x in v.items())
        return v is None or isinstance(v, (bool, int, float, str, bytes))
    assert state["version"] == STATE_VERSION == 1 and plain(state)
    assert state["guest_mac"] == state["wire_mac"] == IMAGE_MAC


def par(card: NE2000) -> bytes:
    """The station address registers, page 1 offsets 1-6."""
    card.io_write(0, 0x62, 1)
    value = bytes(card.io_read(1 + i, 1) for i in range(6))
    card.io_write(0, 0x22, 1)
    return value


def test_restore_randomise_gives_a_new_mac_and_keeps_the_ring(image):
    state, frames = image
    sent: list[bytes] = []
    card = NE2000(model="rtl8029", send=sent.append)
    card.restore_state(state)                    # default mode
    assert card.mac != IMAGE_MAC and card.guest_mac == card.mac
    assert prom_mac(card) == card.mac            # a rebinding driver sees the new MAC
    assert par(card) == card.mac                 # the station address moved too (v86)
    assert drain(card) == frames                 # frames received before the save survive
    # the driver still sends with the image MAC it cached, untranslated; a learning relay
    # answers that MAC and the card filters the answers out: v86's documented breakage
    transmit(card, arp_request(IMAGE_MAC))
    assert sent == [arp_request(IMAGE_MAC)]
    assert card.receive(arp_reply_to(IMAGE_MAC)) is False
    assert card.receive(to(IMAGE_MAC, 80, 1)) is False
    assert card.statistics()["rx_dropped_filtered"] == 2
    linux_up(card, prom_mac(card))               # unbind/bind (workaround 1) re-reads the PROM
    assert card.receive(to(card.mac, 80, 1)) is True
    assert card.receive(to(IMAGE_MAC, 80, 1)) is False


def test_restore_preserve_mac_from_state_image_keeps_everything(image):
    state, frames = image
    sent: list[bytes] = []
    card = NE2000(model="rtl8029", send=sent.append)
    card.restore_state(state, mac_mode="preserve_mac_from_state_image")
    assert card.mac == card.guest_mac == IMAGE_MAC and not card.translating
    assert card.save_state() == state
    assert drain(card) == frames
    assert card.receive(to(IMAGE_MAC, 90, 2))
    assert drain(card) == [to(IMAGE_MAC, 90, 2)]
    transmit(card, arp_request(IMAGE_MAC))
    assert sent == [arp_request(IMAGE_MAC)]


def test_restore_mac_address_translation_rewrites_traffic_both_ways(image):
    state, frames = image
    sent: list[bytes] = []
    card = NE2000(model="rtl8029", send=sent.append)
    card.restore_state(state, mac_mode="mac_address_translation")
    wire = card.mac
    assert wire != IMAGE_MAC and card.guest_mac == IMAGE_MAC and card.translating
    assert prom_mac(card) == IMAGE_MAC           # the guest keeps seeing the image MAC
    assert drain(card) == frames
    transmit(card, arp_request(IMAGE_MAC))       # guest speaks with its old MAC
    assert sent == [arp_request(wire)]           # the wire carries the new one (Ethernet + ARP)
    assert card.receive(arp_reply_to(wire))      # the network answers the new MAC
    assert drain(card) == [arp_reply_to(IMAGE_MAC)]
    # saving a translating card and preserving gives the same two MACs back
    again = NE2000(model="rtl8029")
    again.restore_state(card.save_state(), mac_mode="preserve_mac_from_state_image")
    assert again.guest_mac == IMAGE_MAC


def test_restore_signals_the_interrupt_line_when_its_level_changes(image):
    state, _ = image
    levels: list[int] = []
    card = NE2000(model="rtl8029", irq=levels.append)
    card.restore_state(state)
    assert levels == [1] and card.irq_level == 1  # ISR.PRX with IMR=0x3f in the image


def test_a_transmission_in_progress_survives_save_and_restore():
    sent: list[bytes] = []
    card = NE2000(model="ne2000", mac=IMAGE_MAC, wire_speed=10_000_000)
    linux_up(card, IMAGE_MAC)
    transmit(card, to(PEER, 100, 3))
    assert card.io_read(0, 1) & 0x04 and card.next_event() == pytest.approx(124 * 8 / 1e7)
    state = card.save_state()
    other = NE2000(model="ne2000", send=sent.append, wire_speed=10_000_000)
    other.restore_state(state, mac_mode="preserve_mac_from_state_image")
    assert other.io_read(0, 1) & 0x04 and sent == []
    other.advance(1.0)
    assert sent == [to(PEER, 100, 3)] and not other.io_read(0, 1) & 0x04


def _mutations():
    yield "not a dict", lambda s: [1, 2]
    yield "newer version", lambda s: {**s, "version": 2}
    yield "version zero", lambda s: {**s, "version": 0}
    yield "version missing", lambda s: {k: v for k, v in s.items() if k != "version"}
    yield "version bool", lambda s: {**s, "version": True}
    yield "other model", lambda s: {**s, "model": "ne2000"}
    yield "short mac", lambda s: {**s, "guest_mac": b"\x00" * 5}
    yield "multicast mac", lambda s: {**s, "wire_mac": b"\x01" + b"\x00" * 5}
    yield "mac as text", lambda s: {**s, "guest_mac": "00:22:15:aa:bb:cc"}
    yield "register too big", lambda s: {**s, "registers": {**s["registers"], "curr": 256}}
    yield "16-bit register too big", lambda s: {**s, "registers": {**s["registers"], "rsar": 1 << 16}}
    yield "register negative", lambda s: {**s, "registers": {**s["registers"], "isr": -1}}
    yield "register missing", lambda s: {**s, "registers": {k: v for k, v in s["registers"].items() if k != "pstart"}}
    yield "registers not dict", lambda s: {**s, "registers": None}
    yield "ram short", lambda s: {**s, "ram": s["ram"][:-1]}
    yield "ram missing", lambda s: {k: v for k, v in s.items() if k != "ram"}
    yield "mar long", lambda s: {**s, "mar": bytes(9)}
    yield "dma unknown", lambda s: {**s, "dma": "sideways"}
    yield "dma a list", lambda s: {**s, "dma": ["read"]}       # unhashable: not a TypeError
    yield "dma bytes", lambda s: {**s, "dma": bytearray(b"read")}
    yield "model a list", lambda s: {**s, "model": ["rtl8029"]}
    yield "overflow not bool", lambda s: {**s, "overflow": 1}
    yield "tx frame too long", lambda s: {**s, "tx_frame": bytes(2000)}
    yield "tx_remaining nan", lambda s: {**s, "tx_remaining": float("nan")}
    yield "tx_remaining negative", lambda s: {**s, "tx_remaining": -1.0}
    yield "realtek missing", lambda s: {**s, "realtek": None}
    yield "realtek field bad", lambda s: {**s, "realtek": {**s["realtek"], "config3": "x"}}


@pytest.mark.parametrize("name, mutate", list(_mutations()), ids=[n for n, _ in _mutations()])
def test_malformed_state_is_refused_with_valueerror_and_leaves_the_card_unchanged(image, name, mutate):
    state, _ = image
    card = NE2000(model="rtl8029", mac=PEER)
    linux_up(card, PEER)
    before = card.save_state()
    with pytest.raises(ValueError):
        card.restore_state(mutate(copy.deepcopy(state)))
    assert card.save_state() == before


def test_unknown_mac_mode_is_refused(image):
    state, _ = image
    with pytest.raises(ValueError, match="mac_mode"):
        NE2000(model="rtl8029").restore_state(state, mac_mode="keep")


# MAC helpers -------------------------------------------------------------------------------
def test_default_mac_is_random_locally_administered_unicast():
    macs = {NE2000().mac for _ in range(50)}
    assert len(macs) == 50
    assert all(is_locally_administered(m) and not is_multicast(m) for m in macs)


def test_mac_prefix_like_v86():
    card = NE2000(mac_prefix="00:22:15")
    assert card.mac[:3] == V86_PREFIX
    assert random_mac(V86_PREFIX, randbytes=lambda n: b"\x01\x02\x03"[:n]) == bytes.fromhex("002215010203")


@pytest.mark.parametrize("text, raw", [("52:54:00:12:34:56", "525400123456"),
                                       ("52-54-00-12-34-56", "525400123456"),
                                       ("5254.0012.3456", "525400123456"),
                                       ("525400123456", "525400123456"),
                                       (" 2:4:6:8:a:B ", "02040608 0a0b")])
def test_parse_mac_accepts_common_spellings(text, raw):
    assert parse_mac(text) == bytes.fromhex(raw.replace(" ", ""))
    assert format_mac(parse_mac(text)) == ":".join(f"{b:02x}" for b in parse_mac(text))


@pytest.mark.parametrize("bad", ["", "52:54:00:12:34", "52:54:00:12:34:56:78", "zz:54:00:12:34:56",
                                 "525:4:00:12:34:56", "52:54:00:12:34:5g", "52::54:00:12:34",
                                 "5254001234", b"\x00" * 5, 42, None, "52:54-00:12:34:56x"])
def test_parse_mac_rejects_malformed_input_with_a_clear_valueerror(bad):
    with pytest.raises(ValueError, match="MAC"):
        parse_mac(bad)


@pytest.mark.parametrize("bad", ["01:00:5e", "00:11:22:33:44:55", "xx", 7])
def test_bad_mac_prefixes_are_refused(bad):
    with pytest.raises(ValueError, match="prefix"):
        NE2000(mac_prefix=bad)


@pytest.mark.parametrize("kw", [{"model": "3c509"}, {"wire_speed": -1}, {"io_base": 0x301},
                                {"isa_irq": 16}, {"mac": "nonsense"},
                                {"mac": "01:00:5e:00:00:01"}, {"rom": b""}, {"rom": "x"},
                                {"full_duplex": "yes"}, {"wire_speed": 1.5}])
def test_bad_construction_arguments_are_valueerrors(kw):
    with pytest.raises(ValueError):
        NE2000(**kw)


# wire time ---------------------------------------------------------------------------------
def test_txp_is_held_for_the_modelled_wire_time_and_schedule_is_told():
    sent: list[bytes] = []
    delays: list[float] = []
    card = NE2000(model="ne2000", mac=IMAGE_MAC, send=sent.append, wire_speed=10_000_000)
    card.schedule = delays.append
    linux_up(card, IMAGE_MAC)
    transmit(card, to(PEER, 1514, 1))
    assert delays == [pytest.approx((1514 + 24) * 8 / 1e7)]
    assert card.io_read(0, 1) & 0x04 and sent == []         # TXP still set: in flight
    card.advance(delays[0] / 2)
    assert card.io_read(0, 1) & 0x04 and sent == []
    card.advance(delays[0] / 2)
    assert not card.io_read(0, 1) & 0x04 and len(sent) == 1
    assert card.io_read(7, 1) & 0x02 and card.next_event() is None


def test_card_irq_and_send_can_be_wired_after_construction():
    card = NE2000(model="ne2000", mac=IMAGE_MAC)
    levels: list[int] = []
    sent: list[bytes] = []
    card.irq = levels.append
    card.send = sent.append
    linux_up(card, IMAGE_MAC)
    transmit(card, to(PEER, 60, 0))
    assert sent and levels == [1]


def test_statistics_report_macs_as_text_and_count_traffic():
    card = NE2000(model="ne2000", mac=IMAGE_MAC)
    linux_up(card, IMAGE_MAC)
    card.receive(to(IMAGE_MAC, 70, 0))
    card.receive(to(PEER, 70, 0))
    st = card.statistics()
    assert st["mac"] == st["guest_mac"] == "00:22:15:aa:bb:cc"
    assert (st["rx_frames"], st["rx_bytes"], st["rx_dropped_filtered"]) == (1, 70, 1)
    assert st["running"] and st["irq_level"] == 1 and not st["translating"]


def test_under_translation_wire_frames_for_the_image_mac_belong_to_another_machine(image):
    """With mac_address_translation the card's MAC on the wire is the fresh one. Frames on
    the wire still addressed to the image's MAC are for the machine that keeps it (the
    original, or a clone restored with preserve_mac_from_state_image): a card with the
    fresh MAC does not receive them, or the clone's guest would take the original's traffic
    as its own. Promiscuous mode (RCR.PRO) still sees them, as a sniffer would."""
    state, frames = image
    card = NE2000(model="rtl8029")
    card.restore_state(state, mac_mode="mac_address_translation")
    assert drain(card) == frames
    before = card.statistics()["rx_dropped_filtered"]
    assert not card.receive(to(IMAGE_MAC, 100, 1))      # the original machine's traffic
    assert card.receive(to(card.mac, 100, 2))           # this clone's traffic
    assert drain(card) == [to(IMAGE_MAC, 100, 2)]       # shown with the guest's MAC
    assert card.statistics()["rx_dropped_filtered"] == before + 1
    card.io_write(0x00, 0x22, 1)
    card.io_write(0x0C, 0x14, 1)                        # RCR: PRO | AB
    assert card.receive(to(IMAGE_MAC, 100, 3))
    assert drain(card) == [to(IMAGE_MAC, 100, 3)]


def test_preserve_mode_still_receives_frames_for_the_image_mac(image):
    state, frames = image
    card = NE2000(model="rtl8029")
    card.restore_state(state, mac_mode="preserve_mac_from_state_image")
    assert drain(card) == frames
    assert card.receive(to(IMAGE_MAC, 100, 1))
    assert drain(card) == [to(IMAGE_MAC, 100, 1)]

"""Replays of iPXE (ns8390.c), FreeBSD ed (if_ed.c, if_ed_novell.c, if_ed_rtl80x9.c),
OpenBSD ne (ne2000.c) and the Crynwr NE2000 packet driver, register access by register
access, plus the ring conventions of SerenityOS and ReactOS."""

from __future__ import annotations

import pytest

from pyv86.ne2k import NE2000

CR, PSTART, PSTOP, BNRY, TPSR, TBCR0, TBCR1, ISR = 0, 1, 2, 3, 4, 5, 6, 7
RSAR0, RSAR1, RBCR0, RBCR1, RCR, TCR, DCR, IMR = 8, 9, 10, 11, 12, 13, 14, 15
RSR = 12
DATA, RESET = 0x10, 0x1F
RD2, STA, STP, TXP, RD0, RD1, PS0, PS1 = 0x20, 0x02, 0x01, 0x04, 0x08, 0x10, 0x40, 0x80
RDC, RST, PRX = 0x40, 0x80, 0x01
MAC = bytes.fromhex("00221512ab34")
PEER = bytes.fromhex("020000000001")
PATTERN = b"THIS is A memory TEST pattern\x00\x00\x00"


def frame_of(n: int, seed: int = 0, dst: bytes = MAC) -> bytes:
    return dst + PEER + b"\x08\x00" + bytes((seed * 13 + i) & 0xFF for i in range(n - 14))


class Pio:
    """The programmed-I/O helpers every BSD/iPXE NE2000 driver has."""

    def __init__(self, card: NE2000, word: bool) -> None:
        self.card = card
        self.word = word

    def out(self, off: int, val: int) -> None:
        self.card.io_write(off, val, 1)

    def inb(self, off: int) -> int:
        return self.card.io_read(off, 1)

    def writemem(self, src: bytes, dst: int) -> None:
        # ne2000_writemem / ed_pio_writemem / eth_pio_write: page 0, ack RDC, RBCR, RSAR,
        # remote write, data, then poll ISR.RDC (OpenBSD 100 tries; iPXE forever).
        length = len(src)
        self.out(CR, RD2 | STA)
        self.out(ISR, RDC)
        self.out(RBCR0, length & 0xFF)
        self.out(RBCR1, length >> 8)
        self.out(RSAR0, dst & 0xFF)
        self.out(RSAR1, dst >> 8)
        self.out(CR, RD1 | STA)
        if self.word:
            for i in range(0, length, 2):
                self.card.io_write(DATA, src[i] | src[i + 1] << 8, 2)
        else:
            for b in src:
                self.card.io_write(DATA, b, 1)
        for _ in range(100):
            if self.inb(ISR) & RDC:
                return
        raise AssertionError("remote DMA did not complete")

    def readmem(self, src: int, amount: int) -> bytes:
        # ne2000_readmem / ed_pio_readmem: rounds the count up to a word
        if amount & 1 and self.word:
            amount += 1
        self.out(CR, RD2 | STA)
        self.out(RBCR0, amount & 0xFF)
        self.out(RBCR1, amount >> 8)
        self.out(RSAR0, src & 0xFF)
        self.out(RSAR1, src >> 8)
        self.out(CR, RD0 | STA)
        out = bytearray()
        if self.word:
            for _ in range(amount // 2):
                out += self.card.io_read(DATA, 2).to_bytes(2, "little")
        else:
            for _ in range(amount):
                out.append(self.card.io_read(DATA, 1))
        return bytes(out)


def bsd_detect(card: NE2000) -> str:
    """OpenBSD/NetBSD ne2000_detect (FreeBSD ed_probe_Novell_generic does the same)."""
    p = Pio(card, word=False)
    tmp = p.inb(RESET)
    p.out(RESET, tmp)
    p.out(CR, RD2 | STP)
    if p.inb(CR) & (RD2 | TXP | STA | STP) != RD2 | STP:
        return "none"
    if p.inb(ISR) & RST != RST:
        return "none"
    p.out(CR, RD2 | STA)
    for _ in range(100):
        if p.inb(ISR) & RST:
            p.out(ISR, RST)
            break
    p.out(RCR, 0x20)          # ED_RCR_MON: store nothing while the probe starts the chip
    p.out(DCR, 0x48)          # FT1 | LS: byte transfers
    p.out(PSTART, 8192 >> 8)
    p.out(PSTOP, 16384 >> 8)
    p.writemem(PATTERN, 8192)
    if p.readmem(8192, len(PATTERN)) == PATTERN:
        kind = "ne1000"
    else:
        p.word = True
        p.out(DCR, 0x49)      # WTS | FT1 | LS
        p.out(PSTART, 16384 >> 8)
        p.out(PSTOP, 32768 >> 8)
        p.writemem(PATTERN, 16384)
        if p.readmem(16384, len(PATTERN)) != PATTERN:
            return "none"
        kind = "ne2000"
    p.out(ISR, 0xFF)
    return kind


@pytest.mark.parametrize("model, expected", [("ne2000", "ne2000"), ("rtl8029", "ne2000"),
                                             ("ne1000", "ne1000")])
def test_openbsd_ne2000_detect_cr_probe_and_memory_test_identify_the_board(model, expected):
    assert bsd_detect(NE2000(model=model, mac=MAC)) == expected


def test_byte_pattern_at_0x2000_does_not_read_back_on_an_ne2000():
    card = NE2000(model="ne2000", mac=MAC)
    p = Pio(card, word=False)
    p.writemem(PATTERN, 0x2000)
    assert p.readmem(0x2000, len(PATTERN)) == b"\xff" * len(PATTERN)


def test_freebsd_ed_probe_rtl80x9_reads_p_c_id_bytes_only_on_the_realtek():
    """ed_probe_RTL80x9: if CR selects a page other than 0, write RD2|STP; then page-0
    registers 0x0a/0x0b must read 0x50 ('P') and 0x43 ('C', RTL8029)."""
    for model, is_rtl in (("rtl8029", True), ("ne2000", False)):
        card = NE2000(model=model, mac=MAC)
        card.io_write(CR, 0x61, 1)                 # a page-1 CR left by someone
        if card.io_read(CR, 1) & (PS0 | PS1):
            card.io_write(CR, RD2 | STP, 1)
        ids = (card.io_read(0x0A, 1), card.io_read(0x0B, 1))
        assert (ids == (0x50, 0x43)) is is_rtl


def test_freebsd_ed_rtl_media_reads_config2_pl_and_config3_fudup():
    """ed_rtl_get_media: page 3, CONFIG2 & 0xc0 (PL) and CONFIG3 & 0x40 (FUDUP)."""
    card = NE2000(model="rtl8029", mac=MAC, full_duplex=True)
    card.io_write(CR, RD2 | PS0 | PS1, 1)
    assert card.io_read(5, 1) & 0xC0 == 0x00      # auto-detect media
    assert card.io_read(6, 1) & 0x40 == 0x40      # full duplex as loaded from EEPROM
    card.io_write(CR, RD2, 1)


def test_freebsd_novell_prom_read_in_word_mode_takes_every_other_byte():
    """ed_Novell_read_mac: ed_pio_readmem(sc, 0, romdata, 16); enaddr[n] = romdata[2n]."""
    card = NE2000(model="ne2000", mac=MAC)
    bsd_detect(card)
    p = Pio(card, word=True)
    romdata = p.readmem(0, 16)
    assert bytes(romdata[2 * n] for n in range(6)) == MAC


def test_ne1000_prom_is_not_doubled_and_reads_in_byte_mode():
    card = NE2000(model="ne1000", mac=MAC)
    p = Pio(card, word=False)
    assert p.readmem(0, 16)[:6] == MAC and p.readmem(0, 16)[14:16] == b"WW"


@pytest.mark.parametrize("rbcr", [1, 3, 61, 255, 1513])
def test_odd_rbcr_in_byte_mode_completes_exactly_and_moves_rsar_by_the_count(rbcr):
    card = NE2000(model="ne1000", mac=MAC)
    p = Pio(card, word=False)
    data = bytes(range(256)) * 8
    p.out(PSTART, 0x20)
    p.out(PSTOP, 0x40)
    p.writemem(data[:rbcr], 0x2100)
    assert p.readmem(0x2100, rbcr) == data[:rbcr]
    assert p.inb(ISR) & RDC
    assert (p.inb(RSAR0) | p.inb(RSAR1) << 8) == 0x2100 + rbcr


def test_odd_rbcr_in_word_mode_last_word_underflows_to_rdc():
    """A driver that does not round up (BSD and iPXE round up, others don't): RBCR=61 read
    with 31 inw; the last word takes two bytes, RBCR stops at 0 and RDC is set."""
    card = NE2000(model="ne2000", mac=MAC)
    p = Pio(card, word=True)
    p.out(DCR, 0x49)
    p.writemem(bytes(range(62)), 0x4000)
    p.out(RBCR0, 61)
    p.out(RBCR1, 0)
    p.out(RSAR0, 0)
    p.out(RSAR1, 0x40)
    p.out(CR, RD0 | STA)
    words = [card.io_read(DATA, 2) for _ in range(31)]
    assert words[-1] == 60 | 61 << 8
    assert p.inb(ISR) & RDC and p.inb(RBCR0) in (0, 0xFF)
    assert card.io_read(DATA, 2) == 0xFFFF         # nothing left to read: the port floats


class Ipxe:
    """iPXE ns8390.c on an NE2000: ns8390_reset ring set-up and the polled receive."""

    TX_START = 64
    RX_START = 64 + 6
    MEMSIZE = 128   # eth_memsize: the stop page

    def __init__(self, card: NE2000) -> None:
        self.p = Pio(card, word=True)
        self.card = card
        self.drained: list[bytes] = []

    def reset(self) -> None:
        p = self.p
        p.out(CR, RD2 | STP)
        p.out(DCR, 0x49)
        p.out(RBCR0, 0)
        p.out(RBCR1, 0)
        p.out(RCR, 0x20)
        p.out(TCR, 0x02)
        p.out(TPSR, self.TX_START)
        p.out(PSTART, self.RX_START)
        p.out(PSTOP, self.MEMSIZE)
        p.out(BNRY, self.MEMSIZE - 1)
        p.out(ISR, 0xFF)
        p.out(IMR, 0)
        p.out(CR, PS0 | RD2 | STP)
        for i in range(6):
            p.out(1 + i, MAC[i])
        for i in range(8):
            p.out(8 + i, 0xFF)
        p.out(7, self.RX_START)      # CURR
        p.out(CR, RD2 | STA)
        p.out(ISR, 0xFF)
        p.out(TCR, 0)
        p.out(RCR, 0x04)

    drain_receiver = False

    def rx_overrun(self) -> None:
        """eth_rx_overrun: stop, clear RBCR, loopback, start, drain with ns8390_poll while
        eth_drain_receiver is set, acknowledge OVW, leave loopback."""
        p = self.p
        p.out(CR, RD2 | STP)
        p.out(RBCR0, 0)
        p.out(RBCR1, 0)
        p.out(TCR, 2)
        p.out(CR, RD2 | STA)
        self.drain_receiver = True
        for _ in range(200):
            f = self.poll()
            if f is None:
                break
            self.drained.append(f)
        self.drain_receiver = False
        p.out(ISR, 0x10)
        p.out(TCR, 0)

    def poll(self) -> bytes | None:
        p = self.p
        if not self.drain_receiver and p.inb(ISR) & 0x10:   # "avoid infinite recursion"
            self.rx_overrun()
            return None
        if not p.inb(RSR) & PRX:
            return None
        nxt = p.inb(BNRY) + 1
        if nxt >= self.MEMSIZE:
            nxt = self.RX_START
        p.out(CR, PS0)
        curr = p.inb(7)
        p.out(CR, 0)
        if curr >= self.MEMSIZE:
            curr = self.RX_START
        if curr == nxt:
            return None
        pktoff = nxt << 8
        hdr = p.readmem(pktoff, 4)
        status, nextpg, count = hdr[0], hdr[1], hdr[2] | hdr[3] << 8
        pktoff += 4
        length = count - 4
        assert status & PRX and 60 <= length <= 1514, "Bogus packet, ignoring"
        frag = (self.MEMSIZE << 8) - pktoff
        data = b""
        if length > frag:
            data = p.readmem(pktoff, frag)[:frag]
            pktoff = self.RX_START << 8
            length -= frag
        data += p.readmem(pktoff, length)[:length]
        if nextpg == self.RX_START:
            nextpg = self.MEMSIZE
        p.out(BNRY, nextpg - 1)
        return data


def test_ipxe_memory_test_then_polled_receive_across_the_wrap():
    card = NE2000(model="ne2000", mac=MAC)
    assert bsd_detect(card) == "ne2000"          # iPXE's NE probe is the same memory test
    drv = Ipxe(card)
    drv.reset()
    got = []
    for i in range(40):
        f = frame_of(60 + (i * 97) % 1455, seed=i)
        assert card.receive(f)
        r = drv.poll()
        assert r == f, i
        got.append(r)
        assert drv.poll() is None
    assert len(got) == 40


def test_ipxe_overrun_recovery_drains_the_ring_by_rsr_prx_and_receives_again():
    """ns8390_poll sees ISR.OVW and calls eth_rx_overrun, which drains the ring with
    ns8390_poll: that only works if RSR.PRX survives the missed frame."""
    card = NE2000(model="ne2000", mac=MAC)
    bsd_detect(card)
    drv = Ipxe(card)
    drv.reset()
    sent = [frame_of(1514, seed=i) for i in range(20)]
    accepted = [f for f in sent if card.receive(f)]
    assert 0 < len(accepted) < len(sent) and card.io_read(ISR, 1) & 0x10
    assert drv.poll() is None                    # the overrun path ran
    assert drv.drained == accepted
    assert not card.io_read(ISR, 1) & 0x10
    assert card.receive(frame_of(100, seed=77))
    assert drv.poll() == frame_of(100, seed=77)


def test_ipxe_rdc_polling_terminates_for_a_write_into_unbacked_memory():
    """eth_pio_write spins on ISR.RDC with no timeout: RDC must come even when the bytes
    land nowhere (the byte-mode probe of 0x2000 on an NE2000)."""
    card = NE2000(model="ne2000", mac=MAC)
    Pio(card, word=False).writemem(PATTERN, 0x2000)  # raises if RDC never comes


class Crynwr:
    """The Crynwr NE2000 packet driver's receive interrupt: IMR=0 on entry, `rep insw` with
    (count+1)/2 words, IMR restored on exit."""

    IMR_MASK = 0x1F

    def __init__(self, card: NE2000) -> None:
        self.card = card
        self.p = Pio(card, word=True)
        self.frames: list[bytes] = []

    def init(self) -> None:
        p = self.p
        p.out(CR, RD2 | STP)
        p.out(DCR, 0x49)
        p.out(PSTART, 0x46)
        p.out(PSTOP, 0x80)
        p.out(BNRY, 0x46)                      # Crynwr/FreeBSD: BNRY=PSTART, CURR=PSTART+1
        p.out(TPSR, 0x40)
        p.out(CR, RD2 | STP | PS0)
        for i in range(6):
            p.out(1 + i, MAC[i])
        p.out(7, 0x47)
        p.out(CR, RD2 | STA)
        p.out(ISR, 0xFF)
        p.out(IMR, self.IMR_MASK)
        p.out(TCR, 0)
        p.out(RCR, 0x04)
        self.next_pkt = 0x47

    def isr(self, during=None) -> None:
        p = self.p
        p.out(IMR, 0)                           # mask the card while servicing
        p.out(ISR, PRX)
        p.out(CR, RD2 | STA | PS0)
        curr = p.inb(7)
        p.out(CR, RD2 | STA)
        if self.next_pkt != curr:
            hdr = p.readmem(self.next_pkt << 8, 4)
            count = (hdr[2] | hdr[3] << 8) - 4
            p.out(RBCR0, count & 0xFF)
            p.out(RBCR1, count >> 8)
            p.out(RSAR0, 4)
            p.out(RSAR1, self.next_pkt)
            p.out(CR, RD0 | STA)
            raw = bytearray()
            for _ in range((count + 1) // 2):   # rep insw with an odd count rounded up
                raw += self.card.io_read(DATA, 2).to_bytes(2, "little")
            self.frames.append(bytes(raw[:count]))
            self.next_pkt = hdr[1]
            bnry = self.next_pkt - 1
            p.out(BNRY, bnry if bnry >= 0x46 else 0x7F)
        if during is not None:
            during()
        p.out(IMR, self.IMR_MASK)               # restoring IMR makes a new edge if pending


def test_crynwr_rep_insw_with_odd_counts_reads_whole_frames():
    card = NE2000(model="ne2000", mac=MAC)
    drv = Crynwr(card)
    drv.init()
    for n in (61, 63, 99, 301, 1513):
        f = frame_of(n, seed=n)
        assert card.receive(f)
        drv.isr()
        assert drv.frames[-1] == f


def test_crynwr_imr_zero_then_restore_gives_a_new_edge_for_a_frame_that_arrived_meanwhile():
    levels: list[int] = []
    card = NE2000(model="ne2000", mac=MAC, irq=levels.append)
    drv = Crynwr(card)
    drv.init()
    assert card.receive(frame_of(70, seed=1))
    assert levels == [1]
    drv.isr(during=lambda: card.receive(frame_of(80, seed=2)))
    assert levels == [1, 0, 1]                  # a fresh rising edge for the edge-triggered PIC
    drv.isr()
    assert [len(f) for f in drv.frames] == [70, 80]
    assert levels == [1, 0, 1, 0]


@pytest.mark.parametrize("bnry, curr, name", [(0x46, 0x46, "SerenityOS: BNRY=CURR=PSTART"),
                                              (0x00, 0x46, "ReactOS: BNRY=0"),
                                              (0x7F, 0x46, "Linux/iPXE: BNRY=PSTOP-1"),
                                              (0x46, 0x47, "FreeBSD/Crynwr: CURR=PSTART+1")])
def test_every_drivers_initial_ring_convention_accepts_frames_until_full(bnry, curr, name):
    card = NE2000(model="ne2000", mac=MAC)
    p = Pio(card, word=True)
    for off, val in [(CR, RD2 | STP), (DCR, 0x49), (PSTART, 0x46), (PSTOP, 0x80),
                     (BNRY, bnry), (CR, RD2 | STP | PS0), (7, curr), (CR, RD2 | STA),
                     (TCR, 0), (RCR, 0x04)]:
        p.out(off, val)
    for i in range(6):
        card.chip.par[i] = MAC[i]
    accepted = 0
    while card.receive(frame_of(60, seed=accepted)):
        accepted += 1
        assert accepted <= 58, name
    assert 55 <= accepted <= 58, (name, accepted)
    assert card.io_read(ISR, 1) & 0x10               # OVW once full

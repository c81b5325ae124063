"""Replays of what Linux's ne2k-pci.c and lib8390.c (and ne.c for the ISA board) do, port
access by port access, against the card. Each test names the driver routine it follows.

The class below is a transcription of the drivers' register traffic (not their code):
ne2k_pci_init_one (reset, PROM in word mode with 32 byte reads), __NS8390_init,
ne2k_pci_get_8390_hdr (one inl), ne2k_pci_block_input/output (insl/outsl, RDC polling),
__ei_start_xmit/NS8390_trigger_send, ei_receive with its next-frame sanity checks, and
ei_rx_overrun.
"""

from __future__ import annotations

import pytest

from pyv86.ne2k import NE2000

CMD, STARTPG, STOPPG, BOUNDARY, TPSR, TCNTLO, TCNTHI, ISR = 0, 1, 2, 3, 4, 5, 6, 7
RSARLO, RSARHI, RCNTLO, RCNTHI, RXCR, TXCR, DCFG, IMR = 8, 9, 10, 11, 12, 13, 14, 15
CURPAG = 7
DATA, RESET = 0x10, 0x1F
PAGE2 = 0x80
NODMA, PAGE0, PAGE1, STOP, START, TRANS, RREAD, RWRITE = 0x20, 0, 0x40, 1, 2, 4, 8, 0x10
ENISR_RX, ENISR_TX, ENISR_RX_ERR, ENISR_TX_ERR, ENISR_OVER = 1, 2, 4, 8, 0x10
ENISR_COUNTERS, ENISR_RDC, ENISR_RESET, ENISR_ALL = 0x20, 0x40, 0x80, 0x3F


class LinuxNe2kPci:
    """The register traffic of Linux's ne2k-pci + lib8390 (16 KiB ring at 0x4c..0x80)."""

    TX_START = 0x40          # NESM_START_PG
    RX_START = 0x40 + 12     # two 6-page transmit buffers
    STOP_PG = 0x80

    def __init__(self, card: NE2000, word32: bool = True) -> None:
        self.card = card
        self.word32 = word32
        self.received: list[bytes] = []
        self.rx_errors = 0
        self.current_page = self.RX_START

    def out(self, off: int, val: int) -> None:
        self.card.io_write(off, val, 1)

    def inb(self, off: int) -> int:
        return self.card.io_read(off, 1)

    # ne2k_pci_init_one
    def probe(self) -> bytes:
        self.out(RESET, self.inb(RESET))
        for _ in range(100):                       # "Card failure (no reset ack)" otherwise
            if self.inb(ISR) & ENISR_RESET:
                break
        else:
            raise AssertionError("no reset ack")
        self.out(ISR, 0xFF)
        for val, off in [(NODMA + PAGE0 + STOP, CMD), (0x49, DCFG), (0, RCNTLO), (0, RCNTHI),
                         (0, IMR), (0xFF, ISR), (0x20, RXCR), (0x02, TXCR), (32, RCNTLO),
                         (0, RCNTHI), (0, RSARLO), (0, RSARHI), (RREAD + START, CMD)]:
            self.out(off, val)
        sa_prom = bytes(self.inb(DATA) for _ in range(32))
        self.out(DCFG, 0x49)
        return sa_prom[:6]

    # __NS8390_init(dev, startp)
    def init(self, mac: bytes, startp: bool = True, rx_config: int = 0x04) -> None:
        self.out(CMD, NODMA + PAGE0 + STOP)
        self.out(DCFG, 0x49)
        self.out(RCNTLO, 0)
        self.out(RCNTHI, 0)
        self.out(RXCR, 0x20)
        self.out(TXCR, 0x02)
        self.out(TPSR, self.TX_START)
        self.out(STARTPG, self.RX_START)
        self.out(BOUNDARY, self.STOP_PG - 1)
        self.current_page = self.RX_START
        self.out(STOPPG, self.STOP_PG)
        self.out(ISR, 0xFF)
        self.out(IMR, 0x00)
        self.out(CMD, NODMA + PAGE1 + STOP)
        for i in range(6):
            self.out(1 + i, mac[i])
            assert self.inb(1 + i) == mac[i], "Hw. address read/write mismap"
        self.out(CURPAG, self.RX_START)
        self.out(CMD, NODMA + PAGE0 + STOP)
        if startp:
            self.out(ISR, 0xFF)
            self.out(IMR, ENISR_ALL)
            self.out(CMD, NODMA + PAGE0 + START)
            self.out(TXCR, 0x00)
            self.out(RXCR, rx_config)

    # ne2k_pci_block_output + NS8390_trigger_send
    def transmit(self, frame: bytes) -> None:
        length = max(len(frame), 60)
        data = frame + bytes(length - len(frame))
        count = length + (length & 1)
        data += bytes(count - length)
        self.out(CMD, PAGE0 + START + NODMA)
        self.out(RCNTLO, count & 0xFF)
        self.out(RCNTHI, count >> 8)
        self.out(RSARLO, 0)
        self.out(RSARHI, self.TX_START)
        self.out(CMD, RWRITE + START)
        if self.word32:
            for i in range(0, count & ~3, 4):
                self.card.io_write(DATA, int.from_bytes(data[i:i + 4], "little"), 4)
            if count & 2:
                i = count & ~3
                self.card.io_write(DATA, int.from_bytes(data[i:i + 2], "little"), 2)
        else:
            for i in range(0, count, 2):
                self.card.io_write(DATA, int.from_bytes(data[i:i + 2], "little"), 2)
        for _ in range(100):   # "timeout waiting for Tx RDC"
            if self.inb(ISR) & ENISR_RDC:
                break
        else:
            raise AssertionError("timeout waiting for Tx RDC")
        self.out(ISR, ENISR_RDC)
        # NS8390_trigger_send
        self.out(CMD, NODMA + PAGE0)
        assert not self.inb(CMD) & TRANS, "trigger_send() called with the transmitter busy"
        self.out(TCNTLO, length & 0xFF)
        self.out(TCNTHI, length >> 8)
        self.out(TPSR, self.TX_START)
        self.out(CMD, NODMA + TRANS + START)

    # ne2k_pci_get_8390_hdr
    def get_hdr(self, ring_page: int) -> tuple[int, int, int]:
        self.out(CMD, NODMA + PAGE0 + START)
        self.out(RCNTLO, 4)
        self.out(RCNTHI, 0)
        self.out(RSARLO, 0)
        self.out(RSARHI, ring_page)
        self.out(CMD, RREAD + START)
        if self.word32:
            h = self.card.io_read(DATA, 4)
        else:
            h = self.card.io_read(DATA, 2) | self.card.io_read(DATA, 2) << 16
        self.out(ISR, ENISR_RDC)
        return h & 0xFF, (h >> 8) & 0xFF, h >> 16

    # ne2k_pci_block_input
    def block_input(self, count: int, ring_offset: int) -> bytes:
        self.out(CMD, NODMA + PAGE0 + START)
        self.out(RCNTLO, count & 0xFF)
        self.out(RCNTHI, count >> 8)
        self.out(RSARLO, ring_offset & 0xFF)
        self.out(RSARHI, ring_offset >> 8)
        self.out(CMD, RREAD + START)
        out = bytearray()
        if self.word32:
            for _ in range(count >> 2):
                out += self.card.io_read(DATA, 4).to_bytes(4, "little")
            if count & 3:
                if count & 2:
                    out += self.card.io_read(DATA, 2).to_bytes(2, "little")
                if count & 1:
                    out.append(self.card.io_read(DATA, 1))
        else:
            for _ in range(count >> 1):
                out += self.card.io_read(DATA, 2).to_bytes(2, "little")
            if count & 1:
                out.append(self.card.io_read(DATA, 1))
        self.out(ISR, ENISR_RDC)
        return bytes(out)

    # ei_receive
    def receive(self) -> int:
        num_rx_pages = self.STOP_PG - self.RX_START
        got = 0
        rx_pkt_count = 0
        while True:
            rx_pkt_count += 1
            if rx_pkt_count >= 10:
                break
            self.out(CMD, NODMA + PAGE1)
            rxing_page = self.inb(CURPAG)
            self.out(CMD, NODMA + PAGE0)
            this_frame = self.inb(BOUNDARY) + 1
            if this_frame >= self.STOP_PG:
                this_frame = self.RX_START
            if this_frame == rxing_page:
                break
            current_offset = this_frame << 8
            status, nxt, count = self.get_hdr(this_frame)
            pkt_len = count - 4
            next_frame = this_frame + 1 + ((pkt_len + 4) >> 8)
            if nxt not in (next_frame, next_frame + 1, next_frame - num_rx_pages,
                           next_frame + 1 - num_rx_pages):
                self.current_page = rxing_page
                self.out(BOUNDARY, self.current_page - 1)
                self.rx_errors += 1
                continue
            if pkt_len < 60 or pkt_len > 1518:
                self.rx_errors += 1
            elif status & 0x0F == 0x01:
                self.received.append(self.block_input(pkt_len, current_offset + 4))
                got += 1
            else:
                self.rx_errors += 1
            next_frame = nxt
            if next_frame >= self.STOP_PG:
                next_frame = self.RX_START
            self.current_page = next_frame
            self.out(BOUNDARY, next_frame - 1)
        self.out(ISR, ENISR_RX + ENISR_RX_ERR)
        return got

    # ei_rx_overrun
    def rx_overrun(self) -> None:
        was_txing = self.inb(CMD) & TRANS
        self.out(CMD, NODMA + PAGE0 + STOP)
        self.out(RCNTLO, 0)
        self.out(RCNTHI, 0)
        must_resend = bool(was_txing) and not (self.inb(ISR) & (ENISR_TX + ENISR_TX_ERR))
        self.out(TXCR, 0x02)
        self.out(CMD, NODMA + PAGE0 + START)
        self.receive()
        self.out(ISR, ENISR_OVER)
        self.out(TXCR, 0x00)
        assert not must_resend

    # ei_interrupt (the parts that matter here)
    def interrupt(self) -> None:
        self.out(CMD, NODMA + PAGE0)
        for _ in range(12):   # MAX_SERVICE
            interrupts = self.inb(ISR)
            if not interrupts:
                break
            if interrupts & ENISR_OVER:
                self.rx_overrun()
            elif interrupts & (ENISR_RX + ENISR_RX_ERR):
                self.receive()
            if interrupts & ENISR_TX:
                self.out(ISR, ENISR_TX)
            if interrupts & ENISR_COUNTERS:
                for off in (13, 14, 15):
                    self.inb(off)
                self.out(ISR, ENISR_COUNTERS)
            if interrupts & ENISR_RDC:
                self.out(ISR, ENISR_RDC)
        self.out(CMD, NODMA + PAGE0 + START)


MAC = bytes.fromhex("525400123456")
PEER = bytes.fromhex("020000000001")


def frame_of(length: int, dst: bytes = MAC, seed: int = 0) -> bytes:
    body = bytes((seed + i * 7) & 0xFF for i in range(length - 14))
    return dst + PEER + b"\x08\x00" + body


@pytest.fixture
def setup():
    sent: list[bytes] = []
    levels: list[int] = []
    card = NE2000(model="rtl8029", mac=MAC, send=sent.append, irq=levels.append)
    drv = LinuxNe2kPci(card)
    mac = drv.probe()
    drv.init(mac)
    return card, drv, sent, levels


def test_ne2k_pci_probe_reads_the_mac_from_prom_in_word_mode_with_byte_reads():
    card = NE2000(model="rtl8029", mac=MAC)
    drv = LinuxNe2kPci(card)
    assert drv.probe() == MAC


def test_ne2k_pci_probe_prom_bytes_are_the_low_bytes_of_doubled_words_with_ww_signature():
    card = NE2000(model="rtl8029", mac=MAC)
    drv = LinuxNe2kPci(card)
    drv.out(RESET, drv.inb(RESET))
    drv.out(DCFG, 0x48)                       # byte mode: ne.c reads 32 bytes, collapses i+i
    for val, off in [(32, RCNTLO), (0, RCNTHI), (0, RSARLO), (0, RSARHI), (RREAD + START, CMD)]:
        drv.out(off, val)
    prom = bytes(drv.inb(DATA) for _ in range(32))
    assert all(prom[i] == prom[i + 1] for i in range(0, 32, 2))
    collapsed = prom[::2]
    assert collapsed[:6] == MAC and collapsed[14] == collapsed[15] == 0x57  # ne.c's 'WW'


def test_ne2k_pci_reset_port_really_resets_a_running_card(setup):
    card, drv, _, _ = setup
    assert drv.inb(CMD) & 0x3F == NODMA + START
    drv.out(RESET, drv.inb(RESET))
    assert drv.inb(CMD) & 0x27 == 0x21            # stopped
    assert drv.inb(ISR) & ENISR_RESET
    drv.out(CMD, NODMA + PAGE2)                   # page 2 to read IMR back
    assert drv.inb(IMR) & 0x7F == 0
    drv.out(CMD, NODMA + PAGE0)
    assert card.receive(frame_of(60)) is False    # a reset card does not receive


def test_ns8390_init_leaves_the_card_started_with_cr_0x22_after_writing_0x20(setup):
    card, drv, _, _ = setup
    drv.out(CMD, NODMA + PAGE0)                   # NS8390_trigger_send's page select
    assert drv.inb(CMD) & 0x27 == NODMA + START   # STA=STP=0 did not stop the chip
    assert card.statistics()["running"]


def test_transmit_with_rdc_polling_puts_the_frame_on_the_wire_and_clears_txp(setup):
    _card, drv, sent, levels = setup
    frame = frame_of(98, dst=PEER)
    drv.transmit(frame)
    assert sent == [frame]
    assert not drv.inb(CMD) & TRANS
    assert drv.inb(ISR) & ENISR_TX and drv.inb(4) & 0x01   # ISR.PTX, TSR.PTX
    assert levels[-1] == 1


@pytest.mark.parametrize("length", [60, 61, 62, 63, 64, 250, 251, 252, 253, 254, 255, 256,
                                    507, 508, 1000, 1514, 1518])
def test_32bit_ring_header_and_insl_receive_every_length_linux_accepts(setup, length):
    card, drv, _, _ = setup
    frame = frame_of(length, seed=length)
    assert card.receive(frame)
    drv.interrupt()
    assert drv.received == [frame] and drv.rx_errors == 0


def test_16bit_driver_variant_reads_header_with_two_inw(setup):
    card, drv, _, _ = setup
    drv.word32 = False
    frames = [frame_of(n, seed=n) for n in (60, 301, 1514)]
    for f in frames:
        assert card.receive(f)
    drv.interrupt()
    assert drv.received == frames


def test_receive_across_the_ring_wrap_reads_frames_split_at_pstop(setup):
    """ei_receive never wraps in software: block_input relies on the chip wrapping RSAR
    from PSTOP to PSTART, also in the middle of a 32-bit insl."""
    card, drv, _, _ = setup
    sizes = [1514, 1000, 777, 1514, 1513, 999, 61, 1514, 1515, 600] * 6
    wrapped = 0
    for i, n in enumerate(sizes):
        before = card.chip.curr
        f = frame_of(n, seed=i)
        assert card.receive(f), i
        if card.chip.curr < before:
            wrapped += 1
        drv.interrupt()
        assert drv.received[-1] == f
    assert wrapped >= 3 and drv.rx_errors == 0


def test_wrap_inside_a_32bit_access_moves_each_byte_across_pstop(setup):
    card, drv, _, _ = setup
    c = card.chip
    c.mem[0x7FFE:0x8000] = b"\xaa\xbb"
    c.mem[0x4C00:0x4C02] = b"\xcc\xdd"
    drv.out(RCNTLO, 4)
    drv.out(RCNTHI, 0)
    drv.out(RSARLO, 0xFE)
    drv.out(RSARHI, 0x7F)
    drv.out(CMD, RREAD + START)
    assert card.io_read(DATA, 4) == 0xDDCCBBAA
    drv.out(CMD, NODMA + PAGE0 + START)
    assert (drv.inb(RSARLO), drv.inb(RSARHI)) == (0x02, 0x4C)     # CRDA advanced past the wrap


def test_overrun_sets_ovw_rst_cntr2_and_ei_rx_overrun_recovers(setup):
    card, drv, _, _levels = setup
    stored = 0
    while card.receive(frame_of(1514, seed=stored)):
        stored += 1
        assert stored < 100
    isr = drv.inb(ISR)
    assert isr & ENISR_OVER and isr & ENISR_RESET
    assert card.receive(frame_of(60)) is False             # stays refused until recovery
    drv.out(CMD, NODMA + PAGE0)
    assert drv.inb(15) >= 1                                # CNTR2 counted missed frames
    assert drv.inb(15) == 0                                # and cleared on read
    drv.interrupt()                                        # ei_interrupt -> ei_rx_overrun
    assert len(drv.received) == stored
    assert [f[14:20] for f in drv.received] == [frame_of(1514, seed=i)[14:20]
                                                 for i in range(stored)]
    assert not drv.inb(ISR) & (ENISR_OVER | ENISR_RESET)
    assert card.receive(frame_of(70, seed=99))             # receiving again
    drv.interrupt()
    assert drv.received[-1] == frame_of(70, seed=99)


def test_linux_boundary_pstart_minus_one_after_a_frame_ending_at_pstop_protects_unread_frames(setup):
    """After a frame whose next page wraps to PSTART, Linux writes BNRY = PSTART-1 (outside
    the ring). The card must read that as 'one page before PSTART', not overwrite."""
    card, drv, _, _ = setup
    c = card.chip
    c.curr = 0x7A
    drv.out(BOUNDARY, 0x79)
    assert card.receive(frame_of(1514, seed=1))    # occupies 0x7A..0x7F, next = PSTART
    drv.interrupt()
    assert c.curr == drv.RX_START
    assert drv.inb(BOUNDARY) == drv.RX_START - 1
    accepted = 0
    while card.receive(frame_of(1514, seed=accepted)):
        accepted += 1
        assert accepted < 100
    assert accepted == (drv.STOP_PG - drv.RX_START - 1) // 6   # stops before overwriting
    drv.interrupt()
    assert drv.rx_errors == 0 and len(drv.received) == accepted + 1


def test_probe_counter_check_reads_cntr0_twice_and_sees_zero():
    """ne.c ne_probe1: write 0xff to page-1 register 0x0d (MAR5), read CNTR0 twice on page 0:
    the second read must be 0."""
    card = NE2000(model="ne2000", mac=MAC)
    card.chip.cntr0 = 5
    card.io_write(CMD, NODMA + PAGE1 + STOP, 1)
    card.io_read(0x0D, 1)
    card.io_write(0x0D, 0xFF, 1)
    card.io_write(CMD, NODMA + PAGE0, 1)
    card.io_read(0x0D, 1)
    assert card.io_read(0x0D, 1) == 0


def test_isa_irq_autoprobe_zero_length_remote_read_raises_rdc_at_once():
    """ne.c: IMR=0x50, RBCR=0, CMD=RREAD+START 'Trigger it...', then IMR=0."""
    levels: list[int] = []
    card = NE2000(model="ne2000", mac=MAC, irq=levels.append)
    card.io_write(IMR, 0x50, 1)
    card.io_write(RCNTLO, 0, 1)
    card.io_write(RCNTHI, 0, 1)
    card.io_write(CMD, RREAD + START, 1)
    card.io_write(IMR, 0x00, 1)
    assert levels == [1, 0]


def test_full_duplex_module_option_sequence_sets_config3_fudup():
    """ne2k-pci with full_duplex=1: CR=0xE0, 9346CR=0xC0, CONFIG3=0x40, 9346CR=0, CR=0x20."""
    card = NE2000(model="rtl8029", mac=MAC)
    for off, val in [(CMD, 0xE0), (1, 0xC0), (6, 0x40), (1, 0x00), (CMD, 0x20)]:
        card.io_write(off, val, 1)
    card.io_write(CMD, 0xE0, 1)
    assert card.io_read(6, 1) & 0x40
    assert card.statistics()["full_duplex"]
    card.io_write(CMD, 0xE0, 1)
    card.io_write(6, 0x00, 1)                 # 9346CR.EEM=00: CONFIG3 write-protected
    assert card.io_read(6, 1) & 0x40


def test_multicast_list_hash_accepts_joined_group_and_drops_others(setup):
    """lib8390 do_set_multicast_list: bit = ether_crc(addr) >> 26 set in MAR, RXCR |= AM."""
    card, drv, _, _ = setup
    from pyv86.ne2k import multicast_index
    group = bytes.fromhex("01005e000001")
    other = bytes.fromhex("01005e7f1234")
    assert multicast_index(group) != multicast_index(other)
    bit = multicast_index(group)
    drv.out(CMD, NODMA + PAGE1)
    drv.out(8 + (bit >> 3), 1 << (bit & 7))
    drv.out(CMD, NODMA + PAGE0)
    drv.out(RXCR, 0x04 | 0x08)
    assert card.receive(frame_of(80, dst=group))
    assert not card.receive(frame_of(80, dst=other))
    assert card.receive(frame_of(80, dst=b"\xff" * 6))           # AB
    assert not card.receive(frame_of(80, dst=bytes.fromhex("020000000099")))
    drv.interrupt()
    assert len(drv.received) == 2 and drv.received[0][:6] == group


def test_multicast_hash_is_linux_ether_crc_top_six_bits():
    """lib8390 uses ether_crc() (big-endian CRC-32, octets fed LSB first, no final xor) >> 26.
    That register is the bit reversal of zlib's reflected CRC-32 before its final xor."""
    import zlib

    from pyv86.ne2k import multicast_index
    for mac in ("01005e000001", "333300000001", "01005e0000fb", "0180c2000000"):
        raw = bytes.fromhex(mac)
        reflected = zlib.crc32(raw) ^ 0xFFFFFFFF
        ether_crc = int(f"{reflected:032b}"[::-1], 2)
        assert multicast_index(raw) == ether_crc >> 26


def test_ne_c_block_output_dummy_read_before_write_then_transmit_on_the_isa_board():
    """ne.c ne_block_output with NE8390_RW_BUGFIX: a remote read of 0x42 bytes at 0x42 is
    started and abandoned (the Crynwr read-before-write workaround), RDC acknowledged, then
    the real remote write with outsw, RDC polled, and NS8390_trigger_send."""
    sent: list[bytes] = []
    card = NE2000(model="ne2000", mac=MAC, send=sent.append)
    drv = LinuxNe2kPci(card, word32=False)
    drv.TX_START, drv.RX_START, drv.STOP_PG = 0x40, 0x4C, 0x80
    drv.out(RESET, drv.inb(RESET))
    drv.init(MAC)
    frame = frame_of(99, dst=PEER)
    count = 100
    data = frame + b"\x00"
    for val, off in [(0x42, RCNTLO), (0, RCNTHI), (0x42, RSARLO), (0, RSARHI),
                     (RREAD + START, CMD), (ENISR_RDC, ISR), (count, RCNTLO), (0, RCNTHI),
                     (0, RSARLO), (0x40, RSARHI), (RWRITE + START, CMD)]:
        drv.out(off, val)
    for i in range(0, count, 2):
        card.io_write(DATA, data[i] | data[i + 1] << 8, 2)
    assert drv.inb(ISR) & ENISR_RDC
    drv.out(ISR, ENISR_RDC)
    for val, off in [(NODMA + PAGE0, CMD), (99, TCNTLO), (0, TCNTHI), (0x40, TPSR),
                     (NODMA + TRANS + START, CMD)]:
        drv.out(off, val)
    assert sent == [frame]

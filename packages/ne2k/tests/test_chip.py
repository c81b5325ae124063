"""DP8390 behaviours the driver replays touch only lightly: loopback, monitor mode, tally
counters and CNT, send-packet, page 2 read-back, RTL8029 page 3 and HLTCLK, hardware reset.
Bit names follow the DP8390D data sheet register descriptions (as quoted in BSD dp8390reg.h)."""

from __future__ import annotations

import pytest

from pyv86.ne2k import NE2000

CR, PSTART, PSTOP, BNRY, TPSR, TBCR0, TBCR1, ISR = 0, 1, 2, 3, 4, 5, 6, 7
RSAR0, RSAR1, RBCR0, RBCR1, RCR, TCR, DCR, IMR = 8, 9, 10, 11, 12, 13, 14, 15
DATA = 0x10
MAC = bytes.fromhex("525400aabbcc")


def up(model: str = "ne2000", **kw) -> tuple[NE2000, list]:
    sent: list[bytes] = []
    card = NE2000(model=model, mac=MAC, send=sent.append, **kw)
    for off, val in [(CR, 0x21), (DCR, 0x49), (PSTART, 0x46), (PSTOP, 0x80), (BNRY, 0x7F),
                     (TPSR, 0x40), (CR, 0x61)] + [(1 + i, MAC[i]) for i in range(6)] + [
                     (7, 0x46), (CR, 0x22), (TCR, 0), (RCR, 0x04), (ISR, 0xFF)]:
        card.io_write(off, val, 1)
    return card, sent


def put_tx(card: NE2000, frame: bytes) -> None:
    card.chip.mem[0x4000:0x4000 + len(frame)] = frame
    card.io_write(TBCR0, len(frame) & 0xFF, 1)
    card.io_write(TBCR1, len(frame) >> 8, 1)
    card.io_write(TPSR, 0x40, 1)
    card.io_write(CR, 0x26, 1)


def frame(n: int, dst: bytes = MAC) -> bytes:
    return dst + bytes.fromhex("020000000009") + b"\x08\x00" + bytes(i & 0xFF for i in range(n - 14))


@pytest.mark.parametrize("tcr, name", [(0x02, "internal"), (0x04, "external"), (0x06, "external")])
def test_loopback_frames_go_into_the_own_ring_never_onto_the_wire(tcr, name):
    card, sent = up()
    card.io_write(TCR, tcr, 1)
    put_tx(card, frame(100))
    assert sent == [], name
    assert card.chip.curr == 0x47 and card.io_read(ISR, 1) & 0x03 == 0x03  # PTX and PRX
    assert bytes(card.chip.mem[0x4604:0x4604 + 100]) == frame(100)
    assert card.receive(frame(100)) is False                   # the wire is not listened to
    assert card.statistics()["tx_loopback"] == 1


def test_loopback_while_monitoring_counts_but_stores_nothing():
    """Linux's __NS8390_init sets RCR=MON and TCR=internal loopback before starting."""
    card, sent = up()
    card.io_write(TCR, 0x02, 1)
    card.io_write(RCR, 0x24, 1)
    put_tx(card, frame(60))
    assert sent == [] and card.chip.curr == 0x46 and card.chip.cntr2 == 1


def test_monitor_mode_checks_addresses_counts_missed_and_stores_nothing():
    card, _ = up()
    card.io_write(RCR, 0x20 | 0x04, 1)
    assert card.receive(frame(60)) is False
    assert card.receive(frame(60, dst=bytes.fromhex("020000000077"))) is False
    assert card.chip.curr == 0x46
    assert card.io_read(RCR, 1) & 0x10                # RSR.MPA (page 0 read of 0x0c is RSR)
    assert card.io_read(0x0F, 1) == 1                 # only the recognised frame was counted


def test_tally_counter_msb_raises_cnt_and_counters_stop_at_192():
    levels: list[int] = []
    card, _ = up()
    card.irq = levels.append
    card.io_write(IMR, 0x20, 1)
    card.io_write(RCR, 0x24, 1)
    for _ in range(127):
        card.receive(frame(60))
    assert not card.io_read(ISR, 1) & 0x20 and levels == []
    card.receive(frame(60))
    assert card.io_read(ISR, 1) & 0x20 and levels == [1]
    for _ in range(200):
        card.receive(frame(60))
    assert card.io_read(0x0F, 1) == 192 and card.io_read(0x0F, 1) == 0


def test_send_packet_command_reads_the_frame_at_bnry_using_its_header():
    card, _ = up()
    card.io_write(BNRY, 0x46, 1)           # send-packet reads at BNRY
    card.chip.curr = 0x46
    card.receive(frame(75))
    card.io_write(CR, 0x1A, 1)             # RD=011 send packet, STA
    assert (card.chip.rsar, card.chip.rbcr) == (0x4600, 79)
    raw = b"".join(card.io_read(DATA, 2).to_bytes(2, "little") for _ in range(40))
    assert raw[4:79] == frame(75) and card.io_read(ISR, 1) & 0x40


def test_page2_reads_back_the_page0_write_only_registers():
    card, _ = up("rtl8029")
    card.io_write(CR, 0xA2, 1)
    vals = [card.io_read(off, 1) for off in (PSTART, PSTOP, TPSR, RCR, TCR, DCR, IMR)]
    assert vals[:3] == [0x46, 0x80, 0x40]
    assert vals[3] == 0xC4                 # RTL8029: RCR bits 7:6 read as 1
    assert vals[4] & 0x1F == 0 and vals[5] & 0x7F == 0x49 and vals[6] & 0x7F == 0


def test_plain_dp8390_page3_reads_ff_and_ignores_writes():
    card, _ = up("ne2000")
    card.io_write(CR, 0xE2, 1)
    card.io_write(6, 0x40, 1)
    assert [card.io_read(off, 1) for off in range(1, 16)] == [0xFF] * 15


def test_rtl8029_hltclk_halts_and_resumes_reception():
    card, _ = up("rtl8029")
    card.io_write(CR, 0xE2, 1)
    card.io_write(9, 0x48, 1)              # 'H'
    card.io_write(CR, 0x22, 1)
    assert card.receive(frame(60)) is False
    card.io_write(CR, 0xE2, 1)
    card.io_write(9, 0x52, 1)              # 'R'
    card.io_write(CR, 0x22, 1)
    assert card.receive(frame(60)) is True


def test_rtl8029_9346cr_autoload_restores_the_eeprom_configuration():
    card, _ = up("rtl8029", full_duplex=True)
    card.io_write(CR, 0xE2, 1)
    card.io_write(1, 0xC0, 1)
    card.io_write(6, 0x00, 1)
    assert card.io_read(6, 1) == 0x00
    card.io_write(1, 0x40, 1)              # EEM=01: auto-load
    assert card.io_read(6, 1) == 0x40 and card.io_read(1, 1) & 0xC0 == 0


def test_hardware_reset_stops_the_chip_and_abandons_a_transmission_in_flight():
    card, sent = up("rtl8029", wire_speed=10_000_000)
    card.io_write(IMR, 0x3F, 1)
    put_tx(card, frame(100, dst=bytes.fromhex("020000000001")))
    assert card.io_read(CR, 1) & 0x04
    card.reset()
    assert card.io_read(CR, 1) & 0x3F == 0x21 and card.io_read(ISR, 1) == 0x80
    card.advance(1.0)
    assert sent == [] and card.irq_level == 0
    card.io_write(CR, 0xE2, 1)
    assert card.io_read(6, 1) == 0x00      # page 3 configuration reloaded


def test_stop_lets_a_transmission_in_flight_complete():
    card, sent = up("ne2000", wire_speed=10_000_000)
    put_tx(card, frame(100, dst=bytes.fromhex("020000000001")))
    card.io_write(CR, 0x21, 1)
    assert len(sent) == 1 and not card.io_read(CR, 1) & 0x04


def test_isr_rst_is_status_only_and_ignores_writes():
    card, _ = up()
    card.io_write(CR, 0x21, 1)
    card.io_write(ISR, 0xFF, 1)
    assert card.io_read(ISR, 1) == 0x80
    card.io_write(CR, 0x22, 1)
    assert card.io_read(ISR, 1) == 0x00    # cleared by the start command

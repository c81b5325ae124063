"""Every bad input of the reference's list (../shared/reference/ne2000.md, "Bad input a model
must survive"), one named test each, plus the register semantics they touch. Each asserts
the documented behaviour, and that memory outside the card's RAM is untouched."""

from __future__ import annotations

import pytest

from pyv86.ne2k import NE2000

CR, PSTART, PSTOP, BNRY, TPSR, TBCR0, TBCR1, ISR = 0, 1, 2, 3, 4, 5, 6, 7
RSAR0, RSAR1, RBCR0, RBCR1, RCR, TCR, DCR, IMR = 8, 9, 10, 11, 12, 13, 14, 15
DATA = 0x10
MAC = bytes.fromhex("525400aabbcc")


def frame(n: int, dst: bytes = MAC) -> bytes:
    return dst + bytes.fromhex("020000000002") + b"\x08\x00" + bytes(i & 0xFF for i in range(n - 14))


def started(model: str = "ne2000", **kw) -> tuple[NE2000, list]:
    sent: list[bytes] = []
    card = NE2000(model=model, mac=MAC, send=sent.append, **kw)
    for off, val in [(CR, 0x21), (DCR, 0x49), (PSTART, 0x46), (PSTOP, 0x80), (BNRY, 0x7F),
                     (TPSR, 0x40), (CR, 0x61)] + [(1 + i, MAC[i]) for i in range(6)] + [
                     (7, 0x46), (CR, 0x22), (TCR, 0), (RCR, 0x04), (ISR, 0xFF)]:
        card.io_write(off, val, 1)
    return card, sent


def outside_ram_untouched(card: NE2000) -> bool:
    c = card.chip
    mem = c.mem
    prom_ok = bytes(mem[0:12:2]) == card.guest_mac
    return (len(mem) == 0x10000 and prom_ok
            and mem[0x20:c.ram_start] == b"\xff" * (c.ram_start - 0x20)
            and mem[c.ram_end:] == b"\xff" * (0x10000 - c.ram_end))


def remote(card: NE2000, cmd: int, addr: int, count: int) -> None:
    for off, val in [(RSAR0, addr & 0xFF), (RSAR1, addr >> 8), (RBCR0, count & 0xFF),
                     (RBCR1, count >> 8), (CR, cmd)]:
        card.io_write(off, val, 1)


# 1 -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("pstart, pstop", [(0x80, 0x46), (0x50, 0x50), (0x00, 0x00)])
def test_bad_input_1_pstart_not_below_pstop_drops_frames_and_never_loops(pstart, pstop):
    """QEMU CVE-2015-5278: PSTART >= PSTOP made the receive loop spin forever."""
    card, _ = started()
    card.io_write(PSTART, pstart, 1)
    card.io_write(PSTOP, pstop, 1)
    for n in (60, 1514):
        assert card.receive(frame(n)) is False
    assert card.statistics()["rx_dropped_bad_ring"] == 2
    remote(card, 0x0A, 0xFFF0, 64)           # remote DMA with no sane ring: plain 16-bit wrap
    for _ in range(16):
        card.io_read(DATA, 4)
    assert card.io_read(ISR, 1) & 0x40
    assert outside_ram_untouched(card)


# 2 -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("reg, value", [(PSTART, 0x00), (PSTOP, 0xFF), (PSTART, 0x10),
                                        (PSTOP, 0x81), ("CURR", 0x20), ("CURR", 0x90),
                                        ("CURR", 0xFF), (BNRY, 0xFF), (BNRY, 0x00)])
def test_bad_input_2_ring_pointers_outside_ram_never_write_outside_ram(reg, value):
    """CVE-2015-5279, CVE-2016-2841: pages are validated when used, not when written."""
    card, _ = started()
    if reg == "CURR":
        card.io_write(CR, 0x62, 1)
        card.io_write(7, value, 1)
        card.io_write(CR, 0x22, 1)
    else:
        card.io_write(reg, value, 1)
    for n in (60, 1000, 1514, 1518):
        card.receive(frame(n))
    assert outside_ram_untouched(card)


def test_bad_input_2_tpsr_outside_ram_transmits_what_the_card_reads_there():
    card, sent = started()
    card.io_write(TPSR, 0xF0, 1)          # unbacked: the chip reads 0xFF
    card.io_write(TBCR0, 100, 1)
    card.io_write(TBCR1, 0, 1)
    card.io_write(CR, 0x26, 1)
    assert sent == [b"\xff" * 100]
    assert not card.io_read(CR, 1) & 0x04


# 3 -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1519, 1600, 4000, 4096, 65535, 65536, 70000])
def test_bad_input_3_oversized_host_frames_are_dropped(n):
    """CVE-2018-10839: a length overflow from an oversized frame."""
    card, _ = started()
    assert card.receive(bytes(MAC) + bytes(n - 6)) is False
    assert card.statistics()["rx_dropped_oversize"] == 1
    assert card.chip.curr == 0x46 and outside_ram_untouched(card)


@pytest.mark.parametrize("n", [0, 1, 6, 13, 14, 59])
def test_bad_input_3_runt_host_frames_are_padded_to_60(n):
    card, _ = started()
    card.io_write(RCR, 0x14, 1)  # promiscuous so that short destinations are accepted
    data = (MAC + bytes(range(64)))[:n]
    assert card.receive(data) is True
    remote(card, 0x0A, 0x4600, 64)
    raw = b"".join(card.io_read(DATA, 4).to_bytes(4, "little") for _ in range(16))
    assert raw[2] | raw[3] << 8 == 64               # count = 60 + 4
    assert raw[4:] == data + bytes(60 - n)


# 4 -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["ne2000", "rtl8029"])
def test_bad_input_4_32bit_access_near_the_end_of_ram_and_of_the_address_space(model):
    card, _ = started(model)
    end = card.chip.ram_end
    for addr in (end - 3, end - 2, end - 1, 0xFFFE, 0xFFFF):
        card.io_write(PSTART, 0, 1)
        card.io_write(PSTOP, 0, 1)
        remote(card, 0x12, addr, 8)
        card.io_write(DATA, 0x11223344, 4)
        card.io_write(DATA, 0x55667788, 4)
        remote(card, 0x0A, addr, 8)
        card.io_read(DATA, 4)
        card.io_read(DATA, 4)
        assert outside_ram_untouched(card)
    assert card.chip.mem[end - 1] == 0x44  # the last byte of RAM was written, nothing beyond


def test_bad_input_4_32bit_step_across_pstop_wraps_each_byte_to_pstart():
    card, _ = started()
    remote(card, 0x12, 0x7FFE, 4)
    card.io_write(DATA, 0xDDCCBBAA, 4)
    assert bytes(card.chip.mem[0x7FFE:0x8000]) == b"\xaa\xbb"
    assert bytes(card.chip.mem[0x4600:0x4602]) == b"\xcc\xdd"
    assert outside_ram_untouched(card)


# 5 -----------------------------------------------------------------------------------------
def test_bad_input_5_tpsr_plus_tbcr_beyond_ram_and_the_64k_space():
    card, sent = started()
    card.io_write(TPSR, 0x7E, 1)
    card.io_write(TBCR0, 0xEE, 1)
    card.io_write(TBCR1, 0x05, 1)                  # 1518 bytes from 0x7E00: past RAM
    card.io_write(CR, 0x26, 1)
    assert len(sent[-1]) == 1518 and sent[-1][0x200:] == b"\xff" * (1518 - 0x200)
    card.io_write(TPSR, 0xFF, 1)                   # past 0xFFFF: wraps to the PROM
    card.io_write(CR, 0x26, 1)
    assert len(sent[-1]) == 1518 and sent[-1][256:258] == MAC[:1] * 2
    card.io_write(TBCR1, 0xFF, 1)                  # 65518 bytes: no Ethernet frame is that long
    card.io_write(CR, 0x26, 1)
    assert len(sent) == 2 and card.io_read(ISR, 1) & 0x08 and card.io_read(4, 1) & 0x08
    assert not card.io_read(CR, 1) & 0x04          # TXP released, TSR.ABT, ISR.TXE


def test_bad_input_5_txp_with_tbcr_zero_completes_without_a_frame():
    """MS NDIS2's driver issues TXP with TBCR=0 at init and waits for PTX."""
    card, sent = started()
    card.io_write(TBCR0, 0, 1)
    card.io_write(TBCR1, 0, 1)
    card.io_write(CR, 0x26, 1)
    assert sent == [] and card.io_read(ISR, 1) & 0x02 and not card.io_read(CR, 1) & 0x04


# 6 -----------------------------------------------------------------------------------------
def test_bad_input_6_reserved_bits_in_tcr_imr_are_ignored():
    """SerenityOS writes TCR=0xE0 and expects normal operation (LB=00)."""
    card, _ = started()
    card.io_write(TCR, 0xE0, 1)
    card.io_write(IMR, 0xFF, 1)
    assert card.chip.tcr == 0 and card.chip.imr == 0x7F
    assert card.receive(frame(60))
    card.io_write(CR, 0xA2, 1)                     # page 2 reads of the written registers
    assert card.io_read(TCR, 1) & 0x1F == 0 and card.io_read(IMR, 1) & 0x7F == 0x7F
    card.io_write(CR, 0x22, 1)


def test_bad_input_6_dcr_loopback_bit_does_not_decide_loopback():
    """SerenityOS writes DCR=0x41 (LS clear) and expects frames on the wire: only TCR.LB
    selects loopback."""
    card, sent = started()
    card.io_write(DCR, 0x41, 1)
    card.io_write(TBCR0, 60, 1)
    card.io_write(CR, 0x26, 1)
    assert len(sent) == 1


def test_bad_input_6_rd_000_keeps_the_previous_remote_dma_command():
    card, _ = started()
    card.chip.mem[0x4000:0x4004] = b"\x01\x02\x03\x04"
    remote(card, 0x0A, 0x4000, 4)
    card.io_write(CR, 0x02, 1)                     # RD=000: "not allowed"
    assert card.io_read(DATA, 4) == 0x04030201


def test_bad_input_6_txp_while_stopped_is_ignored():
    card, sent = started()
    card.io_write(CR, 0x21, 1)
    card.io_write(TBCR0, 60, 1)
    card.io_write(CR, 0x25, 1)                     # STP|TXP
    card.io_write(CR, 0x24, 1)                     # TXP with STA=STP=0 while stopped
    assert sent == [] and not card.io_read(CR, 1) & 0x04


@pytest.mark.parametrize("cr", range(256))
def test_bad_input_6_every_cr_value_is_harmless(cr):
    card, _ = started()
    card.io_write(CR, cr, 1)
    for off in range(0x20):
        card.io_read(off, 1)
    card.io_write(CR, 0x22, 1)
    assert outside_ram_untouched(card)


# 7 -----------------------------------------------------------------------------------------
def test_bad_input_7_word_access_at_odd_rsar_moves_a_byte_stream():
    card, _ = started()
    card.chip.mem[0x4001:0x4005] = b"\x11\x22\x33\x44"
    remote(card, 0x0A, 0x4001, 4)
    assert card.io_read(DATA, 2) == 0x2211 and card.io_read(DATA, 2) == 0x4433


def test_bad_input_7_16bit_access_in_byte_mode_moves_two_bytes():
    card, _ = started()
    card.io_write(DCR, 0x48, 1)
    card.chip.mem[0x4000:0x4004] = b"\x11\x22\x33\x44"
    remote(card, 0x0A, 0x4000, 4)
    assert card.io_read(DATA, 2) == 0x2211
    assert card.io_read(DATA, 1) == 0x33 and card.io_read(DATA, 1) == 0x44


def test_bad_input_7_data_port_write_with_rbcr_zero_writes_nothing():
    card, _ = started()
    before = bytes(card.chip.mem)
    remote(card, 0x12, 0x4000, 0)
    assert card.io_read(ISR, 1) & 0x40             # completes at once
    card.io_write(DATA, 0xAABBCCDD, 4)
    assert bytes(card.chip.mem) == before


def test_bad_input_7_rbcr_underflow_and_reads_past_rbcr():
    card, _ = started()
    card.chip.mem[0x4000:0x4008] = bytes(range(1, 9))
    remote(card, 0x0A, 0x4000, 3)
    assert card.io_read(DATA, 4) == 0x04030201     # 4 bytes moved although 3 were asked
    assert card.chip.rbcr == 0 and card.io_read(ISR, 1) & 0x40
    assert card.io_read(DATA, 4) == 0xFFFFFFFF     # past RBCR: the port floats
    assert card.io_read(DATA, 1) == 0xFF
    assert (card.io_read(RSAR0, 1), card.io_read(RSAR1, 1)) == (0x04, 0x40)


# other ports and sizes ---------------------------------------------------------------------
def test_unused_board_ports_read_all_ones_and_ignore_writes():
    card, _ = started()
    for off in [*range(0x11, 0x1F), 0x20, 0x100, -1]:
        assert card.io_read(off, 1) == 0xFF and card.io_read(off, 2) == 0xFFFF
        card.io_write(off, 0x12, 1)
    assert card.statistics()["running"]


def test_invalid_access_size_is_a_host_error():
    card, _ = started()
    with pytest.raises(ValueError, match="size"):
        card.io_read(0, 3)
    with pytest.raises(ValueError, match="size"):
        card.io_write(DATA, 0, 8)


def test_16bit_register_access_splits_into_two_byte_accesses():
    card, _ = started()
    card.io_write(PSTART, 0x5048, 2)               # PSTART=0x48, PSTOP=0x50
    card.io_write(CR, 0xA2, 1)
    assert card.io_read(PSTART, 2) == 0x5048

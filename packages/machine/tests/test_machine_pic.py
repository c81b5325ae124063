"""8259A pair (Intel 8259A datasheet; Linux arch/x86/kernel/i8259.c init sequence)."""

import pytest

from pyv86.machine.devices.pic import PICPair
from pyv86.machine.iobus import IOBus


def linux_init(io):
    # init_8259A(): ICW1 0x11, ICW2 vector base, ICW3 cascade, ICW4 0x01 (8086 mode, normal EOI)
    io.write(0x21, 0xFF, 1)
    io.write(0xA1, 0xFF, 1)
    io.write(0x20, 0x11, 1)
    io.write(0x21, 0x30, 1)
    io.write(0x21, 0x04, 1)
    io.write(0x21, 0x01, 1)
    io.write(0xA0, 0x11, 1)
    io.write(0xA1, 0x38, 1)
    io.write(0xA1, 0x02, 1)
    io.write(0xA1, 0x01, 1)
    io.write(0x21, 0x00, 1)
    io.write(0xA1, 0x00, 1)


@pytest.fixture
def pic():
    p = PICPair()
    io = IOBus()
    p.map(io)
    linux_init(io)
    return p, io


def test_edge_irq_delivers_vector_and_sets_isr_until_eoi(pic):
    p, io = pic
    assert not p.has_interrupt()
    p.set_irq(0, 1)
    assert p.has_interrupt()
    assert p.acknowledge() == 0x30
    assert not p.has_interrupt()
    io.write(0x20, 0x0B, 1)  # OCW3: read ISR
    assert io.read(0x20, 1) == 0x01
    io.write(0x20, 0x20, 1)  # non-specific EOI
    assert io.read(0x20, 1) == 0x00


def test_edge_needs_a_new_rising_edge(pic):
    p, io = pic
    p.set_irq(3, 1)
    p.acknowledge()
    io.write(0x20, 0x20, 1)
    p.set_irq(3, 1)  # still high: no new edge
    assert not p.has_interrupt()
    p.set_irq(3, 0)
    p.set_irq(3, 1)
    assert p.has_interrupt()


def test_slave_irq_cascades_through_ir2(pic):
    p, io = pic
    p.set_irq(11, 1)
    assert p.has_interrupt()
    assert p.acknowledge() == 0x38 + 3
    io.write(0xA0, 0x0B, 1)
    assert io.read(0xA0, 1) == 0x08
    io.write(0x20, 0x0B, 1)
    assert io.read(0x20, 1) == 0x04


def test_priority_lower_irq_number_wins_and_nesting_blocks_lower(pic):
    p, io = pic
    p.set_irq(5, 1)
    p.set_irq(1, 1)
    assert p.acknowledge() == 0x31
    assert not p.has_interrupt()  # IRQ5 waits for the EOI of IRQ1
    io.write(0x20, 0x61, 1)  # specific EOI for IR1
    assert p.acknowledge() == 0x35


def test_imr_masks_and_irr_is_readable(pic):
    p, io = pic
    io.write(0x21, 0x10, 1)
    p.set_irq(4, 1)
    assert not p.has_interrupt()
    io.write(0x20, 0x0A, 1)  # read IRR
    assert io.read(0x20, 1) & 0x10
    assert io.read(0x21, 1) == 0x10
    io.write(0x21, 0x00, 1)
    assert p.acknowledge() == 0x34


def test_level_triggered_line_via_elcr_stays_pending_until_line_drops(pic):
    p, io = pic
    io.write(0x4D1, 0x08, 1)  # IRQ 11 level (PCI INTA routed by PIRQ)
    assert io.read(0x4D1, 1) == 0x08
    p.set_irq(11, 1)
    assert p.acknowledge() == 0x3B
    io.write(0xA0, 0x20, 1)
    io.write(0x20, 0x20, 1)
    assert p.has_interrupt()  # line still high: the request is still there
    p.set_irq(11, 0)
    assert not p.has_interrupt()


def test_elcr_reserved_bits_read_zero(pic):
    _p, io = pic
    io.write(0x4D0, 0xFF, 1)
    io.write(0x4D1, 0xFF, 1)
    assert io.read(0x4D0, 1) == 0xF8  # IRQ 0, 1, 2 are edge only
    assert io.read(0x4D1, 1) == 0xDE  # IRQ 8 and 13 are edge only


def test_request_gone_before_ack_gives_spurious_irq7(pic):
    p, io = pic
    io.write(0x4D0, 0x20, 1)
    p.set_irq(5, 1)
    assert p.has_interrupt()
    p.set_irq(5, 0)
    assert p.acknowledge() == 0x37
    io.write(0x20, 0x0B, 1)
    assert io.read(0x20, 1) == 0  # spurious IR7 does not set ISR
    assert p.spurious == 1


def test_auto_eoi_leaves_isr_clear(pic):
    p, io = pic
    io.write(0x20, 0x11, 1)
    io.write(0x21, 0x08, 1)
    io.write(0x21, 0x04, 1)
    io.write(0x21, 0x03, 1)  # ICW4: AEOI
    io.write(0x21, 0x00, 1)
    p.set_irq(0, 1)
    assert p.acknowledge() == 0x08
    io.write(0x20, 0x0B, 1)
    assert io.read(0x20, 1) == 0


def test_rotate_on_non_specific_eoi_makes_served_irq_lowest(pic):
    p, io = pic
    p.set_irq(0, 1)
    p.acknowledge()
    io.write(0x20, 0xA0, 1)  # rotate on non-specific EOI
    p.set_irq(0, 0)
    p.set_irq(0, 1)
    p.set_irq(6, 1)
    assert p.acknowledge() == 0x36  # IR0 now has the lowest priority


def test_poll_command_acknowledges(pic):
    p, io = pic
    p.set_irq(2 + 1, 1)
    io.write(0x20, 0x0C, 1)  # OCW3 poll
    assert io.read(0x20, 1) == 0x83
    io.write(0x20, 0x0C, 1)
    assert io.read(0x20, 1) == 0x07  # nothing left


def test_special_mask_mode_allows_lower_priority(pic):
    p, io = pic
    p.set_irq(1, 1)
    p.acknowledge()
    io.write(0x21, 0x02, 1)  # mask the in-service IR1
    io.write(0x20, 0x68, 1)  # set special mask mode
    p.set_irq(4, 1)
    assert p.acknowledge() == 0x34


def test_state_round_trip_and_rejects_bad(pic):
    p, io = pic
    io.write(0x4D1, 0x08, 1)
    p.set_irq(11, 1)
    s = p.save_state()
    q = PICPair()
    q.restore_state(s)
    assert q.has_interrupt() and q.acknowledge() == 0x3B
    with pytest.raises(ValueError, match="version"):
        q.restore_state({"version": 2})
    bad = p.save_state()
    bad["master"]["imr"] = 300
    with pytest.raises(ValueError, match="imr"):
        q.restore_state(bad)


def test_irq_out_of_range_is_an_error():
    with pytest.raises(ValueError):
        PICPair().set_irq(16, 1)

"""16550A UART (PC16550D datasheet; Linux drivers/tty/serial/8250 probing) and small devices."""

import pytest

from pyv86.machine.devices.misc import I8042, DebugConsole, Port92, PostPort
from pyv86.machine.devices.uart import UART
from pyv86.machine.iobus import IOBus

B = 0x3F8


@pytest.fixture
def uart():
    out = []
    lines = []
    u = UART(lines.append, lambda data: out.append(data))
    io = IOBus()
    u.map(io)
    return u, io, out, lines


def test_scratch_register_and_ier_probe(uart):
    _u, io, _out, _lines = uart
    io.write(B + 7, 0x5A, 1)
    assert io.read(B + 7, 1) == 0x5A
    io.write(B + 1, 0x00, 1)
    assert io.read(B + 1, 1) == 0x00
    io.write(B + 1, 0x0F, 1)
    assert io.read(B + 1, 1) == 0x0F


def test_fifo_enable_identifies_16550a(uart):
    _u, io, _out, _lines = uart
    io.write(B + 2, 0xE7, 1)  # autoconfig: enable FIFO, clear, trigger 14
    assert io.read(B + 2, 1) & 0xC0 == 0xC0


def test_loopback_msr_pattern_linux_checks(uart):
    _u, io, out, _lines = uart
    io.write(B + 4, 0x10 | 0x0A, 1)  # loop, RTS, OUT2
    assert io.read(B + 6, 1) & 0xF0 == 0x90
    io.write(B, 0x41, 1)  # looped back, not output
    assert out == []
    assert io.read(B + 5, 1) & 0x01
    assert io.read(B, 1) == 0x41


def test_divisor_latch_access(uart):
    u, io, _out, _lines = uart
    io.write(B + 3, 0x80, 1)
    io.write(B, 0x01, 1)
    io.write(B + 1, 0x00, 1)
    assert io.read(B, 1) == 0x01
    io.write(B + 3, 0x03, 1)
    assert u.dll == 1 and u.ier == 0


def test_transmit_goes_to_output_and_lsr_shows_empty(uart):
    _u, io, out, _lines = uart
    for ch in b"hi":
        io.write(B, ch, 1)
    assert b"".join(out) == b"hi"
    assert io.read(B + 5, 1) & 0x60 == 0x60


def test_thre_interrupt_when_enabled_and_cleared_by_iir_read(uart):
    # serial8250_startup's THRE test: IER=THRI then IIR must not say "no interrupt"
    _u, io, _out, lines = uart
    io.write(B + 4, 0x08, 1)  # OUT2 routes the interrupt to the PIC
    io.write(B + 1, 0x02, 1)
    assert lines[-1] == 1
    assert io.read(B + 2, 1) & 0x0F == 0x02
    assert lines[-1] == 0
    assert io.read(B + 2, 1) & 0x0F == 0x01  # reading IIR cleared THRE
    io.write(B, 0x41, 1)  # transmitter empties again: THRE interrupt again
    assert lines[-1] == 1


def test_interrupt_needs_out2(uart):
    _u, io, _out, lines = uart
    io.write(B + 1, 0x02, 1)
    assert lines == []
    io.write(B + 4, 0x08, 1)
    assert lines == [1]


def test_received_bytes_raise_rdi_and_drain_through_fifo(uart):
    u, io, _out, lines = uart
    io.write(B + 2, 0x01, 1)  # FIFO on, trigger 1
    io.write(B + 4, 0x08, 1)
    io.write(B + 1, 0x01, 1)
    u.receive(b"x" * 20)
    assert lines[-1] == 1
    assert io.read(B + 2, 1) & 0x0F == 0x04
    got = bytearray()
    while io.read(B + 5, 1) & 1:
        got.append(io.read(B, 1))
    assert got == b"x" * 20  # the host queue refills the 16-byte FIFO
    assert lines[-1] == 0


def test_fifo_below_trigger_reports_character_timeout(uart):
    u, io, _out, _lines = uart
    io.write(B + 2, 0xC1, 1)  # trigger 14
    io.write(B + 1, 0x01, 1)
    u.receive(b"ab")
    assert io.read(B + 2, 1) & 0x0F == 0x0C


def test_overrun_without_fifo_sets_oe(uart):
    _u, io, _out, _lines = uart
    io.write(B + 4, 0x10, 1)  # loopback so bytes enter the receiver directly
    io.write(B, 1, 1)
    io.write(B, 2, 1)
    assert io.read(B + 5, 1) & 0x02
    assert not io.read(B + 5, 1) & 0x02  # cleared by reading LSR


def test_uart_state_round_trip_and_bad_state(uart):
    u, _io, _out, _lines = uart
    u.receive(b"abc")
    s = u.save_state()
    u2 = UART(lambda level: None)
    u2.restore_state(s)
    assert u2.io_read(0, 1) == ord("a")
    with pytest.raises(ValueError, match="rx"):
        u2.restore_state({**s, "rx": b"x" * 40})


def kbc():
    resets, a20, l1, l12 = [], [], [], []
    k = I8042(reset=resets.append, set_a20=a20.append, irq1=l1.append, irq12=l12.append)
    io = IOBus()
    k.map(io)
    return k, io, resets, a20, l1


def test_i8042_self_test_and_command_byte():
    _k, io, _resets, _a20, _l1 = kbc()
    io.write(0x64, 0xAA, 1)
    assert io.read(0x64, 1) & 1
    assert io.read(0x60, 1) == 0x55
    io.write(0x64, 0x60, 1)
    io.write(0x60, 0x47, 1)
    io.write(0x64, 0x20, 1)
    assert io.read(0x60, 1) == 0x47


def test_i8042_aux_loopback_shows_auxdata_bit():
    # i8042_check_aux(): 0xD3 writes to the AUX output buffer, read back with status bit 5
    _k, io, _resets, _a20, _l1 = kbc()
    io.write(0x64, 0xD3, 1)
    io.write(0x60, 0xA5, 1)
    assert io.read(0x64, 1) & 0x21 == 0x21
    assert io.read(0x60, 1) == 0xA5


def test_i8042_keyboard_reset_and_identify_raise_irq1():
    _k, io, _resets, _a20, l1 = kbc()
    io.write(0x60, 0xF2, 1)
    assert l1 == [1]
    assert [io.read(0x60, 1) for _ in range(3)] == [0xFA, 0xAB, 0x83]
    assert l1[-1] == 0


def test_i8042_pulse_fe_resets_and_output_port_sets_a20():
    _k, io, resets, a20, _l1 = kbc()
    io.write(0x64, 0xD1, 1)
    io.write(0x60, 0x01, 1)  # A20 off, reset line high
    assert a20 == [False] and resets == []
    io.write(0x64, 0xFE, 1)
    assert len(resets) == 1


def test_i8042_state_round_trip():
    k, io, *_ = kbc()
    io.write(0x64, 0xAA, 1)
    k2, io2, *_ = kbc()
    k2.restore_state(k.save_state())
    assert io2.read(0x60, 1) == 0x55
    with pytest.raises(ValueError):
        k2.restore_state({"version": 1, "out": [1, 2]})


def test_port92_a20_and_fast_reset():
    resets, a20 = [], []
    p = Port92(reset=resets.append, set_a20=a20.append)
    io = IOBus()
    p.map(io)
    io.write(0x92, 0x00, 1)
    assert a20 == [False]
    io.write(0x92, 0x03, 1)
    assert a20 == [False, True] and len(resets) == 1
    assert io.read(0x92, 1) & 1 == 0


def test_post_and_debug_console():
    io = IOBus()
    post = PostPort()
    out = []
    dbg = DebugConsole(out.append)
    post.map(io)
    dbg.map(io)
    io.write(0x80, 0x42, 1)
    assert post.last == 0x42
    io.write(0x402, ord("S"), 1)
    io.write(0xE9, ord("B"), 1)
    assert b"".join(out) == b"SB"
    assert io.read(0xE9, 1) == 0xE9

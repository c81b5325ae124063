"""8254 PIT, port 0x61, MC146818 RTC, clocks and the scheduler."""

import calendar

import pytest

from pyv86.machine.clock import NS, DeterministicClock, RealtimeClock, Scheduler
from pyv86.machine.devices.pit import PIT, PIT_HZ
from pyv86.machine.devices.rtc import RTC
from pyv86.machine.iobus import IOBus


class Counter:
    def __init__(self):
        self.n = 0

    def __call__(self):
        return self.n


def make(hz=50_000_000):
    count = Counter()
    clock = DeterministicClock(count, hz)
    sched = Scheduler(clock)
    return count, clock, sched


def advance(count, clock, sched, ns):
    """Let guest time pass by ns, running events as they fall due."""
    target = clock.now_ns() + ns
    while True:
        nxt = sched.next_time()
        if nxt is None or nxt > target:
            break
        clock.skip_to(nxt)
        sched.run_due()
    clock.skip_to(target)
    sched.run_due()


def test_deterministic_clock_counts_instructions_and_skips():
    count, clock, _sched = make(hz=100_000_000)
    count.n = 100
    assert clock.now_ns() == 1000
    assert clock.tsc() == 100
    clock.skip_to(5000)
    assert clock.tsc() == 500 and clock.now_ns() == 5000
    clock.skip_to(10)  # never backwards
    assert clock.now_ns() == 5000


def test_deterministic_clock_state_continues_in_new_cpu():
    count, clock, _ = make()
    count.n = 12345
    s = clock.save_state()
    c2 = DeterministicClock(Counter())
    c2.restore_state(s)
    assert c2.tsc() == 12345
    with pytest.raises(ValueError, match="realtime"):
        RealtimeClock().restore_state(s)


def test_realtime_clock_follows_monotonic():
    t = [1000]
    clock = RealtimeClock(100_000_000, monotonic_ns=lambda: t[0])
    t[0] += 2 * NS
    assert clock.now_ns() == 2 * NS
    assert clock.tsc() == 200_000_000


def test_scheduler_runs_in_time_order_and_cancel_works():
    count, clock, sched = make()
    ran = []
    sched.call_at(300, lambda: ran.append("b"))
    sched.call_at(100, lambda: ran.append("a"))
    t = sched.call_at(200, lambda: ran.append("x"))
    t.cancel()
    assert sched.next_time() == 100
    advance(count, clock, sched, 1000)
    assert ran == ["a", "b"]
    assert sched.next_time() is None


def pit_setup():
    count, clock, sched = make()
    lines = []
    pit = PIT(sched, lines.append)
    io = IOBus()
    pit.map(io)
    return count, clock, sched, pit, io, lines


def test_pit_mode2_periodic_irq0_at_hz():
    # Linux setup_pit_timer periodic: 0x34 then LATCH low/high
    count, clock, sched, pit, io, lines = pit_setup()
    latch = (PIT_HZ + 50) // 100
    io.write(0x43, 0x34, 1)
    io.write(0x40, latch & 0xFF, 1)
    io.write(0x40, latch >> 8, 1)
    advance(count, clock, sched, NS)  # one second
    assert pit.irq_count in (99, 100)
    assert lines.count(1) == pit.irq_count  # one rising edge each


def test_pit_mode0_oneshot_raises_out_once():
    count, clock, sched, pit, io, lines = pit_setup()
    io.write(0x43, 0x30, 1)
    io.write(0x40, 0x00, 1)
    io.write(0x40, 0x10, 1)  # 4096 ticks = 3.43 ms
    advance(count, clock, sched, 3_000_000)
    assert pit.irq_count == 0
    advance(count, clock, sched, 1_000_000)
    assert pit.irq_count == 1
    advance(count, clock, sched, 100_000_000)
    assert pit.irq_count == 1
    assert lines[-1] == 1


def test_pit_counter_latch_reads_a_consistent_decreasing_value():
    count, clock, sched, _pit, io, _lines = pit_setup()
    io.write(0x43, 0x34, 1)
    io.write(0x40, 0xFF, 1)
    io.write(0x40, 0xFF, 1)
    advance(count, clock, sched, 1_000_000)  # ~1193 ticks
    io.write(0x43, 0x00, 1)  # latch channel 0
    advance(count, clock, sched, 1_000_000)  # the latch holds
    v = io.read(0x40, 1) | io.read(0x40, 1) << 8
    assert 0xFFFF - 1200 < v < 0xFFFF - 1185


def test_pit_read_back_status_reports_mode_and_out():
    _count, _clock, _sched, _pit, io, _lines = pit_setup()
    io.write(0x43, 0xB0, 1)  # ch2, lobyte/hibyte, mode 0
    io.write(0x42, 0xFF, 1)
    io.write(0x42, 0xFF, 1)
    io.write(0x43, 0xE8, 1)  # read-back status of channel 2
    st = io.read(0x42, 1)
    assert st & 0x3F == 0x30  # rw=3, mode 0, binary
    assert not st & 0x80  # OUT low in mode 0 before terminal count


def test_port61_gate_controls_channel2_and_out2_appears_in_bit5():
    # Linux pit_calibrate_tsc(): gate on, mode 0 count, poll bit 5 of port 0x61
    count, clock, sched, _pit, io, _lines = pit_setup()
    io.write(0x61, (io.read(0x61, 1) & ~0x02) | 0x01, 1)
    io.write(0x43, 0xB0, 1)
    io.write(0x42, 1000 & 0xFF, 1)
    io.write(0x42, 1000 >> 8, 1)
    assert not io.read(0x61, 1) & 0x20
    advance(count, clock, sched, 1000 * NS // PIT_HZ + 2000)
    assert io.read(0x61, 1) & 0x20
    # gate off stops the count
    io.write(0x61, 0x00, 1)
    io.write(0x43, 0xB0, 1)
    io.write(0x42, 0xE8, 1)
    io.write(0x42, 0x03, 1)
    advance(count, clock, sched, 10_000_000)
    assert not io.read(0x61, 1) & 0x20


def test_port61_refresh_bit_toggles_every_15us():
    count, clock, sched, _pit, io, _lines = pit_setup()
    seen = set()
    for _ in range(8):
        seen.add(io.read(0x61, 1) & 0x10)
        advance(count, clock, sched, 15_085)
    assert seen == {0, 0x10}


def test_pit_mode3_square_wave_counts_down_by_two():
    count, clock, sched, _pit, io, _lines = pit_setup()
    io.write(0x61, 0x01, 1)
    io.write(0x43, 0xB6, 1)  # ch2 mode 3
    io.write(0x42, 100, 1)
    io.write(0x42, 0, 1)
    advance(count, clock, sched, 5 * NS // PIT_HZ)
    io.write(0x43, 0x80, 1)
    v = io.read(0x42, 1) | io.read(0x42, 1) << 8
    assert v % 2 == 0 and 80 <= v <= 96


def test_pit_state_round_trip_and_bad_state():
    _count, _clock, sched, pit, io, _lines = pit_setup()
    io.write(0x43, 0x34, 1)
    io.write(0x40, 0x9C, 1)
    io.write(0x40, 0x2E, 1)
    s = pit.save_state()
    pit2 = PIT(sched, lambda level: None)
    pit2.restore_state(s)
    assert pit2.channels[0].reload == 0x2E9C
    s["channels"][0]["mode"] = 9
    with pytest.raises(ValueError, match="mode"):
        pit2.restore_state(s)


START = calendar.timegm((2026, 3, 14, 15, 9, 26, 0, 0, 0))


def rtc_setup(**kw):
    count, clock, sched = make()
    lines = []
    rtc = RTC(sched, lines.append, start_time=START, **kw)
    io = IOBus()
    rtc.map(io)
    return count, clock, sched, rtc, io, lines


def cmos(io, reg):
    io.write(0x70, reg, 1)
    return io.read(0x71, 1)


def test_rtc_reports_bcd_time_by_default():
    *_, io, _ = rtc_setup()
    assert cmos(io, 0) == 0x26
    assert cmos(io, 2) == 0x09
    assert cmos(io, 4) == 0x15
    assert cmos(io, 7) == 0x14 and cmos(io, 8) == 0x03 and cmos(io, 9) == 0x26
    assert cmos(io, 0x32) == 0x20
    assert cmos(io, 0x0D) == 0x80  # VRT


def test_rtc_binary_mode_and_time_advances_with_guest_time():
    count, clock, sched, _rtc, io, _ = rtc_setup()
    io.write(0x70, 0x0B, 1)
    io.write(0x71, 0x06, 1)  # DM binary, 24h
    advance(count, clock, sched, 10 * NS)
    assert cmos(io, 0) == 36


def test_rtc_uip_set_in_last_244us_of_a_second():
    count, clock, sched, _rtc, io, _ = rtc_setup()
    assert not cmos(io, 0x0A) & 0x80
    advance(count, clock, sched, NS - 100_000)
    assert cmos(io, 0x0A) & 0x80


def test_rtc_set_bit_lets_the_guest_write_the_time():
    _count, _clock, _sched, _rtc, io, _ = rtc_setup()
    io.write(0x70, 0x0B, 1)
    io.write(0x71, 0x82, 1)  # SET
    io.write(0x70, 0x04, 1)
    io.write(0x71, 0x08, 1)  # 08 hours (BCD)
    io.write(0x70, 0x0B, 1)
    io.write(0x71, 0x02, 1)
    assert cmos(io, 4) == 0x08 and cmos(io, 2) == 0x09


def test_rtc_periodic_interrupt_and_register_c_clears_on_read():
    count, clock, sched, _rtc, io, lines = rtc_setup()
    io.write(0x70, 0x0B, 1)
    io.write(0x71, 0x42, 1)  # PIE
    advance(count, clock, sched, 1_000_000)  # 1024 Hz: ~1 ms
    assert lines == [1]
    c = cmos(io, 0x0C)
    assert c & 0xC0 == 0xC0  # IRQF | PF
    assert lines == [1, 0]
    assert cmos(io, 0x0C) == 0


def test_rtc_memory_size_registers():
    *_, io, _ = rtc_setup(memory_size=64 << 20)
    assert cmos(io, 0x15) | cmos(io, 0x16) << 8 == 640
    assert cmos(io, 0x17) | cmos(io, 0x18) << 8 == 63 * 1024
    assert cmos(io, 0x30) | cmos(io, 0x31) << 8 == 63 * 1024
    assert cmos(io, 0x34) | cmos(io, 0x35) << 8 == (48 << 20) >> 16


def test_rtc_port70_bit7_is_the_nmi_mask():
    *_, rtc, io, _ = rtc_setup()
    io.write(0x70, 0x80 | 0x0B, 1)
    assert rtc.nmi_masked
    io.write(0x70, 0x0B, 1)
    assert not rtc.nmi_masked


def test_rtc_state_round_trip_and_bad_state():
    _count, _clock, sched, rtc, _io, _ = rtc_setup(memory_size=32 << 20)
    s = rtc.save_state()
    r2 = RTC(sched, lambda level: None, start_time=0)
    r2.restore_state(s)
    assert r2.unix_time() == rtc.unix_time()
    with pytest.raises(ValueError, match="128"):
        r2.restore_state({**s, "cmos": b"x"})


def test_rtc_update_ended_interrupt_each_second_when_enabled():
    count, clock, sched, _rtc, io, lines = rtc_setup()
    assert sched.next_time() is None  # nothing scheduled while no RTC interrupt is enabled
    io.write(0x70, 0x0B, 1)
    io.write(0x71, 0x12, 1)  # UIE, 24h
    advance(count, clock, sched, NS)
    assert lines == [1]
    assert cmos(io, 0x0C) & 0x90 == 0x90


def test_rtc_uf_flag_is_seen_by_polling_without_interrupts():
    count, clock, sched, _rtc, io, lines = rtc_setup()
    cmos(io, 0x0C)
    advance(count, clock, sched, NS)
    assert cmos(io, 0x0C) & 0x10
    assert lines == []

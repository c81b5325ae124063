"""The 8254 programmable interval timer (ports 0x40-0x43) and the port 0x61 system control.

Counters run at 1.193182 MHz derived from guest time (:mod:`pyv86.machine.clock`), so the PIT
and the TSC agree. Implemented from the Intel 8254 datasheet: modes 0-5 (0 interrupt on
terminal count, 1 hardware one-shot, 2 rate generator, 3 square wave, 4/5 strobes), the
counter latch command, the read-back command (count and status latches), LSB/MSB/LSB-then-MSB
access, BCD flag stored (counting is binary). Channel 0 drives IRQ 0 through the scheduler.
Port 0x61: bit 0 gates channel 2, bit 1 speaker data, bit 4 toggles with each DRAM refresh
(every 15.085 us; Linux's delay calibration on old paths polls it), bit 5 is OUT2 (Linux's
``pit_calibrate_tsc`` polls it).
"""

from __future__ import annotations

from typing import Callable, List, Optional

from ..clock import NS, Scheduler, Timer

__all__ = ["PIT", "PIT_HZ"]

PIT_HZ = 1_193_182
REFRESH_NS = 15_085


class _Channel:
    def __init__(self, index: int):
        self.index = index
        self.reset()

    def reset(self) -> None:
        self.mode = 0
        self.rw = 3  # 1 LSB, 2 MSB, 3 LSB then MSB
        self.bcd = False
        self.reload = 0  # programmed count; 0 means 0x10000
        self.load_tick = 0  # tick at which counting started
        self.counting = False  # a count has been written (and the gate allows)
        self.gate = 1 if self.index != 2 else 0
        self.write_lsb_next = True
        self.read_lsb_next = True
        self.write_latch = 0
        self.latched: Optional[int] = None
        self.latched_msb_pending = False  # LSB of a latched 16-bit value was read
        self.status_latched: Optional[int] = None
        self.null_count = True
        self.out_static = 0  # OUT while not counting

    def count_of(self) -> int:
        return self.reload or 0x10000

    def state_at(self, tick: int):
        """(counter value, OUT) at PIT tick ``tick``."""
        if not self.counting:
            return (self.reload & 0xFFFF), self.out_static
        n = self.count_of()
        d = tick - self.load_tick
        if d < 0:
            d = 0
        m = self.mode
        if m == 0:
            return (n - d) & 0xFFFF, 1 if d >= n else 0
        if m == 1:
            return (n - d) & 0xFFFF, 1 if d >= n else 0
        if m in (2, 6):
            r = d % n
            return (n - r) & 0xFFFF if r else n & 0xFFFF, 0 if (r == n - 1) else 1
        if m in (3, 7):
            # counts down by two, twice per period; OUT high for the first half
            r = d % n
            half = (n + 1) // 2
            value = (n - 2 * (r % half)) & 0xFFFF
            return value & 0xFFFE if n > 1 else value, 1 if r < half else 0
        # modes 4 and 5: strobe (OUT low for one tick at terminal count)
        return (n - d) & 0xFFFF, 0 if d == n else 1

    def next_rising_edge(self, tick: int) -> Optional[int]:
        """First tick > ``tick`` at which OUT rises, or None."""
        if not self.counting:
            return None
        n = self.count_of()
        d = tick - self.load_tick
        m = self.mode
        if m in (0, 1):
            return self.load_tick + n if d < n else None
        if m in (2, 6):
            # OUT low during tick n-1 of each period, rises at the period boundary
            k = d // n + 1
            return self.load_tick + k * n
        if m in (3, 7):
            k = d // n + 1
            return self.load_tick + k * n
        if m in (4, 5):
            return self.load_tick + n + 1 if d <= n else None
        return None


class PIT:
    """Three 8254 channels, channel 0 on an IRQ line; port 0x61 via :meth:`port61_read`."""

    def __init__(self, scheduler: Scheduler, irq0: Callable[[int], None]):
        self.scheduler = scheduler
        self.irq0 = irq0
        self.channels: List[_Channel] = [_Channel(i) for i in range(3)]
        self.speaker_data = 0
        self._timer: Optional[Timer] = None
        self.irq_count = 0

    # -- time -----------------------------------------------------------------------------
    def _tick(self) -> int:
        return self.scheduler.now() * PIT_HZ // NS

    @staticmethod
    def _tick_to_ns(tick: int) -> int:
        return -(-tick * NS // PIT_HZ)

    # -- channel 0 interrupt ----------------------------------------------------------------
    def _reschedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        ch = self.channels[0]
        nxt = ch.next_rising_edge(self._tick())
        if nxt is not None:
            self._timer = self.scheduler.call_at(self._tick_to_ns(nxt), self._fire)

    def _fire(self) -> None:
        self._timer = None
        self.irq_count += 1
        # a rising edge on IRQ0: the PIC latches edges, so pulse the line
        self.irq0(1)
        ch = self.channels[0]
        if ch.mode not in (0, 1):
            self.irq0(0)
        self._reschedule()

    # -- ports 0x40-0x43 ------------------------------------------------------------------
    def io_write(self, offset: int, value: int, size: int) -> None:
        value &= 0xFF
        if offset == 3:
            self._control(value)
            return
        ch = self.channels[offset]
        if ch.rw == 1:
            self._load(ch, value)
        elif ch.rw == 2:
            self._load(ch, value << 8)
        else:
            if ch.write_lsb_next:
                ch.write_latch = value
                ch.write_lsb_next = False
                if ch.mode == 0:  # writing the LSB stops counting in mode 0
                    self._freeze(ch)
            else:
                ch.write_lsb_next = True
                self._load(ch, ch.write_latch | (value << 8))

    def _freeze(self, ch: _Channel) -> None:
        if ch.counting:
            value, _ = ch.state_at(self._tick())
            ch.counting = False
            ch.reload = value
            ch.out_static = 0
            if ch.index == 0:
                self.irq0(0)
                self._reschedule()

    def _load(self, ch: _Channel, count: int) -> None:
        ch.reload = count & 0xFFFF
        ch.null_count = False
        if ch.mode in (1, 5):
            # hardware triggered: counting starts on a gate rising edge
            if ch.index == 0:
                self._reschedule()
            return
        if ch.gate or ch.index != 2:
            ch.counting = True
            # the count is loaded on the next CLK: count from the next tick
            ch.load_tick = self._tick() + 1
        if ch.index == 0:
            if ch.mode == 0:
                self.irq0(0)
            self._reschedule()

    def _control(self, value: int) -> None:
        sel = value >> 6
        if sel == 3:  # read-back
            tick = self._tick()
            for i in range(3):
                if value & (2 << i):
                    ch = self.channels[i]
                    cnt, out = ch.state_at(tick)
                    if not value & 0x20 and ch.latched is None:
                        ch.latched = cnt
                        ch.read_lsb_next = True
                    if not value & 0x10 and ch.status_latched is None:
                        ch.status_latched = ((out << 7) | (int(ch.null_count) << 6)
                                             | (ch.rw << 4) | (ch.mode << 1) | int(ch.bcd))
            return
        ch = self.channels[sel]
        rw = (value >> 4) & 3
        if rw == 0:  # counter latch
            if ch.latched is None:
                ch.latched, _ = ch.state_at(self._tick())
                ch.read_lsb_next = True
            return
        ch.rw = rw
        mode = (value >> 1) & 7
        ch.mode = mode if mode < 6 else mode - 4
        ch.bcd = bool(value & 1)
        ch.write_lsb_next = True
        ch.read_lsb_next = True
        ch.latched = None
        ch.status_latched = None
        ch.counting = False
        ch.null_count = True
        # OUT after a mode write: low in mode 0, high otherwise
        ch.out_static = 0 if ch.mode == 0 else 1
        if ch.index == 0:
            # the line is held low between pulses (modes 2/3 pulse it at each period)
            self.irq0(0)
            self._reschedule()

    def io_read(self, offset: int, size: int) -> int:
        if offset == 3:
            return 0xFF  # the control word register cannot be read
        ch = self.channels[offset]
        if ch.status_latched is not None:
            v = ch.status_latched
            ch.status_latched = None
            return v
        if ch.latched is not None:
            v = ch.latched
            if ch.rw == 1:
                ch.latched = None
                return v & 0xFF
            if ch.rw == 2:
                ch.latched = None
                return v >> 8
            if ch.read_lsb_next:
                ch.read_lsb_next = False
                return v & 0xFF
            ch.read_lsb_next = True
            ch.latched = None
            return (v >> 8) & 0xFF
        value, _ = ch.state_at(self._tick())
        if ch.rw == 1:
            return value & 0xFF
        if ch.rw == 2:
            return value >> 8
        if ch.read_lsb_next:
            ch.read_lsb_next = False
            return value & 0xFF
        ch.read_lsb_next = True
        return (value >> 8) & 0xFF

    # -- port 0x61 ------------------------------------------------------------------------
    def set_gate2(self, level: int) -> None:
        ch = self.channels[2]
        level = 1 if level else 0
        if level == ch.gate:
            return
        ch.gate = level
        tick = self._tick()
        if level:
            # rising gate edge: modes 1, 2, 3, 5 (re)trigger; mode 0/4 resume
            if ch.mode in (1, 2, 3, 5) or not ch.counting:
                if not ch.null_count:
                    ch.counting = True
                    ch.load_tick = tick + 1
        else:
            if ch.mode in (0, 4) and ch.counting:
                value, out = ch.state_at(tick)
                ch.counting = False
                ch.reload = value
                ch.out_static = out
            elif ch.mode in (2, 3) and ch.counting:
                ch.counting = False
                ch.out_static = 1

    def port61_read(self) -> int:
        ch = self.channels[2]
        _, out2 = ch.state_at(self._tick())
        refresh = (self.scheduler.now() // REFRESH_NS) & 1
        return (ch.gate | (self.speaker_data << 1) | (refresh << 4) | (out2 << 5))

    def port61_write(self, value: int) -> None:
        self.speaker_data = (value >> 1) & 1
        self.set_gate2(value & 1)

    def map(self, iobus) -> None:
        iobus.map_device(0x40, 4, self, sizes=(1,), name="pit")
        iobus.map(0x61, 1, lambda off, size: self.port61_read(),
                  lambda off, value, size: self.port61_write(value), sizes=(1,), name="port61")

    # -- state ----------------------------------------------------------------------------
    _CH_FIELDS = ("mode", "rw", "bcd", "reload", "load_tick", "counting", "gate",
                  "write_lsb_next", "read_lsb_next", "write_latch", "latched",
                  "latched_msb_pending", "status_latched", "null_count", "out_static")

    def save_state(self) -> dict:
        return {
            "version": 1,
            "speaker_data": self.speaker_data,
            "channels": [{f: getattr(ch, f) for f in self._CH_FIELDS} for ch in self.channels],
        }

    def restore_state(self, state: dict) -> None:
        if not isinstance(state, dict) or state.get("version") != 1:
            raise ValueError("PIT state: unsupported or missing version")
        chans = state.get("channels")
        if not isinstance(chans, list) or len(chans) != 3:
            raise ValueError("PIT state: 'channels' must be a list of 3 dicts")
        for d in chans:
            if not isinstance(d, dict) or any(f not in d for f in self._CH_FIELDS):
                raise ValueError("PIT state: a channel lacks fields")
            if not (isinstance(d["mode"], int) and 0 <= d["mode"] <= 5):
                raise ValueError(f"PIT state: bad mode {d['mode']!r}")
            if not (isinstance(d["rw"], int) and 1 <= d["rw"] <= 3):
                raise ValueError(f"PIT state: bad access mode {d['rw']!r}")
        for ch, d in zip(self.channels, chans):
            for f in self._CH_FIELDS:
                setattr(ch, f, d[f])
        self.speaker_data = int(state.get("speaker_data", 0)) & 1
        self._reschedule()

    def reset(self) -> None:
        for ch in self.channels:
            ch.reset()
        self._reschedule()

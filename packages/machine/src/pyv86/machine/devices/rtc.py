"""The MC146818 real-time clock and its CMOS RAM (ports 0x70/0x71, IRQ 8).

Port 0x70 selects a register (bits 0-6) and holds the NMI mask (bit 7, 1 = NMIs off);
port 0x71 reads/writes it. Time registers 0x00-0x09 follow register B (DM: binary or BCD,
24/12-hour), register A bit 7 (UIP) is set during the last 244 us of every second, register
C flags (IRQF, PF, AF, UF) are cleared by reading it, register D bit 7 (VRT) reads 1. With
SET (B bit 7) the guest may write a new time, which takes effect when SET is cleared.
Periodic (PIE), alarm (AIE) and update-ended (UIE) interrupts are driven by the scheduler.
The memory-size bytes (0x15/0x16 base, 0x17/0x18 and 0x30/0x31 extended, 0x34/0x35 above
16 MiB in 64 KiB units, 0x5B-0x5D above 4 GiB) and the checksum at 0x2E/0x2F are filled in
as a BIOS expects.
"""

from __future__ import annotations

import calendar
import time
from typing import Callable, Optional

from ..clock import NS, Scheduler, Timer

__all__ = ["RTC"]

UIP_NS = 244_000
REG_A, REG_B, REG_C, REG_D = 0x0A, 0x0B, 0x0C, 0x0D
B_SET, B_PIE, B_AIE, B_UIE, B_DM, B_24H = 0x80, 0x40, 0x20, 0x10, 0x04, 0x02
C_IRQF, C_PF, C_AF, C_UF = 0x80, 0x40, 0x20, 0x10


def _bcd(v: int) -> int:
    return ((v // 10) << 4) | (v % 10)


def _unbcd(v: int) -> int:
    return ((v >> 4) & 0xF) * 10 + (v & 0xF)


class RTC:
    """CMOS RAM (128 bytes) with the clock; ``start_time`` is Unix seconds at guest time 0."""

    def __init__(self, scheduler: Scheduler, irq8: Callable[[int], None], *,
                 start_time: Optional[int] = None, memory_size: int = 0):
        self.scheduler = scheduler
        self.irq8 = irq8
        self.cmos = bytearray(128)
        self.index = 0
        self.nmi_masked = True
        self.epoch_offset = int(time.time()) if start_time is None else int(start_time)
        self._pie_timer: Optional[Timer] = None
        self._sec_timer: Optional[Timer] = None
        self._last_c_second = 0
        self.cmos[REG_A] = 0x26  # 32.768 kHz time base, 1024 Hz periodic rate
        self.cmos[REG_B] = B_24H
        self.cmos[REG_D] = 0x80
        if memory_size:
            self.set_memory_size(memory_size)
        self._irq_level = 0
        self._last_c_second = self.scheduler.now() // NS
        self._schedule_second()

    # -- configuration (what a BIOS would store) --------------------------------------------
    def set_memory_size(self, size: int) -> None:
        c = self.cmos
        c[0x15], c[0x16] = 640 & 0xFF, 640 >> 8
        ext_kb = max(0, min(size, 1 << 32) - 0x100000) // 1024
        ext_kb = min(ext_kb, 0xFFFF)
        c[0x17], c[0x18] = ext_kb & 0xFF, ext_kb >> 8
        c[0x30], c[0x31] = ext_kb & 0xFF, ext_kb >> 8
        above16 = max(0, min(size, 0xE0000000) - 0x1000000) // 0x10000
        above16 = min(above16, 0xFFFF)
        c[0x34], c[0x35] = above16 & 0xFF, above16 >> 8
        above4g = max(0, size - (1 << 32)) // 0x10000
        c[0x5B], c[0x5C], c[0x5D] = above4g & 0xFF, (above4g >> 8) & 0xFF, (above4g >> 16) & 0xFF
        c[0x14] = 0x06  # equipment: FPU present, VGA/EGA display
        self._checksum()

    def _checksum(self) -> None:
        s = sum(self.cmos[0x10:0x2E])
        self.cmos[0x2E], self.cmos[0x2F] = (s >> 8) & 0xFF, s & 0xFF

    # -- time -----------------------------------------------------------------------------
    def unix_time(self) -> int:
        return self.epoch_offset + self.scheduler.now() // NS

    def _encode(self, v: int) -> int:
        return v if self.cmos[REG_B] & B_DM else _bcd(v)

    def _decode(self, v: int) -> int:
        return v if self.cmos[REG_B] & B_DM else _unbcd(v)

    def _time_regs(self) -> dict:
        t = time.gmtime(self.unix_time())
        hour = t.tm_hour
        if self.cmos[REG_B] & B_24H:
            hreg = self._encode(hour)
        else:
            h12 = hour % 12 or 12
            hreg = self._encode(h12) | (0x80 if hour >= 12 else 0)
        return {0: self._encode(t.tm_sec), 2: self._encode(t.tm_min), 4: hreg,
                6: self._encode((t.tm_wday + 1) % 7 + 1), 7: self._encode(t.tm_mday),
                8: self._encode(t.tm_mon), 9: self._encode(t.tm_year % 100),
                0x32: self._encode(t.tm_year // 100)}

    def _commit_time(self) -> None:
        """SET cleared: the time registers (as written by the guest) become the time."""
        c = self.cmos
        try:
            hour_reg = c[4]
            if c[REG_B] & B_24H:
                hour = self._decode(hour_reg)
            else:
                hour = self._decode(hour_reg & 0x7F) % 12 + (12 if hour_reg & 0x80 else 0)
            century = self._decode(c[0x32]) or 20
            when = calendar.timegm((century * 100 + self._decode(c[9]), self._decode(c[8]),
                                    self._decode(c[7]), hour, self._decode(c[2]),
                                    self._decode(c[0]), 0, 0, 0))
        except (ValueError, OverflowError):
            return  # nonsense written: the clock keeps running as before
        self.epoch_offset = when - self.scheduler.now() // NS

    # -- ports ----------------------------------------------------------------------------
    def io_write(self, offset: int, value: int, size: int) -> None:
        value &= 0xFF
        if offset == 0:
            self.index = value & 0x7F
            self.nmi_masked = bool(value & 0x80)
            return
        i = self.index
        c = self.cmos
        if i in (0, 2, 4, 6, 7, 8, 9, 0x32):
            if not c[REG_B] & B_SET:
                # a write while the clock runs: take the current time then patch this field
                for k, v in self._time_regs().items():
                    c[k] = v
            c[i] = value
            if not c[REG_B] & B_SET:
                self._commit_time()
        elif i in (1, 3, 5):
            c[i] = value  # alarm
        elif i == REG_A:
            c[REG_A] = value & 0x7F
            self._schedule_periodic()
        elif i == REG_B:
            old = c[REG_B]
            if value & B_SET and not old & B_SET:
                for k, v in self._time_regs().items():
                    c[k] = v
                value &= ~B_UIE
            c[REG_B] = value
            if old & B_SET and not value & B_SET:
                self._commit_time()
            self._schedule_periodic()
            self._schedule_second()
            self._update_irq()
        elif i in (REG_C, REG_D):
            pass  # read-only
        else:
            c[i] = value

    def io_read(self, offset: int, size: int) -> int:
        if offset == 0:
            return 0xFF  # port 0x70 is write-only on a PC
        i = self.index
        c = self.cmos
        if i in (0, 2, 4, 6, 7, 8, 9, 0x32):
            if c[REG_B] & B_SET:
                return c[i]
            return self._time_regs()[i]
        if i == REG_A:
            uip = 0x80 if (self.scheduler.now() % NS) >= NS - UIP_NS and not c[REG_B] & B_SET else 0
            return c[REG_A] | uip
        if i == REG_C:
            sec = self.scheduler.now() // NS
            if sec != self._last_c_second and not c[REG_B] & B_SET:
                c[REG_C] |= C_UF  # an update cycle ended since the last read
            self._last_c_second = sec
            v = c[REG_C]
            c[REG_C] = 0
            self._update_irq()
            return v
        if i == REG_D:
            return 0x80
        return c[i]

    def map(self, iobus) -> None:
        iobus.map_device(0x70, 2, self, sizes=(1,), name="rtc")

    # -- interrupts -----------------------------------------------------------------------
    def _update_irq(self) -> None:
        c = self.cmos
        flags = c[REG_C] & 0x70 & (c[REG_B] & 0x70)
        if flags:
            c[REG_C] |= C_IRQF
        else:
            c[REG_C] &= ~C_IRQF & 0xFF
        level = 1 if flags else 0
        if level != self._irq_level:
            self._irq_level = level
            self.irq8(level)

    def _periodic_ns(self) -> int:
        rate = self.cmos[REG_A] & 0x0F
        if rate == 0 or (self.cmos[REG_A] & 0x70) != 0x20:
            return 0
        if rate <= 2:
            rate += 7
        return NS * (1 << (rate - 1)) // 32768

    def _schedule_periodic(self) -> None:
        if self._pie_timer is not None:
            self._pie_timer.cancel()
            self._pie_timer = None
        period = self._periodic_ns()
        if period and self.cmos[REG_B] & B_PIE:
            now = self.scheduler.now()
            self._pie_timer = self.scheduler.call_at((now // period + 1) * period, self._periodic)

    def _periodic(self) -> None:
        self._pie_timer = None
        self.cmos[REG_C] |= C_PF
        self._update_irq()
        self._schedule_periodic()

    def _schedule_second(self) -> None:
        if self._sec_timer is not None:
            self._sec_timer.cancel()
            self._sec_timer = None
        if self.cmos[REG_B] & (B_UIE | B_AIE):
            now = self.scheduler.now()
            self._sec_timer = self.scheduler.call_at((now // NS + 1) * NS, self._second)

    def _second(self) -> None:
        self._sec_timer = None
        c = self.cmos
        if not c[REG_B] & B_SET:
            flags = C_UF
            regs = self._time_regs()
            if all(c[a] >= 0xC0 or c[a] == regs[r] for a, r in ((1, 0), (3, 2), (5, 4))):
                flags |= C_AF
            c[REG_C] |= flags
            self._update_irq()
        self._schedule_second()

    # -- state ----------------------------------------------------------------------------
    def save_state(self) -> dict:
        return {"version": 1, "cmos": bytes(self.cmos), "index": self.index,
                "nmi_masked": self.nmi_masked, "epoch_offset": self.epoch_offset}

    def restore_state(self, state: dict) -> None:
        if not isinstance(state, dict) or state.get("version") != 1:
            raise ValueError("RTC state: unsupported or missing version")
        cmos = state.get("cmos")
        if not isinstance(cmos, (bytes, bytearray)) or len(cmos) != 128:
            raise ValueError("RTC state: 'cmos' must be 128 bytes")
        if not isinstance(state.get("index"), int) or not isinstance(state.get("epoch_offset"), int):
            raise ValueError("RTC state: 'index' and 'epoch_offset' must be ints")
        self.cmos[:] = cmos
        self.index = state["index"] & 0x7F
        self.nmi_masked = bool(state.get("nmi_masked", True))
        self.epoch_offset = state["epoch_offset"]
        self._irq_level = 0
        self._last_c_second = self.scheduler.now() // NS
        self._update_irq()
        self._schedule_periodic()
        self._schedule_second()

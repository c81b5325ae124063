"""A 16550A UART (COM1: ports 0x3F8-0x3FF, IRQ 4).

From the National Semiconductor PC16550D datasheet, as Linux's 8250 driver uses it:
16-byte FIFOs (FCR enable, clear, receive trigger level 1/4/8/14), LSR (DR, OE, THRE, TEMT),
MSR with delta bits, IER/IIR with the usual priorities (line status > received data /
character timeout > THR empty > modem status), the THRE interrupt rule (pending when THRI is
enabled while the holding register is empty, or when it becomes empty; cleared by reading IIR
while it is the reported source, or by writing THR), the divisor latch (DLAB), the scratch
register, and loopback (MCR bit 4: transmitted bytes come back, DTR/RTS/OUT1/OUT2 appear as
DSR/CTS/RI/DCD). On a PC the interrupt output reaches the PIC only while MCR OUT2 is set.

Transmission is immediate: each byte goes to ``on_output`` as it is written. Received bytes
are queued with :meth:`UART.receive` (an unbounded host-side queue feeding the 16-byte FIFO).
"""

from __future__ import annotations

import collections
from typing import Callable, Deque, Optional

__all__ = ["UART"]

IER_RDI, IER_THRI, IER_RLSI, IER_MSI = 1, 2, 4, 8
LSR_DR, LSR_OE, LSR_BI, LSR_THRE, LSR_TEMT = 0x01, 0x02, 0x10, 0x20, 0x40
MCR_DTR, MCR_RTS, MCR_OUT1, MCR_OUT2, MCR_LOOP = 1, 2, 4, 8, 16
FIFO_SIZE = 16
_TRIGGER = (1, 4, 8, 14)


class UART:
    def __init__(self, irq: Callable[[int], None],
                 on_output: Optional[Callable[[bytes], None]] = None):
        self.irq = irq
        self.on_output = on_output
        self._irq_level = 0
        self.host_queue: Deque[int] = collections.deque()
        self.reset()

    def reset(self) -> None:
        self.ier = 0
        self.lcr = 0x03
        self.mcr = 0
        self.lsr = LSR_THRE | LSR_TEMT
        self.msr = 0xB0  # CTS, DSR, DCD asserted: a terminal is attached
        self.scr = 0
        self.dll = 0x0C  # 9600 baud
        self.dlm = 0
        self.fcr = 0
        self.rx: Deque[int] = collections.deque()
        self.thr_ipending = False
        self.timeout_pending = False
        self._set_irq()

    # -- host side ------------------------------------------------------------------------
    def receive(self, data: bytes) -> None:
        """Bytes typed at the console: they enter the receive FIFO as room allows."""
        self.host_queue.extend(data)
        self._pump()

    def _pump(self) -> None:
        if self.mcr & MCR_LOOP:
            return
        limit = FIFO_SIZE if self.fcr & 1 else 1
        moved = False
        while self.host_queue and len(self.rx) < limit:
            self.rx.append(self.host_queue.popleft())
            moved = True
        if moved:
            self.lsr |= LSR_DR
            self.timeout_pending = True
            self._set_irq()

    def _rx_byte(self, b: int) -> None:
        limit = FIFO_SIZE if self.fcr & 1 else 1
        if len(self.rx) >= limit:
            self.lsr |= LSR_OE
            if not self.fcr & 1:
                self.rx[-1] = b
        else:
            self.rx.append(b)
        self.lsr |= LSR_DR
        self.timeout_pending = True

    # -- interrupt identification -------------------------------------------------------------
    def _iir_source(self) -> int:
        ier = self.ier
        if ier & IER_RLSI and self.lsr & (LSR_OE | LSR_BI):
            return 0x06
        if ier & IER_RDI and self.rx:
            if self.fcr & 1 and len(self.rx) < _TRIGGER[self.fcr >> 6]:
                return 0x0C if self.timeout_pending else 0x01
            return 0x04
        if ier & IER_THRI and self.thr_ipending:
            return 0x02
        if ier & IER_MSI and self.msr & 0x0F:
            return 0x00
        return 0x01

    def _set_irq(self) -> None:
        pending = self._iir_source() != 0x01
        level = 1 if pending and self.mcr & MCR_OUT2 else 0
        if level != self._irq_level:
            self._irq_level = level
            self.irq(level)

    # -- ports ----------------------------------------------------------------------------
    def io_write(self, offset: int, value: int, size: int) -> None:
        value &= 0xFF
        dlab = self.lcr & 0x80
        if offset == 0:
            if dlab:
                self.dll = value
                return
            self.thr_ipending = False
            if self.mcr & MCR_LOOP:
                self._rx_byte(value)
            elif self.on_output is not None:
                self.on_output(bytes((value,)))
            # transmitted at once: THR and shifter empty again
            self.lsr |= LSR_THRE | LSR_TEMT
            self.thr_ipending = True
        elif offset == 1:
            if dlab:
                self.dlm = value
                return
            old = self.ier
            self.ier = value & 0x0F
            if self.ier & IER_THRI and not old & IER_THRI and self.lsr & LSR_THRE:
                self.thr_ipending = True
        elif offset == 2:
            if value & 1:
                if value & 2:
                    self.rx.clear()
                    self.lsr &= ~(LSR_DR | LSR_OE) & 0xFF
                    self.timeout_pending = False
                self.fcr = value & 0xC9
            else:
                if self.fcr & 1:
                    self.rx.clear()
                    self.lsr &= ~LSR_DR & 0xFF
                self.fcr = 0
            self._pump()
        elif offset == 3:
            self.lcr = value
        elif offset == 4:
            old = self.mcr
            self.mcr = value & 0x1F
            self._update_msr(old)
            if old & MCR_LOOP and not self.mcr & MCR_LOOP:
                self._pump()
        elif offset == 5:
            pass  # LSR is read-only (factory test)
        elif offset == 6:
            pass
        else:
            self.scr = value
        self._set_irq()

    def _update_msr(self, old_mcr: int) -> None:
        if self.mcr & MCR_LOOP:
            m = self.mcr
            new = (((m & MCR_RTS) << 3) | ((m & MCR_DTR) << 5) | ((m & MCR_OUT1) << 4)
                   | ((m & MCR_OUT2) << 4))
        else:
            new = 0xB0
        old = self.msr & 0xF0
        delta = self.msr & 0x0F
        changed = old ^ new
        if changed & 0x10:
            delta |= 0x01
        if changed & 0x20:
            delta |= 0x02
        if old & 0x40 and not new & 0x40:
            delta |= 0x04  # trailing edge of RI
        if changed & 0x80:
            delta |= 0x08
        self.msr = new | delta

    def io_read(self, offset: int, size: int) -> int:
        dlab = self.lcr & 0x80
        if offset == 0:
            if dlab:
                return self.dll
            v = self.rx.popleft() if self.rx else 0
            self.timeout_pending = False
            if not self.rx:
                self.lsr &= ~LSR_DR & 0xFF
            self._pump()
            self._set_irq()
            return v
        if offset == 1:
            return self.dlm if dlab else self.ier
        if offset == 2:
            src = self._iir_source()
            if src == 0x02:
                self.thr_ipending = False
            v = src | (0xC0 if self.fcr & 1 else 0)
            self._set_irq()
            return v
        if offset == 3:
            return self.lcr
        if offset == 4:
            return self.mcr
        if offset == 5:
            v = self.lsr
            self.lsr &= ~(LSR_OE | LSR_BI) & 0xFF
            self._set_irq()
            return v
        if offset == 6:
            v = self.msr
            self.msr &= 0xF0
            self._set_irq()
            return v
        return self.scr

    def map(self, iobus, base: int = 0x3F8) -> None:
        iobus.map_device(base, 8, self, sizes=(1,), name="uart")

    # -- state ----------------------------------------------------------------------------
    _FIELDS = ("ier", "lcr", "mcr", "lsr", "msr", "scr", "dll", "dlm", "fcr")

    def save_state(self) -> dict:
        d: dict = {f: getattr(self, f) for f in self._FIELDS}
        d.update(version=1, rx=bytes(self.rx), host_queue=bytes(self.host_queue),
                 thr_ipending=self.thr_ipending, timeout_pending=self.timeout_pending)
        return d

    def restore_state(self, state: dict) -> None:
        if not isinstance(state, dict) or state.get("version") != 1:
            raise ValueError("UART state: unsupported or missing version")
        for f in self._FIELDS:
            v = state.get(f)
            if not isinstance(v, int) or not 0 <= v <= 0xFF:
                raise ValueError(f"UART state: {f} must be a byte, got {v!r}")
        rx, hq = state.get("rx"), state.get("host_queue")
        if not isinstance(rx, (bytes, bytearray)) or len(rx) > FIFO_SIZE:
            raise ValueError("UART state: 'rx' must be at most 16 bytes")
        if not isinstance(hq, (bytes, bytearray)):
            raise ValueError("UART state: 'host_queue' must be bytes")
        for f in self._FIELDS:
            setattr(self, f, state[f])
        self.rx = collections.deque(rx)
        self.host_queue = collections.deque(hq)
        self.thr_ipending = bool(state.get("thr_ipending"))
        self.timeout_pending = bool(state.get("timeout_pending"))
        self._irq_level = 0
        self.irq(0)
        self._set_irq()

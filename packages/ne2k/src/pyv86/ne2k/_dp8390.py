"""The DP8390 network interface controller core, with no I/O of its own (sans-IO).

The core knows nothing of ISA, PCI, ports or interrupt controllers. A board (see
``_card.py``) places its 16-register window, forwards the data port to :meth:`DP8390.dma_read`
/ :meth:`DP8390.dma_write`, and wires three outputs:

* ``irq_out(level)``: the interrupt output, ``bool(ISR & IMR & 0x7F)``, called on every change;
* ``wire_out(frame)``: a frame the chip transmitted onto the wire (not in loopback);
* ``schedule(delay)``: optional; told how many seconds of wire time a transmission needs when
  ``wire_speed`` is set, so a host can arrange to call :meth:`DP8390.advance`.

Card memory is one 64 KiB remote address space: the station-address PROM at 0x0000-0x001F,
RAM at ``ram_start .. ram_start + ram_size`` and 0xFF everywhere else (writes outside RAM are
dropped). Every address the guest supplies is used modulo 64 KiB, so nothing ever reaches
outside the card's memory.
"""

from __future__ import annotations

from typing import Callable, Optional

# Command register (CR, offset 0 on every page)
CR_STP = 0x01
CR_STA = 0x02
CR_TXP = 0x04
CR_RD_MASK = 0x38
CR_RD_READ = 0x08
CR_RD_WRITE = 0x10
CR_RD_SEND = 0x18
CR_RD_ABORT = 0x20
CR_PS_MASK = 0xC0

# Interrupt status register (ISR)
ISR_PRX = 0x01
ISR_PTX = 0x02
ISR_RXE = 0x04
ISR_TXE = 0x08
ISR_OVW = 0x10
ISR_CNT = 0x20
ISR_RDC = 0x40
ISR_RST = 0x80

# Data configuration register (DCR)
DCR_WTS = 0x01
DCR_BOS = 0x02
DCR_LAS = 0x04

# Receive configuration register (RCR)
RCR_SEP = 0x01
RCR_AR = 0x02
RCR_AB = 0x04
RCR_AM = 0x08
RCR_PRO = 0x10
RCR_MON = 0x20

# Transmit configuration register (TCR)
TCR_CRC = 0x01
TCR_LB_MASK = 0x06

# Transmit / receive status
TSR_PTX = 0x01
TSR_ABT = 0x08
RSR_PRX = 0x01
RSR_MPA = 0x10
RSR_PHY = 0x20

MIN_FRAME = 60      # without FCS
MAX_FRAME = 1518    # without FCS (1514 plus an 802.1Q tag)
COUNTER_LIMIT = 0xC0  # tally counters stop at 192 (DP8390 data sheet, unverified here)

_DMA_IDLE = 0
_DMA_READ = 1
_DMA_WRITE = 2

_BROADCAST = b"\xff\xff\xff\xff\xff\xff"


def multicast_index(mac: bytes) -> int:
    """The 6-bit multicast hash index of a destination MAC: the top 6 bits of the
    big-endian Ethernet CRC-32 (bits of each octet fed least significant first)."""
    crc = 0xFFFFFFFF
    for byte in mac[:6]:
        for bit in range(8):
            b = (byte >> bit) & 1
            top = (crc >> 31) & 1
            crc = (crc << 1) & 0xFFFFFFFF
            if top ^ b:
                crc ^= 0x04C11DB7
    return crc >> 26


def _noop_line(level: int) -> None:
    return None


def _noop_frame(frame: bytes) -> None:
    return None


class DP8390:
    """The chip: registers, remote DMA, the receive ring, transmit, filtering, counters.

    ``ram_start``/``ram_size`` place the board's buffer RAM; ``prom`` is the 32-byte image the
    board shows at remote addresses 0x00-0x1F; ``realtek`` enables the RTL8029AS extras (ID
    bytes, page 3, RCR bits 7:6 reading 1).
    """

    def __init__(self, *, ram_start: int, ram_size: int, prom: bytes, realtek: bool = False,
                 byte_only: bool = False, wire_speed: int = 0) -> None:
        if not (0 < ram_size and ram_start >= 0x20 and ram_start + ram_size <= 0x10000
                and ram_start % 256 == 0 and ram_size % 256 == 0):
            raise ValueError("card RAM must be whole 256-byte pages inside 0x0020-0xFFFF")
        if wire_speed < 0:
            raise ValueError("wire_speed is in bits per second and cannot be negative")
        self.ram_start = ram_start
        self.ram_end = ram_start + ram_size
        self.ram_first_page = ram_start >> 8
        self.ram_end_page = self.ram_end >> 8
        self.realtek = realtek
        self.byte_only = byte_only
        self.wire_speed = wire_speed
        self.mem = bytearray(b"\xff" * 0x10000)
        self.mem[ram_start:self.ram_end] = bytes(ram_size)
        self.set_prom(prom)
        self.irq_out: Callable[[int], None] = _noop_line
        self.wire_out: Callable[[bytes], None] = _noop_frame
        self.schedule: Optional[Callable[[float], None]] = None
        self.stats = {
            "rx_frames": 0, "rx_bytes": 0, "rx_padded": 0,
            "rx_dropped_stopped": 0, "rx_dropped_loopback_mode": 0, "rx_dropped_filtered": 0,
            "rx_dropped_monitor": 0, "rx_dropped_overflow": 0, "rx_dropped_oversize": 0,
            "rx_dropped_bad_ring": 0, "rx_dropped_halted": 0,
            "tx_frames": 0, "tx_bytes": 0, "tx_loopback": 0, "tx_padded": 0,
            "tx_dropped_runt": 0, "tx_aborted_oversize": 0,
            "overflows": 0, "resets": 0, "irq_raised": 0,
        }
        self.power_on()

    # ----------------------------------------------------------------------------- state
    def set_prom(self, prom: bytes) -> None:
        if len(prom) != 32:
            raise ValueError("the PROM image is 32 bytes")
        self.mem[0:32] = prom

    def power_on(self) -> None:
        """Registers as after power-up: everything zero, then the reset state."""
        self.cr = CR_STP | CR_RD_ABORT
        self.isr = 0
        self.imr = 0
        self.dcr = 0
        self.tcr = 0
        self.rcr = 0
        self.tsr = 0
        self.rsr = 0
        self.ncr = 0
        self.pstart = 0
        self.pstop = 0
        self.bnry = 0
        self.curr = 0
        self.tpsr = 0
        self.tbcr = 0
        self.rsar = 0
        self.rbcr = 0
        self.clda = 0
        self.rnpp = 0
        self.lnpp = 0
        self.cntr0 = 0
        self.cntr1 = 0
        self.cntr2 = 0
        self.par = bytearray(6)
        self.mar = bytearray(8)
        self.dma = _DMA_IDLE
        self.overflow = False
        self.tx_frame: Optional[bytes] = None   # a transmission on the wire, TXP held
        self.tx_loop = False
        self.tx_remaining = 0.0
        self.irq_level = 0
        self.halted = False
        self._wrap()
        self.reset()
        self.stats["resets"] = 0   # power-up is not counted as a reset

    def reset(self) -> None:
        """The chip's reset state (reset port, or power-on): CR=0x21, ISR.RST, IMR=0,
        DCR.LAS, TCR loopback off; remote DMA and any transmission in progress abandoned.
        Buffer RAM, PAR, MAR and the ring pointers are kept."""
        self.stats["resets"] += 1
        self.cr = CR_STP | CR_RD_ABORT
        self.isr = ISR_RST
        self.imr = 0
        self.dcr |= DCR_LAS
        self.tcr &= ~TCR_LB_MASK
        self.dma = _DMA_IDLE
        self.overflow = False
        self.tx_frame = None
        self.tx_remaining = 0.0
        self._update_irq()

    def _wrap(self) -> None:
        """Remote DMA wraps from PSTOP to PSTART only while the ring is sane."""
        if self.pstart < self.pstop:
            self._wrap_at = self.pstop << 8
            self._wrap_to = self.pstart << 8
        else:
            self._wrap_at = -1
            self._wrap_to = 0

    def _update_irq(self) -> None:
        level = 1 if (self.isr & self.imr & 0x7F) else 0
        if level != self.irq_level:
            self.irq_level = level
            if level:
                self.stats["irq_raised"] += 1
            self.irq_out(level)

    # ---------------------------------------------------------------- register window
    def read_reg(self, off: int) -> int:
        """Read register ``off`` (0-15) of the page CR.PS selects."""
        if off == 0:
            return self.cr
        page = self.cr >> 6
        if page == 0:
            return self._read_page0(off)
        if page == 1:
            if off <= 6:
                return self.par[off - 1]
            if off == 7:
                return self.curr
            return self.mar[off - 8]
        if page == 2:
            return self._read_page2(off)
        return self.read_page3(off)

    def _read_page0(self, off: int) -> int:
        if off == 7:
            return self.isr
        if off == 3:
            return self.bnry
        if off == 1:
            return self.clda & 0xFF
        if off == 2:
            return self.clda >> 8
        if off == 4:
            return self.tsr
        if off == 5:
            return self.ncr
        if off == 6:
            return 0  # FIFO: the last byte through the FIFO; not modelled
        if off == 8:
            return self.rsar & 0xFF
        if off == 9:
            return self.rsar >> 8
        if off == 10:
            return 0x50 if self.realtek else 0xFF
        if off == 11:
            return 0x43 if self.realtek else 0xFF
        if off == 12:
            return self.rsr
        value = (self.cntr0, self.cntr1, self.cntr2)[off - 13]
        if off == 13:
            self.cntr0 = 0
        elif off == 14:
            self.cntr1 = 0
        else:
            self.cntr2 = 0
        return value

    def _read_page2(self, off: int) -> int:
        if off == 1:
            return self.pstart
        if off == 2:
            return self.pstop
        if off == 3:
            return self.rnpp
        if off == 4:
            return self.tpsr
        if off == 5:
            return self.lnpp
        if off == 6:
            return self.clda >> 8
        if off == 7:
            return self.clda & 0xFF
        if off == 12:
            return self.rcr | (0xC0 if self.realtek else 0)
        if off == 13:
            return self.tcr | (0xE0 if self.realtek else 0)
        if off == 14:
            return self.dcr | (0x80 if self.realtek else 0)
        if off == 15:
            return self.imr | (0x80 if self.realtek else 0)
        return 0xFF

    def read_page3(self, off: int) -> int:
        """Page 3 is reserved (test) on a plain DP8390; boards with extras override it."""
        return 0xFF

    def write_page3(self, off: int, value: int) -> None:
        return None

    def write_reg(self, off: int, value: int) -> None:
        """Write register ``off`` (0-15) of the page CR.PS selects."""
        value &= 0xFF
        if off == 0:
            self.write_cr(value)
            return
        page = self.cr >> 6
        if page == 0:
            self._write_page0(off, value)
        elif page == 1:
            if off <= 6:
                self.par[off - 1] = value
            elif off == 7:
                self.curr = value
            else:
                self.mar[off - 8] = value
        elif page == 2:
            if off == 1:
                self.clda = (self.clda & 0xFF00) | value
            elif off == 2:
                self.clda = (self.clda & 0x00FF) | (value << 8)
            elif off == 3:
                self.rnpp = value
            elif off == 5:
                self.lnpp = value
            elif off == 6:
                self.clda = (self.clda & 0x00FF) | (value << 8)
            elif off == 7:
                self.clda = (self.clda & 0xFF00) | value
            # 4 and 8-15 are read-only or reserved on page 2
        else:
            self.write_page3(off, value)

    def _write_page0(self, off: int, value: int) -> None:
        if off == 7:
            self.isr &= ~(value & 0x7F)   # write 1 to clear; RST is status only
            if value & ISR_OVW:
                self.overflow = False     # a driver that acknowledges OVW resumes reception
            self._update_irq()
        elif off == 1:
            self.pstart = value
            self._wrap()
        elif off == 2:
            self.pstop = value
            self._wrap()
        elif off == 3:
            self.bnry = value
            if self.isr & ISR_RST and not self.cr & CR_STP:
                self.isr &= ~ISR_RST      # frames were removed from the ring after an overflow
        elif off == 4:
            self.tpsr = value
        elif off == 5:
            self.tbcr = (self.tbcr & 0xFF00) | value
        elif off == 6:
            self.tbcr = (self.tbcr & 0x00FF) | (value << 8)
        elif off == 8:
            self.rsar = (self.rsar & 0xFF00) | value
        elif off == 9:
            self.rsar = (self.rsar & 0x00FF) | (value << 8)
        elif off == 10:
            self.rbcr = (self.rbcr & 0xFF00) | value
        elif off == 11:
            self.rbcr = (self.rbcr & 0x00FF) | (value << 8)
        elif off == 12:
            self.rcr = value & 0x3F
        elif off == 13:
            self.tcr = value & 0x1F
        elif off == 14:
            self.dcr = value & 0x7F
        else:
            self.imr = value & 0x7F
            self._update_irq()

    def write_cr(self, value: int) -> None:
        """The command register: stop/start, transmit, remote DMA command, page select."""
        was_stopped = bool(self.cr & CR_STP)
        cr = (self.cr & (CR_STP | CR_STA | CR_TXP)) | (value & CR_PS_MASK)
        rd = value & CR_RD_MASK
        if rd:  # RD=000 is "not allowed": keep the previous remote DMA command
            cr = (cr & ~CR_RD_MASK) | rd
        else:
            cr |= self.cr & CR_RD_MASK
        if value & CR_STP:
            cr = (cr & ~(CR_STA | CR_STP)) | (value & (CR_STA | CR_STP))
            self.cr = cr
            self._stop()
        elif value & CR_STA:
            cr = (cr & ~CR_STP) | CR_STA
            self.cr = cr
            if was_stopped:
                self.isr &= ~ISR_RST
                self.overflow = False     # the data sheet's overflow recovery ends here
        else:
            self.cr = cr  # STA=STP=0 (Linux writes 0x20 to select page 0): no change of state
        if rd:
            self._start_remote_dma(rd)
        if value & CR_TXP and not self.cr & CR_STP and self.cr & CR_STA:
            if self.tx_frame is None and not self.halted:
                self._start_transmit()
        self._update_irq()

    def _stop(self) -> None:
        self.isr |= ISR_RST
        if self.tx_frame is not None:
            self._finish_transmit()  # a transmission in progress runs to completion

    # ------------------------------------------------------------------- remote DMA
    def _start_remote_dma(self, rd: int) -> None:
        if rd & CR_RD_ABORT:
            self.dma = _DMA_IDLE
            return
        if rd == CR_RD_SEND:
            # Send packet: fetch the frame at BNRY using its ring header.
            base = self.bnry << 8
            mem = self.mem
            self.rsar = base
            self.rbcr = mem[(base + 2) & 0xFFFF] | (mem[(base + 3) & 0xFFFF] << 8)
            self.rnpp = self.bnry
            self.dma = _DMA_READ
        elif rd == CR_RD_READ:
            self.dma = _DMA_READ
        else:
            self.dma = _DMA_WRITE
        if self.rbcr == 0:
            # A zero-length transfer completes at once (Linux's ISA IRQ autoprobe relies on it).
            self.dma = _DMA_IDLE
            self.isr |= ISR_RDC

    def _count_down(self, n: int) -> None:
        left = self.rbcr - n
        if left <= 0:
            self.rbcr = 0
            self.dma = _DMA_IDLE
            self.isr |= ISR_RDC
            self._update_irq()
        else:
            self.rbcr = left

    def dma_read(self, size: int) -> int:
        """One data-port read of ``size`` bytes (1, 2 or 4) as the bus sees it.

        Bytes moved: a byte read moves 1 byte in byte mode (DCR.WTS=0) and 2 in word mode,
        returning the low byte; 16-bit reads move 2, 32-bit reads 4. With no remote read in
        progress the port floats: all ones, nothing moves.
        """
        if self.dma != _DMA_READ:
            return (1 << (8 * size)) - 1
        dcr = self.dcr
        if size == 1:
            n = 1 if (self.byte_only or not dcr & DCR_WTS) else 2
        else:
            n = size
        a = self.rsar
        mem = self.mem
        wrap_at = self._wrap_at
        end = a + n
        if end < 0x10000 and (a >= wrap_at or end < wrap_at):
            if n == 4:
                v = mem[a] | (mem[a + 1] << 8) | (mem[a + 2] << 16) | (mem[a + 3] << 24)
            elif n == 2:
                v = mem[a] | (mem[a + 1] << 8)
            else:
                v = mem[a]
            self.rsar = end
        else:
            v = 0
            for i in range(n):
                v |= mem[a] << (8 * i)
                a += 1
                if a == wrap_at:
                    a = self._wrap_to
                a &= 0xFFFF
            self.rsar = a
        if dcr & DCR_BOS and n > 1 and not self.byte_only:
            v = ((v & 0x00FF00FF) << 8) | ((v >> 8) & 0x00FF00FF)
        left = self.rbcr - n
        if left > 0:
            self.rbcr = left
        else:
            self._count_down(n)
        if size == 1:
            return v & 0xFF
        return v

    def dma_write(self, value: int, size: int) -> None:
        """One data-port write; the counterpart of :meth:`dma_read`. Only RAM is written."""
        if self.dma != _DMA_WRITE:
            return
        dcr = self.dcr
        if size == 1:
            n = 1 if (self.byte_only or not dcr & DCR_WTS) else 2
            value &= 0xFF
        else:
            n = size
        if dcr & DCR_BOS and n > 1 and not self.byte_only:
            value = ((value & 0x00FF00FF) << 8) | ((value >> 8) & 0x00FF00FF)
        a = self.rsar
        mem = self.mem
        wrap_at = self._wrap_at
        end = a + n
        if (end <= self.ram_end and a >= self.ram_start
                and (a >= wrap_at or end < wrap_at)):
            if n == 4:
                mem[a] = value & 0xFF
                mem[a + 1] = (value >> 8) & 0xFF
                mem[a + 2] = (value >> 16) & 0xFF
                mem[a + 3] = value >> 24
            elif n == 2:
                mem[a] = value & 0xFF
                mem[a + 1] = (value >> 8) & 0xFF
            else:
                mem[a] = value & 0xFF
            self.rsar = end & 0xFFFF
        else:
            lo = self.ram_start
            hi = self.ram_end
            for i in range(n):
                if lo <= a < hi:
                    mem[a] = (value >> (8 * i)) & 0xFF
                a += 1
                if a == wrap_at:
                    a = self._wrap_to
                a &= 0xFFFF
            self.rsar = a
        left = self.rbcr - n
        if left > 0:
            self.rbcr = left
        else:
            self._count_down(n)

    # ---------------------------------------------------------------------- receive
    def _ring_ok(self) -> bool:
        return (self.ram_first_page <= self.pstart < self.pstop <= self.ram_end_page
                and self.pstart <= self.curr < self.pstop)

    def accepts(self, dst: bytes) -> bool:
        """Address recognition on a destination MAC (RCR.PRO/AB/AM, PAR, MAR)."""
        rcr = self.rcr
        if rcr & RCR_PRO:
            return True
        if dst[0] & 1:
            if dst == _BROADCAST:
                return bool(rcr & RCR_AB)
            if not rcr & RCR_AM:
                return False
            idx = multicast_index(dst)
            return bool(self.mar[idx >> 3] & (1 << (idx & 7)))
        return dst == self.par

    def receive(self, frame: bytes) -> bool:
        """A frame arriving from the wire (no FCS). True when stored in the ring."""
        stats = self.stats
        if self.cr & CR_STP or not self.cr & CR_STA:
            stats["rx_dropped_stopped"] += 1
            return False
        if self.halted:
            stats["rx_dropped_halted"] += 1
            return False
        if self.tcr & TCR_LB_MASK:
            stats["rx_dropped_loopback_mode"] += 1
            return False
        return self._receive(frame)

    def _receive(self, frame: bytes) -> bool:
        stats = self.stats
        n = len(frame)
        if n > MAX_FRAME:
            stats["rx_dropped_oversize"] += 1
            return False
        if n < MIN_FRAME:
            frame = bytes(frame) + bytes(MIN_FRAME - n)
            stats["rx_padded"] += 1
            n = MIN_FRAME
        dst = frame[:6]
        if not self.accepts(dst):
            stats["rx_dropped_filtered"] += 1
            return False
        phys = RSR_PHY if dst[0] & 1 else 0
        if self.rcr & RCR_MON:
            # Monitor mode: recognised and counted as missed, never stored.
            self.rsr |= RSR_MPA
            self._tally2()
            stats["rx_dropped_monitor"] += 1
            return False
        if self.overflow:
            self._tally2()
            stats["rx_dropped_overflow"] += 1
            return False
        if not self._ring_ok():
            stats["rx_dropped_bad_ring"] += 1
            return False
        pstart = self.pstart
        pstop = self.pstop
        curr = self.curr
        ring = pstop - pstart
        count = n + 4
        pages = (count + 4 + 255) >> 8   # leave room for the 4 FCS bytes the chip writes
        bnry = self.bnry
        if bnry < pstart:
            bnry = pstop - 1   # e.g. Linux writes PSTART-1 after a frame that ended at PSTOP
        elif bnry >= pstop:
            bnry = pstart
        dist = (bnry - curr) % ring
        if pages >= ring or 1 <= dist <= pages:
            # The next page to fill would be BNRY: overflow.
            self.overflow = True
            self.isr |= ISR_OVW | ISR_RST
            # A missed frame adds MPA and keeps the last good frame's PRX: iPXE's overrun
            # recovery drains the ring while RSR.PRX stays set (ns8390.c eth_rx_overrun).
            self.rsr |= RSR_MPA
            self._tally2()
            stats["rx_dropped_overflow"] += 1
            stats["overflows"] += 1
            self._update_irq()
            return False
        nxt = curr + pages
        if nxt >= pstop:
            nxt -= ring
        mem = self.mem
        status = RSR_PRX | phys
        start = curr << 8
        mem[start] = status
        mem[start + 1] = nxt
        mem[start + 2] = count & 0xFF
        mem[start + 3] = count >> 8
        a = start + 4
        limit = pstop << 8
        room = limit - a
        if n <= room:
            mem[a:a + n] = frame
            end = a + n
        else:
            mem[a:limit] = frame[:room]
            rest = n - room
            base = pstart << 8
            mem[base:base + rest] = frame[room:]
            end = base + rest
        self.clda = end
        self.curr = nxt
        self.lnpp = nxt
        self.rsr = status
        self.isr |= ISR_PRX
        stats["rx_frames"] += 1
        stats["rx_bytes"] += n
        self._update_irq()
        return True

    def _tally2(self) -> None:
        if self.cntr2 < COUNTER_LIMIT:
            self.cntr2 += 1
            if self.cntr2 & 0x80:
                self.isr |= ISR_CNT
                self._update_irq()

    # --------------------------------------------------------------------- transmit
    def _start_transmit(self) -> None:
        length = self.tbcr
        self.cr |= CR_TXP
        if length > MAX_FRAME:
            # Longer than any Ethernet frame: abort as the chip does after a jabber.
            self.stats["tx_aborted_oversize"] += 1
            self.cr &= ~CR_TXP
            self.tsr = TSR_ABT
            self.isr |= ISR_TXE
            return
        a = self.tpsr << 8
        end = a + length
        if end <= 0x10000:
            frame = bytes(self.mem[a:end])
        else:
            frame = bytes(self.mem[a:]) + bytes(self.mem[:end - 0x10000])
        self.tx_frame = frame
        self.tx_loop = bool(self.tcr & TCR_LB_MASK)
        if self.wire_speed and not self.tx_loop:
            # preamble+SFD 8, FCS 4, inter-frame gap 12 byte times
            wire_bytes = max(length, MIN_FRAME) + 24
            self.tx_remaining = wire_bytes * 8.0 / self.wire_speed
            if self.schedule is not None:
                self.schedule(self.tx_remaining)
            return
        self._finish_transmit()

    def _finish_transmit(self) -> None:
        frame = self.tx_frame
        self.tx_frame = None
        self.tx_remaining = 0.0
        self.cr &= ~CR_TXP
        self.tsr = TSR_PTX
        self.ncr = 0
        self.isr |= ISR_PTX
        self._update_irq()
        if frame is None:
            return
        stats = self.stats
        if self.tx_loop:
            stats["tx_loopback"] += 1
            if len(frame) >= 14:
                self._receive(frame)
            return
        if len(frame) < 14:
            stats["tx_dropped_runt"] += 1   # e.g. TBCR=0 from MS NDIS2 at init: nothing to send
            return
        if len(frame) < MIN_FRAME:
            frame = frame + bytes(MIN_FRAME - len(frame))
            stats["tx_padded"] += 1
        stats["tx_frames"] += 1
        stats["tx_bytes"] += len(frame)
        self.wire_out(frame)

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` of wire time pass (only matters with ``wire_speed``)."""
        if self.tx_frame is None:
            return
        if seconds != seconds or seconds < 0:  # NaN or negative: no time passes
            return
        self.tx_remaining -= seconds
        if self.tx_remaining <= 1e-12:
            self._finish_transmit()

    def next_event(self) -> Optional[float]:
        """Seconds until a transmission in progress completes, or None."""
        if self.tx_frame is None:
            return None
        return max(self.tx_remaining, 0.0)

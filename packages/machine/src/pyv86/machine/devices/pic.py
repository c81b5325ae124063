"""The cascaded 8259A programmable interrupt controllers of a PC, with the PIIX ELCR.

Ports: master 0x20/0x21, slave 0xA0/0xA1 (slave INT on master IR2), ELCR 0x4D0/0x4D1.
Behaviour follows the Intel 8259A datasheet: ICW1-ICW4 initialisation, OCW1 (IMR), OCW2
(non-specific / specific EOI, rotation, set priority), OCW3 (read IRR/ISR, poll, special mask
mode), auto-EOI, and spurious IR7 when the request went away before the acknowledge. An input
whose ELCR bit is set is level triggered (PCI INTx): its IRR bit follows the line; otherwise a
rising edge latches IRR. IRQ 0, 1, 2, 8 and 13 cannot be level triggered (PIIX3 datasheet,
ELCR bits 0-2 of 0x4D0 and 0, 5 of 0x4D1 are reserved, read 0).

The CPU uses :meth:`PICPair.has_interrupt` and :meth:`PICPair.acknowledge`; devices get line
callbacks from :meth:`PICPair.irq_line`.
"""

from __future__ import annotations

from typing import Callable, Optional

__all__ = ["PIC8259", "PICPair"]

ELCR_MASK = (0xF8, 0xDE)  # master, slave: bits that can be level triggered


def _priority(bits: int, priority_add: int) -> int:
    """Lowest priority number (0 highest) among set bits after rotation, 8 if none."""
    if not bits:
        return 8
    p = 0
    while not (bits & (1 << ((p + priority_add) & 7))):
        p += 1
    return p


class PIC8259:
    """One 8259A. ``io_read``/``io_write`` take offset 0 (command) or 1 (data)."""

    def __init__(self, name: str, on_change: Callable[[], None]):
        self.name = name
        self._on_change = on_change
        self.elcr = 0
        self.elcr_mask = 0xFF
        self.last_level = 0  # input line levels
        self.is_master = True
        self.reset()

    def reset(self) -> None:
        self.irr = 0
        self.isr = 0
        self.imr = 0
        self.vector_base = 0
        self.priority_add = 0
        self.read_isr = False
        self.poll = False
        self.special_mask = False
        self.init_state = 0
        self.need_icw4 = False
        self.single = False
        self.auto_eoi = False
        self.rotate_on_aeoi = False
        self.special_fully_nested = False
        self.icw3 = 0

    def _init_reset(self) -> None:
        # ICW1: clears IMR and ISR, edge-sense latch reset, IR7 lowest priority
        self.irr &= self.elcr & self.last_level
        self.isr = 0
        self.imr = 0
        self.priority_add = 0
        self.read_isr = False
        self.poll = False
        self.special_mask = False
        self.auto_eoi = False
        self.rotate_on_aeoi = False
        self.special_fully_nested = False

    # -- inputs -------------------------------------------------------------------------
    def set_input(self, irq: int, level: int) -> None:
        mask = 1 << irq
        if self.elcr & mask:  # level triggered: IRR follows the line
            if level:
                self.irr |= mask
                self.last_level |= mask
            else:
                self.irr &= ~mask
                self.last_level &= ~mask
        elif level:
            if not self.last_level & mask:
                self.irr |= mask
            self.last_level |= mask
        else:
            self.last_level &= ~mask
        self._on_change()

    # -- resolution -----------------------------------------------------------------------
    def pending_irq(self) -> int:
        """The IR number that would interrupt now, or -1."""
        req = self.irr & ~self.imr
        p = _priority(req, self.priority_add)
        if p == 8:
            return -1
        in_service = self.isr
        if self.special_mask:
            in_service &= ~self.imr
        if self.is_master and self.special_fully_nested:
            in_service &= ~(1 << 2)
        cur = _priority(in_service, self.priority_add)
        if p < cur:
            return (p + self.priority_add) & 7
        return -1

    def intack(self, irq: int) -> None:
        mask = 1 << irq
        if self.auto_eoi:
            if self.rotate_on_aeoi:
                self.priority_add = (irq + 1) & 7
        else:
            self.isr |= mask
        if not self.elcr & mask:
            self.irr &= ~mask

    # -- ports ----------------------------------------------------------------------------
    def io_write(self, offset: int, value: int, size: int) -> None:
        value &= 0xFF
        if offset == 0:
            if value & 0x10:  # ICW1
                self._init_reset()
                self.init_state = 1
                self.need_icw4 = bool(value & 1)
                self.single = bool(value & 2)
            elif value & 0x08:  # OCW3
                if value & 0x04:
                    self.poll = True
                if value & 0x02:
                    self.read_isr = bool(value & 1)
                if value & 0x40:
                    self.special_mask = bool(value & 0x20)
            else:  # OCW2
                cmd = value >> 5
                if cmd in (0, 4):
                    self.rotate_on_aeoi = cmd == 4
                elif cmd in (1, 5):  # non-specific EOI (and rotate)
                    p = _priority(self.isr, self.priority_add)
                    if p != 8:
                        irq = (p + self.priority_add) & 7
                        self.isr &= ~(1 << irq)
                        if cmd == 5:
                            self.priority_add = (irq + 1) & 7
                elif cmd == 3:  # specific EOI
                    self.isr &= ~(1 << (value & 7))
                elif cmd == 6:  # set priority: IRn becomes lowest
                    self.priority_add = (value + 1) & 7
                elif cmd == 7:  # rotate on specific EOI
                    irq = value & 7
                    self.isr &= ~(1 << irq)
                    self.priority_add = (irq + 1) & 7
        else:
            st = self.init_state
            if st == 0:  # OCW1
                self.imr = value
            elif st == 1:  # ICW2
                self.vector_base = value & 0xF8
                if self.single:
                    self.init_state = 3 if self.need_icw4 else 0
                else:
                    self.init_state = 2
            elif st == 2:  # ICW3
                self.icw3 = value
                self.init_state = 3 if self.need_icw4 else 0
            else:  # ICW4
                self.special_fully_nested = bool(value & 0x10)
                self.auto_eoi = bool(value & 0x02)
                self.init_state = 0
        self._on_change()

    def io_read(self, offset: int, size: int) -> int:
        if self.poll:
            self.poll = False
            return self._poll_read()
        if offset == 0:
            return self.isr if self.read_isr else self.irr
        return self.imr

    def _poll_read(self) -> int:
        irq = self.pending_irq()
        if irq < 0:
            self._on_change()
            return 0x07
        self.intack(irq)
        self._on_change()
        return 0x80 | irq

    # -- state ----------------------------------------------------------------------------
    _FIELDS = ("irr", "isr", "imr", "vector_base", "priority_add", "read_isr", "poll",
               "special_mask", "init_state", "need_icw4", "single", "auto_eoi",
               "rotate_on_aeoi", "special_fully_nested", "icw3", "elcr", "last_level")

    def save_state(self) -> dict:
        d = {f: (int(getattr(self, f)) if not isinstance(getattr(self, f), bool)
                 else getattr(self, f)) for f in self._FIELDS}
        d["version"] = 1
        return d

    def restore_state(self, state: dict) -> None:
        if not isinstance(state, dict) or state.get("version") != 1:
            raise ValueError(f"8259 {self.name} state: unsupported or missing version")
        for f in self._FIELDS:
            if f not in state:
                raise ValueError(f"8259 {self.name} state: missing {f!r}")
        for f in self._FIELDS:
            cur = getattr(self, f)
            v = state[f]
            if isinstance(cur, bool):
                setattr(self, f, bool(v))
            else:
                if not isinstance(v, int) or not 0 <= v <= 0xFF:
                    raise ValueError(f"8259 {self.name} state: {f} must be a byte, got {v!r}")
                setattr(self, f, v)
        self._on_change()


class PICPair:
    """Master and slave 8259A plus ELCR: the CPU's interrupt controller (``intc``)."""

    def __init__(self) -> None:
        self._pending = False
        self._ready = False
        self.master = PIC8259("master", self._update)
        self.slave = PIC8259("slave", self._update)
        self.slave.is_master = False
        self.master.elcr_mask = ELCR_MASK[0]
        self.slave.elcr_mask = ELCR_MASK[1]
        self._ready = True
        self.on_interrupt: Optional[Callable[[], None]] = None  # e.g. wake a halted CPU
        self.spurious = 0
        self._update()

    # -- the CPU's interface --------------------------------------------------------------
    def has_interrupt(self) -> bool:
        return self._pending

    def acknowledge(self) -> int:
        """INTA cycle: the vector to deliver (a spurious IR7/IR15 if nothing is left)."""
        m, s = self.master, self.slave
        irq = m.pending_irq()
        if irq < 0:
            self.spurious += 1
            vec = m.vector_base + 7
        else:
            m.intack(irq)
            if irq == 2 and not m.single:
                irq2 = s.pending_irq()
                if irq2 >= 0:
                    s.intack(irq2)
                else:
                    self.spurious += 1
                    irq2 = 7
                vec = s.vector_base + irq2
            else:
                vec = m.vector_base + irq
        self._update()
        return vec

    # -- lines ----------------------------------------------------------------------------
    def set_irq(self, irq: int, level: int) -> None:
        if not 0 <= irq < 16:
            raise ValueError(f"IRQ {irq} does not exist on a PC (0-15)")
        if irq >= 8:
            self.slave.set_input(irq - 8, 1 if level else 0)
        else:
            self.master.set_input(irq, 1 if level else 0)

    def irq_line(self, irq: int) -> Callable[[int], None]:
        """A line callback (``Callable[[int], None]``) for IRQ ``irq``."""
        if not 0 <= irq < 16:
            raise ValueError(f"IRQ {irq} does not exist on a PC (0-15)")

        def line(level: int) -> None:
            self.set_irq(irq, level)

        return line

    def _update(self) -> None:
        if not self._ready:
            return
        m, s = self.master, self.slave
        slave_out = 1 if s.pending_irq() >= 0 else 0
        # slave INT drives master IR2 (edge triggered unless ELCR says otherwise; it is not)
        mask = 1 << 2
        if slave_out:
            if not m.last_level & mask:
                m.irr |= mask
            m.last_level |= mask
        else:
            m.last_level &= ~mask
            m.irr &= ~mask  # the slave's request went away before INTA
        was = self._pending
        self._pending = m.pending_irq() >= 0
        if self._pending and not was and self.on_interrupt is not None:
            self.on_interrupt()

    # -- ports ----------------------------------------------------------------------------
    def map(self, iobus) -> None:
        iobus.map_device(0x20, 2, self.master, sizes=(1,), name="pic-master")
        iobus.map_device(0xA0, 2, self.slave, sizes=(1,), name="pic-slave")
        iobus.map(0x4D0, 2, self._elcr_read, self._elcr_write, sizes=(1,), name="elcr")

    def _elcr_read(self, offset: int, size: int) -> int:
        return (self.master if offset == 0 else self.slave).elcr

    def _elcr_write(self, offset: int, value: int, size: int) -> None:
        pic = self.master if offset == 0 else self.slave
        pic.elcr = value & pic.elcr_mask
        self._update()

    def reset(self) -> None:
        self.master.reset()
        self.slave.reset()
        self._update()

    def save_state(self) -> dict:
        return {"version": 1, "master": self.master.save_state(), "slave": self.slave.save_state()}

    def restore_state(self, state: dict) -> None:
        if not isinstance(state, dict) or state.get("version") != 1:
            raise ValueError("PIC state: unsupported or missing version")
        if not isinstance(state.get("master"), dict) or not isinstance(state.get("slave"), dict):
            raise ValueError("PIC state: 'master' and 'slave' must be dicts")
        self._ready = False
        self.master.restore_state(state["master"])
        self.slave.restore_state(state["slave"])
        self._ready = True
        self._update()

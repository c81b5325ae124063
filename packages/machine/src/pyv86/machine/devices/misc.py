"""Small PC devices: a minimal i8042, port 0x92, the 0x80 POST port, the debug console.

- :class:`I8042`: the keyboard controller at 0x60/0x64 as Linux's i8042 driver probes it:
  status register, controller self-test (0xAA -> 0x55), interface tests (0xAB/0xA9 -> 0x00),
  read/write command byte (0x20/0x60), enable/disable ports (0xA7/0xA8/0xAD/0xAE), output
  port (0xD0/0xD1, bit 1 = A20, bit 0 clear = reset), write to the keyboard/aux output
  buffer (0xD2/0xD3, loopback used by the driver's AUX probe), and the reset pulse 0xFE. A
  keyboard answers reset (0xFF -> 0xFA 0xAA), identify (0xF2 -> 0xFA 0xAB 0x83) and ACKs the
  rest; there is no mouse (writes to it via 0xD4 time out, status bit 6).
- :class:`Port92`: "system control port A": bit 1 A20 gate, bit 0 fast reset (rising edge).
- :class:`PostPort`: port 0x80 remembers the last POST code.
- :class:`DebugConsole`: 0x402 (SeaBIOS) and 0xE9 (Bochs) write bytes to a callback; reading
  0xE9 returns 0xE9 (Bochs' detection rule).
"""

from __future__ import annotations

import collections
from typing import Callable, Deque, List, Optional

__all__ = ["I8042", "DebugConsole", "Port92", "PostPort"]

ST_OBF, ST_IBF, ST_SYS, ST_CMD, ST_AUXDATA, ST_TIMEOUT = 0x01, 0x02, 0x04, 0x08, 0x20, 0x40


def _check(state, name: str) -> dict:
    if not isinstance(state, dict) or state.get("version") != 1:
        raise ValueError(f"{name} state: unsupported or missing version")
    return state


class I8042:
    def __init__(self, *, reset: Callable[[str], None], set_a20: Callable[[bool], None],
                 irq1: Callable[[int], None], irq12: Callable[[int], None]):
        self._reset = reset
        self._set_a20 = set_a20
        self.irq1 = irq1
        self.irq12 = irq12
        self.out: Deque[List[int]] = collections.deque()  # [byte, is_aux]
        self.command_byte = 0x45  # IRQ1 on, system flag, translation on, mouse disabled
        self.status_extra = ST_SYS
        self.pending_cmd: Optional[int] = None  # controller command waiting for a data byte
        self.kbd_pending: Optional[int] = None  # keyboard command waiting for its argument
        self.output_port = 0x03  # A20 on, not in reset
        self.a20 = True
        self._lines = [0, 0]

    # -- output buffer --------------------------------------------------------------------
    def _push(self, byte: int, aux: bool = False) -> None:
        self.out.append([byte & 0xFF, aux])
        self._update_irq()

    def _update_irq(self) -> None:
        lvl1 = lvl12 = 0
        if self.out:
            aux = self.out[0][1]
            if aux and self.command_byte & 0x02:
                lvl12 = 1
            elif not aux and self.command_byte & 0x01:
                lvl1 = 1
        if lvl1 != self._lines[0]:
            self._lines[0] = lvl1
            self.irq1(lvl1)
        if lvl12 != self._lines[1]:
            self._lines[1] = lvl12
            self.irq12(lvl12)

    def status(self) -> int:
        st = self.status_extra
        if self.out:
            st |= ST_OBF
            if self.out[0][1]:
                st |= ST_AUXDATA
        return st

    # -- ports (offset 0 = 0x60, offset 4 = 0x64) ---------------------------------------------
    def io_read(self, offset: int, size: int) -> int:
        if offset == 4:
            return self.status()
        if offset != 0:
            return 0xFF
        self.status_extra &= ~ST_TIMEOUT & 0xFF
        if self.out:
            byte = self.out.popleft()[0]
            self._update_irq()
            return byte
        return 0x00

    def io_write(self, offset: int, value: int, size: int) -> None:
        value &= 0xFF
        if offset == 4:
            self.status_extra |= ST_CMD
            self._command(value)
        elif offset == 0:
            self.status_extra &= ~ST_CMD & 0xFF
            self._data(value)

    def _command(self, cmd: int) -> None:
        self.pending_cmd = None
        if cmd == 0x20:
            self._push(self.command_byte)
        elif cmd in (0x60, 0xD1, 0xD2, 0xD3, 0xD4):
            self.pending_cmd = cmd
        elif cmd == 0xA7:
            self.command_byte |= 0x20
        elif cmd == 0xA8:
            self.command_byte &= ~0x20 & 0xFF
        elif cmd == 0xA9:
            self._push(0x00)  # aux interface test: OK
        elif cmd == 0xAA:
            self._push(0x55)
            self.command_byte |= 0x10
        elif cmd == 0xAB:
            self._push(0x00)
        elif cmd == 0xAD:
            self.command_byte |= 0x10
        elif cmd == 0xAE:
            self.command_byte &= ~0x10 & 0xFF
        elif cmd == 0xC0:
            self._push(0x80)  # input port: keyboard not inhibited
        elif cmd == 0xD0:
            self._push(self.output_port)
        elif cmd == 0xDD:
            self._a20(False)
        elif cmd == 0xDF:
            self._a20(True)
        elif 0xF0 <= cmd <= 0xFF:
            if not cmd & 1:  # pulse output port bit 0: CPU reset
                self._reset("i8042 reset (0x64 command 0xFE)")
        self._update_irq()

    def _a20(self, on: bool) -> None:
        self.a20 = on
        self.output_port = (self.output_port & ~0x02) | (0x02 if on else 0)
        self._set_a20(on)

    def _data(self, value: int) -> None:
        cmd = self.pending_cmd
        self.pending_cmd = None
        if cmd == 0x60:
            self.command_byte = value
            self.status_extra = (self.status_extra & ~ST_SYS) | (value & ST_SYS)
            self._update_irq()
        elif cmd == 0xD1:
            self.output_port = value
            self._a20(bool(value & 0x02))
            if not value & 0x01:
                self._reset("i8042 output port reset")
        elif cmd == 0xD2:
            self._push(value)
        elif cmd == 0xD3:
            self._push(value, aux=True)
        elif cmd == 0xD4:
            self.status_extra |= ST_TIMEOUT  # no mouse
        else:
            self._keyboard(value)

    def _keyboard(self, value: int) -> None:
        if self.kbd_pending is not None:
            self.kbd_pending = None
            self._push(0xFA)
            return
        if value == 0xFF:
            self.out.clear()
            self._push(0xFA)
            self._push(0xAA)
        elif value == 0xF2:
            self._push(0xFA)
            self._push(0xAB)
            self._push(0x83)
        elif value in (0xED, 0xF0, 0xF3):
            self.kbd_pending = value
            self._push(0xFA)
        elif value == 0xEE:
            self._push(0xEE)
        else:
            self._push(0xFA)

    def map(self, iobus) -> None:
        iobus.map(0x60, 1, lambda o, s: self.io_read(0, s),
                  lambda o, v, s: self.io_write(0, v, s), sizes=(1,), name="i8042-data")
        iobus.map(0x64, 1, lambda o, s: self.io_read(4, s),
                  lambda o, v, s: self.io_write(4, v, s), sizes=(1,), name="i8042-cmd")

    def save_state(self) -> dict:
        return {"version": 1, "out": [[b, bool(a)] for b, a in self.out],
                "command_byte": self.command_byte, "status_extra": self.status_extra,
                "pending_cmd": self.pending_cmd, "kbd_pending": self.kbd_pending,
                "output_port": self.output_port}

    def restore_state(self, state: dict) -> None:
        _check(state, "i8042")
        out = state.get("out")
        if not isinstance(out, list) or not all(
                isinstance(e, list) and len(e) == 2 and isinstance(e[0], int) for e in out):
            raise ValueError("i8042 state: 'out' must be a list of [byte, aux] pairs")
        self.out = collections.deque([[e[0] & 0xFF, bool(e[1])] for e in out])
        self.command_byte = int(state["command_byte"]) & 0xFF
        self.status_extra = int(state["status_extra"]) & 0xFF
        self.pending_cmd = state.get("pending_cmd")
        self.kbd_pending = state.get("kbd_pending")
        self.output_port = int(state["output_port"]) & 0xFF
        self.a20 = bool(self.output_port & 0x02)
        self._lines = [0, 0]
        self._update_irq()


class Port92:
    """System control port A (0x92)."""

    def __init__(self, *, reset: Callable[[str], None], set_a20: Callable[[bool], None]):
        self._reset = reset
        self._set_a20 = set_a20
        self.value = 0x02  # A20 enabled (direct boot leaves it on)

    def io_read(self, offset: int, size: int) -> int:
        return self.value

    def io_write(self, offset: int, value: int, size: int) -> None:
        old = self.value
        self.value = value & 0x03
        if (old ^ value) & 0x02:
            self._set_a20(bool(value & 0x02))
        if value & 1 and not old & 1:
            self.value &= ~1
            self._reset("port 0x92 fast reset")

    def map(self, iobus) -> None:
        iobus.map_device(0x92, 1, self, sizes=(1,), name="port92")

    def save_state(self) -> dict:
        return {"version": 1, "value": self.value}

    def restore_state(self, state: dict) -> None:
        _check(state, "port 0x92")
        self.value = int(state["value"]) & 0x03


class PostPort:
    """Port 0x80: POST codes (Linux also writes it as an I/O delay)."""

    def __init__(self) -> None:
        self.last = 0
        self.writes = 0

    def io_read(self, offset: int, size: int) -> int:
        return self.last

    def io_write(self, offset: int, value: int, size: int) -> None:
        self.last = value & 0xFF
        self.writes += 1

    def map(self, iobus) -> None:
        iobus.map_device(0x80, 1, self, sizes=(1,), name="post")


class DebugConsole:
    """0x402 and 0xE9: bytes written go to ``on_output``."""

    def __init__(self, on_output: Optional[Callable[[bytes], None]] = None):
        self.on_output = on_output
        self.buffer = bytearray()

    def io_read(self, offset: int, size: int) -> int:
        return 0xE9

    def io_write(self, offset: int, value: int, size: int) -> None:
        b = bytes((value & 0xFF,))
        if self.on_output is not None:
            self.on_output(b)
        else:
            self.buffer += b
            del self.buffer[:-65536]

    def map(self, iobus) -> None:
        iobus.map_device(0x402, 1, self, sizes=(1,), name="debugcon-402")
        iobus.map_device(0xE9, 1, self, sizes=(1,), name="debugcon-e9")

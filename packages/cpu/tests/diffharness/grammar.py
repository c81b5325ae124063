"""A curated grammar of non-faulting x86 instructions, emitted as bytes with their text.

The generator is seeded and deterministic.  It encodes every instruction itself (ModRM, SIB,
disp8/disp32, 16-bit address forms, operand/address-size and segment prefixes) and tracks:

- which arithmetic flags are *undefined* at each point (Intel SDM vol. 2, the "Flags
  Affected" section of each instruction; the table is ``UNDEFINED`` below).  Before an
  instruction that reads a flag that is currently undefined it emits a flag reset
  (``cmp r32, r32``), so no defined result ever depends on an undefined flag; the flags still
  undefined at the end are masked from the comparison.
- the current ESP, so ESP-based addressing and PUSH/POP stay inside the stack region.

Memory operands are preceded by ``mov reg, imm32`` set-ups that make the effective address
land in the data region (with random upper bits and 32-bit wrap-around where the form allows
it), so any register can be a base or an index.  ESP is never a destination of arithmetic.
"""

from __future__ import annotations

import random
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from . import layout

CF, PF, AF, ZF, SF, OF, DF = 0x1, 0x4, 0x10, 0x40, 0x80, 0x800, 0x400
ARITH = CF | PF | AF | ZF | SF | OF
COMPARED_FLAGS = ARITH | DF

# Flags left undefined (Intel SDM vol. 2) by the instruction groups the grammar emits.
# Count-dependent rules (shifts, rotates, SHLD/SHRD) are applied in the generators.
UNDEFINED: Dict[str, int] = {
    "and/or/xor/test": AF,
    "shl/shr/sal/sar count>0": AF,            # plus OF unless count == 1,
    "shl/shr count>=width": CF,               # plus CF for SHL/SHR when count >= width
    "rol/ror/rcl/rcr count!=1": OF,
    "shld/shrd count>0": AF,                  # plus OF unless count == 1
    "mul/imul": SF | ZF | AF | PF,
    "div/idiv": ARITH,
    "bsf/bsr": CF | OF | SF | AF | PF,
    "bt/bts/btr/btc": OF | SF | AF | PF,
    "daa/das": OF,
    "aaa/aas": OF | SF | ZF | PF,
    "aam/aad": OF | AF | CF,
}

M32 = 0xFFFFFFFF
R32 = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")
R16 = ("ax", "cx", "dx", "bx", "sp", "bp", "si", "di")
R8 = ("al", "cl", "dl", "bl", "ah", "ch", "dh", "bh")
CC = ("o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g")
CC_READS = (OF, OF, CF, CF, ZF, ZF, CF | ZF, CF | ZF, SF, SF, PF, PF,
            SF | OF, SF | OF, ZF | SF | OF, ZF | SF | OF)
ALU = ("add", "or", "adc", "sbb", "and", "sub", "xor", "cmp")
SEG_OVERRIDE = ((0x26, "es"), (0x2E, "cs"), (0x36, "ss"), (0x3E, "ds"))


def regname(size: int, i: int) -> str:
    return (R8, R16, R32)[{8: 0, 16: 1, 32: 2}[size]][i]


def imm_bytes(v: int, n: int) -> bytes:
    return (v & ((1 << (8 * n)) - 1)).to_bytes(n, "little")


class Insn:
    """One emitted instruction: bytes, text and its flag effects."""

    __slots__ = ("blk", "code", "reads", "text", "undef", "writes")

    def __init__(self, code: bytes, text: str, reads: int = 0, writes: int = 0,
                 undef: int = 0) -> None:
        self.code = code
        self.text = text
        self.reads = reads      # flags whose value the instruction depends on
        self.writes = writes    # flags it leaves defined
        self.undef = undef      # flags it leaves undefined
        self.blk = False        # inside a branch-over block: resets are already in place


class Unit:
    """A group of instructions generated together (set-ups + the instruction, or a branch
    over a block); ``pinned`` units are never removed when shrinking a reproducer."""

    __slots__ = ("insns", "pinned")

    def __init__(self, insns: List[Insn], pinned: bool) -> None:
        self.insns = insns
        self.pinned = pinned


class Snippet:
    """A generated test case: code, initial state and the flags undefined at its end."""

    def __init__(self, units: List[Unit], regs: List[int], eflags: int, data: bytes,
                 stack: bytes, code32: bool, base: int, label: str) -> None:
        self.units = units
        self.regs = regs
        self.eflags = eflags
        self.data = data
        self.stack = stack
        self.code32 = code32
        self.base = base
        self.label = label
        self.insns: List[Insn] = []
        self.undef_at_end = 0
        self.faults = False
        self._finish()

    def _finish(self) -> None:
        # Re-derive the flag resets for this exact list of units (shrinking removes units).
        out: List[Insn] = []
        undef = 0
        for u in self.units:
            for ins in u.insns:
                if ins.text.endswith("; flag reset"):
                    continue
                if ins.blk:
                    # one path only: it can make flags undefined, never defined
                    out.append(ins)
                    undef |= ins.undef
                    continue
                if ins.reads & undef:
                    out.append(flag_reset(self.code32, 0))
                    undef = 0
                out.append(ins)
                undef = (undef & ~ins.writes) | ins.undef
        self.insns = out
        self.undef_at_end = undef

    @property
    def code(self) -> bytes:
        return b"".join(i.code for i in self.insns)

    def without(self, index: int) -> Snippet:
        units = self.units[:index] + self.units[index + 1:]
        s = Snippet(units, self.regs, self.eflags, self.data, self.stack, self.code32,
                    self.base, self.label)
        s.faults = self.faults
        return s

    def listing(self) -> str:
        addr = self.base + layout.CODE
        lines = []
        for ins in self.insns:
            lines.append(f"  {addr:08x}: {ins.code.hex(' '):<30} {ins.text}")
            addr += len(ins.code)
        return "\n".join(lines)


def flag_reset(code32: bool, k: int) -> Insn:
    # cmp ecx, eax (cmp cx, ax in 16-bit code): all six arithmetic flags defined
    return Insn(b"\x39\xc1", "cmp ecx, eax ; flag reset", writes=ARITH)


class MemOperand:
    """An encoded memory operand: prefix bytes (67 / segment), ModRM builder and text."""

    def __init__(self, prefix: bytes, tail: Callable[[int], bytes], text: str, ea: int) -> None:
        self.prefix = prefix
        self.tail = tail
        self.text = text
        self.ea = ea


class Gen:
    """Emits units for one snippet; group generators are its ``g_*`` methods."""

    def __init__(self, rng: random.Random, code32: bool, base: int, a16_ok: bool,
                 esp_high: int = 0) -> None:
        self.rng = rng
        self.code32 = code32
        self.base = base
        self.a16_ok = a16_ok and base == 0
        # esp_high: upper ESP bits a 16-bit stack segment ignores ([esp+disp8] would not)
        self.esp_high = esp_high
        self.esp = ((base + layout.STACK_TOP) | (esp_high << 16)) & M32
        self.units: List[Unit] = []
        self.cur: List[Insn] = []
        self.in_block = False
        self.blk_defined = 0
        self.pinned = False

    # ------------------------------------------------------------------ emit helpers
    def op(self, size: int) -> bytes:
        """Operand-size prefix for an operation of ``size`` bits in this code segment."""
        if size == 16 and self.code32:
            return b"\x66"
        if size == 32 and not self.code32:
            return b"\x66"
        return b""

    def emit(self, code: bytes, text: str, reads: int = 0, writes: int = 0, undef: int = 0) -> None:
        if self.in_block:
            # Inside a branch-over block the flags at block entry count as undefined, and the
            # resets are placed now (the branch displacement is fixed once the block is done).
            if reads & ~self.blk_defined:
                self.cur.append(Insn(b"\x39\xc1", "cmp ecx, eax ; flag reset in block",
                                     undef=0, writes=0))
                self.cur[-1].blk = True
                self.blk_defined = ARITH
            self.blk_defined = (self.blk_defined | writes) & ~undef
            ins = Insn(code, text, reads, 0, undef)
            ins.blk = True
            self.cur.append(ins)
            return
        self.cur.append(Insn(code, text, reads, writes, undef))

    def end_unit(self) -> None:
        if self.cur:
            self.units.append(Unit(self.cur, self.pinned))
        self.cur = []
        self.pinned = False

    def size(self) -> int:
        return self.rng.choice((8, 16, 32, 32))

    def dst(self, size: int, avoid: Sequence[int] = ()) -> int:
        """A register that may be written: never ESP/SP (AH..BH are fine for bytes)."""
        choices = [i for i in range(8) if (size == 8 or i != 4) and i not in avoid]
        return self.rng.choice(choices)

    def rnd(self, size: int) -> int:
        r = self.rng.random()
        if r < 0.15:
            return self.rng.choice((0, 1, (1 << size) - 1, 1 << (size - 1), (1 << (size - 1)) - 1))
        return self.rng.getrandbits(size)

    def set_reg(self, i: int, value: int) -> None:
        assert i != 4
        value &= M32
        self.emit(self.op(32) + bytes([0xB8 + i]) + imm_bytes(value, 4), f"mov {R32[i]}, 0x{value:x}")

    def set_reg8(self, i: int, value: int) -> None:
        self.emit(bytes([0xB0 + i, value & 0xFF]), f"mov {R8[i]}, 0x{value & 0xFF:x}")

    def target(self, size: int, lo: int = 0, hi: int = 0) -> int:
        """An absolute address in the data region with room for ``size`` bytes; one in six
        straddles (or ends at) a 4 KiB page boundary."""
        rng = self.rng
        first, last = layout.DATA + 96 + lo, layout.DATA_END - 96 - size - hi
        if rng.random() < 0.17:
            pages = [p for p in range(layout.DATA + 0x1000, layout.DATA_END, 0x1000)
                     if first <= p - size and p + 1 <= last]
            if pages:
                return self.base + rng.choice(pages) - rng.randrange(1, size + 2)
        return self.base + rng.randrange(first, last)

    def mem(self, size: int, write: bool, setup: bool = True, avoid: Sequence[int] = (),
            esp_ok: bool = True, seg_ok: bool = True, lo: int = 0, hi: int = 0) -> MemOperand:
        """A memory operand of ``size`` bytes whose effective address lands in the data region
        (or, for ESP-based forms, the stack region).  ``avoid``: registers the set-up must not
        change (they hold values the instruction needs)."""
        rng = self.rng
        prefix = b""
        segtext = ""
        if seg_ok and rng.random() < 0.15:
            segs = [s for s in SEG_OVERRIDE if not (write and s[1] == "cs")]
            p, name = rng.choice(segs)
            prefix += bytes([p])
            segtext = name + ":"
        a32 = self.code32
        if self.a16_ok and rng.random() < 0.25:
            a32 = False
        elif not self.code32 and rng.random() < 0.5:
            a32 = True
        if not self.code32 and not self.a16_ok:
            a32 = True
        if a32 != self.code32:
            prefix = b"\x67" + prefix
        tgt = self.target(size, lo, hi)
        if a32:
            tail, text, ea = self._mem32(tgt, setup, avoid, esp_ok)
        else:
            tail, text, ea = self._mem16(tgt, setup, avoid)
        ptr = {1: "byte", 2: "word", 4: "dword", 8: "qword"}.get(size, "")
        return MemOperand(prefix, tail, f"{ptr} {segtext}[{text}]", ea)

    def _mem32(self, tgt: int, setup: bool, avoid: Sequence[int], esp_ok: bool
               ) -> Tuple[Callable[[int], bytes], str, int]:
        rng = self.rng
        usable = [i for i in range(8) if i != 4 and i not in avoid]
        forms = ["disp32", "base", "base_d8", "base_d32", "sib", "sib_d8", "sib_d32",
                 "sib_nobase", "sib_noindex"]
        if esp_ok:
            forms += ["esp_sib"] if self.esp_high else ["esp_d8", "esp_sib"]
        if len(usable) < 2:
            forms = ["disp32"]
        form = rng.choice(forms)
        if not setup:
            # LEA: any form, register values as they are
            usable = [i for i in range(8) if i != 4]
        if form == "disp32":
            return (lambda r: bytes([(r << 3) | 5]) + imm_bytes(tgt, 4)), f"0x{tgt:x}", tgt
        if form in ("base", "base_d8", "base_d32"):
            b = rng.choice([i for i in usable if not (form == "base" and i == 5)])
            disp = 0 if form == "base" else (rng.randrange(-128, 128) if form == "base_d8"
                                             else rng.getrandbits(32))
            if setup:
                self.set_reg(b, tgt - disp)
            mod = {"base": 0, "base_d8": 1, "base_d32": 2}[form]
            dbytes = b"" if mod == 0 else imm_bytes(disp, 1 if mod == 1 else 4)
            dtext = "" if mod == 0 else f"{disp & M32:+#x}" if mod == 2 else f"{disp:+#x}"
            return (lambda r: bytes([(mod << 6) | (r << 3) | b]) + dbytes), f"{R32[b]}{dtext}", tgt
        scale_bits = rng.randrange(4)
        scale = 1 << scale_bits
        if form == "esp_d8":
            disp = rng.randrange(-64, 64)
            ea = (self.esp + disp) & M32
            return ((lambda r: bytes([0x40 | (r << 3) | 4, 0x24]) + imm_bytes(disp, 1)),
                    f"esp{disp:+#x}", ea)
        if form == "sib_noindex":
            b = rng.choice(usable)
            mod = 0 if b != 5 else 1
            disp = 0
            if setup:
                self.set_reg(b, tgt)
            sib = (rng.randrange(4) << 6) | (4 << 3) | b   # index 100 = none, scale ignored
            dbytes = b"\x00" if mod == 1 else b""
            return ((lambda r: bytes([(mod << 6) | (r << 3) | 4, sib]) + dbytes),
                    f"{R32[b]} (sib, no index)", tgt)
        idx = rng.choice(usable)
        if form == "esp_sib":
            disp = rng.randrange(-128, 128)
            iv = ((tgt - self.esp - disp) & M32) // scale
            if setup:
                self.set_reg(idx, iv)
            ea = (self.esp + disp + iv * scale) & M32
            sib = (scale_bits << 6) | (idx << 3) | 4
            return ((lambda r: bytes([0x40 | (r << 3) | 4, sib]) + imm_bytes(disp, 1)),
                    f"esp+{R32[idx]}*{scale}{disp:+#x}", ea)
        if form == "sib_nobase":
            disp = rng.getrandbits(32) if rng.random() < 0.5 else rng.randrange(0, 0x100)
            iv = rng.getrandbits(32) if scale == 1 else rng.randrange(0, 0x1000)
            disp = (tgt - iv * scale) & M32
            if setup:
                self.set_reg(idx, iv)
            sib = (scale_bits << 6) | (idx << 3) | 5
            return ((lambda r: bytes([(r << 3) | 4, sib]) + imm_bytes(disp, 4)),
                    f"{R32[idx]}*{scale}+0x{disp:x}", tgt)
        b = rng.choice(usable)
        mod = {"sib": 0, "sib_d8": 1, "sib_d32": 2}[form]
        if mod == 0 and b == 5:
            mod = 1
        disp = 0 if mod == 0 else (rng.randrange(-128, 128) if mod == 1 else rng.getrandbits(32))
        if b == idx:
            v = ((tgt - disp) & M32) // (1 + scale)
            ea = (v * (1 + scale) + disp) & M32
            if setup:
                self.set_reg(b, v)
        else:
            iv = rng.getrandbits(32) if rng.random() < 0.5 else rng.randrange(0, 0x400)
            bv = (tgt - disp - iv * scale) & M32
            ea = tgt
            if setup:
                self.set_reg(idx, iv)
                self.set_reg(b, bv)
        sib = (scale_bits << 6) | (idx << 3) | b
        dbytes = b"" if mod == 0 else imm_bytes(disp, 1 if mod == 1 else 4)
        dtext = "" if mod == 0 else (f"{disp:+#x}" if mod == 1 else f"+0x{disp & M32:x}")
        return ((lambda r: bytes([(mod << 6) | (r << 3) | 4, sib]) + dbytes),
                f"{R32[b]}+{R32[idx]}*{scale}{dtext}", ea)

    def _mem16(self, tgt: int, setup: bool, avoid: Sequence[int]
               ) -> Tuple[Callable[[int], bytes], str, int]:
        rng = self.rng
        pairs = {0: (3, 6), 1: (3, 7), 2: (5, 6), 3: (5, 7), 4: (6,), 5: (7,), 6: (5,), 7: (3,)}
        rms = [rm for rm, regs in pairs.items() if not set(regs) & set(avoid)]
        if not rms or not setup:
            rms = rms or [6]
        rm = rng.choice(rms)
        mod = rng.randrange(3)
        if rm == 6 and mod == 0:
            return ((lambda r: bytes([(r << 3) | 6]) + imm_bytes(tgt, 2)), f"0x{tgt:x}", tgt)
        disp = 0 if mod == 0 else (rng.randrange(-128, 128) if mod == 1 else rng.getrandbits(16))
        regs = pairs[rm]
        if len(regs) == 2:
            lo1 = rng.getrandbits(16)
            lo2 = (tgt - lo1 - disp) & 0xFFFF
            vals = (lo1, lo2)
        else:
            vals = ((tgt - disp) & 0xFFFF,)
        if setup:
            for r, v in zip(regs, vals):
                self.set_reg(r, (rng.getrandbits(16) << 16) | v)
        dbytes = b"" if mod == 0 else imm_bytes(disp, mod)
        names = "+".join(R16[r] for r in regs)
        dtext = "" if mod == 0 else f"{disp:+#x}" if mod == 1 else f"+0x{disp:x}"
        return ((lambda r: bytes([(mod << 6) | (r << 3) | rm]) + dbytes), f"{names}{dtext}", tgt)

    def rm(self, size: int, write: bool, mem_p: float = 0.5, avoid: Sequence[int] = (),
           **kw: object) -> Tuple[bytes, Callable[[int], bytes], str, Optional[int]]:
        """An r/m operand: (prefix, modrm builder, text, register index or None)."""
        if self.rng.random() < mem_p:
            m = self.mem(size // 8, write, avoid=avoid, **kw)  # type: ignore[arg-type]
            return m.prefix, m.tail, m.text, None
        r = self.dst(size, avoid) if write else self.rng.randrange(8)
        return b"", (lambda f: bytes([0xC0 | (f << 3) | r])), regname(size, r), r

    # ------------------------------------------------------------------ groups
    def g_alu(self) -> None:
        rng = self.rng
        size = self.size()
        n = ALU.index(rng.choice(ALU))
        name = ALU[n]
        reads = CF if name in ("adc", "sbb") else 0
        writes, undef = (ARITH & ~AF, AF) if name in ("and", "or", "xor") else (ARITH, 0)
        w = 0 if size == 8 else 1
        writes_dst = name != "cmp"
        form = rng.randrange(5)
        p = self.op(size)
        if form == 0:    # op r/m, r
            pre, tail, text, _ = self.rm(size, writes_dst)
            r = rng.randrange(8)
            self.emit(pre + p + bytes([n * 8 + w]) + tail(r), f"{name} {text}, {regname(size, r)}",
                      reads, writes, undef)
        elif form == 1:  # op r, r/m
            r = self.dst(size) if writes_dst else rng.randrange(8)
            pre, tail, text, _ = self.rm(size, False, avoid=(r,))
            self.emit(pre + p + bytes([n * 8 + 2 + w]) + tail(r), f"{name} {regname(size, r)}, {text}",
                      reads, writes, undef)
        elif form == 2:  # op al/ax/eax, imm
            v = self.rnd(size)
            self.emit(p + bytes([n * 8 + 4 + w]) + imm_bytes(v, size // 8),
                      f"{name} {regname(size, 0)}, 0x{v:x}", reads, writes, undef)
        else:            # 80/81/83 (and the 82 alias) /n imm
            pre, tail, text, _ = self.rm(size, writes_dst)
            if size == 8:
                opc = 0x82 if rng.random() < 0.1 else 0x80
                v = self.rnd(8)
                ib = imm_bytes(v, 1)
            elif form == 3:
                opc, v = 0x81, self.rnd(size)
                ib = imm_bytes(v, size // 8)
            else:
                opc, v = 0x83, rng.randrange(-128, 128)
                ib = imm_bytes(v, 1)
            self.emit(pre + p + bytes([opc]) + tail(n) + ib, f"{name} {text}, {v:#x}",
                      reads, writes, undef)

    def g_unary(self) -> None:
        rng = self.rng
        size = self.size()
        p = self.op(size)
        w = 0 if size == 8 else 1
        kind = rng.choice(("inc", "dec", "not", "neg", "test", "test_imm", "incr"))
        if kind == "incr" and size != 8:
            r = self.dst(size)
            dec = rng.random() < 0.5
            self.emit(p + bytes([(0x48 if dec else 0x40) + r]),
                      f"{'dec' if dec else 'inc'} {regname(size, r)}", writes=ARITH & ~CF)
            return
        if kind in ("inc", "dec", "incr"):
            pre, tail, text, _ = self.rm(size, True)
            f = 1 if kind == "dec" else 0
            self.emit(pre + p + bytes([0xFE | w]) + tail(f), f"{kind[:3]} {text}", writes=ARITH & ~CF)
        elif kind in ("not", "neg"):
            pre, tail, text, _ = self.rm(size, True)
            f = 2 if kind == "not" else 3
            self.emit(pre + p + bytes([0xF6 | w]) + tail(f), f"{kind} {text}",
                      writes=0 if kind == "not" else ARITH)
        elif kind == "test":
            pre, tail, text, _ = self.rm(size, False)
            r = rng.randrange(8)
            self.emit(pre + p + bytes([0x84 | w]) + tail(r), f"test {text}, {regname(size, r)}",
                      writes=ARITH & ~AF, undef=AF)
        else:
            v = self.rnd(size)
            if rng.random() < 0.5:
                self.emit(p + bytes([0xA8 | w]) + imm_bytes(v, size // 8),
                          f"test {regname(size, 0)}, {v:#x}", writes=ARITH & ~AF, undef=AF)
            else:
                pre, tail, text, _ = self.rm(size, False)
                self.emit(pre + p + bytes([0xF6 | w]) + tail(0) + imm_bytes(v, size // 8),
                          f"test {text}, {v:#x}", writes=ARITH & ~AF, undef=AF)

    def g_mov(self) -> None:
        rng = self.rng
        size = self.size()
        p = self.op(size)
        w = 0 if size == 8 else 1
        kind = rng.randrange(6)
        if kind == 0:
            pre, tail, text, _ = self.rm(size, True)
            r = rng.randrange(8)
            self.emit(pre + p + bytes([0x88 | w]) + tail(r), f"mov {text}, {regname(size, r)}")
        elif kind == 1:
            r = self.dst(size)
            pre, tail, text, _ = self.rm(size, False)
            self.emit(pre + p + bytes([0x8A | w]) + tail(r), f"mov {regname(size, r)}, {text}")
        elif kind == 2:
            r = self.dst(size)
            v = self.rnd(size)
            opc = (0xB0 if size == 8 else 0xB8) + r
            self.emit(p + bytes([opc]) + imm_bytes(v, size // 8), f"mov {regname(size, r)}, {v:#x}")
        elif kind == 3:
            pre, tail, text, _ = self.rm(size, True)
            v = self.rnd(size)
            self.emit(pre + p + bytes([0xC6 | w]) + tail(0) + imm_bytes(v, size // 8),
                      f"mov {text}, {v:#x}")
        else:  # A0-A3 moffs
            a32 = self.code32 if not self.a16_ok else rng.random() < 0.7
            if not self.code32 and not self.a16_ok:
                a32 = True
            tgt = self.target(size // 8)
            apre = b"" if a32 == self.code32 else b"\x67"
            off = imm_bytes(tgt, 4 if a32 else 2)
            store = kind == 5
            opc = (0xA2 if store else 0xA0) | w
            t = f"[0x{tgt:x}]"
            acc = regname(size, 0)
            self.emit(apre + p + bytes([opc]) + off,
                      f"mov {t}, {acc}" if store else f"mov {acc}, {t}")

    def _count(self, width: int) -> int:
        return self.rng.choice((0, 1, 1, 2, 3, width - 1, width, width + 1, 31, 32, 33,
                                self.rng.randrange(256), self.rng.randrange(1, 32)))

    def g_shift(self) -> None:
        rng = self.rng
        size = self.size()
        p = self.op(size)
        w = 0 if size == 8 else 1
        f = rng.choice((0, 1, 2, 3, 4, 5, 7, 4, 5, 7, 6))
        name = ("rol", "ror", "rcl", "rcr", "shl", "shr", "sal", "sar")[f]
        form = rng.randrange(3)
        count = 1 if form == 0 else self._count(size)
        if form == 2:
            avoid = (1,)
            self.set_reg8(1, count)
        else:
            avoid = ()
        pre, tail, text, _ = self.rm(size, True, avoid=avoid)
        if form == 0:
            code, ctext = bytes([0xD0 | w]) + tail(f), "1"
        elif form == 1:
            code, ctext = bytes([0xC0 | w]) + tail(f) + bytes([count & 0xFF]), f"{count & 0xFF}"
        else:
            code, ctext = bytes([0xD2 | w]) + tail(f), f"cl ; cl={count & 0xFF}"
        m = count & 31
        reads = writes = undef = 0
        if m:
            if f in (0, 1, 2, 3):
                reads = CF if f in (2, 3) else 0
                writes = CF | (OF if m == 1 else 0)
                undef = 0 if m == 1 else OF
            else:
                writes = CF | SF | ZF | PF | (OF if m == 1 else 0)
                undef = AF | (0 if m == 1 else OF)
                if f in (4, 5, 6) and m >= size:
                    writes &= ~CF
                    undef |= CF
        self.emit(pre + p + code, f"{name} {text}, {ctext}", reads, writes, undef)

    def g_shld(self) -> None:
        rng = self.rng
        size = rng.choice((16, 32, 32))
        p = self.op(size)
        right = rng.random() < 0.5
        name = "shrd" if right else "shld"
        use_cl = rng.random() < 0.5
        count = rng.choice((0, 1, 2, 15, 16, 31, 32, 33, 63, rng.randrange(256)))
        if size == 16 and 16 < (count & 31):
            count = count & 15           # counts above 16 leave a 16-bit result undefined
        r = rng.randrange(8)
        if use_cl:
            self.set_reg8(1, count)
        pre, tail, text, _ = self.rm(size, True, avoid=(1, r) if use_cl else (r,))
        if use_cl:
            code = bytes([0x0F, 0xAD if right else 0xA5]) + tail(r)
            ctext = f"cl ; cl={count & 0xFF}"
        else:
            code = bytes([0x0F, 0xAC if right else 0xA4]) + tail(r) + bytes([count & 0xFF])
            ctext = f"{count & 0xFF}"
        m = count & 31
        writes = undef = 0
        if m:
            writes = CF | SF | ZF | PF | (OF if m == 1 else 0)
            undef = AF | (0 if m == 1 else OF)
        self.emit(pre + p + code, f"{name} {text}, {regname(size, r)}, {ctext}", 0, writes, undef)

    def g_mul(self) -> None:
        rng = self.rng
        size = self.size()
        p = self.op(size)
        w = 0 if size == 8 else 1
        kind = rng.randrange(4) if size != 8 else 0
        if kind == 0:      # F6/F7 /4 /5
            f = rng.choice((4, 5))
            pre, tail, text, _ = self.rm(size, False, avoid=(0, 2))
            self.emit(pre + p + bytes([0xF6 | w]) + tail(f), f"{'mul' if f == 4 else 'imul'} {text}",
                      writes=CF | OF, undef=SF | ZF | AF | PF)
        elif kind == 1:    # 0F AF imul r, r/m
            r = self.dst(size)
            pre, tail, text, _ = self.rm(size, False, avoid=(r,))
            self.emit(pre + p + b"\x0f\xaf" + tail(r), f"imul {regname(size, r)}, {text}",
                      writes=CF | OF, undef=SF | ZF | AF | PF)
        else:              # 69 / 6B imul r, r/m, imm
            r = self.dst(size)
            pre, tail, text, _ = self.rm(size, False, avoid=(r,))
            if kind == 2:
                v = self.rnd(size)
                code = b"\x69" + tail(r) + imm_bytes(v, size // 8)
            else:
                v = rng.randrange(-128, 128)
                code = b"\x6b" + tail(r) + imm_bytes(v, 1)
            self.emit(pre + p + code, f"imul {regname(size, r)}, {text}, {v:#x}",
                      writes=CF | OF, undef=SF | ZF | AF | PF)

    def g_div(self) -> None:
        rng = self.rng
        size = self.size()
        p = self.op(size)
        w = 0 if size == 8 else 1
        signed = rng.random() < 0.5
        half = 1 << (size - 1)
        if signed:
            d = 0
            while d == 0:
                d = rng.choice((rng.randrange(-half, half), rng.choice((-1, 1, -2, 2, half - 1, -half))))
            q = rng.choice((rng.randrange(-half, half), -half, half - 1, 0, 1, -1))
            rmax = abs(d) - 1
            r = rng.randrange(0, rmax + 1) if rmax else 0
            sign = -1 if q * d < 0 else 1 if q * d > 0 else rng.choice((-1, 1))
            r *= sign
            dividend = q * d + r
        else:
            d = rng.choice((rng.randrange(1, 1 << size), 1, (1 << size) - 1))
            q = rng.choice((rng.randrange(0, 1 << size), 0, (1 << size) - 1))
            r = rng.randrange(0, d)
            dividend = q * d + r
        dividend &= (1 << (2 * size)) - 1
        d &= (1 << size) - 1
        if size == 8:
            avoid: Tuple[int, ...] = (0, 4)
        else:
            avoid = (0, 2)
        use_mem = rng.random() < 0.4
        if use_mem:
            m = self.mem(size // 8, True, avoid=avoid)   # written by the MOV below
            # store the divisor with MOV r/m, imm before loading the dividend
            self.emit(m.prefix + p + bytes([0xC6 | w]) + m.tail(0) + imm_bytes(d, size // 8),
                      f"mov {m.text}, {d:#x}")
            pre, tail, text = m.prefix, m.tail, m.text
        else:
            if size == 8:
                rr = rng.choice([i for i in range(8) if i not in (0, 4)])
                self.set_reg8(rr, d)
            else:
                rr = self.dst(size, avoid)
                self.set_reg(rr, (rng.getrandbits(32) & ~((1 << size) - 1)) | d)
            pre, tail, text = b"", (lambda f: bytes([0xC0 | (f << 3) | rr])), regname(size, rr)
        if size == 8:
            self.emit(self.op(16) + b"\xb8" + imm_bytes(dividend, 2), f"mov ax, {dividend:#x}")
        else:
            lo, hi = dividend & ((1 << size) - 1), dividend >> size
            self.emit(p + b"\xb8" + imm_bytes(lo, size // 8), f"mov {regname(size, 0)}, {lo:#x}")
            self.emit(p + b"\xba" + imm_bytes(hi, size // 8), f"mov {regname(size, 2)}, {hi:#x}")
        f = 7 if signed else 6
        self.emit(pre + p + bytes([0xF6 | w]) + tail(f), f"{'idiv' if signed else 'div'} {text}",
                  undef=ARITH)

    def g_string(self) -> None:
        rng = self.rng
        size = self.size()
        p = self.op(size)
        w = 0 if size == 8 else 1
        kind = rng.choice(("movs", "cmps", "stos", "lods", "scas"))
        opc = {"movs": 0xA4, "cmps": 0xA6, "stos": 0xAA, "lods": 0xAC, "scas": 0xAE}[kind] | w
        rep = rng.choice((0, 0xF3, 0xF3, 0xF2 if kind in ("cmps", "scas") else 0xF3))
        down = rng.random() < 0.5
        self.emit(b"\xfd" if down else b"\xfc", "std" if down else "cld")
        a32 = self.code32
        if self.a16_ok and rng.random() < 0.3:
            a32 = not self.code32
        if not self.code32 and not self.a16_ok:
            a32 = True
        count = rng.choice((0, 1, 2, 3, 5, 8, 33, 100, 257)) if rep else 0
        span = count * 4 + 8
        t = self.target(4, lo=span, hi=span)
        # ESI and EDI: independent, or overlapping by a few bytes (a copy that smears)
        overlap = rng.random() < 0.4
        t2 = t + rng.randrange(-9, 10) if overlap else self.target(4, lo=span, hi=span)
        if not a32 and rng.random() < 0.3:
            # 16-bit SI/DI near FFFFh or 0: the walk wraps around the 64 KiB segment between
            # two elements (an element straddling offset FFFFh is #GP in real mode and
            # reaches 10000h in flat mode: not generated); the wrap regions [0, 400h) and
            # [F000h, 10000h) are compared too
            count = min(count, 8)
            n = size // 8
            edge = [0x10000 - n * rng.randint(1, 4), n * rng.randrange(4)]
            rng.shuffle(edge)
            t, t2 = edge[0], edge[1] if rng.random() < 0.5 else t2
        for r, addr in ((6, t), (7, t2)):
            hi = rng.getrandbits(16) << 16 if not a32 else 0
            self.set_reg(r, hi | (addr & (M32 if a32 else 0xFFFF)))
        if rep:
            hi = rng.getrandbits(16) << 16 if not a32 else 0
            self.set_reg(1, hi | count)
        seg = b""
        stext = ""
        if kind in ("movs", "cmps", "lods") and rng.random() < 0.3:
            sp, stext = rng.choice(SEG_OVERRIDE)
            seg = bytes([sp])
            stext += ": "
        apre = b"" if a32 == self.code32 else b"\x67"
        rp = bytes([rep]) if rep else b""
        writes = ARITH if kind in ("cmps", "scas") and (not rep or count) else 0
        rtext = {0: "", 0xF3: "rep " if kind not in ("cmps", "scas") else "repe ", 0xF2: "repne "}[rep]
        suffix = {8: "b", 16: "w", 32: "d"}[size]
        self.emit(rp + apre + seg + p + bytes([opc]),
                  f"{rtext}{stext}{kind}{suffix} ({'a32' if a32 else 'a16'}{f', count={count}' if rep else ''})",
                  writes=writes)

    def g_movx(self) -> None:
        rng = self.rng
        size = rng.choice((16, 32, 32))
        src = rng.choice((8, 16)) if size == 32 else 8
        sx = rng.random() < 0.5
        r = self.dst(size)
        pre, tail, text, _ = self.rm(src, False)
        opc = (0xBE if sx else 0xB6) | (1 if src == 16 else 0)
        self.emit(pre + self.op(size) + bytes([0x0F, opc]) + tail(r),
                  f"{'movsx' if sx else 'movzx'} {regname(size, r)}, {text}")

    def g_setcc(self) -> None:
        rng = self.rng
        cc = rng.randrange(16)
        kind = rng.randrange(2)
        if kind == 0:
            pre, tail, text, _ = self.rm(8, True)
            self.emit(pre + bytes([0x0F, 0x90 + cc]) + tail(0), f"set{CC[cc]} {text}",
                      reads=CC_READS[cc])
        else:
            size = rng.choice((16, 32))
            r = self.dst(size)
            pre, tail, text, _ = self.rm(size, False, avoid=(r,))
            self.emit(pre + self.op(size) + bytes([0x0F, 0x40 + cc]) + tail(r),
                      f"cmov{CC[cc]} {regname(size, r)}, {text}", reads=CC_READS[cc])

    def g_jcc(self) -> None:
        """A forward branch over a short block (Jcc rel8/rel32, JMP, JECXZ, LOOPcc)."""
        if self.in_block:
            self.g_alu()
            return
        rng = self.rng
        # flush set-ups into their own unit so the block is generated on its own
        self.end_unit()
        outer: List[Insn] = []   # the unit that will hold the branch and its block
        self.in_block = True
        self.blk_defined = 0
        block_units_before = len(self.units)
        for _ in range(rng.randint(1, 3)):
            rng.choice(BLOCK_GROUPS)(self)
            self.end_unit()
        block_units = self.units[block_units_before:]
        del self.units[block_units_before:]
        self.in_block = False
        self.cur = outer
        block = [i for u in block_units for i in u.insns]
        # resets inside the block are decided per path by Snippet._finish; a flag-reading
        # instruction inside the block gets a reset in-line, so emit a reset here too when the
        # block reads a flag (keeps both paths identical in definedness).
        blen = sum(len(i.code) for i in block)
        kind = rng.choice(("jcc8", "jcc8", "jcc32", "jmp8", "jcxz", "loop"))
        if blen > 127:
            kind = "jcc32"
        cc = rng.randrange(16)
        if kind == "jcc8":
            head = Insn(bytes([0x70 + cc, blen]), f"j{CC[cc]} short +{blen}", reads=CC_READS[cc])
        elif kind == "jcc32":
            head = Insn(bytes([0x0F, 0x80 + cc]) + imm_bytes(blen, 4 if self.code32 else 2),
                        f"j{CC[cc]} near +{blen}", reads=CC_READS[cc])
        elif kind == "jmp8":
            head = Insn(bytes([0xEB, blen]), f"jmp short +{blen}")
        elif kind == "jcxz":
            a32 = self.code32 if not self.a16_ok else rng.random() < 0.5
            if not self.code32 and not self.a16_ok:
                a32 = True
            if rng.random() < 0.5:
                self.set_reg(1, rng.choice((0, 0x10000, 1)))
            pre = b"" if a32 == self.code32 else b"\x67"
            head = Insn(pre + bytes([0xE3, blen]), f"j{'e' if a32 else ''}cxz +{blen}")
        else:
            a32 = self.code32 if not self.a16_ok else rng.random() < 0.5
            if not self.code32 and not self.a16_ok:
                a32 = True
            which = rng.choice((0xE0, 0xE1, 0xE2))
            name = {0xE0: "loopne", 0xE1: "loope", 0xE2: "loop"}[which]
            self.set_reg(1, rng.choice((1, 2, 0x10001, 0)))
            pre = b"" if a32 == self.code32 else b"\x67"
            head = Insn(pre + bytes([which, blen]), f"{name} +{blen} ({'ecx' if a32 else 'cx'})",
                        reads=ZF if which != 0xE2 else 0)
        # Flags after the join are undefined if undefined on either path: the block's
        # instructions are marked ``blk`` so Snippet._finish only adds their undefined flags.
        self.cur.append(head)
        self.cur.extend(block)
        self.pinned = True

    LOOP_COUNTER = layout.STACK_HI - 0x100   # never reached by random stack or data accesses

    def g_loop(self) -> None:
        """A backward loop: a short block run 2-5 times, counted in memory (hot code: the block
        compiler re-enters its blocks with the flags the previous iteration left)."""
        if self.in_block:
            self.g_alu()
            return
        rng = self.rng
        self.end_unit()
        outer: List[Insn] = []   # the unit that will hold the branch and its block
        counter = self.base + self.LOOP_COUNTER
        n = rng.randint(2, 5)
        self.in_block = True
        self.blk_defined = 0
        before = len(self.units)
        for _ in range(rng.randint(1, 3)):
            rng.choice(BLOCK_GROUPS)(self)
            self.end_unit()
        body = [i for u in self.units[before:] for i in u.insns]
        del self.units[before:]
        self.in_block = False
        self.cur = outer
        a32 = self.code32 or not self.a16_ok
        apre = b"" if a32 == self.code32 else b"\x67"
        addr = imm_bytes(counter, 4 if a32 else 2)
        modrm = b"\x05" if a32 else b"\x06"      # [disp32] / [disp16]
        init = Insn(apre + self.op(32) + b"\xc7" + modrm + addr + imm_bytes(n, 4),
                    f"mov dword [0x{counter:x}], {n} ; loop counter")
        dec = Insn(apre + self.op(32) + (b"\xff\x0d" if a32 else b"\xff\x0e") + addr,
                   f"dec dword [0x{counter:x}]")
        dec.blk = True
        dec.undef = 0
        blen = sum(len(i.code) for i in body) + len(dec.code)
        if blen + 2 <= 128:
            jback = Insn(bytes([0x75, (-(blen + 2)) & 0xFF]), f"jnz short -{blen + 2} (loop top)")
        else:
            w = 4 if self.code32 else 2
            jback = Insn(b"\x0f\x85" + imm_bytes(-(blen + 2 + w), w), "jnz near loop top")
        jback.blk = True
        self.cur.append(init)
        self.cur.extend(body)
        self.cur.append(dec)
        self.cur.append(jback)
        self.pinned = True

    def g_bt(self) -> None:
        rng = self.rng
        size = rng.choice((16, 32, 32))
        p = self.op(size)
        f = rng.randrange(4)
        name = ("bt", "bts", "btr", "btc")[f]
        write = f != 0
        if rng.random() < 0.5:   # register bit offset
            r = rng.choice([i for i in range(8) if i != 4])
            if rng.random() < 0.5:  # memory: signed offset reaches outside the operand
                off = rng.randrange(-300, 300)
                self.set_reg(r, (rng.getrandbits(16) << 16 if size == 16 else 0) | (off & (M32 if size == 32 else 0xFFFF)))
                m = self.mem(size // 8, write, avoid=(r,), lo=48, hi=48)
                pre, tail, text = m.prefix, m.tail, m.text
            else:
                pre, tail, text, _ = self.rm(size, write, mem_p=0.0)
            code = bytes([0x0F, 0xA3 + 8 * f]) + tail(r)
            otext = regname(size, r)
        else:
            pre, tail, text, _ = self.rm(size, write)
            ib = rng.randrange(256)
            code = b"\x0f\xba" + tail(4 + f) + bytes([ib])
            otext = f"{ib}"
        self.emit(pre + p + code, f"{name} {text}, {otext}", writes=CF, undef=OF | SF | AF | PF)

    def g_bsf(self) -> None:
        rng = self.rng
        size = rng.choice((16, 32, 32))
        p = self.op(size)
        rev = rng.random() < 0.5
        r = self.dst(size)
        pre, tail, text, src = self.rm(size, False, avoid=(r,))
        if src is not None and rng.random() < 0.2:
            if src != 4:
                self.set_reg(src, 0 if rng.random() < 0.5 else 1 << rng.randrange(32))
        self.emit(pre + p + bytes([0x0F, 0xBD if rev else 0xBC]) + tail(r),
                  f"{'bsr' if rev else 'bsf'} {regname(size, r)}, {text}",
                  writes=ZF, undef=CF | OF | SF | AF | PF)

    def g_xchg(self) -> None:
        rng = self.rng
        size = self.size()
        p = self.op(size)
        w = 0 if size == 8 else 1
        kind = rng.choice(("xchg", "xchg_acc", "xadd", "cmpxchg", "bswap"))
        if kind == "bswap":
            r = self.dst(32)
            self.emit(self.op(32) + bytes([0x0F, 0xC8 + r]), f"bswap {R32[r]}")
            return
        if kind == "xchg_acc" and size != 8:
            r = self.dst(size)
            self.emit(p + bytes([0x90 + r]), f"xchg {regname(size, 0)}, {regname(size, r)}")
            return
        r = self.dst(size)
        if kind == "cmpxchg":
            pre, tail, text, _ = self.rm(size, True, avoid=(0, r))
            if rng.random() < 0.5:   # make the compare succeed
                self.emit(pre + p + bytes([0x8A | w]) + tail(0), f"mov {regname(size, 0)}, {text}")
            self.emit(pre + p + bytes([0x0F, 0xB0 | w]) + tail(r),
                      f"cmpxchg {text}, {regname(size, r)}", writes=ARITH)
            return
        pre, tail, text, _ = self.rm(size, True, avoid=(r,))
        if kind == "xadd":
            self.emit(pre + p + bytes([0x0F, 0xC0 | w]) + tail(r), f"xadd {text}, {regname(size, r)}",
                      writes=ARITH)
        else:
            self.emit(pre + p + bytes([0x86 | w]) + tail(r), f"xchg {text}, {regname(size, r)}")

    def g_lea(self) -> None:
        rng = self.rng
        size = rng.choice((16, 32, 32))
        r = self.dst(size)
        m = self.mem(1, False, setup=rng.random() < 0.3, seg_ok=False)
        self.emit(m.prefix + self.op(size) + b"\x8d" + m.tail(r), f"lea {regname(size, r)}, {m.text}")

    def g_stack(self) -> None:
        rng = self.rng
        if self.in_block:
            self.g_mov()
            return
        kind = rng.choice(("push", "pop", "pushimm", "pushrm", "poprm", "pusha", "pushf",
                           "enter", "pushpop"))
        size = rng.choice((16, 32, 32))
        p = self.op(size)
        n = size // 8
        depth = self.base + layout.STACK_TOP - (self.esp & 0xFFFF if self.esp_high else self.esp)
        if depth > 0x800:
            kind = "pop"
        elif depth < -0x800:
            kind = "pushimm"
        self.pinned = True
        if kind == "push":
            r = rng.randrange(8)
            self.emit(p + bytes([0x50 + r]), f"push {regname(size, r)}")
            self.esp -= n
        elif kind == "pop":
            r = self.dst(size)
            self.emit(p + bytes([0x58 + r]), f"pop {regname(size, r)}")
            self.esp += n
        elif kind == "pushimm":
            if rng.random() < 0.5:
                v = self.rnd(size)
                self.emit(p + b"\x68" + imm_bytes(v, n), f"push {v:#x}")
            else:
                v = rng.randrange(-128, 128)
                self.emit(p + b"\x6a" + imm_bytes(v, 1), f"push byte {v:#x}")
            self.esp -= n
        elif kind == "pushrm":
            pre, tail, text, _ = self.rm(size, False)
            self.emit(pre + p + b"\xff" + tail(6), f"push {text}")
            self.esp -= n
        elif kind == "poprm":
            pre, tail, text, _ = self.rm(size, True, esp_ok=False)
            self.emit(pre + p + b"\x8f" + tail(0), f"pop {text}")
            self.esp += n
        elif kind == "pusha":
            self.emit(p + b"\x60", "pusha" + ("d" if size == 32 else "w"))
            if rng.random() < 0.7:
                self.emit(p + b"\x61", "popa" + ("d" if size == 32 else "w"))
            else:
                self.esp -= 8 * n
        elif kind == "pushf":
            v = self.rng.getrandbits(16) & (ARITH | DF) | 0x202
            self.emit(p + b"\x68" + imm_bytes(v, n), f"push {v:#x}")
            self.emit(p + b"\x9d", "popf" + ("d" if size == 32 else ""), writes=ARITH)
            self.emit(b"\xfc", "cld")
            self.emit(p + b"\x9c", "pushf" + ("d" if size == 32 else ""), reads=ARITH)
            self.esp -= n
        elif kind == "enter":
            if self.esp_high:
                # 32-bit ENTER on a 16-bit stack: which half of the frame pointer lands in
                # EBP and in the pushed copy is where the SDM and QEMU part ways; the
                # unambiguous case is in test_diff_unicorn.py (FINDINGS.md, finding 2)
                p = self.op(16)
            level = rng.choice((0, 0, 1, 2, 3))
            alloc = rng.choice((0, 4, 8, 0x10, 0x22, rng.randrange(0, 0x80)))
            # EBP must point into the stack for the nested frame-pointer copies
            self.set_reg(5, self.esp - rng.randrange(0, 0x40) * 4)
            self.emit(p + b"\xc8" + imm_bytes(alloc, 2) + bytes([level]), f"enter {alloc:#x}, {level}")
            if rng.random() < 0.5:
                r = self.dst(32, avoid=(5,))
                self.emit(self.op(32) + b"\x6a\x11", "push 0x11")
                self.emit(self.op(32) + bytes([0x58 + r]), f"pop {R32[r]}")
            self.emit(p + b"\xc9", "leave")
        else:   # push reg / pop into another, 16-bit halves
            r1 = rng.randrange(8)
            r2 = self.dst(size)
            self.emit(p + bytes([0x50 + r1]), f"push {regname(size, r1)}")
            self.emit(p + bytes([0x58 + r2]), f"pop {regname(size, r2)}")

    def g_flagops(self) -> None:
        rng = self.rng
        kind = rng.choice(("lahf", "sahf", "cbw", "cwde", "cwd", "cdq", "clc", "stc", "cmc",
                           "xlat"))
        if kind == "lahf":
            self.emit(b"\x9f", "lahf", reads=SF | ZF | AF | PF | CF)
        elif kind == "sahf":
            self.emit(b"\x9e", "sahf", writes=SF | ZF | AF | PF | CF)
        elif kind == "cbw":
            self.emit(self.op(16) + b"\x98", "cbw")
        elif kind == "cwde":
            self.emit(self.op(32) + b"\x98", "cwde")
        elif kind == "cwd":
            self.emit(self.op(16) + b"\x99", "cwd")
        elif kind == "cdq":
            self.emit(self.op(32) + b"\x99", "cdq")
        elif kind == "clc":
            self.emit(b"\xf8", "clc", writes=CF)
        elif kind == "stc":
            self.emit(b"\xf9", "stc", writes=CF)
        elif kind == "cmc":
            self.emit(b"\xf5", "cmc", reads=CF, writes=CF)
        else:
            a32 = self.code32
            t = self.target(256)
            self.set_reg(3, t if a32 else (rng.getrandbits(16) << 16) | (t & 0xFFFF))
            self.emit(b"\xd7", "xlat")

    def g_bcd(self) -> None:
        rng = self.rng
        kind = rng.choice(("daa", "das", "aaa", "aas", "aam", "aad"))
        if rng.random() < 0.5:
            self.set_reg(0, rng.getrandbits(32))
        if kind == "daa":
            self.emit(b"\x27", "daa", reads=CF | AF, writes=CF | AF | SF | ZF | PF, undef=OF)
        elif kind == "das":
            self.emit(b"\x2f", "das", reads=CF | AF, writes=CF | AF | SF | ZF | PF, undef=OF)
        elif kind == "aaa":
            self.emit(b"\x37", "aaa", reads=AF, writes=AF | CF, undef=OF | SF | ZF | PF)
        elif kind == "aas":
            self.emit(b"\x3f", "aas", reads=AF, writes=AF | CF, undef=OF | SF | ZF | PF)
        else:
            base = rng.choice((10, 10, 16, 7, 255, rng.randrange(1, 256)))
            opc = 0xD4 if kind == "aam" else 0xD5
            self.emit(bytes([opc, base]), f"{kind} {base}", writes=SF | ZF | PF, undef=OF | AF | CF)


    FAULT_KINDS = ("div0", "divovf", "idivovf", "aam0", "ud2", "ffud", "feud", "lock_nop",
                   "lock_mov", "lock_reg", "lea_reg", "too_long", "bound", "into", "int3")

    def g_fault(self, kind: Optional[str] = None) -> None:
        """One instruction that faults in ring 3 and ring 0 alike (host: a signal whose trap
        number is the vector): #DE, #UD, #GP (too long), #BR, #OF, #BP."""
        rng = self.rng
        kind = kind or rng.choice(self.FAULT_KINDS)
        size = self.size()
        p = self.op(size)
        w = 0 if size == 8 else 1
        if kind in ("div0", "divovf", "idivovf"):
            r = rng.choice([i for i in range(8) if i not in (0, 2, 4)] if size != 8 else
                           [1, 3, 5, 7])   # CL BL CH BH for bytes
            half = 1 << size
            if kind == "div0":
                d, dividend = 0, rng.getrandbits(2 * size)
            elif kind == "divovf":
                d = rng.randrange(1, half)
                dividend = (rng.randrange(d, half) << size) | rng.getrandbits(size)
            else:
                d = half - 1                                        # -1
                dividend = (1 << (2 * size)) - (1 << (size - 1))    # -2**(size-1)
            if size == 8:
                self.set_reg8(r, d)
                self.emit(self.op(16) + b"\xb8" + imm_bytes(dividend, 2), f"mov ax, {dividend:#x}")
            else:
                self.set_reg(r, d)
                lo, hi = dividend & (half - 1), dividend >> size
                self.emit(p + b"\xb8" + imm_bytes(lo, size // 8), f"mov {regname(size, 0)}, {lo:#x}")
                self.emit(p + b"\xba" + imm_bytes(hi, size // 8), f"mov {regname(size, 2)}, {hi:#x}")
            f = 7 if kind == "idivovf" else 6
            self.emit(p + bytes([0xF6 | w, 0xC0 | (f << 3) | r]),
                      f"{'idiv' if f == 7 else 'div'} {regname(size, r)} ; #DE")
        elif kind == "aam0":
            self.emit(b"\xd4\x00", "aam 0 ; #DE")
        elif kind == "ud2":
            self.emit(b"\x0f\x0b", "ud2 ; #UD")
        elif kind == "ffud":
            self.emit(b"\xff" + bytes([0xF8 | rng.randrange(8)]), "(FF /7) ; #UD")
        elif kind == "feud":
            self.emit(b"\xfe" + bytes([0xC0 | (rng.randrange(2, 7) << 3) | rng.randrange(8)]),
                      "(FE /2../6) ; #UD")
        elif kind == "lock_nop":
            self.emit(b"\xf0\x90", "lock nop ; #UD")
        elif kind == "lock_mov":
            m = self.mem(size // 8, False)
            self.emit(b"\xf0" + m.prefix + p + bytes([0x8A | w]) + m.tail(0),
                      f"lock mov {regname(size, 0)}, {m.text} ; #UD")
        elif kind == "lock_reg":
            self.emit(b"\xf0" + p + bytes([0x00 | w, 0xC0 | (rng.randrange(8) << 3) | self.dst(size)]),
                      "lock add reg, reg ; #UD")
        elif kind == "lea_reg":
            self.emit(b"\x8d" + bytes([0xC0 | (rng.randrange(8) << 3) | rng.randrange(8)]),
                      "lea reg, reg ; #UD")
        elif kind == "too_long":
            n = rng.choice((15, 16, 20))
            self.emit(b"\x3e" * (n - 2) + b"\x8b\xc0",
                      f"{n - 2} ds prefixes + mov eax, eax ({n} bytes){' ; #GP' if n > 15 else ''}")
        elif kind == "bound":
            size = rng.choice((16, 32))
            p = self.op(size)
            n = size // 8
            r = self.dst(size, avoid=(0,))
            m = self.mem(2 * n, True, avoid=(r,), seg_ok=False)
            lo = rng.randrange(-1000, 1000)
            hi = lo + rng.randrange(0, 100)
            v = rng.choice((lo - 1 - rng.randrange(50), hi + 1 + rng.randrange(50), lo, hi))
            # store the bounds with two MOV r/m, imm (second one 'n' bytes further: via EAX)
            self.emit(m.prefix + p + bytes([0xC7]) + m.tail(0) + imm_bytes(lo, n), f"mov {m.text}, {lo}")
            self.emit(p + bytes([0xB8 + r]) + imm_bytes(v, n), f"mov {regname(size, r)}, {v}")
            self.emit(m.prefix + p + b"\x62" + m.tail(r),
                      f"bound {regname(size, r)}, {m.text} ; upper bound from memory")
        elif kind == "into":
            self.emit(b"\xb0\x7f\x04\x01", "mov al, 0x7f; add al, 1", writes=ARITH)
            self.emit(b"\xce", "into ; #OF (trap: EIP after INTO)", reads=OF)
        else:
            self.emit(b"\xcc", "int3 ; #BP (trap: EIP after INT3)")


GROUPS: Dict[str, Tuple[Callable[[Gen], None], ...]] = {
    "alu": (Gen.g_alu, Gen.g_unary),
    "mov": (Gen.g_mov, Gen.g_lea, Gen.g_movx),
    "shift": (Gen.g_shift,),
    "shld": (Gen.g_shld,),
    "muldiv": (Gen.g_mul, Gen.g_div),
    "string": (Gen.g_string,),
    "cc": (Gen.g_setcc, Gen.g_jcc, Gen.g_alu),
    "bt": (Gen.g_bt, Gen.g_bsf),
    "xchg": (Gen.g_xchg,),
    "stack": (Gen.g_stack, Gen.g_alu),
    "flagops": (Gen.g_flagops, Gen.g_alu, Gen.g_shift),
    "bcd": (Gen.g_bcd, Gen.g_alu),
    "loop": (Gen.g_loop, Gen.g_alu, Gen.g_mov),
}
GROUPS["mixed"] = tuple(g for k, gs in GROUPS.items() for g in gs if k != "bcd")
BLOCK_GROUPS = (Gen.g_alu, Gen.g_unary, Gen.g_mov, Gen.g_shift, Gen.g_setcc, Gen.g_movx,
                Gen.g_bt, Gen.g_xchg, Gen.g_flagops)


def generate(seed: int, group: str, *, code32: bool = True, base: int = 0,
             length: Tuple[int, int] = (4, 12), a16_ok: bool = True,
             stack16: bool = False) -> Snippet:
    """The snippet for ``(seed, group)``: same arguments, same bytes and state.

    ``stack16``: for a 16-bit stack segment in 32-bit code: ESP starts with random upper bits
    (PUSH/POP must keep them), no ``[esp+disp8]`` operands."""
    rng = random.Random(f"{group}:{seed}:{int(code32)}:{base}:{int(stack16)}")
    esp_high = rng.randrange(1, 0x10000) if stack16 else 0
    gen = Gen(rng, code32, base, a16_ok, esp_high)
    faults = group == "faults" or group.startswith("fault-")
    fault_kind = group[6:] if group.startswith("fault-") else None
    gens = GROUPS["mixed" if faults else group]
    for _ in range(rng.randint(*length) // (3 if faults else 1)):
        rng.choice(gens)(gen)
        gen.end_unit()
    if faults:
        gen.g_fault(fault_kind)
        gen.end_unit()
    regs = [rng.choice((0, M32, rng.getrandbits(32), rng.getrandbits(8), 0x80000000))
            for _ in range(8)]
    regs[4] = ((base + layout.STACK_TOP) | (esp_high << 16)) & M32
    eflags = 0x202 | (rng.getrandbits(12) & ARITH) | (DF if rng.random() < 0.3 else 0)
    data = rng.randbytes(layout.DATA_END - layout.DATA)
    stack = rng.randbytes(layout.STACK_HI - layout.STACK_LO)
    snippet = Snippet(gen.units, regs, eflags, data, stack, code32, base,
                      f"group={group} seed={seed} {'code32' if code32 else 'code16'} base={base:#x}")
    snippet.faults = faults   # the last instruction faults: compare the state at the fault
    return snippet

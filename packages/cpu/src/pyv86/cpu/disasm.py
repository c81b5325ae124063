"""A small x86 disassembler (Intel syntax) and an instruction tracer for debugging guest boots.

    python -m pyv86.cpu.disasm [--32] [--org ADDR] HEXBYTES

    from pyv86.cpu.disasm import disassemble, Tracer
    text, length = disassemble(code_bytes, code32=True, address=0x1000)
    cpu.trace = Tracer(sys.stderr, limit=10000)   # one line per instruction

It shares the prefix and 16-bit addressing tables with the decoder in ``_ops.py``; the
opcode names live in the tables below (the executor's handlers are plain functions, so the
mnemonic table is a separate declaration).  Unknown encodings print as ``(bad)``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, List, Optional, TextIO, Tuple

from ._ops import PREFIX, SEG_PREFIX

REG32 = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")
REG16 = ("ax", "cx", "dx", "bx", "sp", "bp", "si", "di")
REG8 = ("al", "cl", "dl", "bl", "ah", "ch", "dh", "bh")
SREG = ("es", "cs", "ss", "ds", "fs", "gs", "?", "?")
EA16 = ("bx+si", "bx+di", "bp+si", "bp+di", "si", "di", "bp", "bx")
CC = ("o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g")
ALU = ("add", "or", "adc", "sbb", "and", "sub", "xor", "cmp")
SHIFT = ("rol", "ror", "rcl", "rcr", "shl", "shr", "sal", "sar")
GRP3 = ("test", "test", "not", "neg", "mul", "imul", "div", "idiv")
GRP5 = ("inc", "dec", "call", "call far", "jmp", "jmp far", "push", "(bad)")

# Operand formats: E = r/m, G = reg field, I = immediate, J = relative, b/v/w = byte/op-size/word
ONE = {
    0x06: ("push es", ""), 0x07: ("pop es", ""), 0x0E: ("push cs", ""), 0x16: ("push ss", ""),
    0x17: ("pop ss", ""), 0x1E: ("push ds", ""), 0x1F: ("pop ds", ""), 0x27: ("daa", ""),
    0x2F: ("das", ""), 0x37: ("aaa", ""), 0x3F: ("aas", ""), 0x60: ("pusha", ""),
    0x61: ("popa", ""), 0x62: ("bound", "Gv,M"), 0x63: ("arpl", "Ew,Gw"), 0x68: ("push", "Iv"),
    0x69: ("imul", "Gv,Ev,Iv"), 0x6A: ("push", "Ib"), 0x6B: ("imul", "Gv,Ev,Ib"),
    0x6C: ("insb", ""), 0x6D: ("ins", "S"), 0x6E: ("outsb", ""), 0x6F: ("outs", "S"),
    0x84: ("test", "Eb,Gb"), 0x85: ("test", "Ev,Gv"), 0x86: ("xchg", "Eb,Gb"),
    0x87: ("xchg", "Ev,Gv"), 0x88: ("mov", "Eb,Gb"), 0x89: ("mov", "Ev,Gv"),
    0x8A: ("mov", "Gb,Eb"), 0x8B: ("mov", "Gv,Ev"), 0x8C: ("mov", "Ew,Sw"), 0x8D: ("lea", "Gv,M"),
    0x8E: ("mov", "Sw,Ew"), 0x8F: ("pop", "Ev"), 0x90: ("nop", ""), 0x98: ("cbw", "W"),
    0x99: ("cwd", "W"), 0x9A: ("call far", "Ap"), 0x9B: ("wait", ""), 0x9C: ("pushf", "W"),
    0x9D: ("popf", "W"), 0x9E: ("sahf", ""), 0x9F: ("lahf", ""), 0xA0: ("mov", "AL,Ob"),
    0xA1: ("mov", "eAX,Ov"), 0xA2: ("mov", "Ob,AL"), 0xA3: ("mov", "Ov,eAX"), 0xA4: ("movsb", ""),
    0xA5: ("movs", "S"), 0xA6: ("cmpsb", ""), 0xA7: ("cmps", "S"), 0xA8: ("test", "AL,Ib"),
    0xA9: ("test", "eAX,Iv"), 0xAA: ("stosb", ""), 0xAB: ("stos", "S"), 0xAC: ("lodsb", ""),
    0xAD: ("lods", "S"), 0xAE: ("scasb", ""), 0xAF: ("scas", "S"), 0xC2: ("ret", "Iw"),
    0xC3: ("ret", ""), 0xC4: ("les", "Gv,M"), 0xC5: ("lds", "Gv,M"), 0xC6: ("mov", "Eb,Ib"),
    0xC7: ("mov", "Ev,Iv"), 0xC8: ("enter", "Iw,Ib"), 0xC9: ("leave", ""), 0xCA: ("retf", "Iw"),
    0xCB: ("retf", ""), 0xCC: ("int3", ""), 0xCD: ("int", "Ib"), 0xCE: ("into", ""),
    0xCF: ("iret", "W"), 0xD4: ("aam", "Ib"), 0xD5: ("aad", "Ib"), 0xD6: ("salc", ""),
    0xD7: ("xlat", ""), 0xE0: ("loopne", "Jb"), 0xE1: ("loope", "Jb"), 0xE2: ("loop", "Jb"),
    0xE3: ("jcxz", "Jb"), 0xE4: ("in", "AL,Ib"), 0xE5: ("in", "eAX,Ib"), 0xE6: ("out", "Ib,AL"),
    0xE7: ("out", "Ib,eAX"), 0xE8: ("call", "Jv"), 0xE9: ("jmp", "Jv"), 0xEA: ("jmp far", "Ap"),
    0xEB: ("jmp", "Jb"), 0xEC: ("in", "AL,DX"), 0xED: ("in", "eAX,DX"), 0xEE: ("out", "DX,AL"),
    0xEF: ("out", "DX,eAX"), 0xF1: ("icebp", ""), 0xF4: ("hlt", ""), 0xF5: ("cmc", ""),
    0xF8: ("clc", ""), 0xF9: ("stc", ""), 0xFA: ("cli", ""), 0xFB: ("sti", ""), 0xFC: ("cld", ""),
    0xFD: ("std", ""),
}
TWO = {
    0x02: ("lar", "Gv,Ew"), 0x03: ("lsl", "Gv,Ew"), 0x06: ("clts", ""), 0x08: ("invd", ""),
    0x09: ("wbinvd", ""), 0x0B: ("ud2", ""), 0x20: ("mov", "Rd,Cd"), 0x21: ("mov", "Rd,Dd"),
    0x22: ("mov", "Cd,Rd"), 0x23: ("mov", "Dd,Rd"), 0x30: ("wrmsr", ""), 0x31: ("rdtsc", ""),
    0x32: ("rdmsr", ""), 0xA0: ("push fs", ""), 0xA1: ("pop fs", ""), 0xA2: ("cpuid", ""),
    0xA3: ("bt", "Ev,Gv"), 0xA4: ("shld", "Ev,Gv,Ib"), 0xA5: ("shld", "Ev,Gv,CL"),
    0xA8: ("push gs", ""), 0xA9: ("pop gs", ""), 0xAB: ("bts", "Ev,Gv"),
    0xAC: ("shrd", "Ev,Gv,Ib"), 0xAD: ("shrd", "Ev,Gv,CL"), 0xAF: ("imul", "Gv,Ev"),
    0xB0: ("cmpxchg", "Eb,Gb"), 0xB1: ("cmpxchg", "Ev,Gv"), 0xB2: ("lss", "Gv,M"),
    0xB3: ("btr", "Ev,Gv"), 0xB4: ("lfs", "Gv,M"), 0xB5: ("lgs", "Gv,M"),
    0xB6: ("movzx", "Gv,Eb"), 0xB7: ("movzx", "Gv,Ew"), 0xBB: ("btc", "Ev,Gv"),
    0xBC: ("bsf", "Gv,Ev"), 0xBD: ("bsr", "Gv,Ev"), 0xBE: ("movsx", "Gv,Eb"),
    0xBF: ("movsx", "Gv,Ew"), 0xC0: ("xadd", "Eb,Gb"), 0xC1: ("xadd", "Ev,Gv"),
}
for _i in range(16):
    TWO[0x40 + _i] = ("cmov" + CC[_i], "Gv,Ev")
    TWO[0x80 + _i] = ("j" + CC[_i], "Jv")
    TWO[0x90 + _i] = ("set" + CC[_i], "Eb")
for _i in range(0x18, 0x20):
    TWO[_i] = ("nop", "Ev")


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def u8(self) -> int:
        if self.pos >= len(self.data):
            raise IndexError
        v = self.data[self.pos]
        self.pos += 1
        return v

    def imm(self, n: int) -> int:
        v = 0
        for i in range(n):
            v |= self.u8() << (8 * i)
        return v


def _hex(v: int) -> str:
    return f"{v:#x}"


def _signed(v: int, bits: int) -> int:
    return v - (1 << bits) if v >> (bits - 1) & 1 else v


def disassemble(data: bytes, code32: bool = False, address: int = 0) -> Tuple[str, int]:
    """Disassemble one instruction; return (text, length).  ``(bad)`` for unknown forms."""
    r = _Reader(bytes(data[:15]))
    try:
        return _disassemble(r, code32, address)
    except IndexError:
        return "(truncated)", max(1, len(data))


def _disassemble(r: _Reader, code32: bool, address: int) -> Tuple[str, int]:
    o32 = a32 = code32
    seg: Optional[int] = None
    prefixes: List[str] = []
    while True:
        op = r.u8()
        kind = PREFIX[op]
        if kind == 0:
            break
        if kind == 1:
            seg = SEG_PREFIX[op]
        elif kind == 2:
            o32 = not code32
        elif kind == 3:
            a32 = not code32
        elif kind == 4:
            prefixes.append("rep" if op == 0xF3 else "repne")
        else:
            prefixes.append("lock")
    osz = 4 if o32 else 2
    two = False
    if op == 0x0F:
        two = True
        op = r.u8()
    state: List[int] = []

    def modrm() -> int:
        if not state:
            state.append(r.u8())
        return state[0]

    def ea(size: int) -> str:
        m = modrm()
        if m >= 0xC0:
            return (REG8 if size == 1 else REG16 if size == 2 else REG32)[m & 7]
        mod, rm = m >> 6, m & 7
        if not a32:
            if mod == 0 and rm == 6:
                inner = _hex(r.imm(2))
            else:
                inner = EA16[rm]
                if mod == 1:
                    d = _signed(r.u8(), 8)
                    inner += f"{'+' if d >= 0 else '-'}{_hex(abs(d))}"
                elif mod == 2:
                    inner += f"+{_hex(r.imm(2))}"
        else:
            parts: List[str] = []
            if rm == 4:
                sib = r.u8()
                base, idx, sc = sib & 7, (sib >> 3) & 7, sib >> 6
                if base == 5 and mod == 0:
                    parts.append(_hex(r.imm(4)))
                else:
                    parts.append(REG32[base])
                if idx != 4:
                    parts.append(REG32[idx] + (f"*{1 << sc}" if sc else ""))
            elif rm == 5 and mod == 0:
                parts.append(_hex(r.imm(4)))
            else:
                parts.append(REG32[rm])
            if mod == 1:
                d = _signed(r.u8(), 8)
                parts.append(f"{'-' if d < 0 else ''}{_hex(abs(d))}")
            elif mod == 2:
                parts.append(_hex(r.imm(4)))
            inner = "+".join(parts).replace("+-", "-")
        width = {1: "byte", 2: "word", 4: "dword", 0: ""}[size]
        pre = f"{SREG[seg]}:" if seg is not None else ""
        return f"{width + ' ' if width else ''}[{pre}{inner}]"

    def reg(size: int) -> str:
        return (REG8 if size == 1 else REG16 if size == 2 else REG32)[(modrm() >> 3) & 7]

    def operands(fmt: str) -> str:
        out = []
        for f in fmt.split(","):
            if not f:
                continue
            if f == "Eb":
                out.append(ea(1))
            elif f == "Ev":
                out.append(ea(osz))
            elif f == "Ew":
                out.append(ea(2))
            elif f == "M":
                out.append(ea(0))
            elif f == "Gb":
                out.append(reg(1))
            elif f == "Gv":
                out.append(reg(osz))
            elif f == "Gw":
                out.append(reg(2))
            elif f == "Sw":
                out.append(SREG[(modrm() >> 3) & 7])
            elif f == "Ib":
                out.append(_hex(r.u8()))
            elif f == "Iw":
                out.append(_hex(r.imm(2)))
            elif f == "Iv":
                out.append(_hex(r.imm(osz)))
            elif f == "Jb":
                d = _signed(r.u8(), 8)
                out.append(_hex((address + r.pos + d) & (0xFFFFFFFF if o32 else 0xFFFF)))
            elif f == "Jv":
                d = _signed(r.imm(osz), osz * 8)
                out.append(_hex((address + r.pos + d) & (0xFFFFFFFF if o32 else 0xFFFF)))
            elif f == "Ap":
                off = r.imm(osz)
                out.append(f"{r.imm(2):#06x}:{off:#x}")
            elif f in ("Ob", "Ov"):
                pre = f"{SREG[seg]}:" if seg is not None else ""
                out.append(f"[{pre}{_hex(r.imm(4 if a32 else 2))}]")
            elif f == "AL":
                out.append("al")
            elif f == "eAX":
                out.append("eax" if o32 else "ax")
            elif f == "DX":
                out.append("dx")
            elif f == "CL":
                out.append("cl")
            elif f in ("Rd", "Cd", "Dd"):
                m = modrm()
                out.append(REG32[m & 7] if f == "Rd" else ("cr" if f == "Cd" else "dr") + str((m >> 3) & 7))
        return ", ".join(out)

    name, fmt = "(bad)", ""
    if not two:
        if op < 0x40 and (op & 7) < 6:
            name = ALU[op >> 3]
            fmt = ("Eb,Gb", "Ev,Gv", "Gb,Eb", "Gv,Ev", "AL,Ib", "eAX,Iv")[op & 7]
        elif 0x40 <= op < 0x60:
            name = ("inc", "dec", "push", "pop")[(op - 0x40) >> 3]
            text = f"{name} {(REG32 if o32 else REG16)[op & 7]}"
            return _finish(prefixes, text, r.pos)
        elif 0x70 <= op < 0x80:
            name, fmt = "j" + CC[op & 15], "Jb"
        elif 0x80 <= op <= 0x83:
            name = ALU[(modrm() >> 3) & 7]
            fmt = {0x80: "Eb,Ib", 0x81: "Ev,Iv", 0x82: "Eb,Ib", 0x83: "Ev,Ib"}[op]
        elif 0x91 <= op <= 0x97:
            return _finish(prefixes, f"xchg {'eax' if o32 else 'ax'}, {(REG32 if o32 else REG16)[op & 7]}", r.pos)
        elif 0xB0 <= op <= 0xB7:
            return _finish(prefixes, f"mov {REG8[op & 7]}, {_hex(r.u8())}", r.pos)
        elif 0xB8 <= op <= 0xBF:
            return _finish(prefixes, f"mov {(REG32 if o32 else REG16)[op & 7]}, {_hex(r.imm(osz))}", r.pos)
        elif op in (0xC0, 0xC1, 0xD0, 0xD1, 0xD2, 0xD3):
            name = SHIFT[(modrm() >> 3) & 7]
            dst = "Eb" if op in (0xC0, 0xD0, 0xD2) else "Ev"
            fmt = dst + (",Ib" if op < 0xD0 else (",CL" if op >= 0xD2 else ""))
            if 0xD0 <= op <= 0xD1:
                return _finish(prefixes, f"{name} {operands(dst)}, 1", r.pos)
        elif op in (0xF6, 0xF7):
            k = (modrm() >> 3) & 7
            name = GRP3[k]
            fmt = ("Eb" if op == 0xF6 else "Ev") + ((",Ib" if op == 0xF6 else ",Iv") if k < 2 else "")
        elif op == 0xFE:
            k = (modrm() >> 3) & 7
            name, fmt = (("inc", "Eb") if k == 0 else ("dec", "Eb") if k == 1 else ("(bad)", ""))
        elif op == 0xFF:
            k = (modrm() >> 3) & 7
            name = GRP5[k]
            fmt = "M" if k in (3, 5) else "Ev"
        elif 0xD8 <= op <= 0xDF:
            m = modrm()
            text = f"esc {op:#04x}, {m:#04x}" + (f" {ea(0)}" if m < 0xC0 else "")
            return _finish(prefixes, text, r.pos)
        elif op in ONE:
            name, fmt = ONE[op]
    else:
        if op == 0x00:
            k = (modrm() >> 3) & 7
            name = ("sldt", "str", "lldt", "ltr", "verr", "verw", "(bad)", "(bad)")[k]
            fmt = "Ew"
        elif op == 0x01:
            k = (modrm() >> 3) & 7
            name = ("sgdt", "sidt", "lgdt", "lidt", "smsw", "(bad)", "lmsw", "invlpg")[k]
            fmt = "Ew" if k in (4, 6) else "M"
        elif op == 0xBA:
            k = (modrm() >> 3) & 7
            names = ("(bad)",) * 4 + ("bt", "bts", "btr", "btc")
            name, fmt = names[k], "Ev,Ib"
        elif op == 0xC7:
            name, fmt = "cmpxchg8b", "M"
        elif 0xC8 <= op <= 0xCF:
            return _finish(prefixes, f"bswap {REG32[op & 7]}", r.pos)
        elif op in TWO:
            name, fmt = TWO[op]
    if fmt == "S":
        name += "d" if o32 else "w"
        fmt = ""
    elif fmt == "W":
        name = {"cbw": "cwde", "cwd": "cdq", "pushf": "pushfd", "popf": "popfd",
                "iret": "iretd"}.get(name, name) if o32 else name
        fmt = ""
    ops = operands(fmt)
    return _finish(prefixes, f"{name} {ops}" if ops else name, r.pos)


def _finish(prefixes: List[str], text: str, length: int) -> Tuple[str, int]:
    return (" ".join([*prefixes, text]), length)


class Tracer:
    """``cpu.trace = Tracer(out)``: print CS:EIP, bytes, the instruction and registers."""

    def __init__(self, out: TextIO = sys.stderr, limit: Optional[int] = None,
                 registers: bool = True, when: Optional[Callable[[Any], bool]] = None) -> None:
        self.out = out
        self.limit = limit
        self.registers = registers
        self.when = when
        self.count = 0

    def __call__(self, cpu: Any) -> None:
        if self.when is not None and not self.when(cpu):
            return
        if self.limit is not None and self.count >= self.limit:
            return
        self.count += 1
        lin = (cpu.sbase[1] + cpu.eip) & 0xFFFFFFFF
        raw = bytearray()
        for i in range(15):
            try:
                raw.append(_peek(cpu, (lin + i) & 0xFFFFFFFF))
            except Exception:  # an unmapped page after the instruction: stop reading
                break
        text, n = disassemble(bytes(raw), cpu.code32, cpu.eip)
        line = f"{cpu.sreg[1]:04x}:{cpu.eip:08x}  {raw[:n].hex():<20} {text}"
        if self.registers:
            r = cpu.reg
            line += (f"  ; eax={r[0]:08x} ebx={r[3]:08x} ecx={r[1]:08x} edx={r[2]:08x}"
                     f" esi={r[6]:08x} edi={r[7]:08x} ebp={r[5]:08x} esp={r[4]:08x}"
                     f" fl={cpu.get_eflags():08x}")
        print(line, file=self.out)


def _peek(cpu: Any, lin: int) -> int:
    """Read a code byte for display without faults, A/D updates or TLB fills."""
    if cpu.paging:
        from . import _paging
        phys = _paging.probe(cpu, lin)
        if phys < 0:
            raise ValueError("not present")
    else:
        phys = lin & cpu.a20_mask
    return int(cpu.read_phys8(phys))


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pyv86.cpu.disasm", description="disassemble hex bytes")
    ap.add_argument("hex", help="instruction bytes in hex, e.g. 66b878563412")
    ap.add_argument("--32", dest="code32", action="store_true", help="32-bit code segment")
    ap.add_argument("--org", type=lambda s: int(s, 0), default=0, help="address of the first byte")
    args = ap.parse_args(argv)
    try:
        data = bytes.fromhex(args.hex)
    except ValueError:
        print("error: not a hex string", file=sys.stderr)
        return 2
    pos = 0
    while pos < len(data):
        text, n = disassemble(data[pos:], args.code32, args.org + pos)
        print(f"{args.org + pos:08x}  {data[pos:pos + n].hex():<20} {text}")
        pos += n
    return 0


if __name__ == "__main__":
    sys.exit(main())

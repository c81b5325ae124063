"""Basic blocks compiled to Python source (``exec``), cached by physical address.

A block is a run of straight-line instructions from the common integer subset (MOV, ALU,
INC/DEC, TEST, LEA, PUSH/POP, MOVZX/MOVSX, shifts by immediate, flag bits, NOP) ending at
the first control transfer (Jcc, JMP, CALL, RET, LOOP), at an instruction outside the
subset (left to the interpreter), at a page boundary or after ``MAX_INSNS``.  The
generated function:

- keeps registers in ``cpu.reg`` and calls the interpreter's memory helpers (segment
  checks, TLB, paging), so faults behave exactly as in the interpreter;
- keeps the last flag-setting operation in locals and stores the lazy-flag record only
  before something that may fault or read flags and at the exit; a conditional jump right
  after CMP/SUB/TEST/logic tests its condition on those locals directly;
- on a fault sets EIP to the faulting instruction (``cpu._blk_done`` = instructions
  completed) and re-raises: each instruction writes registers only after its last access
  that can fault, as in the interpreter;
- after every memory write checks ``cpu.code_gen`` and leaves if the write dropped decoded
  code (self-modifying code takes effect at the next instruction).

Blocks are keyed by the physical address of their first byte and validated against EIP,
the code/stack size bits and the CS limit on entry (``Block.end`` covers the last byte and
every direct jump target, so no limit check is left inside); writes to the page drop them
(``CPU._drop_code_page``).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

from . import _ops
from ._fault import CPUFault
from ._flags import L_ADD, L_DEC, L_INC, L_LOGIC, L_NEG, L_SUB

MAX_INSNS = 48
MASKS = (0xFF, 0xFFFF, 0xFFFFFFFF)
SIGNS = (0x80, 0x8000, 0x80000000)
SIZES = (1, 2, 4)


class Block:
    __slots__ = ("eip", "end", "fn", "mode", "n", "source")

    def __init__(self, eip: int, mode: int, end: int, n: int,
                 fn: Optional[Callable[[Any], int]], source: str) -> None:
        self.eip = eip
        self.mode = mode
        self.end = end
        self.n = n
        self.fn = fn
        self.source = source


class _Unsupported(Exception):
    pass


# Instructions a block may hand to the interpreter (by opcode after prefixes): nothing here
# loads a segment, changes CPL, IF, TF or the mode, halts or arms the interrupt shadow.
_SAFE = frozenset(
    [op for op in range(0x40) if (op & 7) < 6]
    + [0x27, 0x2F, 0x37, 0x3F, 0x60, 0x61, 0x62, 0x68, 0x69, 0x6A, 0x6B, 0x6C, 0x6D, 0x6E, 0x6F]
    + list(range(0x70, 0x80)) + list(range(0x80, 0x8C)) + [0x8D, 0x8F]
    + list(range(0x90, 0x9A)) + [0x9B, 0x9C, 0x9E, 0x9F] + list(range(0xA0, 0xB0))
    + list(range(0xB0, 0xC0)) + [0xC0, 0xC1, 0xC6, 0xC7, 0xC8, 0xC9, 0xD0, 0xD1, 0xD2, 0xD3,
                                 0xD4, 0xD5, 0xD6, 0xD7] + list(range(0xD8, 0xE0))
    + [0xE4, 0xE5, 0xE6, 0xE7, 0xEC, 0xED, 0xEE, 0xEF, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0xFC,
       0xFD, 0xFE])
_CONTROL = frozenset([0xC2, 0xC3, 0xE0, 0xE1, 0xE2, 0xE3, 0xE8, 0xE9, 0xEB])
_SAFE_0F = frozenset(
    (0x1F, 0x31, 0xA2, 0xA3, 0xA4, 0xA5, 0xAB, 0xAC, 0xAD, 0xAF, 0xB0, 0xB1, 0xB3, 0xB6, 0xB7,
     0xBA, 0xBB, 0xBC, 0xBD, 0xBE, 0xBF, 0xC0, 0xC1, 0xC7,
     *range(0x40, 0x50), *range(0x90, 0xA0), *range(0xC8, 0xD0)))

_ENV: Dict[str, Any] = {
    "CPUFault": CPUFault, "MR": _ops.mem_read, "MW": _ops.mem_write, "PW": _ops.probe_write,
    "LR": _ops.lin_read, "LW": _ops.lin_write, "COND": _ops.cond, "SHIFT": _ops.shift,
    "GETCF": _ops.get_cf, "IMULF": _ops.imul_flags, "PUSH": _ops.push, "POP": _ops.pop,
    "SF": _ops.set_flags, "EX": _ops.execute_one,
}


class _Gen:
    """Source generator for one block."""

    def __init__(self, cpu: Any, phys: int, eip: int) -> None:
        self.cpu = cpu
        self.ram = cpu.ram
        self.phys = phys
        self.start_eip = eip
        self.code32 = bool(cpu.code32)
        self.stack32 = bool(cpu.stack32)
        self.lines: List[str] = []
        self.eips: List[int] = []
        self.pend: Optional[Tuple[int, str, str, str, int]] = None  # (op, a, b, res, sz)
        self.k = 0
        self.pos = phys
        self.page_end = (phys | 0xFFF) + 1
        self.done = False
        self.tmp = 0
        self.max_target = 0
        self.uses_mem = False
        self.counts = False

    # ------------------------------------------------------------------ bytes
    def b(self) -> int:
        if self.pos >= self.page_end:
            raise _Unsupported()
        if not self.code32 and self.start_eip + (self.pos - self.phys) > 0xFFFF:
            raise _Unsupported()  # 16-bit IP would wrap: leave it to the interpreter
        v = self.ram[self.pos]
        self.pos += 1
        return v

    def imm(self, n: int) -> int:
        v = 0
        for i in range(n):
            v |= self.b() << (8 * i)
        return v

    def s8(self) -> int:
        v = self.b()
        return v - 256 if v & 0x80 else v

    def var(self, prefix: str) -> str:
        self.tmp += 1
        return f"{prefix}{self.tmp}"

    def emit(self, line: str) -> None:
        self.lines.append("    " + line)

    def sync_count(self, indent: str = "") -> None:
        """Make ``cpu.instruction_count`` exact before a call that may let the guest observe
        time (I/O ports, RDTSC, MMIO): ``C`` is the count at block entry, ``k`` instructions
        of this block have completed.  The run loop sets the count after the block."""
        self.counts = True
        self.emit(f"{indent}cpu.instruction_count = C + {self.k}")

    # ------------------------------------------------------------------ flags
    def flush(self) -> None:
        p = self.pend
        if p is None:
            return
        op, a, b, r, sz = p
        self.emit(f"cpu.lz_op = {op}; cpu.lz_a = {a}; cpu.lz_b = {b}; cpu.lz_res = {r}; cpu.lz_sz = {sz}")
        self.pend = None

    def set_pend(self, op: int, a: str, b: str, r: str, sz: int) -> None:
        self.pend = (op, a, b, r, sz)

    def fault_point(self) -> None:
        """Something that may raise follows: flags must be in the CPU, k must be current."""
        self.flush()

    def cond_expr(self, cc: int) -> str:
        p = self.pend
        neg = cc & 1
        c = cc >> 1
        expr = None
        if p is not None:
            op, a, b, r, sz = p
            sign = SIGNS[sz]
            if op == L_SUB:
                expr = {1: f"{a} < {b}", 2: f"{r} == 0", 3: f"{a} <= {b}", 4: f"{r} & {sign}",
                        6: f"({a} ^ {sign}) < ({b} ^ {sign})",
                        7: f"({a} ^ {sign}) <= ({b} ^ {sign})"}.get(c)
            elif op == L_LOGIC:
                expr = {1: "False", 2: f"{r} == 0", 3: f"{r} == 0", 4: f"{r} & {sign}",
                        6: f"{r} & {sign}", 7: f"{r} == 0 or {r} & {sign}"}.get(c)
            elif op in (L_ADD, L_INC, L_DEC):
                expr = {2: f"{r} == 0", 4: f"{r} & {sign}"}.get(c)
        if expr is None:
            self.flush()
            return f"{'not ' if neg else ''}COND(cpu, {cc & ~1})"
        return f"not ({expr})" if neg else f"({expr})"

    # ------------------------------------------------------------------ registers
    @staticmethod
    def rget(sz: int, i: int) -> str:
        if sz == 2:
            return f"R[{i}]"
        if sz == 1:
            return f"(R[{i}] & 0xFFFF)"
        if i & 4:
            return f"((R[{i & 3}] >> 8) & 0xFF)"
        return f"(R[{i}] & 0xFF)"

    def rset(self, sz: int, i: int, expr: str) -> None:
        if sz == 2:
            self.emit(f"R[{i}] = {expr}")
        elif sz == 1:
            self.emit(f"R[{i}] = (R[{i}] & 0xFFFF0000) | ({expr})")
        elif i & 4:
            self.emit(f"R[{i & 3}] = (R[{i & 3}] & 0xFFFF00FF) | (({expr}) << 8)")
        else:
            self.emit(f"R[{i}] = (R[{i}] & 0xFFFFFF00) | ({expr})")

    # ------------------------------------------------------------------ ModRM
    def modrm(self, seg: int) -> Tuple[int, Optional[Tuple[int, str]]]:
        """Decode ModRM; return (byte, None) for registers or (byte, (segment, offset expr))."""
        m = self.b()
        if m >= 0xC0:
            return m, None
        mod = m >> 6
        rm = m & 7
        if not self.code32:
            if mod == 0 and rm == 6:
                return m, (3 if seg < 0 else seg, str(self.imm(2)))
            base, idx, dseg = _ops._EA16[rm]
            parts16 = [f"R[{base}]"] + ([f"R[{idx}]"] if idx >= 0 else [])
            disp = 0
            if mod == 1:
                disp = self.s8()
            elif mod == 2:
                disp = self.imm(2)
            if disp:
                parts16.append(str(disp))
            return m, (dseg if seg < 0 else seg, f"(({' + '.join(parts16)}) & 0xFFFF)")
        dseg = 3
        parts: List[str] = []
        if rm == 4:
            sib = self.b()
            base = sib & 7
            idx = (sib >> 3) & 7
            if idx != 4:
                sc = sib >> 6
                parts.append(f"(R[{idx}] << {sc})" if sc else f"R[{idx}]")
            if base == 5 and mod == 0:
                parts.append(str(self.imm(4)))
            else:
                parts.append(f"R[{base}]")
                if base in (4, 5):
                    dseg = 2
        elif rm == 5 and mod == 0:
            parts.append(str(self.imm(4)))
        else:
            parts.append(f"R[{rm}]")
            if rm == 5:
                dseg = 2
        if mod == 1:
            d = self.s8()
            if d:
                parts.append(str(d))
        elif mod == 2:
            d = self.imm(4)
            if d:
                parts.append(str(d))
        if not parts:
            parts = ["0"]
        return m, (dseg if seg < 0 else seg, f"(({' + '.join(parts)}) & 0xFFFFFFFF)")

    # Memory operands: an inline fast path (segment window, TLB hit, no page crossing) that
    # indexes RAM directly, and the interpreter's helpers for everything else (which also
    # raise the faults).  Write-TLB entries never exist for pages holding code.
    @staticmethod
    def _ram_read(a: str, n: int) -> str:
        if n == 1:
            return f"RAM[{a}]"
        if n == 2:
            return f"(RAM[{a}] | (RAM[{a} + 1] << 8))"
        return (f"(RAM[{a}] | (RAM[{a} + 1] << 8) | (RAM[{a} + 2] << 16) | "
                f"(RAM[{a} + 3] << 24))")

    def _ram_write(self, a: str, n: int, v: str, indent: str) -> None:
        if n == 1:
            self.emit(f"{indent}RAM[{a}] = {v} & 0xFF")
            return
        self.emit(f"{indent}RAM[{a}] = {v} & 0xFF; RAM[{a} + 1] = ({v} >> 8) & 0xFF")
        if n == 4:
            self.emit(f"{indent}RAM[{a} + 2] = ({v} >> 16) & 0xFF; RAM[{a} + 3] = ({v} >> 24) & 0xFF")

    def _lookup(self, s: int, off: str, n: int, write: bool) -> Tuple[str, str, str]:
        """Emit the window check and TLB probe; return (offset var, linear var, page var)."""
        self.uses_mem = True
        o = self.var("o")
        lv = self.var("l")
        t = self.var("t")
        hi = "WHI" if write else "RHI"
        tlb = "TW" if write else "TR"
        self.emit(f"{o} = {off}")
        self.emit(f"if LO[{s}] <= {o} <= {hi}[{s}] - {n - 1}:")
        self.emit(f"    {lv} = (SB[{s}] + {o}) & 0xFFFFFFFF")
        self.emit(f"    {t} = {tlb}.get(({lv} >> 12) | U) if ({lv} & 0xFFF) <= {4096 - n} else None")
        self.emit("else:")
        self.emit(f"    {t} = None")
        return o, lv, t

    def read_rm(self, m: int, ea: Optional[Tuple[int, str]], sz: int) -> str:
        if ea is None:
            return self.rget(sz, m & 7)
        self.fault_point()
        return self.mem_read(ea[0], ea[1], sz)

    def mem_read(self, s: int, off: str, sz: int) -> str:
        n = SIZES[sz]
        o, lv, t = self._lookup(s, off, n, False)
        v = self.var("v")
        self.emit(f"if {t} is not None:")
        self.emit(f"    {t} |= {lv} & 0xFFF")
        self.emit(f"    {v} = {self._ram_read(t, n)}")
        self.emit("else:")
        self.sync_count("    ")
        self.emit(f"    {v} = MR(cpu, {s}, {o}, {sz})")
        return v

    def rmw_read(self, m: int, ea: Optional[Tuple[int, str]], sz: int) -> Tuple[str, Optional[str]]:
        if ea is None:
            v = self.var("v")
            self.emit(f"{v} = {self.rget(sz, m & 7)}")
            return v, None
        self.fault_point()
        n = SIZES[sz]
        s = ea[0]
        o, lv, t = self._lookup(s, ea[1], n, True)
        v = self.var("v")
        self.emit(f"if {t} is not None:")
        self.emit(f"    {t} |= {lv} & 0xFFF")
        self.emit(f"    {v} = {self._ram_read(t, n)}")
        self.emit("else:")
        self.emit(f"    {t} = -1")
        self.sync_count("    ")
        self.emit(f"    {lv} = cpu.seg_linear({s}, {o}, {n}, True)")
        self.emit(f"    PW(cpu, {lv}, {n})")
        self.emit(f"    {v} = LR(cpu, {lv}, {sz})")
        return v, f"{lv},{t}"

    def write_back(self, m: int, handle: Optional[str], sz: int, expr: str) -> None:
        if handle is None:
            self.rset(sz, m & 7, expr)
            return
        lv, t = handle.split(",")
        w = self.var("w")
        self.emit(f"{w} = {expr}")
        self.emit(f"if {t} >= 0:")
        self._ram_write(t, SIZES[sz], w, "    ")
        self.emit("else:")
        self.emit(f"    LW(cpu, {lv}, {sz}, {w})")
        self.smc_check()

    def write_rm(self, m: int, ea: Optional[Tuple[int, str]], sz: int, expr: str) -> None:
        if ea is None:
            self.rset(sz, m & 7, expr)
            return
        self.fault_point()
        n = SIZES[sz]
        w = self.var("w")
        self.emit(f"{w} = {expr}")
        o, lv, t = self._lookup(ea[0], ea[1], n, True)
        self.emit(f"if {t} is not None:")
        self.emit(f"    {t} |= {lv} & 0xFFF")
        self._ram_write(t, n, w, "    ")
        self.emit("else:")
        self.sync_count("    ")
        self.emit(f"    MW(cpu, {ea[0]}, {o}, {sz}, {w})")
        self.smc_check()

    def push(self, value: str, sz: int) -> None:
        """PUSH with the stack size known at compile time: write first, then move ESP."""
        n = SIZES[sz]
        w = self.var("w")
        sp = self.var("s")
        self.emit(f"{w} = {value}")
        if self.stack32:
            self.emit(f"{sp} = (R[4] - {n}) & 0xFFFFFFFF")
        else:
            self.emit(f"{sp} = (R[4] - {n}) & 0xFFFF")
        o, lv, t = self._lookup(2, sp, n, True)
        self.emit(f"if {t} is not None:")
        self.emit(f"    {t} |= {lv} & 0xFFF")
        self._ram_write(t, n, w, "    ")
        self.emit("else:")
        self.sync_count("    ")
        self.emit(f"    MW(cpu, 2, {o}, {sz}, {w})")
        if self.stack32:
            self.emit(f"R[4] = {sp}")
        else:
            self.emit(f"R[4] = (R[4] & 0xFFFF0000) | {sp}")

    def pop(self, sz: int) -> str:
        """POP: read at SS:ESP, then move ESP; returns the value variable."""
        n = SIZES[sz]
        sp = self.var("s")
        self.emit(f"{sp} = R[4]" if self.stack32 else f"{sp} = R[4] & 0xFFFF")
        v = self.mem_read(2, sp, sz)
        if self.stack32:
            self.emit(f"R[4] = ({sp} + {n}) & 0xFFFFFFFF")
        else:
            self.emit(f"R[4] = (R[4] & 0xFFFF0000) | (({sp} + {n}) & 0xFFFF)")
        return v

    def smc_check(self) -> None:
        # the write may have hit this block's own page: stop after this instruction
        self.emit("if cpu.code_gen != G:")
        self.flush_into_exit()

    def flush_into_exit(self) -> None:
        p = self.pend
        if p is not None:
            op, a, b, r, sz = p
            self.emit(f"    cpu.lz_op = {op}; cpu.lz_a = {a}; cpu.lz_b = {b}; cpu.lz_res = {r}; cpu.lz_sz = {sz}")
        self.emit(f"    cpu.eip = {{NEXT{self.k}}}")
        self.emit(f"    return {self.k + 1}")

    # ------------------------------------------------------------------ ALU
    def alu(self, op: int, a: str, b: str, sz: int) -> Optional[str]:
        """Emit a group-1 operation; return the result variable (None for CMP)."""
        mask = MASKS[sz]
        r = self.var("r")
        if op in (2, 3):  # ADC / SBB need the carry-in: go through the interpreter's alu
            self.flush()
            self.emit(f"{r} = ALU(cpu, {op}, {a}, {b}, {sz})")
            return r
        av = self.var("a")
        bv = self.var("b")
        self.emit(f"{av} = {a}; {bv} = {b}")
        if op == 0:
            self.emit(f"{r} = ({av} + {bv}) & {mask}")
            self.set_pend(L_ADD, av, bv, r, sz)
        elif op == 1:
            self.emit(f"{r} = {av} | {bv}")
            self.set_pend(L_LOGIC, "0", "0", r, sz)
        elif op == 4:
            self.emit(f"{r} = {av} & {bv}")
            self.set_pend(L_LOGIC, "0", "0", r, sz)
        elif op == 6:
            self.emit(f"{r} = {av} ^ {bv}")
            self.set_pend(L_LOGIC, "0", "0", r, sz)
        else:
            self.emit(f"{r} = ({av} - {bv}) & {mask}")
            self.set_pend(L_SUB, av, bv, r, sz)
        return None if op == 7 else r

    # ------------------------------------------------------------------ one instruction
    def insn(self) -> bool:
        """Translate one instruction; False when it is not in the subset (nothing emitted)."""
        start_pos = self.pos
        saved_lines = len(self.lines)
        saved_pend = self.pend
        saved_tmp = self.tmp
        try:
            self._insn()
            if self.pos - start_pos > 15:
                raise _Unsupported()  # the interpreter raises #GP for > 15 bytes
        except _Unsupported:
            self.pos = start_pos
            del self.lines[saved_lines:]
            self.pend = saved_pend
            self.tmp = saved_tmp
            return self._interp_call()
        return True

    def _interp_call(self) -> bool:
        """Run one instruction through the interpreter from inside the block, if it is one
        that cannot change what blocks rely on (mode, CS, CPL, IF, TF, the shadow, HLT)."""
        start = self.pos
        try:
            p = self.pos
            while p < self.page_end and _ops.PREFIX[self.ram[p]]:
                p += 1
            if p + 2 >= self.page_end or p - start > 14:
                return False
            op = self.ram[p]
            control = False
            if op == 0x0F:
                op2 = self.ram[p + 1]
                if op2 not in _SAFE_0F:
                    return False
            elif op == 0xFF:
                r = (self.ram[p + 1] >> 3) & 7
                if r in (3, 5, 7):
                    return False
                control = r in (2, 4)
            elif op in _CONTROL:
                control = True
            elif op not in _SAFE:
                return False
            from .disasm import disassemble
            text, length = disassemble(bytes(self.ram[start:min(start + 15, self.page_end)]),
                                       self.code32, 0)
            if text.startswith("(") or start + length > self.page_end:
                return False
        except IndexError:  # pragma: no cover - guarded above
            return False
        self.pos = start + length
        k = self.k
        self.flush()
        nxt = self.next_eip()
        self.emit(f"k = {k}")
        self.emit("E = R[4]")
        self.emit(f"cpu.eip = {self.eips[-1]}")
        self.sync_count()
        self.emit("EX(cpu)")
        self.emit("E = -1")
        if control:
            self.emit(f"return {k + 1}")
            self.done = True
        else:
            # a REP that yields, a different length than decoded here, or a write to code
            self.emit(f"if cpu.eip != {nxt} or cpu.code_gen != G:")
            self.emit(f"    return {k + 1}")
        return True

    def _insn(self) -> None:
        o32 = self.code32
        seg = -1
        op = self.b()
        while True:
            if op == 0x66:
                o32 = not self.code32
            elif op in (0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65):
                seg = _ops.SEG_PREFIX[op]
            else:
                break
            op = self.b()
        osz = 2 if o32 else 1
        k = self.k
        self.emit(f"k = {k}")
        if op < 0x40 and (op & 7) < 6:
            kind = op >> 3
            sz = 0 if not (op & 1) else osz
            form = op & 7
            if form < 2:
                m, ea = self.modrm(seg)
                if kind == 7:
                    a = self.read_rm(m, ea, sz)
                    self.alu(7, a, self.rget(sz, (m >> 3) & 7), sz)
                else:
                    a, lin = self.rmw_read(m, ea, sz)
                    r = self.alu(kind, a, self.rget(sz, (m >> 3) & 7), sz)
                    assert r is not None
                    self.write_back(m, lin, sz, r)
            elif form < 4:
                m, ea = self.modrm(seg)
                b = self.read_rm(m, ea, sz)
                reg = (m >> 3) & 7
                r = self.alu(kind, self.rget(sz, reg), b, sz)
                if r is not None:
                    self.rset(sz, reg, r)
            else:
                imm = self.imm(SIZES[sz])
                r = self.alu(kind, self.rget(sz, 0), str(imm), sz)
                if r is not None:
                    self.rset(sz, 0, r)
        elif 0x80 <= op <= 0x83:
            sz = 0 if op in (0x80, 0x82) else osz
            m, ea = self.modrm(seg)
            if op == 0x83:
                imm = self.s8() & MASKS[sz]
            else:
                imm = self.imm(SIZES[sz])
            kind = (m >> 3) & 7
            if kind == 7:
                a = self.read_rm(m, ea, sz)
                self.alu(7, a, str(imm), sz)
            else:
                a, lin = self.rmw_read(m, ea, sz)
                r = self.alu(kind, a, str(imm), sz)
                assert r is not None
                self.write_back(m, lin, sz, r)
        elif 0x40 <= op <= 0x4F:
            self.inc_dec(op >= 0x48, osz, 0xC0 | (op & 7), None)
        elif op in (0xFE, 0xFF):
            sz = 0 if op == 0xFE else osz
            save = self.pos
            m = self.b()
            self.pos = save
            if (m >> 3) & 7 > 1:
                raise _Unsupported()
            m, ea = self.modrm(seg)
            self.inc_dec(bool((m >> 3) & 7), sz, m, ea)
        elif 0x88 <= op <= 0x8B:
            sz = 0 if not (op & 1) else osz
            m, ea = self.modrm(seg)
            reg = (m >> 3) & 7
            if op < 0x8A:
                self.write_rm(m, ea, sz, self.rget(sz, reg))
            else:
                v = self.read_rm(m, ea, sz)
                self.rset(sz, reg, v)
        elif op in (0xC6, 0xC7):
            sz = 0 if op == 0xC6 else osz
            m, ea = self.modrm(seg)
            if (m >> 3) & 7:
                raise _Unsupported()
            self.write_rm(m, ea, sz, str(self.imm(SIZES[sz])))
        elif 0xB0 <= op <= 0xBF:
            if op < 0xB8:
                self.rset(0, op & 7, str(self.b()))
            else:
                self.rset(osz, op & 7, str(self.imm(SIZES[osz])))
        elif op == 0x8D:
            m, ea = self.modrm(seg)
            if ea is None:
                raise _Unsupported()
            self.rset(osz, (m >> 3) & 7, ea[1] if osz == 2 else f"{ea[1]} & 0xFFFF")
        elif op in (0x84, 0x85):
            sz = 0 if op == 0x84 else osz
            m, ea = self.modrm(seg)
            a = self.read_rm(m, ea, sz)
            self.alu(4, a, self.rget(sz, (m >> 3) & 7), sz)
        elif op in (0xA8, 0xA9):
            sz = 0 if op == 0xA8 else osz
            self.alu(4, self.rget(sz, 0), str(self.imm(SIZES[sz])), sz)
        elif op in (0xF6, 0xF7):
            sz = 0 if op == 0xF6 else osz
            save = self.pos
            kind = (self.b() >> 3) & 7
            self.pos = save
            m, ea = self.modrm(seg)
            if kind == 0:
                a = self.read_rm(m, ea, sz)
                self.alu(4, a, str(self.imm(SIZES[sz])), sz)
            elif kind == 2:
                a, lin = self.rmw_read(m, ea, sz)
                self.write_back(m, lin, sz, f"{a} ^ {MASKS[sz]}")
            elif kind == 3:
                a, lin = self.rmw_read(m, ea, sz)
                r = self.var("r")
                self.emit(f"{r} = (-{a}) & {MASKS[sz]}")
                self.set_pend(L_NEG, a, "0", r, sz)
                self.write_back(m, lin, sz, r)
            else:
                raise _Unsupported()
        elif 0x50 <= op <= 0x57:
            self.fault_point()
            self.push(self.rget(osz, op & 7), osz)
            self.smc_check()
        elif 0x58 <= op <= 0x5F:
            self.fault_point()
            v = self.pop(osz)
            self.rset(osz, op & 7, v)
        elif op == 0x90:
            pass
        elif op in (0xF8, 0xF9, 0xF5):
            self.flush()
            if op == 0xF5:
                self.emit("SF(cpu, 1, GETCF(cpu) ^ 1)")
            else:
                self.emit(f"SF(cpu, 1, {op & 1})")
        elif op in (0xFC, 0xFD):
            self.emit("cpu.flags |= 0x400" if op == 0xFD else "cpu.flags &= ~0x400")
        elif op in (0xC1, 0xD1, 0xC0, 0xD0):
            sz = 0 if op in (0xC0, 0xD0) else osz
            save = self.pos
            kind = (self.b() >> 3) & 7
            self.pos = save
            if kind not in (4, 5, 7, 0, 1):
                raise _Unsupported()
            m, ea = self.modrm(seg)
            cnt = (self.b() if op < 0xD0 else 1) & 31
            a, lin = self.rmw_read(m, ea, sz)
            if cnt:
                self.flush()
                r = self.var("r")
                self.emit(f"{r} = SHIFT(cpu, {kind}, {a}, {cnt}, {sz})")
                self.write_back(m, lin, sz, r)
        elif op == 0x0F:
            self._two_byte(o32, osz, seg)
        elif 0x70 <= op <= 0x7F:
            d = self.s8()
            self.branch(self.cond_expr(op & 15), d, o32)
        elif op == 0xEB or op == 0xE9:
            d = self.s8() if op == 0xEB else self.signed(self.imm(SIZES[osz]), osz)
            self.branch(None, d, o32)
        elif op == 0xE8:
            d = self.signed(self.imm(SIZES[osz]), osz)
            self.fault_point()
            nxt = self.next_eip()
            target = (nxt + d) & MASKS[osz]
            self.max_target = max(self.max_target, target)
            self.push(str(nxt), osz)
            self.emit(f"cpu.eip = {target}")
            self.emit(f"return {self.k + 1}")
            self.done = True
        elif op == 0xC3:
            self.fault_point()
            t = self.var("t")
            sp = self.var("sp")
            self.emit(f"{sp} = R[4]")
            self.emit(f"{t} = {self.pop(osz)}")
            self.emit(f"if {t} > cpu.slimit[1]:")
            self.emit(f"    R[4] = {sp}")
            self.emit("    raise CPUFault(13, 0)")
            self.emit(f"cpu.eip = {t}")
            self.emit(f"return {self.k + 1}")
            self.done = True
        elif op == 0xE2:
            d = self.s8()
            if self.code32 != o32:
                raise _Unsupported()
            c = self.var("c")
            if self.code32:
                self.emit(f"{c} = (R[1] - 1) & 0xFFFFFFFF; R[1] = {c}")
            else:
                self.emit(f"{c} = (R[1] - 1) & 0xFFFF; R[1] = (R[1] & 0xFFFF0000) | {c}")
            self.branch(f"{c} != 0", d, o32)
        else:
            raise _Unsupported()

    def _two_byte(self, o32: bool, osz: int, seg: int) -> None:
        op = self.b()
        if 0x80 <= op <= 0x8F:
            d = self.signed(self.imm(SIZES[osz]), osz)
            self.branch(self.cond_expr(op & 15), d, o32)
        elif op in (0xB6, 0xB7, 0xBE, 0xBF):
            src = 0 if op in (0xB6, 0xBE) else 1
            m, ea = self.modrm(seg)
            v = self.read_rm(m, ea, src)
            if op >= 0xBE:
                s = SIGNS[src]
                expr = f"(({v}) - {s << 1} if ({v}) & {s} else ({v}))"
                self.rset(osz, (m >> 3) & 7, f"{expr} & {MASKS[osz]}")
            else:
                self.rset(osz, (m >> 3) & 7, v)
        elif 0x90 <= op <= 0x9F:
            m, ea = self.modrm(seg)
            c = self.cond_expr(op & 15)
            self.write_rm(m, ea, 0, f"(1 if {c} else 0)")
        elif 0x40 <= op <= 0x4F:
            m, ea = self.modrm(seg)
            v = self.read_rm(m, ea, osz)
            c = self.cond_expr(op & 15)
            self.emit(f"if {c}:")
            save = len(self.lines)
            self.rset(osz, (m >> 3) & 7, v)
            self.lines[save] = "    " + self.lines[save]
        elif op == 0xAF:
            m, ea = self.modrm(seg)
            v = self.read_rm(m, ea, osz)
            self.flush()
            reg = (m >> 3) & 7
            s = SIGNS[osz]
            a = self.var("a")
            b = self.var("b")
            self.emit(f"{a} = {self.rget(osz, reg)}; {a} = {a} - {s << 1} if {a} & {s} else {a}")
            self.emit(f"{b} = {v}; {b} = {b} - {s << 1} if {b} & {s} else {b}")
            self.rset(osz, reg, f"IMULF(cpu, {a} * {b}, {osz})")
        else:
            raise _Unsupported()

    @staticmethod
    def signed(v: int, sz: int) -> int:
        return v - (SIGNS[sz] << 1) if v & SIGNS[sz] else v

    def next_eip(self) -> int:
        return (self.start_eip + (self.pos - self.phys)) & (0xFFFFFFFF if self.code32 else 0xFFFF)

    def branch(self, cond: Optional[str], d: int, o32: bool) -> None:
        """End the block with a (conditional) relative jump."""
        nxt = self.next_eip()
        target = (nxt + d) & (0xFFFFFFFF if o32 else 0xFFFF)
        p = self.pend
        # the target is checked against the CS limit when the block is entered (Block.end)
        self.max_target = max(self.max_target, target)
        del p
        if cond is not None:
            self.emit(f"cpu.eip = {target} if {cond} else {nxt}")
            self.flush()
        else:
            self.flush()
            self.emit(f"cpu.eip = {target}")
        self.emit(f"return {self.k + 1}")
        self.done = True

    def inc_dec(self, dec: bool, sz: int, m: int, ea: Optional[Tuple[int, str]]) -> None:
        a, lin = self.rmw_read(m, ea, sz)
        p = self.pend
        if p is not None and p[0] in (L_INC, L_DEC):
            # the previous INC/DEC already left the right CF in cpu.flags
            self.pend = None
        elif p is not None and p[0] in (L_ADD, L_SUB, L_LOGIC, L_NEG):
            # CF of the previous in-block operation, computed here; INC/DEC keep it
            op, pa, pb, pr, _psz = p
            cf = {L_ADD: f"(1 if {pr} < {pa} else 0)", L_SUB: f"(1 if {pa} < {pb} else 0)",
                  L_LOGIC: "0", L_NEG: f"(1 if {pr} else 0)"}[op]
            self.emit(f"cpu.flags = (cpu.flags & ~1) | {cf}")
            self.pend = None
        else:
            self.flush()
            self.emit("if cpu.lz_op:")
            self.emit("    cpu._materialize_flags()")
        r = self.var("r")
        self.emit(f"{r} = ({a} {'-' if dec else '+'} 1) & {MASKS[sz]}")
        self.set_pend(L_DEC if dec else L_INC, a, "1", r, sz)
        self.write_back(m, lin, sz, r)


def compile_block(cpu: Any, phys: int, eip: int) -> Block:
    """Translate the block at physical ``phys`` (= CS:EIP now) and register it as code."""
    mode = (1 if cpu.code32 else 0) | (2 if cpu.stack32 else 0)
    g = _Gen(cpu, phys, eip)
    while g.k < MAX_INSNS and not g.done:
        g.eips.append(g.next_eip())
        if not g.insn():
            g.eips.pop()
            break
        if not g.done:
            g.k += 1
    n = g.k + (1 if g.done else 0)
    if n == 0:
        blk = Block(eip, mode, eip, 0, None, "")
        cpu._add_code(phys, blk)
        return blk
    end = g.next_eip()
    if not g.done:
        g.flush()
        g.emit(f"cpu.eip = {end}")
        g.emit(f"return {n}")
    eips = [*g.eips, end]
    body = "\n".join(g.lines)
    for i in range(n, -1, -1):
        body = body.replace(f"{{NEXT{i}}}", str(eips[i + 1] if i + 1 < len(eips) else end))
    prologue = ("    RAM = cpu.ram; TR = cpu.tlb_r; TW = cpu.tlb_w; SB = cpu.sbase; LO = cpu.seg_lo\n"
                "    RHI = cpu.seg_rhi; WHI = cpu.seg_whi; U = 0x100000 if cpu.cpl == 3 else 0\n"
                if g.uses_mem else "")
    if g.counts:
        prologue += "    C = cpu.instruction_count\n"
    src = ("def block(cpu):\n"
           "    R = cpu.reg\n" + prologue +
           "    G = cpu.code_gen\n"
           "    k = 0\n"
           "    E = -1\n"
           "    try:\n" + "\n".join("    " + ln for ln in body.split("\n")) + "\n"
           "    except CPUFault:\n"
           "        if E >= 0:\n"
           "            R[4] = E\n"
           "        cpu.eip = EIPS[k]\n"
           "        cpu._blk_done = k\n"
           "        raise\n")
    env = dict(_ENV)
    env["EIPS"] = tuple(eips)
    env["ALU"] = _ops.alu
    exec(compile(src, f"<block {phys:#x}>", "exec"), env)
    last = max(g.start_eip + (g.pos - g.phys) - 1, g.max_target)  # last byte, unwrapped
    blk = Block(eip, mode, last, n, env["block"], src)
    cpu._add_code(phys, blk)
    return blk

"""Instruction decode and execution for the i386/i486 integer set plus the P6 additions.

Every handler takes the CPU, reads its operands through the helpers below, and writes
architectural state only after the last access that can fault (read-modify-write memory
operands are probed for write access before they are read), so the run loop's rollback
only has to restore EIP and ESP.

Per-instruction decode context lives on the CPU object: ``o32``/``a32`` (operand and address
size), ``seg`` (segment override or -1), ``rep`` (0, 0xF2 or 0xF3), ``ea_seg``/``ea_off``
(the effective address of the last ModRM memory operand) and ``ea_lin`` (its linear address
once probed for a read-modify-write).
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional

from ._fault import CPUFault
from ._flags import L_ADC, L_ADD, L_DEC, L_INC, L_LOGIC, L_NEG, L_SBB, L_SUB, PARITY
from .cpu import (
    AC,
    CR0_EM,
    CR0_MP,
    CR0_NE,
    CR0_TS,
    CS,
    DF,
    DS,
    ES,
    FS,
    GS,
    IF,
    IOPL,
    RF,
    SS,
    TF,
    VM,
    system_hook,
)

MASK = (0xFF, 0xFFFF, 0xFFFFFFFF)
SIGN = (0x80, 0x8000, 0x80000000)
SIZE = (1, 2, 4)
BITS = (8, 16, 32)

Handler = Callable[[Any], None]


def ud(cpu: Any) -> None:
    raise CPUFault(6)


# ---------------------------------------------------------------------------- fetch

def fetch8(cpu: Any) -> int:
    eip = cpu.eip
    if eip > cpu.slimit[1] or (eip - cpu.insn_eip) & 0xFFFFFFFF >= 15:
        raise CPUFault(13, 0)
    cpu.eip = eip + 1
    return cpu.read8((cpu.sbase[1] + eip) & 0xFFFFFFFF)


def fetch16(cpu: Any) -> int:
    return fetch8(cpu) | (fetch8(cpu) << 8)


def fetch32(cpu: Any) -> int:
    return fetch16(cpu) | (fetch16(cpu) << 16)


def fetch_s8(cpu: Any) -> int:
    b = fetch8(cpu)
    return b - 256 if b & 0x80 else b


def fetch_imm(cpu: Any, sz: int) -> int:
    if sz == 0:
        return fetch8(cpu)
    if sz == 1:
        return fetch16(cpu)
    return fetch32(cpu)


# ---------------------------------------------------------------------------- registers

def getreg(cpu: Any, sz: int, i: int) -> int:
    if sz == 2:
        return cpu.reg[i]
    if sz == 1:
        return cpu.reg[i] & 0xFFFF
    if i & 4:
        return (cpu.reg[i & 3] >> 8) & 0xFF
    return cpu.reg[i] & 0xFF


def setreg(cpu: Any, sz: int, i: int, v: int) -> None:
    reg = cpu.reg
    if sz == 2:
        reg[i] = v & 0xFFFFFFFF
    elif sz == 1:
        reg[i] = (reg[i] & 0xFFFF0000) | (v & 0xFFFF)
    elif i & 4:
        reg[i & 3] = (reg[i & 3] & 0xFFFF00FF) | ((v & 0xFF) << 8)
    else:
        reg[i] = (reg[i] & 0xFFFFFF00) | (v & 0xFF)


# ---------------------------------------------------------------------------- ModRM / EA

_EA16 = ((3, 6, DS), (3, 7, DS), (5, 6, SS), (5, 7, SS), (6, -1, DS), (7, -1, DS), (5, -1, SS), (3, -1, DS))


def modrm(cpu: Any) -> int:
    """Fetch a ModRM byte (and SIB/displacement); set ea_seg/ea_off for memory forms."""
    m = fetch8(cpu)
    if m >= 0xC0:
        return m
    mod = m >> 6
    rm = m & 7
    reg = cpu.reg
    if not cpu.a32:
        if mod == 0 and rm == 6:
            off = fetch16(cpu)
            seg = DS
        else:
            b, i, seg = _EA16[rm]
            off = reg[b] if i < 0 else reg[b] + reg[i]
            if mod == 1:
                off += fetch_s8(cpu)
            elif mod == 2:
                off += fetch16(cpu)
        off &= 0xFFFF
    else:
        seg = DS
        if rm == 4:
            sib = fetch8(cpu)
            base = sib & 7
            idx = (sib >> 3) & 7
            off = 0 if idx == 4 else reg[idx] << (sib >> 6)
            if base == 5 and mod == 0:
                off += fetch32(cpu)
            else:
                off += reg[base]
                if base == 4 or base == 5:
                    seg = SS
        elif rm == 5 and mod == 0:
            off = fetch32(cpu)
        else:
            off = reg[rm]
            if rm == 5:
                seg = SS
        if mod == 1:
            off += fetch_s8(cpu)
        elif mod == 2:
            off += fetch32(cpu)
        off &= 0xFFFFFFFF
    s = cpu.seg
    cpu.ea_seg = seg if s < 0 else s
    cpu.ea_off = off
    return m


def mem_read(cpu: Any, s: int, off: int, sz: int) -> int:
    lin = cpu.seg_linear(s, off, SIZE[sz], False)
    if sz == 0:
        return cpu.read8(lin)
    if sz == 1:
        return cpu.read16(lin)
    return cpu.read32(lin)


def mem_write(cpu: Any, s: int, off: int, sz: int, v: int) -> None:
    lin = cpu.seg_linear(s, off, SIZE[sz], True)
    if sz == 0:
        cpu.write8(lin, v)
    elif sz == 1:
        cpu.write16(lin, v)
    else:
        cpu.write32(lin, v)


def lin_write(cpu: Any, lin: int, sz: int, v: int) -> None:
    if sz == 0:
        cpu.write8(lin, v)
    elif sz == 1:
        cpu.write16(lin, v)
    else:
        cpu.write32(lin, v)


def lin_read(cpu: Any, lin: int, sz: int) -> int:
    if sz == 0:
        return cpu.read8(lin)
    if sz == 1:
        return cpu.read16(lin)
    return cpu.read32(lin)


def rm_read(cpu: Any, m: int, sz: int) -> int:
    if m >= 0xC0:
        return getreg(cpu, sz, m & 7)
    return mem_read(cpu, cpu.ea_seg, cpu.ea_off, sz)


def rm_write(cpu: Any, m: int, sz: int, v: int) -> None:
    if m >= 0xC0:
        setreg(cpu, sz, m & 7, v)
    else:
        mem_write(cpu, cpu.ea_seg, cpu.ea_off, sz, v)


def probe_write(cpu: Any, lin: int, n: int) -> None:
    """Make sure ``n`` bytes at ``lin`` can be written (paging), so a later write cannot fault."""
    if cpu.paging:
        user = cpu.cpl == 3
        cpu.translate(lin, True, user)
        last = (lin + n - 1) & 0xFFFFFFFF
        if (last ^ lin) & 0xFFFFF000:
            cpu.translate(last, True, user)


def rm_rmw(cpu: Any, m: int, sz: int) -> int:
    """Read the r/m operand of a read-modify-write; memory is probed for write first."""
    if m >= 0xC0:
        return getreg(cpu, sz, m & 7)
    n = SIZE[sz]
    lin = cpu.seg_linear(cpu.ea_seg, cpu.ea_off, n, True)
    probe_write(cpu, lin, n)
    cpu.ea_lin = lin
    return lin_read(cpu, lin, sz)


def rm_commit(cpu: Any, m: int, sz: int, v: int) -> None:
    if m >= 0xC0:
        setreg(cpu, sz, m & 7, v)
    else:
        lin_write(cpu, cpu.ea_lin, sz, v)


# ---------------------------------------------------------------------------- flags

def get_cf(cpu: Any) -> int:
    if cpu.lz_op:
        cpu._materialize_flags()
    return cpu.flags & 1


def set_flags(cpu: Any, mask: int, bits: int) -> None:
    """Set the flags in ``mask`` to ``bits`` (materializing any lazy state first)."""
    if cpu.lz_op:
        cpu._materialize_flags()
    cpu.flags = (cpu.flags & ~mask) | bits


def szp(res: int, sz: int) -> int:
    return PARITY[res & 0xFF] | (0x40 if res == 0 else 0) | (0x80 if res & SIGN[sz] else 0)


def cond(cpu: Any, cc: int) -> bool:
    """Evaluate condition code cc (0-15: O NO B AE E NE BE A S NS P NP L GE LE G)."""
    if cpu.lz_op:
        if (cc >> 1) == 2:
            r = cpu.lz_res == 0
            return r if not (cc & 1) else not r
        cpu._materialize_flags()
    f = cpu.flags
    c = cc >> 1
    if c == 0:
        r = bool(f & 0x800)
    elif c == 1:
        r = bool(f & 1)
    elif c == 2:
        r = bool(f & 0x40)
    elif c == 3:
        r = bool(f & 0x41)
    elif c == 4:
        r = bool(f & 0x80)
    elif c == 5:
        r = bool(f & 4)
    elif c == 6:
        r = bool(f & 0x80) != bool(f & 0x800)
    else:
        r = bool(f & 0x40) or (bool(f & 0x80) != bool(f & 0x800))
    return r if not (cc & 1) else not r


def alu(cpu: Any, op: int, a: int, b: int, sz: int) -> int:
    """The eight group-1 operations; sets the (lazy) flags and returns the result."""
    mask = MASK[sz]
    if op == 0:
        r = (a + b) & mask
        cpu.lz_op = L_ADD
    elif op == 1:
        r = a | b
        cpu.lz_op = L_LOGIC
    elif op == 2:
        c = get_cf(cpu)
        r = (a + b + c) & mask
        cpu.lz_op = L_ADC
        cpu.lz_c = c
    elif op == 3:
        c = get_cf(cpu)
        r = (a - b - c) & mask
        cpu.lz_op = L_SBB
        cpu.lz_c = c
    elif op == 4:
        r = a & b
        cpu.lz_op = L_LOGIC
    elif op == 6:
        r = a ^ b
        cpu.lz_op = L_LOGIC
    else:  # SUB, CMP
        r = (a - b) & mask
        cpu.lz_op = L_SUB
    cpu.lz_a = a
    cpu.lz_b = b
    cpu.lz_res = r
    cpu.lz_sz = sz
    return r


def flags_logic(cpu: Any, r: int, sz: int) -> None:
    cpu.lz_op = L_LOGIC
    cpu.lz_a = cpu.lz_b = 0
    cpu.lz_res = r
    cpu.lz_sz = sz


def inc_dec(cpu: Any, a: int, sz: int, dec: bool) -> int:
    if cpu.lz_op:
        cpu._materialize_flags()  # keep CF
    r = ((a - 1) if dec else (a + 1)) & MASK[sz]
    cpu.lz_op = L_DEC if dec else L_INC
    cpu.lz_a = a
    cpu.lz_b = 1
    cpu.lz_res = r
    cpu.lz_sz = sz
    return r


# ---------------------------------------------------------------------------- stack

def push(cpu: Any, v: int, sz: int) -> None:
    """Push a word (sz 1) or dword (sz 2); ESP changes only after the write succeeded."""
    n = SIZE[sz]
    reg = cpu.reg
    if cpu.stack32:
        sp = (reg[4] - n) & 0xFFFFFFFF
        mem_write(cpu, SS, sp, sz, v)
        reg[4] = sp
    else:
        sp = (reg[4] - n) & 0xFFFF
        mem_write(cpu, SS, sp, sz, v)
        reg[4] = (reg[4] & 0xFFFF0000) | sp


def pop(cpu: Any, sz: int) -> int:
    reg = cpu.reg
    if cpu.stack32:
        sp = reg[4]
        v = mem_read(cpu, SS, sp, sz)
        reg[4] = (sp + SIZE[sz]) & 0xFFFFFFFF
    else:
        sp = reg[4] & 0xFFFF
        v = mem_read(cpu, SS, sp, sz)
        reg[4] = (reg[4] & 0xFFFF0000) | ((sp + SIZE[sz]) & 0xFFFF)
    return v


def stack_read(cpu: Any, depth: int, sz: int) -> int:
    """Read the stack ``depth`` bytes above ESP without popping."""
    if cpu.stack32:
        return mem_read(cpu, SS, (cpu.reg[4] + depth) & 0xFFFFFFFF, sz)
    return mem_read(cpu, SS, (cpu.reg[4] + depth) & 0xFFFF, sz)


def sp_add(cpu: Any, n: int) -> None:
    reg = cpu.reg
    if cpu.stack32:
        reg[4] = (reg[4] + n) & 0xFFFFFFFF
    else:
        reg[4] = (reg[4] & 0xFFFF0000) | ((reg[4] + n) & 0xFFFF)


# ---------------------------------------------------------------------------- control flow

def jump_near(cpu: Any, target: int) -> None:
    if not cpu.o32:
        target &= 0xFFFF
    else:
        target &= 0xFFFFFFFF
    if target > cpu.slimit[CS]:
        raise CPUFault(13, 0)
    cpu.eip = target


def real_interrupt(cpu: Any, vector: int) -> None:
    """Deliver an interrupt through the real-mode IVT (16-bit FLAGS, CS, IP frame)."""
    if vector * 4 + 3 > cpu.idtr_limit:
        raise CPUFault(13, 0)
    base = cpu.idtr_base + vector * 4
    ip = cpu.read16(base & 0xFFFFFFFF)
    cs = cpu.read16((base + 2) & 0xFFFFFFFF)
    flags = cpu.get_eflags()
    saved_sp = cpu.reg[4]
    saved_o32 = getattr(cpu, "o32", False)
    try:
        push(cpu, flags & 0xFFFF, 1)
        push(cpu, cpu.sreg[CS], 1)
        push(cpu, cpu.eip & 0xFFFF, 1)
    except CPUFault:
        cpu.reg[4] = saved_sp
        raise
    cpu.o32 = saved_o32
    cpu.flags = flags & ~(IF | TF | AC | RF)
    cpu.sreg[CS] = cs
    cpu.sbase[CS] = cs << 4
    cpu.eip = ip
    cpu.halted = False


def soft_interrupt(cpu: Any, vector: int, kind: str = "soft") -> None:
    if not cpu.protected:
        real_interrupt(cpu, vector)
        return
    if kind == "soft" and cpu.vm86 and (cpu.flags & IOPL) != IOPL:
        raise CPUFault(13, 0)
    hook = system_hook("interrupt")
    if hook is None:
        raise NotImplementedError("protected-mode INT n needs pyv86.cpu._system")
    hook(cpu, vector, kind, None)
    cpu.update_mode()


def real_far_jump(cpu: Any, sel: int, off: int) -> None:
    if off > cpu.slimit[CS]:
        raise CPUFault(13, 0)
    cpu.sreg[CS] = sel
    cpu.sbase[CS] = sel << 4
    cpu.eip = off


def far_jump(cpu: Any, sel: int, off: int) -> None:
    if cpu.protected and not cpu.vm86:
        hook = system_hook("far_jump")
        if hook is None:
            raise NotImplementedError("protected-mode far JMP needs pyv86.cpu._system")
        hook(cpu, sel, off, cpu.o32)
        cpu.update_mode()
    else:
        real_far_jump(cpu, sel, off)


def far_call(cpu: Any, sel: int, off: int) -> None:
    if cpu.protected and not cpu.vm86:
        hook = system_hook("far_call")
        if hook is None:
            raise NotImplementedError("protected-mode far CALL needs pyv86.cpu._system")
        hook(cpu, sel, off, cpu.o32)
        cpu.update_mode()
        return
    sz = 2 if cpu.o32 else 1
    if off > cpu.slimit[CS]:
        raise CPUFault(13, 0)
    sp0 = cpu.reg[4]
    push(cpu, cpu.sreg[CS], sz)
    try:
        push(cpu, cpu.eip, sz)
    except CPUFault:
        cpu.reg[4] = sp0
        raise
    real_far_jump(cpu, sel, off)


def far_return(cpu: Any, pop_bytes: int) -> None:
    if cpu.protected and not cpu.vm86:
        hook = system_hook("far_return")
        if hook is None:
            raise NotImplementedError("protected-mode RETF needs pyv86.cpu._system")
        hook(cpu, cpu.o32, pop_bytes)
        cpu.update_mode()
        return
    sz = 2 if cpu.o32 else 1
    n = SIZE[sz]
    off = stack_read(cpu, 0, sz)
    sel = stack_read(cpu, n, sz) & 0xFFFF
    if off > cpu.slimit[CS]:
        raise CPUFault(13, 0)
    sp_add(cpu, 2 * n + pop_bytes)
    real_far_jump(cpu, sel, off)


def iret(cpu: Any) -> None:
    if cpu.protected:
        hook = system_hook("iret")
        if hook is None:
            raise NotImplementedError("protected-mode IRET needs pyv86.cpu._system")
        hook(cpu, cpu.o32)
        cpu.update_mode()
        return
    sz = 2 if cpu.o32 else 1
    n = SIZE[sz]
    off = stack_read(cpu, 0, sz)
    sel = stack_read(cpu, n, sz) & 0xFFFF
    fl = stack_read(cpu, 2 * n, sz)
    if off > cpu.slimit[CS]:
        raise CPUFault(13, 0)
    sp_add(cpu, 3 * n)
    real_far_jump(cpu, sel, off)
    old = cpu.get_eflags()
    if sz == 2:
        new = (fl & ~(VM | RF | 0x180000)) | (old & (VM | 0x180000))
    else:
        new = (old & 0xFFFF0000) | (fl & 0xFFFF)
    cpu.set_eflags(new)


# ---------------------------------------------------------------------------- execute

def execute_one(cpu: Any) -> None:
    """Decode prefixes and execute one instruction at CS:EIP."""
    cpu.insn_eip = cpu.eip
    code32 = cpu.code32
    cpu.o32 = code32
    cpu.a32 = code32
    cpu.seg = -1
    cpu.rep = 0
    cpu.lock = False
    while True:
        op = fetch8(cpu)
        pf = PREFIX[op]
        if pf == 0:
            break
        if pf == 1:
            cpu.seg = SEG_PREFIX[op]
        elif pf == 2:
            cpu.o32 = not code32
        elif pf == 3:
            cpu.a32 = not code32
        elif pf == 4:
            cpu.rep = op
        else:
            cpu.lock = True
    cpu._op = op
    if cpu.lock:
        _lock_check(cpu, op)
    OPS[op](cpu)
    if not cpu.code32:
        cpu.eip &= 0xFFFF  # IP wraps after a one-byte instruction at FFFFh


def _lock_check(cpu: Any, op: int) -> None:
    """LOCK is #UD unless the instruction is a lockable read-modify-write to memory."""
    if op == 0x0F:
        save = cpu.eip
        op2 = cpu.read8((cpu.sbase[1] + save) & 0xFFFFFFFF) if save <= cpu.slimit[1] else 0
        if op2 in (0xAB, 0xB3, 0xBB, 0xB0, 0xB1, 0xC0, 0xC1, 0xC7, 0xBA):
            m = cpu.read8((cpu.sbase[1] + save + 1) & 0xFFFFFFFF)
            if m < 0xC0 and (op2 != 0xBA or (m >> 3) & 7 >= 5):
                return
        raise CPUFault(6)
    m = cpu.read8((cpu.sbase[1] + cpu.eip) & 0xFFFFFFFF)
    if m >= 0xC0:
        raise CPUFault(6)
    r = (m >> 3) & 7
    if op in (0x80, 0x81, 0x82, 0x83):
        if r == 7:
            raise CPUFault(6)
        return
    if op in (0xF6, 0xF7):
        if r in (2, 3):
            return
        raise CPUFault(6)
    if op in (0xFE, 0xFF):
        if r in (0, 1):
            return
        raise CPUFault(6)
    if op in (0x86, 0x87):
        return
    if op < 0x40 and (op & 7) < 2 and (op >> 3) != 7:
        return
    raise CPUFault(6)


PREFIX = bytearray(256)
SEG_PREFIX = [0] * 256
for _op, _s in ((0x26, ES), (0x2E, CS), (0x36, SS), (0x3E, DS), (0x64, FS), (0x65, GS)):
    PREFIX[_op] = 1
    SEG_PREFIX[_op] = _s
PREFIX[0x66] = 2
PREFIX[0x67] = 3
PREFIX[0xF2] = PREFIX[0xF3] = 4
PREFIX[0xF0] = 5

OPS: List[Handler] = [ud] * 256
OPS0F: List[Handler] = [ud] * 256


def opcode(*codes: int, table: Optional[List[Handler]] = None) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        t = OPS if table is None else table
        for c in codes:
            t[c] = fn
        return fn
    return deco


def osz(cpu: Any) -> int:
    return 2 if cpu.o32 else 1


# ---------------------------------------------------------------------------- ALU group

def _alu_rm_r(cpu: Any) -> None:  # 00/01 08/09 ...: op r/m, reg
    op = cpu._op
    kind = op >> 3
    sz = 0 if not (op & 1) else osz(cpu)
    m = modrm(cpu)
    b = getreg(cpu, sz, (m >> 3) & 7)
    if kind == 7:
        alu(cpu, 7, rm_read(cpu, m, sz), b, sz)
        return
    a = rm_rmw(cpu, m, sz)
    rm_commit(cpu, m, sz, alu(cpu, kind, a, b, sz))


def _alu_r_rm(cpu: Any) -> None:  # 02/03 ...: op reg, r/m
    op = cpu._op
    sz = 0 if not (op & 1) else osz(cpu)
    m = modrm(cpu)
    r = (m >> 3) & 7
    res = alu(cpu, op >> 3, getreg(cpu, sz, r), rm_read(cpu, m, sz), sz)
    if (op >> 3) != 7:
        setreg(cpu, sz, r, res)


def _alu_acc_imm(cpu: Any) -> None:  # 04/05 ...: op AL/eAX, imm
    op = cpu._op
    sz = 0 if not (op & 1) else osz(cpu)
    b = fetch_imm(cpu, sz)
    res = alu(cpu, op >> 3, getreg(cpu, sz, 0), b, sz)
    if (op >> 3) != 7:
        setreg(cpu, sz, 0, res)


def _with_op(fn: Handler, op: int) -> Handler:
    # the dispatcher stores the opcode in cpu._op, so one function serves the whole row
    return fn


for _k in range(8):
    OPS[_k * 8 + 0] = _with_op(_alu_rm_r, _k * 8 + 0)
    OPS[_k * 8 + 1] = _with_op(_alu_rm_r, _k * 8 + 1)
    OPS[_k * 8 + 2] = _with_op(_alu_r_rm, _k * 8 + 2)
    OPS[_k * 8 + 3] = _with_op(_alu_r_rm, _k * 8 + 3)
    OPS[_k * 8 + 4] = _with_op(_alu_acc_imm, _k * 8 + 4)
    OPS[_k * 8 + 5] = _with_op(_alu_acc_imm, _k * 8 + 5)


def _grp1(cpu: Any) -> None:  # 80 81 82 83
    op = cpu._op
    sz = 0 if op in (0x80, 0x82) else osz(cpu)
    m = modrm(cpu)
    if op == 0x83:
        b = fetch_s8(cpu) & MASK[sz]
    else:
        b = fetch_imm(cpu, sz)
    kind = (m >> 3) & 7
    if kind == 7:
        alu(cpu, 7, rm_read(cpu, m, sz), b, sz)
        return
    a = rm_rmw(cpu, m, sz)
    rm_commit(cpu, m, sz, alu(cpu, kind, a, b, sz))


for _op in (0x80, 0x81, 0x82, 0x83):
    OPS[_op] = _with_op(_grp1, _op)


# ---------------------------------------------------------------------------- segment push/pop

def _push_seg(s: int) -> Handler:
    def h(cpu: Any) -> None:
        push(cpu, cpu.sreg[s], osz(cpu))
    return h


def _pop_seg(s: int) -> Handler:
    def h(cpu: Any) -> None:
        sz = osz(cpu)
        v = stack_read(cpu, 0, sz) & 0xFFFF
        # SDM POP: ESP steps by the stack size in force before the load (POP SS may
        # change the B bit); read it before load_segment re-derives cpu.stack32.
        old_stack32 = cpu.stack32
        cpu.load_segment(s, v)
        reg = cpu.reg
        if old_stack32:
            reg[4] = (reg[4] + SIZE[sz]) & 0xFFFFFFFF
        else:
            reg[4] = (reg[4] & 0xFFFF0000) | ((reg[4] + SIZE[sz]) & 0xFFFF)
        if s == SS:
            cpu.shadow = True
    return h


OPS[0x06] = _push_seg(ES)
OPS[0x07] = _pop_seg(ES)
OPS[0x0E] = _push_seg(CS)
OPS[0x16] = _push_seg(SS)
OPS[0x17] = _pop_seg(SS)
OPS[0x1E] = _push_seg(DS)
OPS[0x1F] = _pop_seg(DS)
OPS0F[0xA0] = _push_seg(FS)
OPS0F[0xA1] = _pop_seg(FS)
OPS0F[0xA8] = _push_seg(GS)
OPS0F[0xA9] = _pop_seg(GS)


# ---------------------------------------------------------------------------- BCD

@opcode(0x27)
def daa(cpu: Any) -> None:
    f = cpu.get_eflags()
    al = cpu.reg[0] & 0xFF
    old_al = al
    cf = f & 1
    af = 0
    if (al & 0xF) > 9 or f & 0x10:
        al += 6
        af = 0x10
    if old_al > 0x99 or cf:
        al += 0x60
        cf = 1
    else:
        cf = 0
    al &= 0xFF
    setreg(cpu, 0, 0, al)
    set_flags(cpu, 0xD5, szp(al, 0) | af | cf)


@opcode(0x2F)
def das(cpu: Any) -> None:
    f = cpu.get_eflags()
    al = cpu.reg[0] & 0xFF
    old_al = al
    cf = f & 1
    af = 0
    if (al & 0xF) > 9 or f & 0x10:
        cf = cf | (1 if al < 6 else 0)
        al -= 6
        af = 0x10
    else:
        cf = 0
    if old_al > 0x99 or f & 1:
        al -= 0x60
        cf = 1
    al &= 0xFF
    setreg(cpu, 0, 0, al)
    set_flags(cpu, 0xD5, szp(al, 0) | af | cf)


@opcode(0x37, 0x3F)
def aaa_aas(cpu: Any) -> None:
    f = cpu.get_eflags()
    ax = cpu.reg[0] & 0xFFFF
    sub = cpu._op == 0x3F
    if (ax & 0xF) > 9 or f & 0x10:
        ax = (ax - 0x106) if sub else (ax + 0x106)
        ax &= 0xFFFF
        bits = 0x11
    else:
        bits = 0
    ax &= 0xFF0F
    setreg(cpu, 1, 0, ax)
    set_flags(cpu, 0xD5, bits | szp(ax & 0xFF, 0))


@opcode(0xD4)
def aam(cpu: Any) -> None:
    imm = fetch8(cpu)
    if imm == 0:
        raise CPUFault(0)
    al = cpu.reg[0] & 0xFF
    ah, al = divmod(al, imm)
    setreg(cpu, 1, 0, (ah << 8) | al)
    set_flags(cpu, 0x8D5, szp(al, 0))


@opcode(0xD5)
def aad(cpu: Any) -> None:
    imm = fetch8(cpu)
    ax = cpu.reg[0]
    al = ax & 0xFF
    ah = (ax >> 8) & 0xFF
    t = ah * imm
    res = (al + t) & 0xFF
    setreg(cpu, 1, 0, res)
    # flags as an 8-bit ADD of AL and AH*imm (what 386-class CPUs do for the undefined ones)
    a = al
    b = t & 0xFF
    cf = 1 if a + b > 0xFF else 0
    of = 0x800 if ((a ^ res) & (b ^ res)) & 0x80 else 0
    set_flags(cpu, 0x8D5, szp(res, 0) | cf | ((a ^ b ^ res) & 0x10) | of)


@opcode(0xD6)
def salc(cpu: Any) -> None:
    setreg(cpu, 0, 0, 0xFF if get_cf(cpu) else 0)


# ---------------------------------------------------------------------------- INC/DEC/PUSH/POP reg

def _inc_r(cpu: Any) -> None:
    i = cpu._op & 7
    sz = osz(cpu)
    setreg(cpu, sz, i, inc_dec(cpu, getreg(cpu, sz, i), sz, cpu._op >= 0x48))


def _push_r(cpu: Any) -> None:
    sz = osz(cpu)
    push(cpu, getreg(cpu, sz, cpu._op & 7), sz)  # PUSH SP pushes the value before the push


def _pop_r(cpu: Any) -> None:
    sz = osz(cpu)
    v = pop(cpu, sz)
    setreg(cpu, sz, cpu._op & 7, v)


for _op in range(0x40, 0x50):
    OPS[_op] = _with_op(_inc_r, _op)
for _op in range(0x50, 0x58):
    OPS[_op] = _with_op(_push_r, _op)
for _op in range(0x58, 0x60):
    OPS[_op] = _with_op(_pop_r, _op)


@opcode(0x60)
def pusha(cpu: Any) -> None:
    sz = osz(cpu)
    n = SIZE[sz]
    reg = cpu.reg
    sp = reg[4]
    for i in range(8):
        v = sp if i == 4 else reg[i]
        if cpu.stack32:
            mem_write(cpu, SS, (sp - n * (i + 1)) & 0xFFFFFFFF, sz, v)
        else:
            mem_write(cpu, SS, (sp - n * (i + 1)) & 0xFFFF, sz, v)
    sp_add(cpu, -8 * n)


@opcode(0x61)
def popa(cpu: Any) -> None:
    sz = osz(cpu)
    n = SIZE[sz]
    vals = [stack_read(cpu, n * (7 - i), sz) for i in range(8)]
    for i in range(8):
        if i != 4:
            setreg(cpu, sz, i, vals[i])
    sp_add(cpu, 8 * n)


@opcode(0x62)
def bound(cpu: Any) -> None:
    sz = osz(cpu)
    m = modrm(cpu)
    if m >= 0xC0:
        raise CPUFault(6)
    n = SIZE[sz]
    lo = mem_read(cpu, cpu.ea_seg, cpu.ea_off, sz)
    off2 = (cpu.ea_off + n) & (0xFFFFFFFF if cpu.a32 else 0xFFFF)
    hi = mem_read(cpu, cpu.ea_seg, off2, sz)
    v = getreg(cpu, sz, (m >> 3) & 7)
    sign = SIGN[sz]
    v = v - (sign << 1) if v & sign else v
    lo = lo - (sign << 1) if lo & sign else lo
    hi = hi - (sign << 1) if hi & sign else hi
    if v < lo or v > hi:
        raise CPUFault(5)


@opcode(0x63)
def arpl(cpu: Any) -> None:
    if not cpu.protected or cpu.vm86:
        raise CPUFault(6)
    _system_op(cpu, "arpl", True)


@opcode(0x68, 0x6A)
def push_imm(cpu: Any) -> None:
    sz = osz(cpu)
    v = fetch_imm(cpu, sz) if cpu._op == 0x68 else fetch_s8(cpu) & MASK[sz]
    push(cpu, v, sz)


def _signed(v: int, sz: int) -> int:
    return v - (SIGN[sz] << 1) if v & SIGN[sz] else v


def imul_flags(cpu: Any, prod: int, sz: int) -> int:
    r = prod & MASK[sz]
    over = 0x801 if _signed(r, sz) != prod else 0
    set_flags(cpu, 0x8D5, over | szp(r, sz))
    return r


@opcode(0x69, 0x6B)
def imul_imm(cpu: Any) -> None:
    sz = osz(cpu)
    m = modrm(cpu)
    a = _signed(rm_read(cpu, m, sz), sz)
    b = _signed(fetch_imm(cpu, sz), sz) if cpu._op == 0x69 else fetch_s8(cpu)
    r = imul_flags(cpu, a * b, sz)
    setreg(cpu, sz, (m >> 3) & 7, r)


def _jcc8(cpu: Any) -> None:
    d = fetch_s8(cpu)
    if cond(cpu, cpu._op & 15):
        jump_near(cpu, cpu.eip + d)


for _op in range(0x70, 0x80):
    OPS[_op] = _with_op(_jcc8, _op)


@opcode(0x84, 0x85)
def test_rm_r(cpu: Any) -> None:
    sz = 0 if cpu._op == 0x84 else osz(cpu)
    m = modrm(cpu)
    flags_logic(cpu, rm_read(cpu, m, sz) & getreg(cpu, sz, (m >> 3) & 7), sz)


@opcode(0x86, 0x87)
def xchg_rm_r(cpu: Any) -> None:
    sz = 0 if cpu._op == 0x86 else osz(cpu)
    m = modrm(cpu)
    r = (m >> 3) & 7
    a = rm_rmw(cpu, m, sz)
    b = getreg(cpu, sz, r)
    rm_commit(cpu, m, sz, b)
    setreg(cpu, sz, r, a)


@opcode(0x88, 0x89)
def mov_rm_r(cpu: Any) -> None:
    sz = 0 if cpu._op == 0x88 else osz(cpu)
    m = modrm(cpu)
    rm_write(cpu, m, sz, getreg(cpu, sz, (m >> 3) & 7))


@opcode(0x8A, 0x8B)
def mov_r_rm(cpu: Any) -> None:
    sz = 0 if cpu._op == 0x8A else osz(cpu)
    m = modrm(cpu)
    setreg(cpu, sz, (m >> 3) & 7, rm_read(cpu, m, sz))


@opcode(0x8C)
def mov_rm_sreg(cpu: Any) -> None:
    m = modrm(cpu)
    s = (m >> 3) & 7
    if s > 5:
        raise CPUFault(6)
    v = cpu.sreg[s]
    if m >= 0xC0:
        # a register destination takes the zero-extended selector with a 32-bit operand size
        setreg(cpu, osz(cpu), m & 7, v)
    else:
        mem_write(cpu, cpu.ea_seg, cpu.ea_off, 1, v)


@opcode(0x8D)
def lea(cpu: Any) -> None:
    m = modrm(cpu)
    if m >= 0xC0:
        raise CPUFault(6)
    setreg(cpu, osz(cpu), (m >> 3) & 7, cpu.ea_off)


@opcode(0x8E)
def mov_sreg_rm(cpu: Any) -> None:
    m = modrm(cpu)
    s = (m >> 3) & 7
    if s > 5 or s == CS:
        raise CPUFault(6)
    v = rm_read(cpu, m, 1)
    cpu.load_segment(s, v)
    if s == SS:
        cpu.shadow = True


@opcode(0x8F)
def pop_rm(cpu: Any) -> None:
    sz = osz(cpu)
    # the effective address is computed with ESP already incremented (386 behaviour)
    save_eip = cpu.eip
    m = fetch8(cpu)
    if (m >> 3) & 7:
        raise CPUFault(6)
    v = stack_read(cpu, 0, sz)
    sp0 = cpu.reg[4]
    sp_add(cpu, SIZE[sz])
    cpu.eip = save_eip
    try:
        m = modrm(cpu)
        rm_write(cpu, m, sz, v)
    except CPUFault:
        cpu.reg[4] = sp0
        raise


def _xchg_ax(cpu: Any) -> None:
    sz = osz(cpu)
    i = cpu._op & 7
    a = getreg(cpu, sz, 0)
    setreg(cpu, sz, 0, getreg(cpu, sz, i))
    setreg(cpu, sz, i, a)


for _op in range(0x91, 0x98):
    OPS[_op] = _with_op(_xchg_ax, _op)


@opcode(0x90)
def nop(cpu: Any) -> None:
    return None


@opcode(0x98)
def cbw(cpu: Any) -> None:
    if cpu.o32:
        v = cpu.reg[0] & 0xFFFF
        cpu.reg[0] = v | 0xFFFF0000 if v & 0x8000 else v
    else:
        v = cpu.reg[0] & 0xFF
        setreg(cpu, 1, 0, v | 0xFF00 if v & 0x80 else v)


@opcode(0x99)
def cwd(cpu: Any) -> None:
    if cpu.o32:
        cpu.reg[2] = 0xFFFFFFFF if cpu.reg[0] & 0x80000000 else 0
    else:
        setreg(cpu, 1, 2, 0xFFFF if cpu.reg[0] & 0x8000 else 0)


@opcode(0x9A)
def call_far(cpu: Any) -> None:
    off = fetch_imm(cpu, osz(cpu))
    sel = fetch16(cpu)
    far_call(cpu, sel, off)


@opcode(0x9B)
def fwait(cpu: Any) -> None:
    if (cpu.cr0 & (CR0_MP | CR0_TS)) == (CR0_MP | CR0_TS):
        raise CPUFault(7)
    fpu = cpu.fpu
    if fpu is not None and fpu.pending_unmasked():
        fpu_error(cpu)


def fpu_error(cpu: Any) -> None:
    """A pending unmasked x87 exception: #MF with CR0.NE, else the FERR# line (IRQ 13)."""
    if cpu.cr0 & CR0_NE:
        raise CPUFault(16)
    ferr = getattr(cpu, "on_ferr", None)
    if ferr is not None:
        ferr()


def _iopl_sensitive(cpu: Any) -> bool:
    """True when PUSHF/POPF/CLI/STI must go to _system (protected mode with CPL > IOPL, or v86)."""
    return cpu.protected and (cpu.vm86 or cpu.cpl > ((cpu.flags >> 12) & 3))


@opcode(0x9C)
def pushf(cpu: Any) -> None:
    if cpu.vm86 and (cpu.flags & IOPL) != IOPL:
        _system_op(cpu, "pushf", False)
        return
    f = cpu.get_eflags()
    if cpu.o32:
        push(cpu, f & 0xFCFFFF, 2)  # VM and RF read as 0
    else:
        push(cpu, f & 0xFFFF, 1)


@opcode(0x9D)
def popf(cpu: Any) -> None:
    if cpu.protected and (cpu.vm86 or cpu.cpl > 0):
        _system_op(cpu, "popf", False)
        return
    sz = osz(cpu)
    v = pop(cpu, sz)
    old = cpu.get_eflags()
    if sz == 2:
        new = (v & ~(VM | RF | 0x180000)) | (old & (VM | 0x180000))
    else:
        new = (old & 0xFFFF0000) | (v & 0xFFFF)
    cpu.set_eflags(new)


@opcode(0x9E)
def sahf(cpu: Any) -> None:
    set_flags(cpu, 0xD5, (cpu.reg[0] >> 8) & 0xD5)


@opcode(0x9F)
def lahf(cpu: Any) -> None:
    setreg(cpu, 0, 4, (cpu.get_eflags() & 0xD5) | 2)


def _moffs(cpu: Any) -> int:
    off = fetch32(cpu) if cpu.a32 else fetch16(cpu)
    return off


@opcode(0xA0, 0xA1)
def mov_acc_moffs(cpu: Any) -> None:
    sz = 0 if cpu._op == 0xA0 else osz(cpu)
    off = _moffs(cpu)
    s = DS if cpu.seg < 0 else cpu.seg
    setreg(cpu, sz, 0, mem_read(cpu, s, off, sz))


@opcode(0xA2, 0xA3)
def mov_moffs_acc(cpu: Any) -> None:
    sz = 0 if cpu._op == 0xA2 else osz(cpu)
    off = _moffs(cpu)
    s = DS if cpu.seg < 0 else cpu.seg
    mem_write(cpu, s, off, sz, getreg(cpu, sz, 0))


@opcode(0xA8, 0xA9)
def test_acc_imm(cpu: Any) -> None:
    sz = 0 if cpu._op == 0xA8 else osz(cpu)
    flags_logic(cpu, getreg(cpu, sz, 0) & fetch_imm(cpu, sz), sz)


def _mov_r_imm(cpu: Any) -> None:
    op = cpu._op
    if op < 0xB8:
        setreg(cpu, 0, op & 7, fetch8(cpu))
    else:
        sz = osz(cpu)
        setreg(cpu, sz, op & 7, fetch_imm(cpu, sz))


for _op in range(0xB0, 0xC0):
    OPS[_op] = _with_op(_mov_r_imm, _op)


@opcode(0xC2, 0xC3)
def ret_near(cpu: Any) -> None:
    n = fetch16(cpu) if cpu._op == 0xC2 else 0
    sz = osz(cpu)
    target = stack_read(cpu, 0, sz)
    jump_near(cpu, target)
    sp_add(cpu, SIZE[sz] + n)


@opcode(0xC4, 0xC5)
def les_lds(cpu: Any) -> None:
    _load_far_pointer(cpu, ES if cpu._op == 0xC4 else DS)


def _load_far_pointer(cpu: Any, s: int) -> None:
    sz = osz(cpu)
    m = modrm(cpu)
    if m >= 0xC0:
        raise CPUFault(6)
    off = mem_read(cpu, cpu.ea_seg, cpu.ea_off, sz)
    sel = mem_read(cpu, cpu.ea_seg, (cpu.ea_off + SIZE[sz]) & (0xFFFFFFFF if cpu.a32 else 0xFFFF), 1)
    cpu.load_segment(s, sel)
    setreg(cpu, sz, (m >> 3) & 7, off)


@opcode(0xC6, 0xC7)
def mov_rm_imm(cpu: Any) -> None:
    sz = 0 if cpu._op == 0xC6 else osz(cpu)
    m = modrm(cpu)
    if (m >> 3) & 7:
        raise CPUFault(6)
    rm_write(cpu, m, sz, fetch_imm(cpu, sz))


@opcode(0xC8)
def enter(cpu: Any) -> None:
    size = fetch16(cpu)
    level = fetch8(cpu) & 31
    sz = osz(cpu)
    n = SIZE[sz]
    reg = cpu.reg
    s32 = cpu.stack32
    wrap = 0xFFFFFFFF if s32 else 0xFFFF
    sp = reg[4] & wrap
    bp = reg[5] & wrap
    sp = (sp - n) & wrap
    mem_write(cpu, SS, sp, sz, reg[5])
    frame = sp
    if level > 0:
        for _ in range(1, level):
            bp = (bp - n) & wrap
            v = mem_read(cpu, SS, bp, sz)
            sp = (sp - n) & wrap
            mem_write(cpu, SS, sp, sz, v)
        sp = (sp - n) & wrap
        mem_write(cpu, SS, sp, sz, frame)
    sp = (sp - size) & wrap
    # the frame pointer's width follows the stack size, not the operand size (SDM ENTER)
    if s32:
        reg[4] = sp
        reg[5] = frame
    else:
        reg[4] = (reg[4] & 0xFFFF0000) | sp
        reg[5] = (reg[5] & 0xFFFF0000) | frame


@opcode(0xC9)
def leave(cpu: Any) -> None:
    sz = osz(cpu)
    reg = cpu.reg
    if cpu.stack32:
        bp = reg[5]
        v = mem_read(cpu, SS, bp, sz)
        reg[4] = (bp + SIZE[sz]) & 0xFFFFFFFF
    else:
        bp = reg[5] & 0xFFFF
        v = mem_read(cpu, SS, bp, sz)
        reg[4] = (reg[4] & 0xFFFF0000) | ((bp + SIZE[sz]) & 0xFFFF)
    setreg(cpu, sz, 5, v)


@opcode(0xCA, 0xCB)
def retf(cpu: Any) -> None:
    n = fetch16(cpu) if cpu._op == 0xCA else 0
    far_return(cpu, n)


@opcode(0xCC)
def int3(cpu: Any) -> None:
    soft_interrupt(cpu, 3, "soft-exception")


@opcode(0xCD)
def int_n(cpu: Any) -> None:
    soft_interrupt(cpu, fetch8(cpu))


@opcode(0xCE)
def into(cpu: Any) -> None:
    if cpu.get_eflags() & 0x800:
        soft_interrupt(cpu, 4, "soft-exception")


@opcode(0xCF)
def iret_op(cpu: Any) -> None:
    iret(cpu)


@opcode(0xF1)
def icebp(cpu: Any) -> None:
    soft_interrupt(cpu, 1, "exception")  # ICEBP: no gate DPL check


@opcode(0xD7)
def xlat(cpu: Any) -> None:
    s = DS if cpu.seg < 0 else cpu.seg
    reg = cpu.reg
    if cpu.a32:
        off = (reg[3] + (reg[0] & 0xFF)) & 0xFFFFFFFF
    else:
        off = (reg[3] + (reg[0] & 0xFF)) & 0xFFFF
    setreg(cpu, 0, 0, mem_read(cpu, s, off, 0))


# ---------------------------------------------------------------------------- loops and jumps

def _count_reg(cpu: Any) -> int:
    return cpu.reg[1] if cpu.a32 else cpu.reg[1] & 0xFFFF


@opcode(0xE0, 0xE1, 0xE2)
def loop(cpu: Any) -> None:
    d = fetch_s8(cpu)
    reg = cpu.reg
    if cpu.a32:
        c = (reg[1] - 1) & 0xFFFFFFFF
        new_ecx = c
    else:
        c = (reg[1] - 1) & 0xFFFF
        new_ecx = (reg[1] & 0xFFFF0000) | c
    op = cpu._op
    take = c != 0
    if take and op != 0xE2:
        z = cond(cpu, 4)
        take = z if op == 0xE1 else not z
    if take:
        jump_near(cpu, cpu.eip + d)
    reg[1] = new_ecx


@opcode(0xE3)
def jcxz(cpu: Any) -> None:
    d = fetch_s8(cpu)
    if _count_reg(cpu) == 0:
        jump_near(cpu, cpu.eip + d)


@opcode(0xE8)
def call_near(cpu: Any) -> None:
    sz = osz(cpu)
    d = fetch_imm(cpu, sz)
    ret = cpu.eip
    target = (ret + d) & MASK[sz]
    if target > cpu.slimit[CS]:
        raise CPUFault(13, 0)
    push(cpu, ret, sz)
    cpu.eip = target


@opcode(0xE9)
def jmp_near(cpu: Any) -> None:
    d = fetch_imm(cpu, osz(cpu))
    jump_near(cpu, cpu.eip + d)


@opcode(0xEA)
def jmp_far(cpu: Any) -> None:
    off = fetch_imm(cpu, osz(cpu))
    sel = fetch16(cpu)
    far_jump(cpu, sel, off)


@opcode(0xEB)
def jmp_short(cpu: Any) -> None:
    d = fetch_s8(cpu)
    jump_near(cpu, cpu.eip + d)


# ---------------------------------------------------------------------------- I/O

def io_check(cpu: Any, port: int, n: int) -> None:
    if cpu.protected and (cpu.vm86 or cpu.cpl > ((cpu.flags >> 12) & 3)):
        hook = system_hook("io_permission")
        if hook is None:
            raise CPUFault(13, 0)
        hook(cpu, port, n)


def io_in(cpu: Any, port: int, sz: int) -> int:
    io_check(cpu, port, SIZE[sz])
    return cpu.io.read(port, SIZE[sz]) & MASK[sz]


def io_out(cpu: Any, port: int, sz: int, v: int) -> None:
    io_check(cpu, port, SIZE[sz])
    cpu.io.write(port, v & MASK[sz], SIZE[sz])


@opcode(0xE4, 0xE5, 0xEC, 0xED)
def in_op(cpu: Any) -> None:
    op = cpu._op
    sz = 0 if not (op & 1) else osz(cpu)
    port = fetch8(cpu) if op < 0xE8 else cpu.reg[2] & 0xFFFF
    setreg(cpu, sz, 0, io_in(cpu, port, sz))


@opcode(0xE6, 0xE7, 0xEE, 0xEF)
def out_op(cpu: Any) -> None:
    op = cpu._op
    sz = 0 if not (op & 1) else osz(cpu)
    port = fetch8(cpu) if op < 0xE8 else cpu.reg[2] & 0xFFFF
    io_out(cpu, port, sz, getreg(cpu, sz, 0))


# ---------------------------------------------------------------------------- flag ops, HLT

@opcode(0xF4)
def hlt(cpu: Any) -> None:
    if cpu.protected and cpu.cpl != 0:
        raise CPUFault(13, 0)
    cpu.halted = True


@opcode(0xF5)
def cmc(cpu: Any) -> None:
    set_flags(cpu, 1, get_cf(cpu) ^ 1)


@opcode(0xF8)
def clc(cpu: Any) -> None:
    set_flags(cpu, 1, 0)


@opcode(0xF9)
def stc(cpu: Any) -> None:
    set_flags(cpu, 1, 1)


@opcode(0xFA)
def cli(cpu: Any) -> None:
    if _iopl_sensitive(cpu):
        _system_op(cpu, "cli", False)
        return
    cpu.flags &= ~IF


@opcode(0xFB)
def sti(cpu: Any) -> None:
    if _iopl_sensitive(cpu):
        _system_op(cpu, "sti", False)
        return
    if not cpu.flags & IF:
        cpu.shadow = True
    cpu.flags |= IF


@opcode(0xFC)
def cld(cpu: Any) -> None:
    cpu.flags &= ~DF


@opcode(0xFD)
def std(cpu: Any) -> None:
    cpu.flags |= DF


def _system_op(cpu: Any, name: str, has_modrm: bool) -> None:
    hook = system_hook("system_instruction")
    if hook is None:
        raise NotImplementedError(f"{name} in this mode needs pyv86.cpu._system")
    op = ModRM(cpu) if has_modrm else None
    cpu.pending_opsize32 = cpu.o32
    hook(cpu, name, op)
    cpu.update_mode()


class ModRM:
    """A decoded ModRM operand handed to _system (``reg`` field, r/m as register or memory)."""

    def __init__(self, cpu: Any, register: Optional[int] = None) -> None:
        self.cpu = cpu
        m = modrm(cpu) if register is None else (register | 0xC0)
        self.modrm = m
        self.reg = (m >> 3) & 7
        self.rm = m & 7
        self.is_mem = m < 0xC0
        self.opsize32 = bool(cpu.o32) if register is None else True
        self.seg = cpu.ea_seg if self.is_mem else -1
        self.offset = cpu.ea_off if self.is_mem else 0
        self.linear: Optional[int] = ((cpu.sbase[self.seg] + self.offset) & 0xFFFFFFFF
                                      if self.is_mem else None)

    def read(self, size: int) -> int:
        sz = SIZE.index(size) if size in SIZE else -1
        if self.is_mem:
            if size == 6 or size == 8:
                lo = mem_read(self.cpu, self.seg, self.offset, 1 if size == 6 else 2)
                return lo | (mem_read(self.cpu, self.seg, (self.offset + (2 if size == 6 else 4)) & 0xFFFFFFFF, 2) << (16 if size == 6 else 32))
            return mem_read(self.cpu, self.seg, self.offset, sz)
        return getreg(self.cpu, sz, self.rm)

    def write(self, value: int, size: int) -> None:
        if self.is_mem:
            if size == 6:
                mem_write(self.cpu, self.seg, self.offset, 1, value)
                mem_write(self.cpu, self.seg, (self.offset + 2) & 0xFFFFFFFF, 2, value >> 16)
                return
            mem_write(self.cpu, self.seg, self.offset, SIZE.index(size), value)
        else:
            setreg(self.cpu, SIZE.index(size), self.rm, value)

    def read_reg(self, size: int) -> int:
        """The general register named by the reg field."""
        return getreg(self.cpu, SIZE.index(size), self.reg)

    def write_reg(self, value: int, size: int) -> None:
        setreg(self.cpu, SIZE.index(size), self.reg, value)


# ---------------------------------------------------------------------------- shifts / rotates

def shift(cpu: Any, kind: int, a: int, cnt: int, sz: int) -> int:
    """ROL ROR RCL RCR SHL SHR SAL SAR with a count already masked to 5 bits (and != 0)."""
    bits = BITS[sz]
    mask = MASK[sz]
    sign = SIGN[sz]
    if kind == 0 or kind == 1:  # ROL / ROR: only CF and OF
        c = cnt % bits
        if kind == 0:
            r = ((a << c) | (a >> (bits - c))) & mask if c else a
            cf = r & 1
            of = 0x800 if (bool(r & sign) != bool(cf)) else 0
        else:
            r = ((a >> c) | (a << (bits - c))) & mask if c else a
            cf = 1 if r & sign else 0
            of = 0x800 if bool(r & sign) != bool(r & (sign >> 1)) else 0
        set_flags(cpu, 0x801, cf | of)
        return r
    if kind == 2 or kind == 3:  # RCL / RCR through CF (size + 1 bits)
        c = cnt % (bits + 1)
        cf = get_cf(cpu)
        if c == 0:
            r = a
            newcf = cf
        elif kind == 2:
            t = (cf << bits) | a
            t = ((t << c) | (t >> (bits + 1 - c))) & ((mask << 1) | 1)
            r = t & mask
            newcf = t >> bits
        else:
            t = (cf << bits) | a
            t = ((t >> c) | (t << (bits + 1 - c))) & ((mask << 1) | 1)
            r = t & mask
            newcf = t >> bits
        if kind == 2:
            of = 0x800 if bool(r & sign) != bool(newcf) else 0
        else:
            of = 0x800 if bool(r & sign) != bool(r & (sign >> 1)) else 0
        set_flags(cpu, 0x801, newcf | of)
        return r
    if kind == 4 or kind == 6:  # SHL / SAL
        t = a << cnt
        r = t & mask
        cf = (t >> bits) & 1
        of = 0x800 if bool(r & sign) != bool(cf) else 0
    elif kind == 5:  # SHR
        r = a >> cnt
        cf = (a >> (cnt - 1)) & 1
        of = 0x800 if a & sign else 0
    else:  # SAR
        sa = a - (sign << 1) if a & sign else a
        r = (sa >> cnt) & mask
        cf = (sa >> (cnt - 1)) & 1
        of = 0
    set_flags(cpu, 0x8D5, szp(r, sz) | cf | of)
    return r


def _grp2(cpu: Any) -> None:
    op = cpu._op
    sz = 0 if op in (0xC0, 0xD0, 0xD2) else osz(cpu)
    m = modrm(cpu)
    if op < 0xD0:
        cnt = fetch8(cpu)
    elif op < 0xD2:
        cnt = 1
    else:
        cnt = cpu.reg[1] & 0xFF
    cnt &= 31
    a = rm_rmw(cpu, m, sz)
    if cnt == 0:
        return
    r = shift(cpu, (m >> 3) & 7, a, cnt, sz)
    rm_commit(cpu, m, sz, r)


for _op in (0xC0, 0xC1, 0xD0, 0xD1, 0xD2, 0xD3):
    OPS[_op] = _with_op(_grp2, _op)


def _shld_shrd(cpu: Any) -> None:
    op = cpu._op2
    sz = osz(cpu)
    m = modrm(cpu)
    cnt = fetch8(cpu) if op in (0xA4, 0xAC) else cpu.reg[1] & 0xFF
    cnt &= 31
    a = rm_rmw(cpu, m, sz)
    b = getreg(cpu, sz, (m >> 3) & 7)
    if cnt == 0:
        return
    bits = BITS[sz]
    mask = MASK[sz]
    if op in (0xA4, 0xA5):  # SHLD
        t = (a << bits) | b
        if cnt > bits:  # 16-bit with count > 16: undefined; rotate through the 32-bit pair
            t = (t << bits) | a
            r = ((t << cnt) >> (2 * bits)) & mask
            cf = ((t << cnt) >> (3 * bits)) & 1
        else:
            r = ((t << cnt) >> bits) & mask
            cf = (a >> (bits - cnt)) & 1
    else:  # SHRD
        t = (b << bits) | a
        if cnt > bits:
            t = (a << (2 * bits)) | t
            r = (t >> cnt) & mask
            cf = (t >> (cnt - 1)) & 1
        else:
            r = (t >> cnt) & mask
            cf = (a >> (cnt - 1)) & 1
    of = 0x800 if (r ^ a) & SIGN[sz] else 0
    set_flags(cpu, 0x8D5, szp(r, sz) | cf | of)
    rm_commit(cpu, m, sz, r)


# ---------------------------------------------------------------------------- group 3: F6/F7

def _grp3(cpu: Any) -> None:
    sz = 0 if cpu._op == 0xF6 else osz(cpu)
    m = modrm(cpu)
    kind = (m >> 3) & 7
    mask = MASK[sz]
    if kind < 2:  # TEST (and its /1 alias)
        a = rm_read(cpu, m, sz)
        flags_logic(cpu, a & fetch_imm(cpu, sz), sz)
        return
    if kind == 2:  # NOT
        a = rm_rmw(cpu, m, sz)
        rm_commit(cpu, m, sz, a ^ mask)
        return
    if kind == 3:  # NEG
        a = rm_rmw(cpu, m, sz)
        r = (-a) & mask
        rm_commit(cpu, m, sz, r)
        cpu.lz_op = L_NEG
        cpu.lz_a = a
        cpu.lz_b = 0
        cpu.lz_res = r
        cpu.lz_sz = sz
        return
    a = rm_read(cpu, m, sz)
    reg = cpu.reg
    bits = BITS[sz]
    if kind == 4 or kind == 5:  # MUL / IMUL
        acc = getreg(cpu, sz, 0)
        if kind == 4:
            p = acc * a
            hi = p >> bits
            over = 0x801 if hi else 0
        else:
            p = _signed(acc, sz) * _signed(a, sz)
            over = 0x801 if _signed(p & mask, sz) != p else 0
            p &= (mask << bits) | mask
        lo = p & mask
        if sz == 0:
            setreg(cpu, 1, 0, p)
        else:
            setreg(cpu, sz, 0, lo)
            setreg(cpu, sz, 2, p >> bits)
        set_flags(cpu, 0x8D5, over | szp(lo, sz))
        return
    # DIV / IDIV
    if a == 0:
        raise CPUFault(0)
    if sz == 0:
        num = reg[0] & 0xFFFF
    else:
        num = (getreg(cpu, sz, 2) << bits) | getreg(cpu, sz, 0)
    if kind == 6:
        q, r = divmod(num, a)
        if q > mask:
            raise CPUFault(0)
    else:
        wide = 2 * bits
        sn = num - (1 << wide) if num >> (wide - 1) else num
        sd = _signed(a, sz)
        q = abs(sn) // abs(sd)
        if (sn < 0) != (sd < 0):
            q = -q
        r = sn - q * sd
        if q > (SIGN[sz] - 1) or q < -SIGN[sz]:
            raise CPUFault(0)
        q &= mask
        r &= mask
    if sz == 0:
        setreg(cpu, 1, 0, (r << 8) | q)
    else:
        setreg(cpu, sz, 0, q)
        setreg(cpu, sz, 2, r)


OPS[0xF6] = _with_op(_grp3, 0xF6)
OPS[0xF7] = _with_op(_grp3, 0xF7)


@opcode(0xFE)
def grp4(cpu: Any) -> None:
    m = modrm(cpu)
    kind = (m >> 3) & 7
    if kind > 1:
        raise CPUFault(6)
    a = rm_rmw(cpu, m, 0)
    rm_commit(cpu, m, 0, inc_dec(cpu, a, 0, kind == 1))


@opcode(0xFF)
def grp5(cpu: Any) -> None:
    sz = osz(cpu)
    m = modrm(cpu)
    kind = (m >> 3) & 7
    if kind < 2:
        a = rm_rmw(cpu, m, sz)
        rm_commit(cpu, m, sz, inc_dec(cpu, a, sz, kind == 1))
    elif kind == 2:  # CALL near r/m
        target = rm_read(cpu, m, sz)
        if target > cpu.slimit[CS]:
            raise CPUFault(13, 0)
        push(cpu, cpu.eip, sz)
        cpu.eip = target
    elif kind == 4:  # JMP near r/m
        jump_near(cpu, rm_read(cpu, m, sz))
    elif kind == 3 or kind == 5:  # CALL / JMP far m16:16/32
        if m >= 0xC0:
            raise CPUFault(6)
        off = mem_read(cpu, cpu.ea_seg, cpu.ea_off, sz)
        sel = mem_read(cpu, cpu.ea_seg, (cpu.ea_off + SIZE[sz]) & (0xFFFFFFFF if cpu.a32 else 0xFFFF), 1)
        if kind == 3:
            far_call(cpu, sel, off)
        else:
            far_jump(cpu, sel, off)
    elif kind == 6:  # PUSH r/m
        push(cpu, rm_read(cpu, m, sz), sz)
    else:
        raise CPUFault(6)


# ---------------------------------------------------------------------------- string operations

REP_CHUNK = 4096  # iterations per execution step; the instruction restarts for the rest


def _str_setup(cpu: Any) -> Any:
    if cpu.a32:
        return 0xFFFFFFFF
    return 0xFFFF


def _adv(cpu: Any, i: int, delta: int, amask: int) -> None:
    reg = cpu.reg
    if amask == 0xFFFF:
        reg[i] = (reg[i] & 0xFFFF0000) | ((reg[i] + delta) & 0xFFFF)
    else:
        reg[i] = (reg[i] + delta) & 0xFFFFFFFF


def _string(cpu: Any) -> None:
    op = cpu._op
    sz = 0 if not (op & 1) else osz(cpu)
    n = SIZE[sz]
    amask = _str_setup(cpu)
    delta = -n if cpu.flags & DF else n
    src = DS if cpu.seg < 0 else cpu.seg
    reg = cpu.reg
    rep = cpu.rep
    kind = op & 0xFE
    if not rep:
        _string_once(cpu, kind, sz, src, amask, delta)
        return
    count = reg[1] & amask
    if (kind == 0xA4 or kind == 0xAA) and count and delta > 0:
        count = _rep_bulk(cpu, kind, sz, src, amask, count)
    left = REP_CHUNK
    while count:
        _string_once(cpu, kind, sz, src, amask, delta)
        count = (count - 1) & amask
        if amask == 0xFFFF:
            reg[1] = (reg[1] & 0xFFFF0000) | count
        else:
            reg[1] = count
        if kind in (0xA6, 0xAE):  # CMPS/SCAS: REPE stops on ZF=0, REPNE on ZF=1
            z = cpu.lz_res == 0
            if (rep == 0xF3) != z:
                return
        left -= 1
        if left == 0 and count:
            cpu.eip = cpu.insn_eip  # resume later (lets interrupts in, like hardware)
            return


def _ram_page(cpu: Any, lin: int, write: bool) -> int:
    """Physical base of the RAM page holding ``lin`` if the TLB has it (or can get it), else -1."""
    user = cpu.cpl == 3
    key = (lin >> 12) | (1 << 20 if user else 0)
    tlb = cpu.tlb_w if write else cpu.tlb_r
    t = tlb.get(key)
    if t is None:
        cpu.translate(lin, write, user)  # may fault: nothing has been changed yet
        t = tlb.get(key)
    return -1 if t is None else t


def _rep_bulk(cpu: Any, kind: int, sz: int, src: int, amask: int, count: int) -> int:
    """REP MOVS/STOS (DF=0) a page at a time through the TLB; returns the elements left.

    Each chunk stays inside one source and one destination page and inside the segment
    limits, and is copied only when the regions do not overlap (otherwise the element loop
    keeps the byte-by-byte semantics).  Registers are updated after every chunk, so a fault
    in a later chunk leaves them pointing at the faulting element.
    """
    n = SIZE[sz]
    reg = cpu.reg
    ram = cpu.ram
    while count:
        di = reg[7] & amask
        lin_d = cpu.seg_linear(ES, di, n, True)
        room = min(count, (0x1000 - (lin_d & 0xFFF)) // n, (amask - di) // n + 1,
                   (cpu.seg_whi[ES] - di + 1) // n)
        if kind == 0xA4:
            si = reg[6] & amask
            lin_s = cpu.seg_linear(src, si, n, False)
            room = min(room, (0x1000 - (lin_s & 0xFFF)) // n, (amask - si) // n + 1,
                       (cpu.seg_rhi[src] - si + 1) // n)
        if room <= 1:
            return count
        pd = _ram_page(cpu, lin_d, True)
        if pd < 0:
            return count
        d = pd | (lin_d & 0xFFF)
        nbytes = room * n
        if kind == 0xA4:
            ps = _ram_page(cpu, lin_s, False)
            if ps < 0:
                return count
            s_ = ps | (lin_s & 0xFFF)
            if d < s_ + nbytes and s_ < d + nbytes:
                return count  # overlapping: element by element
            ram[d:d + nbytes] = ram[s_:s_ + nbytes]
            _adv(cpu, 6, nbytes, amask)
        else:
            ram[d:d + nbytes] = (reg[0] & MASK[sz]).to_bytes(n, "little") * room
        _adv(cpu, 7, nbytes, amask)
        count -= room
        if amask == 0xFFFF:
            reg[1] = (reg[1] & 0xFFFF0000) | count
        else:
            reg[1] = count
    return 0


def _string_once(cpu: Any, kind: int, sz: int, src: int, amask: int, delta: int) -> None:
    reg = cpu.reg
    if kind == 0xA4:  # MOVS
        v = mem_read(cpu, src, reg[6] & amask, sz)
        mem_write(cpu, ES, reg[7] & amask, sz, v)
        _adv(cpu, 6, delta, amask)
        _adv(cpu, 7, delta, amask)
    elif kind == 0xA6:  # CMPS
        a = mem_read(cpu, src, reg[6] & amask, sz)
        b = mem_read(cpu, ES, reg[7] & amask, sz)
        alu(cpu, 7, a, b, sz)
        _adv(cpu, 6, delta, amask)
        _adv(cpu, 7, delta, amask)
    elif kind == 0xAA:  # STOS
        mem_write(cpu, ES, reg[7] & amask, sz, getreg(cpu, sz, 0))
        _adv(cpu, 7, delta, amask)
    elif kind == 0xAC:  # LODS
        v = mem_read(cpu, src, reg[6] & amask, sz)
        setreg(cpu, sz, 0, v)
        _adv(cpu, 6, delta, amask)
    elif kind == 0xAE:  # SCAS
        b = mem_read(cpu, ES, reg[7] & amask, sz)
        alu(cpu, 7, getreg(cpu, sz, 0), b, sz)
        _adv(cpu, 7, delta, amask)
    elif kind == 0x6C:  # INS
        port = reg[2] & 0xFFFF
        io_check(cpu, port, SIZE[sz])
        # check the destination before the port read has side effects
        lin = cpu.seg_linear(ES, reg[7] & amask, SIZE[sz], True)
        probe_write(cpu, lin, SIZE[sz])
        v = cpu.io.read(port, SIZE[sz]) & MASK[sz]
        lin_write(cpu, lin, sz, v)
        _adv(cpu, 7, delta, amask)
    else:  # OUTS
        port = reg[2] & 0xFFFF
        v = mem_read(cpu, src, reg[6] & amask, sz)
        io_out(cpu, port, sz, v)
        _adv(cpu, 6, delta, amask)


for _op in (0xA4, 0xA5, 0xA6, 0xA7, 0xAA, 0xAB, 0xAC, 0xAD, 0xAE, 0xAF, 0x6C, 0x6D, 0x6E, 0x6F):
    OPS[_op] = _with_op(_string, _op)


# ---------------------------------------------------------------------------- x87 escape

_NO_WAIT = {(0xDB, 0xE2), (0xDB, 0xE3), (0xDB, 0xE0), (0xDB, 0xE1), (0xDB, 0xE4), (0xDF, 0xE0)}


def _esc(cpu: Any) -> None:
    op = cpu._op
    m = modrm(cpu)
    cr0 = cpu.cr0
    if cr0 & (CR0_EM | CR0_TS):
        raise CPUFault(7)
    fpu = cpu.fpu
    if fpu is None:
        raise CPUFault(7)
    reg = (m >> 3) & 7
    control = (m >= 0xC0 and (op, m) in _NO_WAIT) or (
        m < 0xC0 and ((op == 0xD9 and reg in (6, 7)) or (op == 0xDD and reg in (6, 7))))
    if not control and fpu.pending_unmasked():
        fpu_error(cpu)
        if cr0 & CR0_NE:
            return
    if op == 0xDF and m == 0xE0:  # FNSTSW AX: the core reads the status word itself
        setreg(cpu, 1, 0, fpu.status_word())
        return
    addr = None
    fds = 0
    if m < 0xC0:
        addr = cpu.seg_linear(cpu.ea_seg, cpu.ea_off, 1, False)
        fds = cpu.sreg[cpu.ea_seg]
    f = cpu.get_eflags()
    # FIP/FCS: the instruction's first byte (prefixes included) and CS; FDS: the operand's
    # segment (DS or the override).  Virtual-8086 mode uses the real-mode environment
    # layout (20-bit linear pointers), SDM vol. 1, 8.1.10.
    nf = fpu.execute(op, m, addr, cpu, f, bool(cpu.o32), bool(cpu.protected and not cpu.vm86),
                     fip=cpu.insn_eip, fcs=cpu.sreg[1], fds=fds)
    if nf is not None and nf != f:
        set_flags(cpu, 0x8D5, nf & 0x8D5)


for _op in range(0xD8, 0xE0):
    OPS[_op] = _with_op(_esc, _op)


# ---------------------------------------------------------------------------- 0F map

@opcode(0x0F)
def two_byte(cpu: Any) -> None:
    op = fetch8(cpu)
    cpu._op2 = op
    OPS0F[op](cpu)


def _system_modrm(name: str, real_ok: bool = True) -> Handler:
    def h(cpu: Any) -> None:
        if not cpu.protected and not real_ok:
            raise CPUFault(6)
        _system_op(cpu, name, True)
    h.__name__ = name
    return h


@opcode(0x00, table=OPS0F)
def grp6(cpu: Any) -> None:
    if not cpu.protected or cpu.vm86:
        raise CPUFault(6)
    save = cpu.eip
    m = fetch8(cpu)
    cpu.eip = save
    kind = (m >> 3) & 7
    if kind > 5:
        raise CPUFault(6)
    _system_op(cpu, ("sldt", "str", "lldt", "ltr", "verr", "verw")[kind], True)


@opcode(0x01, table=OPS0F)
def grp7(cpu: Any) -> None:
    save = cpu.eip
    m = fetch8(cpu)
    cpu.eip = save
    kind = (m >> 3) & 7
    if kind == 5 or (m >= 0xC0 and kind in (0, 1, 2, 3, 7)):
        raise CPUFault(6)
    name = ("sgdt", "sidt", "lgdt", "lidt", "smsw", "", "lmsw", "invlpg")[kind]
    hook = system_hook("system_instruction")
    if hook is None and not cpu.protected:
        _real_grp7(cpu, name)
        return
    _system_op(cpu, name, True)


def _real_grp7(cpu: Any, name: str) -> None:
    """Real-mode fallback for descriptor-table and MSW instructions (used without _system)."""
    m = modrm(cpu)
    if name in ("sgdt", "sidt"):
        base, limit = (cpu.gdtr_base, cpu.gdtr_limit) if name == "sgdt" else (cpu.idtr_base, cpu.idtr_limit)
        mem_write(cpu, cpu.ea_seg, cpu.ea_off, 1, limit)
        mem_write(cpu, cpu.ea_seg, (cpu.ea_off + 2) & 0xFFFFFFFF, 2, base if cpu.o32 else base & 0xFFFFFF)
    elif name in ("lgdt", "lidt"):
        limit = mem_read(cpu, cpu.ea_seg, cpu.ea_off, 1)
        base = mem_read(cpu, cpu.ea_seg, (cpu.ea_off + 2) & 0xFFFFFFFF, 2)
        if not cpu.o32:
            base &= 0xFFFFFF
        if name == "lgdt":
            cpu.gdtr_base, cpu.gdtr_limit = base, limit
        else:
            cpu.idtr_base, cpu.idtr_limit = base, limit
    elif name == "smsw":
        rm_write(cpu, m, osz(cpu) if m >= 0xC0 else 1, cpu.cr0 & (0xFFFFFFFF if m >= 0xC0 and cpu.o32 else 0xFFFF))
    elif name == "lmsw":
        v = rm_read(cpu, m, 1)
        cpu.cr0 = (cpu.cr0 & ~0xE) | (v & 0xF) | (cpu.cr0 & 1)
        cpu.update_mode()
    elif name == "invlpg":
        if m >= 0xC0:
            raise CPUFault(6)
        cpu.tlb_flush_page((cpu.sbase[cpu.ea_seg] + cpu.ea_off) & 0xFFFFFFFF)


OPS0F[0x02] = _system_modrm("lar", real_ok=False)
OPS0F[0x03] = _system_modrm("lsl", real_ok=False)


def _lar_lsl_guard(fn: Handler) -> Handler:
    def h(cpu: Any) -> None:
        if cpu.vm86:
            raise CPUFault(6)
        fn(cpu)
    return h


OPS0F[0x02] = _lar_lsl_guard(OPS0F[0x02])
OPS0F[0x03] = _lar_lsl_guard(OPS0F[0x03])


@opcode(0x06, table=OPS0F)
def clts(cpu: Any) -> None:
    if cpu.protected and cpu.cpl:
        raise CPUFault(13, 0)
    cpu.cr0 &= ~CR0_TS


@opcode(0x08, 0x09, table=OPS0F)
def invd(cpu: Any) -> None:
    if cpu.protected and cpu.cpl:
        raise CPUFault(13, 0)


@opcode(0x0B, 0xB9, 0xFF, table=OPS0F)
def ud2(cpu: Any) -> None:
    raise CPUFault(6)


@opcode(0x18, 0x19, 0x1A, 0x1B, 0x1C, 0x1D, 0x1E, 0x1F, table=OPS0F)
def nop_rm(cpu: Any) -> None:  # hint NOPs (0F 1F /0 is the P6 multi-byte NOP)
    modrm(cpu)


def _mov_crdr(cpu: Any) -> None:
    op = cpu._op2
    m = fetch8(cpu)  # mod is ignored: always a register operand
    n = (m >> 3) & 7
    r = m & 7
    if cpu.protected and (cpu.cpl or cpu.vm86):
        raise CPUFault(13, 0)
    hook = system_hook("system_instruction")
    name = ("mov_from_cr", "mov_from_dr", "mov_to_cr", "mov_to_dr")[op - 0x20]
    if hook is not None:
        cpu.pending_opsize32 = True
        hook(cpu, name, ModRM(cpu, register=m))  # mod is ignored: always a register
        cpu.update_mode()
        return
    # fallback without _system: plain register moves with the architectural reserved checks
    if op == 0x20:
        if n not in (0, 2, 3, 4):
            raise CPUFault(6)
        cpu.reg[r] = int(getattr(cpu, f"cr{n}"))
    elif op == 0x22:
        if n not in (0, 2, 3, 4):
            raise CPUFault(6)
        v = cpu.reg[r]
        if n == 0 and ((v & 0x80000001) == 0x80000000 or (v & 0x60000000) == 0x20000000):
            raise CPUFault(13, 0)
        setattr(cpu, f"cr{n}", v)
        if n != 2:
            cpu.update_mode()
            cpu.tlb_flush()
    elif op == 0x21:
        cpu.reg[r] = cpu.dr[n]
    else:
        cpu.dr[n] = cpu.reg[r]


for _op in (0x20, 0x21, 0x22, 0x23):
    OPS0F[_op] = _mov_crdr


def _plain_system(name: str) -> Handler:
    def h(cpu: Any) -> None:
        _system_op(cpu, name, False)
    h.__name__ = name
    return h


OPS0F[0x30] = _plain_system("wrmsr")
OPS0F[0x31] = _plain_system("rdtsc")
OPS0F[0x32] = _plain_system("rdmsr")
OPS0F[0xA2] = _plain_system("cpuid")


def _cmov(cpu: Any) -> None:
    sz = osz(cpu)
    m = modrm(cpu)
    v = rm_read(cpu, m, sz)  # the source is read (and may fault) whatever the condition
    if cond(cpu, cpu._op2 & 15):
        setreg(cpu, sz, (m >> 3) & 7, v)


def _jcc_near(cpu: Any) -> None:
    d = fetch_imm(cpu, osz(cpu))
    if cond(cpu, cpu._op2 & 15):
        jump_near(cpu, cpu.eip + d)


def _setcc(cpu: Any) -> None:
    m = modrm(cpu)
    rm_write(cpu, m, 0, 1 if cond(cpu, cpu._op2 & 15) else 0)


for _op in range(16):
    OPS0F[0x40 + _op] = _cmov
    OPS0F[0x80 + _op] = _jcc_near
    OPS0F[0x90 + _op] = _setcc


# bit tests: 0=BT 1=BTS 2=BTR 3=BTC
def _bt_common(cpu: Any, m: int, sz: int, bit: int, kind: int, from_reg: bool) -> None:
    bits = BITS[sz]
    if m >= 0xC0:
        bit &= bits - 1
        v = getreg(cpu, sz, m & 7)
        cf = (v >> bit) & 1
        if kind:
            v = v | (1 << bit) if kind == 1 else (v & ~(1 << bit) if kind == 2 else v ^ (1 << bit))
            setreg(cpu, sz, m & 7, v)
    else:
        off = cpu.ea_off
        if from_reg:
            sb = _signed(bit, sz)
            off += (sb >> (3 + sz)) * SIZE[sz]  # bit offset may address outside the operand
            bit = sb & (bits - 1)
        else:
            bit &= bits - 1
        off &= 0xFFFFFFFF if cpu.a32 else 0xFFFF
        if kind:
            lin = cpu.seg_linear(cpu.ea_seg, off, SIZE[sz], True)
            probe_write(cpu, lin, SIZE[sz])
            v = lin_read(cpu, lin, sz)
            cf = (v >> bit) & 1
            v = v | (1 << bit) if kind == 1 else (v & ~(1 << bit) if kind == 2 else v ^ (1 << bit))
            lin_write(cpu, lin, sz, v)
        else:
            v = mem_read(cpu, cpu.ea_seg, off, sz)
            cf = (v >> bit) & 1
    set_flags(cpu, 1, cf)


def _bt_reg(cpu: Any) -> None:
    sz = osz(cpu)
    m = modrm(cpu)
    kind = {0xA3: 0, 0xAB: 1, 0xB3: 2, 0xBB: 3}[cpu._op2]
    _bt_common(cpu, m, sz, getreg(cpu, sz, (m >> 3) & 7), kind, True)


for _op in (0xA3, 0xAB, 0xB3, 0xBB):
    OPS0F[_op] = _bt_reg


@opcode(0xBA, table=OPS0F)
def grp8(cpu: Any) -> None:
    sz = osz(cpu)
    m = modrm(cpu)
    kind = (m >> 3) & 7
    if kind < 4:
        raise CPUFault(6)
    _bt_common(cpu, m, sz, fetch8(cpu), kind - 4, False)


for _op in (0xA4, 0xA5, 0xAC, 0xAD):
    OPS0F[_op] = _shld_shrd


@opcode(0xAF, table=OPS0F)
def imul_r_rm(cpu: Any) -> None:
    sz = osz(cpu)
    m = modrm(cpu)
    r = (m >> 3) & 7
    p = _signed(getreg(cpu, sz, r), sz) * _signed(rm_read(cpu, m, sz), sz)
    setreg(cpu, sz, r, imul_flags(cpu, p, sz))


@opcode(0xB0, 0xB1, table=OPS0F)
def cmpxchg(cpu: Any) -> None:
    sz = 0 if cpu._op2 == 0xB0 else osz(cpu)
    m = modrm(cpu)
    dest = rm_rmw(cpu, m, sz)
    acc = getreg(cpu, sz, 0)
    if acc == dest:
        rm_commit(cpu, m, sz, getreg(cpu, sz, (m >> 3) & 7))
    else:
        rm_commit(cpu, m, sz, dest)  # the destination is always written back
        setreg(cpu, sz, 0, dest)
    alu(cpu, 7, acc, dest, sz)


@opcode(0xB2, 0xB4, 0xB5, table=OPS0F)
def lss_lfs_lgs(cpu: Any) -> None:
    s = {0xB2: SS, 0xB4: FS, 0xB5: GS}[cpu._op2]
    _load_far_pointer(cpu, s)


@opcode(0xB6, 0xB7, 0xBE, 0xBF, table=OPS0F)
def movzx_movsx(cpu: Any) -> None:
    op = cpu._op2
    src = 0 if op in (0xB6, 0xBE) else 1
    m = modrm(cpu)
    v = rm_read(cpu, m, src)
    if op >= 0xBE and v & SIGN[src]:
        v -= SIGN[src] << 1
    setreg(cpu, osz(cpu), (m >> 3) & 7, v)


@opcode(0xBC, 0xBD, table=OPS0F)
def bsf_bsr(cpu: Any) -> None:
    sz = osz(cpu)
    m = modrm(cpu)
    v = rm_read(cpu, m, sz)
    if v == 0:
        set_flags(cpu, 0x40, 0x40)  # destination unchanged
        return
    if cpu._op2 == 0xBC:
        r = (v & -v).bit_length() - 1
    else:
        r = v.bit_length() - 1
    setreg(cpu, sz, (m >> 3) & 7, r)
    set_flags(cpu, 0x40, 0)


@opcode(0xC0, 0xC1, table=OPS0F)
def xadd(cpu: Any) -> None:
    sz = 0 if cpu._op2 == 0xC0 else osz(cpu)
    m = modrm(cpu)
    r = (m >> 3) & 7
    dest = rm_rmw(cpu, m, sz)
    src = getreg(cpu, sz, r)
    res = (dest + src) & MASK[sz]
    if m >= 0xC0 and (m & 7) == r:
        setreg(cpu, sz, r, res)
    else:
        setreg(cpu, sz, r, dest)
        rm_commit(cpu, m, sz, res)
    alu(cpu, 0, dest, src, sz)


@opcode(0xC7, table=OPS0F)
def cmpxchg8b(cpu: Any) -> None:
    m = modrm(cpu)
    if m >= 0xC0 or (m >> 3) & 7 != 1:
        raise CPUFault(6)
    lin = cpu.seg_linear(cpu.ea_seg, cpu.ea_off, 8, True)
    probe_write(cpu, lin, 8)
    lo = cpu.read32(lin)
    hi = cpu.read32((lin + 4) & 0xFFFFFFFF)
    reg = cpu.reg
    if lo == reg[0] and hi == reg[2]:
        cpu.write32(lin, reg[3])
        cpu.write32((lin + 4) & 0xFFFFFFFF, reg[1])
        set_flags(cpu, 0x40, 0x40)
    else:
        cpu.write32(lin, lo)
        cpu.write32((lin + 4) & 0xFFFFFFFF, hi)
        reg[0] = lo
        reg[2] = hi
        set_flags(cpu, 0x40, 0)


def _bswap(cpu: Any) -> None:
    i = cpu._op2 & 7
    v = cpu.reg[i]
    if cpu.o32:
        cpu.reg[i] = int.from_bytes(v.to_bytes(4, "little"), "big")
    else:  # undefined for 16-bit operands; real CPUs clear the low word
        cpu.reg[i] = v & 0xFFFF0000


for _op in range(0xC8, 0xD0):
    OPS0F[_op] = _bswap

"""System architecture: segmentation, privilege, interrupts, tasks and system instructions.

Everything here is a function over the CPU object (the state names of the internal contract:
``reg``, ``eip``, ``sreg``/``sbase``/``slimit``/``sattr``, ``cpl``, ``cr0``-``cr4``, ``dr``,
``gdtr_*``, ``idtr_*``, ``ldtr_*``, ``tr_*``, ``msr``, ``halted``, ``a20_mask``,
``get_eflags``/``set_eflags``, ``update_mode``, ``tlb_flush``/``tlb_flush_page``,
``read_phys8/16/32``/``write_phys8/16/32``). Semantics follow the Intel SDM vol. 2 pseudocode
and vol. 3 chapters 3 (segments), 5 (protection), 6 (interrupts), 7 (tasks) and 20 (v86).

Conventions for the core's decoder:

* Before calling a control-transfer or interrupt function the core sets ``cpu.eip`` to the
  address that must be saved (the next instruction for INT n/far CALL/JMP/RET/IRET, the
  faulting instruction for faults). Each function checks everything that can fault before it
  changes any register, so when it raises ``CPUFault`` the core only has to roll back what it
  changed itself. Memory written on a new stack before a later fault stays written, as on
  hardware.
* Memory accessed here goes through ``cpu.translate`` (and so ``_paging``) with an explicit
  privilege: descriptor tables, the TSS and inner-level stacks are supervisor accesses even
  at CPL 3. Hits in the core's TLB dicts (``tlb_r``/``tlb_w``) skip the walk.
* Interrupt kinds: ``"external"`` (INTR/NMI: no DPL check, EXT bit in error codes),
  ``"exception"`` (CPU-detected: no DPL check, error code pushed for 8, 10-14, 17),
  ``"soft"`` (INT n: gate DPL checked, IOPL-sensitive in v86 mode) and
  ``"soft-exception"`` (INT3/INTO: gate DPL checked, not IOPL-sensitive; SDM 20.3.1.1).

State beyond the contract: none. The TSC offset set by WRMSR 0x10 is kept in ``cpu.msr[0x10]``
(TSC = tsc_source() + offset); other writable MSRs are kept in ``cpu.msr`` by number.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

from ._fault import CPUFault
from .cpu import SIGNATURE as _RESET_SIGNATURE

ES, CS, SS, DS, FS, GS = 0, 1, 2, 3, 4, 5

# EFLAGS bits.
F_CF = 0x1
F_TF = 0x100
F_IF = 0x200
F_IOPL = 0x3000
F_NT = 0x4000
F_RF = 0x10000
F_VM = 0x20000
F_AC = 0x40000
F_VIF = 0x80000
F_VIP = 0x100000
F_ID = 0x200000

CR0_PE = 0x1
CR0_MP = 0x2
CR0_EM = 0x4
CR0_TS = 0x8
CR0_ET = 0x10
CR0_NE = 0x20
CR0_WP = 0x10000
CR0_AM = 0x40000
CR0_NW = 0x20000000
CR0_CD = 0x40000000
CR0_PG = 0x80000000
_CR0_WRITABLE = 0xE005003F

CR4_TSD = 0x4
CR4_DE = 0x8
CR4_PSE = 0x10
CR4_PGE = 0x80
_CR4_WRITABLE = CR4_TSD | CR4_DE | CR4_PSE | CR4_PGE

# Vectors.
GP, NP, SSF, TS, UD, DF = 13, 11, 12, 10, 6, 8

# Exceptions that push an error code in protected mode.
_HAS_ERROR_CODE = frozenset((8, 10, 11, 12, 13, 14, 17))
# Double-fault classes (SDM vol. 3 table 6-4/6-5).
_CONTRIBUTORY = frozenset((0, 10, 11, 12, 13))

# EFLAGS bits IRET and POPF may change at any privilege (arithmetic, TF, DF, NT, AC, ID, RF).
_IRET_MASK = 0x254DD5 | F_RF
_POPF_MASK = 0x254DD5

# Real-mode and v86 segment attributes: present data, read/write, accessed.
_V86_ATTR = 0xF3
_V86_CS_ATTR = 0xFB

# CPUID (see cpuid()): the family/model/stepping EDX holds after reset (family 6, i686).
CPUID_SIGNATURE = _RESET_SIGNATURE
CPUID_FEATURES_EDX = (
    (1 << 0)  # FPU
    | (1 << 3)  # PSE
    | (1 << 4)  # TSC
    | (1 << 5)  # MSR
    | (1 << 8)  # CX8
    | (1 << 13)  # PGE
    | (1 << 15)  # CMOV
)

# MSRs that hold a value (read back what was written); others raise #GP(0).
_MSR_STORED = frozenset((
    0x17,  # IA32_PLATFORM_ID (reads 0)
    0x2A,  # EBL_CR_POWERON
    0x8B,  # IA32_BIOS_SIGN_ID (microcode revision; Linux writes 0 then reads it)
    0x174, 0x175, 0x176,  # SYSENTER_CS/ESP/EIP (stored; SYSENTER itself is not reported)
    0x1A0,  # IA32_MISC_ENABLE
))
MSR_TSC = 0x10


# ---------------------------------------------------------------------------
# Memory helpers with an explicit privilege (supervisor unless user=True)
# ---------------------------------------------------------------------------

def _rd(cpu: Any, lin: int, size: int, user: bool = False) -> int:
    """Read ``size`` bytes at linear ``lin`` with the given privilege (supervisor by default).

    Uses the core's TLB (``tlb_r`` keyed by page | user << 20) and fills it on a miss through
    ``cpu.translate``, so repeated descriptor/TSS/stack reads cost one dict lookup.
    """
    lin &= 0xFFFFFFFF
    off = lin & 0xFFF
    if off + size <= 0x1000:
        t = cpu.tlb_r.get((lin >> 12) | (0x100000 if user else 0))
        if t is not None:
            a = t | off
            return int.from_bytes(cpu.ram[a:a + size], "little")
        p = cpu.translate(lin, False, user)
        if size == 4:
            return cpu.read_phys32(p)
        if size == 2:
            return cpu.read_phys16(p)
        return cpu.read_phys8(p)
    # Straddles a page: both pages are checked before any byte is read.
    n0 = 0x1000 - off
    p1 = cpu.translate(lin, False, user)
    p2 = cpu.translate((lin + n0) & 0xFFFFFFFF, False, user)
    value = 0
    for i in range(size):
        value |= cpu.read_phys8((p1 + i) if i < n0 else (p2 + i - n0)) << (8 * i)
    return value


def _rd_desc(cpu: Any, lin: int) -> Tuple[int, int]:
    """The two dwords of a descriptor or gate at ``lin`` (a supervisor access)."""
    lin &= 0xFFFFFFFF
    if (lin & 0xFFF) <= 0xFF8:
        t = cpu.tlb_r.get(lin >> 12)
        if t is not None:
            a = t | (lin & 0xFFF)
            v = int.from_bytes(cpu.ram[a:a + 8], "little")
            return v & 0xFFFFFFFF, v >> 32
    return _rd(cpu, lin, 4), _rd(cpu, lin + 4, 4)


def _wr(cpu: Any, lin: int, value: int, size: int, user: bool = False) -> None:
    """Write with the given privilege; the core's write TLB never holds code pages."""
    lin &= 0xFFFFFFFF
    value &= (1 << (8 * size)) - 1
    off = lin & 0xFFF
    if off + size <= 0x1000:
        t = cpu.tlb_w.get((lin >> 12) | (0x100000 if user else 0))
        if t is not None:
            a = t | off
            cpu.ram[a:a + size] = value.to_bytes(size, "little")
            return
        p = cpu.translate(lin, True, user)
        if size == 4:
            cpu.write_phys32(p, value)
        elif size == 2:
            cpu.write_phys16(p, value)
        else:
            cpu.write_phys8(p, value)
        return
    n0 = 0x1000 - off
    p1 = cpu.translate(lin, True, user)
    p2 = cpu.translate((lin + n0) & 0xFFFFFFFF, True, user)
    for i in range(size):
        cpu.write_phys8((p1 + i) if i < n0 else (p2 + i - n0), (value >> (8 * i)) & 0xFF)


# ---------------------------------------------------------------------------
# Descriptors
# ---------------------------------------------------------------------------

def desc_base(lo: int, hi: int) -> int:
    return (lo >> 16) | ((hi & 0xFF) << 16) | (hi & 0xFF000000)


def desc_limit(lo: int, hi: int) -> int:
    limit = (lo & 0xFFFF) | (hi & 0xF0000)
    if hi & 0x800000:
        limit = (limit << 12) | 0xFFF
    return limit


def desc_attr(hi: int) -> int:
    """The ``sattr`` encoding: access byte | flags nibble << 8."""
    return (hi >> 8) & 0xF0FF


def _desc_addr(cpu: Any, sel: int) -> int:
    """Linear address of the descriptor for ``sel`` or -1 when outside its table."""
    if sel & 4:
        if not cpu.ldtr_sel & 0xFFFC:
            return -1
        base, limit = cpu.ldtr_base, cpu.ldtr_limit
    else:
        base, limit = cpu.gdtr_base, cpu.gdtr_limit
    if (sel | 7) > limit:
        return -1
    return (base + (sel & 0xFFF8)) & 0xFFFFFFFF


def fetch_descriptor(cpu: Any, sel: int, vector: int = GP, ext: int = 0) -> Tuple[int, int, int]:
    """Read the descriptor ``sel`` names: ``(low dword, high dword, linear address)``.

    Raises ``CPUFault(vector, sel & 0xFFFC | ext)`` when it lies outside the GDT/LDT limit.
    """
    addr = _desc_addr(cpu, sel)
    if addr < 0:
        raise CPUFault(vector, (sel & 0xFFFC) | ext)
    lo, hi = _rd_desc(cpu, addr)
    return lo, hi, addr


def _set_accessed(cpu: Any, addr: int, hi: int) -> None:
    if not hi & 0x100:
        _wr(cpu, addr + 5, ((hi >> 8) & 0xFF) | 1, 1)


def _set_seg(cpu: Any, i: int, sel: int, base: int, limit: int, attr: int) -> None:
    cpu.sreg[i] = sel
    cpu.sbase[i] = base
    cpu.slimit[i] = limit
    cpu.sattr[i] = attr


def _set_seg_desc(cpu: Any, i: int, sel: int, lo: int, hi: int) -> None:
    cpu.sreg[i] = sel
    cpu.sbase[i] = desc_base(lo, hi)
    cpu.slimit[i] = desc_limit(lo, hi)
    cpu.sattr[i] = desc_attr(hi) | 1  # accessed


def _set_seg_real(cpu: Any, i: int, sel: int) -> None:
    sel &= 0xFFFF
    cpu.sreg[i] = sel
    cpu.sbase[i] = sel << 4
    if cpu.get_eflags() & F_VM:
        cpu.slimit[i] = 0xFFFF
        cpu.sattr[i] = _V86_CS_ATTR if i == CS else _V86_ATTR


def _iopl(eflags: int) -> int:
    return (eflags >> 12) & 3


# ---------------------------------------------------------------------------
# Segment loads
# ---------------------------------------------------------------------------

def load_sreg(cpu: Any, i: int, sel: int) -> None:
    """MOV/POP Sreg, LDS/LES/LFS/LGS/LSS: load ES, SS, DS, FS or GS (index ``i``).

    Real and v86 mode: base = selector << 4. Protected mode: SDM MOV pseudocode with
    #GP(sel)/#NP(sel)/#SS(sel), null selectors allowed except for SS (#GP(0)).
    The core arms the interrupt shadow after a load of SS.
    """
    sel &= 0xFFFF
    if not cpu.cr0 & CR0_PE or cpu.get_eflags() & F_VM:
        _set_seg_real(cpu, i, sel)
        if i == SS:
            cpu.update_mode()
        return
    cpl = cpu.cpl
    if not sel & 0xFFFC:
        if i == SS:
            raise CPUFault(GP, 0)
        _set_seg(cpu, i, sel, 0, 0, 0)
        return
    lo, hi, addr = fetch_descriptor(cpu, sel)
    access = (hi >> 8) & 0xFF
    dpl = (access >> 5) & 3
    if i == SS:
        if (sel & 3) != cpl or dpl != cpl or (access & 0x1A) != 0x12:
            raise CPUFault(GP, sel & 0xFFFC)
        if not access & 0x80:
            raise CPUFault(SSF, sel & 0xFFFC)
    else:
        if not access & 0x10 or (access & 0x0A) == 0x08:
            raise CPUFault(GP, sel & 0xFFFC)
        if (access & 0x0C) != 0x0C and ((sel & 3) > dpl or cpl > dpl):
            raise CPUFault(GP, sel & 0xFFFC)
        if not access & 0x80:
            raise CPUFault(NP, sel & 0xFFFC)
    _set_accessed(cpu, addr, hi)
    _set_seg_desc(cpu, i, sel, lo, hi)
    if i == SS:
        cpu.update_mode()


def _null_outer_data_segments(cpu: Any) -> None:
    """After a return to an outer level: null ES/DS/FS/GS the new CPL may not use."""
    cpl = cpu.cpl
    for i in (ES, DS, FS, GS):
        attr = cpu.sattr[i]
        if (attr & 0x0C) == 0x0C and attr & 0x10:
            continue  # conforming code stays
        if ((attr >> 5) & 3) < cpl:
            _set_seg(cpu, i, 0, 0, 0, 0)


# ---------------------------------------------------------------------------
# Stack access for a given SS cache
# ---------------------------------------------------------------------------

def _stack_lin(base: int, limit: int, attr: int, off: int, size: int, err: int) -> int:
    if (attr & 0x1C) == 0x14:  # expand-down data segment
        upper = 0xFFFFFFFF if attr & 0x4000 else 0xFFFF
        if off <= limit or off + size - 1 > upper:
            raise CPUFault(SSF, err)
    elif off + size - 1 > limit:
        raise CPUFault(SSF, err)
    return (base + off) & 0xFFFFFFFF


def _push_all(cpu: Any, base: int, limit: int, attr: int, esp: int, values: List[int],
              size: int, user: bool, err: int) -> int:
    """Push ``values`` in order on the stack described by the cache; returns the new ESP."""
    mask = 0xFFFFFFFF if attr & 0x4000 else 0xFFFF
    sp = esp & mask
    # Check the whole frame before writing anything.
    top = (sp - size * len(values)) & mask
    for k in range(len(values)):
        _stack_lin(base, limit, attr, (sp - size * (k + 1)) & mask, size, err)
    for v in values:
        sp = (sp - size) & mask
        _wr(cpu, (base + sp) & 0xFFFFFFFF, v, size, user)
    return (esp & ~mask) | top


def _stack_read(cpu: Any, i_esp: int, off: int, size: int, user: bool) -> int:
    """Read the current stack (SS) at ESP + ``off``."""
    attr = cpu.sattr[SS]
    mask = 0xFFFFFFFF if attr & 0x4000 else 0xFFFF
    lin = _stack_lin(cpu.sbase[SS], cpu.slimit[SS], attr, (i_esp + off) & mask, size, 0)
    return _rd(cpu, lin, size, user)


def _cur_push(cpu: Any, values: List[int], size: int) -> int:
    """Push on the current stack at the current privilege; returns the new ESP."""
    return _push_all(cpu, cpu.sbase[SS], cpu.slimit[SS], cpu.sattr[SS], cpu.reg[4],
                     values, size, cpu.cpl == 3, 0)


def _add_esp(cpu: Any, esp: int, n: int) -> int:
    if cpu.sattr[SS] & 0x4000:
        return (esp + n) & 0xFFFFFFFF
    return (esp & 0xFFFF0000) | ((esp + n) & 0xFFFF)


def _real_mode(cpu: Any) -> bool:
    return not cpu.cr0 & CR0_PE or bool(cpu.get_eflags() & F_VM)


# ---------------------------------------------------------------------------
# Far JMP / CALL / RET
# ---------------------------------------------------------------------------

def _check_code_limit(cpu: Any, offset: int, limit: int) -> None:
    if offset > limit:
        raise CPUFault(GP, 0)


def far_jmp(cpu: Any, sel: int, offset: int, o32: bool) -> None:
    """JMP ptr16:16/32 and JMP m16:16/32 (``offset`` already sized by the operand size)."""
    sel &= 0xFFFF
    if _real_mode(cpu):
        _check_code_limit(cpu, offset, cpu.slimit[CS])
        _set_seg_real(cpu, CS, sel)
        cpu.eip = offset
        cpu.update_mode()
        return
    if not sel & 0xFFFC:
        raise CPUFault(GP, 0)
    lo, hi, addr = fetch_descriptor(cpu, sel)
    access = (hi >> 8) & 0xFF
    cpl = cpu.cpl
    if access & 0x10:
        if not access & 0x08:
            raise CPUFault(GP, sel & 0xFFFC)
        _check_code_segment_direct(cpu, sel, access, cpl)
        _check_code_limit(cpu, offset, desc_limit(lo, hi))
        _set_accessed(cpu, addr, hi)
        _set_seg_desc(cpu, CS, (sel & 0xFFFC) | cpl, lo, hi)
        cpu.eip = offset
        cpu.update_mode()
        return
    _far_system(cpu, sel, lo, hi, addr, False, o32)


def _check_code_segment_direct(cpu: Any, sel: int, access: int, cpl: int) -> None:
    dpl = (access >> 5) & 3
    if access & 0x04:  # conforming
        if dpl > cpl:
            raise CPUFault(GP, sel & 0xFFFC)
    elif (sel & 3) > cpl or dpl != cpl:
        raise CPUFault(GP, sel & 0xFFFC)
    if not access & 0x80:
        raise CPUFault(NP, sel & 0xFFFC)


def far_call(cpu: Any, sel: int, offset: int, o32: bool) -> None:
    """CALL ptr16:16/32 and CALL m16:16/32; ``cpu.eip`` holds the return address."""
    sel &= 0xFFFF
    size = 4 if o32 else 2
    if _real_mode(cpu):
        _check_code_limit(cpu, offset, cpu.slimit[CS])
        esp = _cur_push(cpu, [cpu.sreg[CS], cpu.eip], size)
        cpu.reg[4] = esp
        _set_seg_real(cpu, CS, sel)
        cpu.eip = offset
        cpu.update_mode()
        return
    if not sel & 0xFFFC:
        raise CPUFault(GP, 0)
    lo, hi, addr = fetch_descriptor(cpu, sel)
    access = (hi >> 8) & 0xFF
    cpl = cpu.cpl
    if access & 0x10:
        if not access & 0x08:
            raise CPUFault(GP, sel & 0xFFFC)
        _check_code_segment_direct(cpu, sel, access, cpl)
        _check_code_limit(cpu, offset, desc_limit(lo, hi))
        esp = _cur_push(cpu, [cpu.sreg[CS], cpu.eip], size)
        _set_accessed(cpu, addr, hi)
        cpu.reg[4] = esp
        _set_seg_desc(cpu, CS, (sel & 0xFFFC) | cpl, lo, hi)
        cpu.eip = offset
        cpu.update_mode()
        return
    _far_system(cpu, sel, lo, hi, addr, True, o32)


def _far_system(cpu: Any, sel: int, lo: int, hi: int, addr: int, is_call: bool, o32: bool) -> None:
    """JMP/CALL to a system descriptor: call gate, task gate or TSS."""
    access = (hi >> 8) & 0xFF
    typ = access & 0x0F
    dpl = (access >> 5) & 3
    cpl = cpu.cpl
    rpl = sel & 3
    if typ in (1, 9):  # available TSS
        if dpl < cpl or dpl < rpl:
            raise CPUFault(GP, sel & 0xFFFC)
        if not access & 0x80:
            raise CPUFault(NP, sel & 0xFFFC)
        task_switch(cpu, sel, lo, hi, "call" if is_call else "jmp")
        return
    if typ == 5:  # task gate
        if dpl < cpl or dpl < rpl:
            raise CPUFault(GP, sel & 0xFFFC)
        if not access & 0x80:
            raise CPUFault(NP, sel & 0xFFFC)
        tsel = lo >> 16
        tlo, thi = _task_gate_target(cpu, tsel, 0)
        task_switch(cpu, tsel, tlo, thi, "call" if is_call else "jmp")
        return
    if typ not in (4, 12):
        raise CPUFault(GP, sel & 0xFFFC)
    # Call gate.
    if dpl < cpl or dpl < rpl:
        raise CPUFault(GP, sel & 0xFFFC)
    if not access & 0x80:
        raise CPUFault(NP, sel & 0xFFFC)
    gate32 = typ == 12
    if gate32:
        offset = (hi & 0xFFFF0000) | (lo & 0xFFFF)
    else:
        offset = lo & 0xFFFF
    csel = lo >> 16
    pcount = hi & 0x1F
    if not csel & 0xFFFC:
        raise CPUFault(GP, 0)
    clo, chi, caddr = fetch_descriptor(cpu, csel)
    cacc = (chi >> 8) & 0xFF
    cdpl = (cacc >> 5) & 3
    if (cacc & 0x18) != 0x18 or cdpl > cpl:
        raise CPUFault(GP, csel & 0xFFFC)
    if not is_call and not cacc & 0x04 and cdpl != cpl:
        raise CPUFault(GP, csel & 0xFFFC)
    if not cacc & 0x80:
        raise CPUFault(NP, csel & 0xFFFC)
    climit = desc_limit(clo, chi)
    if not is_call:
        _check_code_limit(cpu, offset, climit)
        _set_accessed(cpu, caddr, chi)
        _set_seg_desc(cpu, CS, (csel & 0xFFFC) | cpl, clo, chi)
        cpu.eip = offset
        cpu.update_mode()
        return
    size = 4 if gate32 else 2
    if not cacc & 0x04 and cdpl < cpl:
        # More privileged: switch to the inner stack from the TSS, copy parameters.
        nss, nesp = _tss_stack(cpu, cdpl, 0)
        slo, shi = _check_new_ss(cpu, nss, cdpl, 0)
        old_ss, old_esp = cpu.sreg[SS], cpu.reg[4]
        params = []
        for k in range(pcount - 1, -1, -1):
            params.append(_stack_read(cpu, old_esp, k * size, size, cpl == 3))
        sattr = desc_attr(shi) | 1
        frame = [old_ss, old_esp, *params, cpu.sreg[CS], cpu.eip]
        _check_code_limit(cpu, offset, climit)
        esp = _push_all(cpu, desc_base(slo, shi), desc_limit(slo, shi), sattr, nesp, frame,
                        size, cdpl == 3, nss & 0xFFFC)
        _set_accessed(cpu, caddr, chi)
        _set_seg_desc(cpu, SS, nss, slo, shi)
        cpu.reg[4] = esp
        _set_seg_desc(cpu, CS, (csel & 0xFFFC) | cdpl, clo, chi)
        cpu.cpl = cdpl
        cpu.eip = offset
        cpu.update_mode()
        return
    _check_code_limit(cpu, offset, climit)
    esp = _cur_push(cpu, [cpu.sreg[CS], cpu.eip], size)
    _set_accessed(cpu, caddr, chi)
    cpu.reg[4] = esp
    _set_seg_desc(cpu, CS, (csel & 0xFFFC) | cpl, clo, chi)
    cpu.eip = offset
    cpu.update_mode()


def _tss_stack(cpu: Any, dpl: int, ext: int) -> Tuple[int, int]:
    """SS:ESP for privilege ``dpl`` from the current TSS (#TS(TR) when out of its limit)."""
    if cpu.tr_attr & 0x8:  # 32-bit TSS
        off = dpl * 8 + 4
        if off + 5 > cpu.tr_limit:
            raise CPUFault(TS, (cpu.tr_sel & 0xFFFC) | ext)
        esp = _rd(cpu, cpu.tr_base + off, 4)
        ss = _rd(cpu, cpu.tr_base + off + 4, 2)
    else:
        off = dpl * 4 + 2
        if off + 3 > cpu.tr_limit:
            raise CPUFault(TS, (cpu.tr_sel & 0xFFFC) | ext)
        esp = _rd(cpu, cpu.tr_base + off, 2)
        ss = _rd(cpu, cpu.tr_base + off + 2, 2)
    return ss, esp


def _check_new_ss(cpu: Any, ss: int, dpl: int, ext: int) -> Tuple[int, int]:
    """Validate an inner stack selector from the TSS (#TS / #SS with the selector)."""
    err = (ss & 0xFFFC) | ext
    if not ss & 0xFFFC:
        raise CPUFault(TS, ext)
    if (ss & 3) != dpl:
        raise CPUFault(TS, err)
    addr = _desc_addr(cpu, ss)
    if addr < 0:
        raise CPUFault(TS, err)
    lo, hi = _rd_desc(cpu, addr)
    access = (hi >> 8) & 0xFF
    if ((access >> 5) & 3) != dpl or (access & 0x1A) != 0x12:
        raise CPUFault(TS, err)
    if not access & 0x80:
        raise CPUFault(SSF, err)
    _set_accessed(cpu, addr, hi)
    return lo, hi


def _check_outer_ss(cpu: Any, ss: int, rpl: int) -> Tuple[int, int, int]:
    """Validate the SS popped by RET/IRET to an outer level (#GP/#SS with the selector)."""
    if not ss & 0xFFFC:
        raise CPUFault(GP, 0)
    if (ss & 3) != rpl:
        raise CPUFault(GP, ss & 0xFFFC)
    lo, hi, addr = fetch_descriptor(cpu, ss)
    access = (hi >> 8) & 0xFF
    if ((access >> 5) & 3) != rpl or (access & 0x1A) != 0x12:
        raise CPUFault(GP, ss & 0xFFFC)
    if not access & 0x80:
        raise CPUFault(SSF, ss & 0xFFFC)
    return lo, hi, addr


def _check_return_cs(cpu: Any, sel: int) -> Tuple[int, int, int]:
    """Validate the CS popped by RET/IRET in protected mode."""
    if not sel & 0xFFFC:
        raise CPUFault(GP, 0)
    lo, hi, addr = fetch_descriptor(cpu, sel)
    access = (hi >> 8) & 0xFF
    rpl = sel & 3
    dpl = (access >> 5) & 3
    if (access & 0x18) != 0x18 or rpl < cpu.cpl:
        raise CPUFault(GP, sel & 0xFFFC)
    if access & 0x04:
        if dpl > rpl:
            raise CPUFault(GP, sel & 0xFFFC)
    elif dpl != rpl:
        raise CPUFault(GP, sel & 0xFFFC)
    if not access & 0x80:
        raise CPUFault(NP, sel & 0xFFFC)
    return lo, hi, addr


def far_ret(cpu: Any, o32: bool, imm: int = 0) -> None:
    """RETF and RETF imm16."""
    size = 4 if o32 else 2
    esp = cpu.reg[4]
    if _real_mode(cpu):
        user = cpu.cpl == 3
        eip = _stack_read(cpu, esp, 0, size, user)
        sel = _stack_read(cpu, esp, size, size, user) & 0xFFFF
        if not o32:
            eip &= 0xFFFF
        _check_code_limit(cpu, eip, cpu.slimit[CS])
        _set_seg_real(cpu, CS, sel)
        cpu.eip = eip
        cpu.reg[4] = _add_esp(cpu, esp, 2 * size + imm)
        cpu.update_mode()
        return
    cpl = cpu.cpl
    user = cpl == 3
    eip = _stack_read(cpu, esp, 0, size, user)
    sel = _stack_read(cpu, esp, size, size, user) & 0xFFFF
    lo, hi, addr = _check_return_cs(cpu, sel)
    rpl = sel & 3
    if rpl == cpl:
        _check_code_limit(cpu, eip, desc_limit(lo, hi))
        _set_accessed(cpu, addr, hi)
        _set_seg_desc(cpu, CS, sel, lo, hi)
        cpu.eip = eip
        cpu.reg[4] = _add_esp(cpu, esp, 2 * size + imm)
        cpu.update_mode()
        return
    # Return to an outer privilege level.
    new_esp = _stack_read(cpu, esp, 2 * size + imm, size, user)
    new_ss = _stack_read(cpu, esp, 3 * size + imm, size, user) & 0xFFFF
    slo, shi, saddr = _check_outer_ss(cpu, new_ss, rpl)
    _check_code_limit(cpu, eip, desc_limit(lo, hi))
    _set_accessed(cpu, addr, hi)
    _set_accessed(cpu, saddr, shi)
    _set_seg_desc(cpu, CS, sel, lo, hi)
    cpu.cpl = rpl
    cpu.eip = eip
    _set_seg_desc(cpu, SS, new_ss, slo, shi)
    if not o32:
        new_esp &= 0xFFFF
    if shi & 0x400000:
        cpu.reg[4] = (new_esp + imm) & 0xFFFFFFFF
    else:
        cpu.reg[4] = (cpu.reg[4] & 0xFFFF0000) | ((new_esp + imm) & 0xFFFF)
    _null_outer_data_segments(cpu)
    cpu.update_mode()


# ---------------------------------------------------------------------------
# IRET
# ---------------------------------------------------------------------------

def iret(cpu: Any, o32: bool) -> None:
    """IRET/IRETD in real, v86 and protected mode (task return when NT is set)."""
    size = 4 if o32 else 2
    esp = cpu.reg[4]
    eflags = cpu.get_eflags()
    if not cpu.cr0 & CR0_PE:
        eip = _stack_read(cpu, esp, 0, size, False)
        sel = _stack_read(cpu, esp, size, size, False) & 0xFFFF
        flags = _stack_read(cpu, esp, 2 * size, size, False)
        if not o32:
            eip &= 0xFFFF
            flags = (eflags & 0xFFFF0000) | flags
        else:
            flags = (flags & ~(F_VM | F_VIF | F_VIP)) | (eflags & (F_VM | F_VIF | F_VIP))
        _check_code_limit(cpu, eip, cpu.slimit[CS])
        _set_seg_real(cpu, CS, sel)
        cpu.eip = eip
        cpu.reg[4] = _add_esp(cpu, esp, 3 * size)
        cpu.set_eflags(flags)
        cpu.update_mode()
        return
    if eflags & F_VM:
        # SDM 20.2.7: IRET in v86 mode is IOPL-sensitive; IOPL and VM are kept.
        if _iopl(eflags) < 3:
            raise CPUFault(GP, 0)
        eip = _stack_read(cpu, esp, 0, size, True)
        sel = _stack_read(cpu, esp, size, size, True) & 0xFFFF
        flags = _stack_read(cpu, esp, 2 * size, size, True)
        keep = F_IOPL | F_VM | F_VIF | F_VIP
        if not o32:
            eip &= 0xFFFF
            keep |= 0xFFFF0000
        _check_code_limit(cpu, eip, cpu.slimit[CS])
        _set_seg_real(cpu, CS, sel)
        cpu.eip = eip
        cpu.reg[4] = _add_esp(cpu, esp, 3 * size)
        cpu.set_eflags((flags & ~keep) | (eflags & keep))
        cpu.update_mode()
        return
    if eflags & F_NT:
        link = _rd(cpu, cpu.tr_base, 2)
        if link & 4:
            raise CPUFault(TS, link & 0xFFFC)
        addr = _desc_addr(cpu, link)
        if addr < 0:
            raise CPUFault(TS, link & 0xFFFC)
        lo, hi = _rd_desc(cpu, addr)
        access = (hi >> 8) & 0xFF
        if (access & 0x1F) not in (3, 11):  # busy 16- or 32-bit TSS
            raise CPUFault(TS, link & 0xFFFC)
        if not access & 0x80:
            raise CPUFault(NP, link & 0xFFFC)
        task_switch(cpu, link, lo, hi, "iret")
        return
    cpl = cpu.cpl
    user = cpl == 3
    eip = _stack_read(cpu, esp, 0, size, user)
    sel = _stack_read(cpu, esp, size, size, user) & 0xFFFF
    flags = _stack_read(cpu, esp, 2 * size, size, user)
    if flags & F_VM and o32 and cpl == 0:
        _iret_to_v86(cpu, esp, eip, sel, flags)
        return
    lo, hi, addr = _check_return_cs(cpu, sel)
    rpl = sel & 3
    # EFLAGS image: what the old CPL may change (SDM IRET pseudocode).
    mask = _IRET_MASK
    if cpl <= _iopl(eflags):
        mask |= F_IF
    if cpl == 0:
        mask |= F_IOPL | F_VIF | F_VIP
    if not o32:
        mask &= 0xFFFF
        eip &= 0xFFFF
    new_flags = (eflags & ~mask) | (flags & mask)
    if rpl == cpl:
        _check_code_limit(cpu, eip, desc_limit(lo, hi))
        _set_accessed(cpu, addr, hi)
        _set_seg_desc(cpu, CS, sel, lo, hi)
        cpu.eip = eip
        cpu.reg[4] = _add_esp(cpu, esp, 3 * size)
        cpu.set_eflags(new_flags)
        cpu.update_mode()
        return
    new_esp = _stack_read(cpu, esp, 3 * size, size, user)
    new_ss = _stack_read(cpu, esp, 4 * size, size, user) & 0xFFFF
    slo, shi, saddr = _check_outer_ss(cpu, new_ss, rpl)
    _check_code_limit(cpu, eip, desc_limit(lo, hi))
    _set_accessed(cpu, addr, hi)
    _set_accessed(cpu, saddr, shi)
    _set_seg_desc(cpu, CS, sel, lo, hi)
    cpu.cpl = rpl
    cpu.eip = eip
    _set_seg_desc(cpu, SS, new_ss, slo, shi)
    if not o32:
        new_esp &= 0xFFFF
    if shi & 0x400000:
        cpu.reg[4] = new_esp & 0xFFFFFFFF
    else:
        cpu.reg[4] = (cpu.reg[4] & 0xFFFF0000) | (new_esp & 0xFFFF)
    cpu.set_eflags(new_flags)
    _null_outer_data_segments(cpu)
    cpu.update_mode()


def _iret_to_v86(cpu: Any, esp: int, eip: int, cs: int, flags: int) -> None:
    """IRETD at CPL 0 with VM set in the popped EFLAGS (SDM IRET "RETURN-TO-VIRTUAL-8086")."""
    vals = [_stack_read(cpu, esp, k, 4, False) & 0xFFFFFFFF for k in (12, 16, 20, 24, 28, 32)]
    new_esp, new_ss, es, ds, fs, gs = vals
    cpu.set_eflags(flags)  # VM on first, so the segment loads below are v86 style
    cpu.cpl = 3
    for i, s in ((CS, cs), (SS, new_ss), (ES, es), (DS, ds), (FS, fs), (GS, gs)):
        _set_seg_real(cpu, i, s & 0xFFFF)
    cpu.eip = eip & 0xFFFF
    cpu.reg[4] = new_esp
    cpu.update_mode()


# ---------------------------------------------------------------------------
# Interrupts and exceptions
# ---------------------------------------------------------------------------

def interrupt(cpu: Any, vector: int, kind: str, error_code: Optional[int] = None) -> None:
    """Deliver interrupt ``vector`` (kinds: see the module docstring).

    The saved return address is ``cpu.eip`` as the core left it. Faults found while
    delivering are raised as ``CPUFault`` with nothing committed.
    """
    vector &= 0xFF
    cpu.halted = False
    if not cpu.cr0 & CR0_PE:
        _real_interrupt(cpu, vector)
        return
    _protected_interrupt(cpu, vector, kind, error_code)


def _real_interrupt(cpu: Any, vector: int) -> None:
    if vector * 4 + 3 > cpu.idtr_limit:
        raise CPUFault(GP, 0)
    addr = cpu.idtr_base + vector * 4
    ip = _rd(cpu, addr, 2)
    sel = _rd(cpu, addr + 2, 2)
    eflags = cpu.get_eflags()
    esp = _cur_push(cpu, [eflags & 0xFFFF, cpu.sreg[CS], cpu.eip & 0xFFFF], 2)
    cpu.reg[4] = esp
    _set_seg_real(cpu, CS, sel)
    cpu.eip = ip
    cpu.set_eflags(eflags & ~(F_IF | F_TF | F_AC | F_RF))
    cpu.update_mode()


def _protected_interrupt(cpu: Any, vector: int, kind: str, error_code: Optional[int]) -> None:
    ext = 1 if kind in ("external", "exception") else 0
    soft = kind in ("soft", "soft-exception")
    eflags = cpu.get_eflags()
    if kind == "soft" and eflags & F_VM and _iopl(eflags) < 3:
        raise CPUFault(GP, 0)
    goff = vector * 8
    gerr = goff + 2 + ext
    if goff + 7 > cpu.idtr_limit:
        raise CPUFault(GP, gerr)
    lo, hi = _rd_desc(cpu, cpu.idtr_base + goff)
    access = (hi >> 8) & 0xFF
    gtype = access & 0x1F
    if gtype not in (5, 6, 7, 14, 15):
        raise CPUFault(GP, gerr)
    cpl = cpu.cpl
    if soft and ((access >> 5) & 3) < cpl:
        raise CPUFault(GP, goff + 2)
    if not access & 0x80:
        raise CPUFault(NP, gerr)
    push_error = kind == "exception" and vector in _HAS_ERROR_CODE
    err = (error_code or 0) if push_error else None
    if gtype == 5:
        tsel = lo >> 16
        tlo, thi = _task_gate_target(cpu, tsel, ext)
        task_switch(cpu, tsel, tlo, thi, "int", err)
        return
    gate32 = bool(gtype & 8)
    size = 4 if gate32 else 2
    offset = ((hi & 0xFFFF0000) | (lo & 0xFFFF)) if gate32 else (lo & 0xFFFF)
    csel = lo >> 16
    if not csel & 0xFFFC:
        raise CPUFault(GP, ext)
    caddr = _desc_addr(cpu, csel)
    if caddr < 0:
        raise CPUFault(GP, (csel & 0xFFFC) | ext)
    clo, chi = _rd_desc(cpu, caddr)
    cacc = (chi >> 8) & 0xFF
    cdpl = (cacc >> 5) & 3
    if (cacc & 0x18) != 0x18 or cdpl > cpl:
        raise CPUFault(GP, (csel & 0xFFFC) | ext)
    if not cacc & 0x80:
        raise CPUFault(NP, (csel & 0xFFFC) | ext)
    climit = desc_limit(clo, chi)
    vm = eflags & F_VM
    if not cacc & 0x04 and cdpl < cpl:
        if vm and cdpl != 0:
            raise CPUFault(GP, (csel & 0xFFFC) | ext)
        nss, nesp = _tss_stack(cpu, cdpl, ext)
        slo, shi = _check_new_ss(cpu, nss, cdpl, ext)
        frame = []
        if vm:
            frame = [cpu.sreg[GS], cpu.sreg[FS], cpu.sreg[DS], cpu.sreg[ES]]
        frame += [cpu.sreg[SS], cpu.reg[4], eflags, cpu.sreg[CS], cpu.eip]
        if err is not None:
            frame.append(err)
        if not gate32:
            frame = [v & 0xFFFF for v in frame]
        _check_code_limit(cpu, offset, climit)
        esp = _push_all(cpu, desc_base(slo, shi), desc_limit(slo, shi), desc_attr(shi) | 1,
                        nesp, frame, size, False, (nss & 0xFFFC) | ext)
        _set_accessed(cpu, caddr, chi)
        if vm:
            for i in (ES, DS, FS, GS):
                _set_seg(cpu, i, 0, 0, 0, 0)
        _set_seg_desc(cpu, SS, nss, slo, shi)
        cpu.reg[4] = esp
        new_cpl = cdpl
    elif vm:
        raise CPUFault(GP, (csel & 0xFFFC) | ext)
    elif cacc & 0x04 or cdpl == cpl:
        frame = [eflags, cpu.sreg[CS], cpu.eip]
        if err is not None:
            frame.append(err)
        if not gate32:
            frame = [v & 0xFFFF for v in frame]
        _check_code_limit(cpu, offset, climit)
        esp = _cur_push(cpu, frame, size)
        _set_accessed(cpu, caddr, chi)
        cpu.reg[4] = esp
        new_cpl = cpl
    else:
        raise CPUFault(GP, (csel & 0xFFFC) | ext)
    _set_seg_desc(cpu, CS, (csel & 0xFFFC) | new_cpl, clo, chi)
    cpu.cpl = new_cpl
    cpu.eip = offset
    new_flags = eflags & ~(F_TF | F_NT | F_RF | F_VM)
    if not gtype & 1:  # interrupt gate
        new_flags &= ~F_IF
    cpu.set_eflags(new_flags)
    cpu.update_mode()


def _task_gate_target(cpu: Any, tsel: int, ext: int) -> Tuple[int, int]:
    """The available TSS descriptor a task gate names (#GP/#NP with the TSS selector)."""
    err = (tsel & 0xFFFC) | ext
    if tsel & 4:
        raise CPUFault(GP, err)
    addr = _desc_addr(cpu, tsel)
    if addr < 0 or not tsel & 0xFFFC:
        raise CPUFault(GP, err)
    lo, hi = _rd_desc(cpu, addr)
    access = (hi >> 8) & 0xFF
    if (access & 0x1F) not in (1, 9):
        raise CPUFault(GP, err)
    if not access & 0x80:
        raise CPUFault(NP, err)
    return lo, hi


def _class(vector: int) -> int:
    if vector in _CONTRIBUTORY:
        return 1
    if vector == 14:
        return 2
    return 0


def deliver_exception(cpu: Any, vector: int, error_code: Optional[int] = None) -> None:
    """Deliver a CPU exception, escalating to #DF and triple fault (SDM table 6-5).

    A fault raised while delivering is delivered in its turn (benign first event), turned
    into a double fault (contributory after contributory, or contributory/#PF after #PF),
    or, while delivering a double fault, ends in ``cpu.on_reset("triple-fault")`` with the
    CPU left halted.
    """
    first = vector
    for _ in range(8):
        try:
            interrupt(cpu, vector, "exception", error_code)
            return
        except CPUFault as fault:
            second = fault.vector
            if first == DF:
                break
            c1, c2 = _class(first), _class(second)
            if (c1 == 1 and c2 == 1) or (c1 == 2 and c2 != 0):
                vector, error_code = DF, 0
            else:
                vector, error_code = second, fault.error_code
            first = vector
    triple_fault(cpu)


def triple_fault(cpu: Any) -> None:
    """Shutdown: report to the machine (which normally resets) and stop the CPU."""
    cpu.halted = True
    stop = getattr(cpu, "request_stop", None)
    if stop is not None:
        stop()
    cb = getattr(cpu, "on_reset", None)
    if cb is not None:
        cb("triple-fault")


# ---------------------------------------------------------------------------
# Hardware task switch (SDM vol. 3 chapter 7)
# ---------------------------------------------------------------------------

# 32-bit TSS offsets of EAX..EDI and ES..GS.
_TSS32_REGS = (0x28, 0x2C, 0x30, 0x34, 0x38, 0x3C, 0x40, 0x44)
_TSS32_SEGS = (0x48, 0x4C, 0x50, 0x54, 0x58, 0x5C)
_TSS16_REGS = (0x12, 0x14, 0x16, 0x18, 0x1A, 0x1C, 0x1E, 0x20)
_TSS16_SEGS = (0x22, 0x24, 0x26, 0x28)


def task_switch(cpu: Any, sel: int, lo: int, hi: int, source: str,
                error_code: Optional[int] = None) -> None:
    """Switch to the task whose TSS descriptor (``lo``, ``hi``) selector ``sel`` names.

    ``source`` is ``"jmp"``, ``"call"``, ``"int"`` (interrupt/exception through a task gate,
    ``error_code`` pushed on the new task's stack) or ``"iret"`` (return to the back link).
    Checks on the new TSS raise in the old task; once the state is switched, faults found
    while loading the new task's LDT and segments are delivered in the new task.
    """
    access = (hi >> 8) & 0xFF
    is32 = bool(access & 0x08)
    nbase = desc_base(lo, hi)
    nlimit = desc_limit(lo, hi)
    if nlimit < (0x67 if is32 else 0x2B):
        raise CPUFault(TS, sel & 0xFFFC)
    # Read the whole new state first (page faults here are in the old task).
    if is32:
        n_cr3 = _rd(cpu, nbase + 0x1C, 4)
        n_eip = _rd(cpu, nbase + 0x20, 4)
        n_flags = _rd(cpu, nbase + 0x24, 4)
        n_regs = [_rd(cpu, nbase + o, 4) for o in _TSS32_REGS]
        n_segs = [_rd(cpu, nbase + o, 2) for o in _TSS32_SEGS]
        n_ldt = _rd(cpu, nbase + 0x60, 2)
    else:
        n_cr3 = -1
        n_eip = _rd(cpu, nbase + 0x0E, 2)
        n_flags = (_rd(cpu, nbase + 0x10, 2)) | 2
        old = cpu.reg
        n_regs = [(old[k] & 0xFFFF0000) | _rd(cpu, nbase + o, 2)
                  for k, o in enumerate(_TSS16_REGS)]
        n_segs = [_rd(cpu, nbase + o, 2) for o in _TSS16_SEGS] + [0, 0]
        n_ldt = _rd(cpu, nbase + 0x2A, 2)

    # Save the outgoing task.
    eflags = cpu.get_eflags()
    if source == "iret":
        eflags &= ~F_NT
    obase = cpu.tr_base
    if cpu.tr_attr & 0x08:
        _wr(cpu, obase + 0x20, cpu.eip, 4)
        _wr(cpu, obase + 0x24, eflags, 4)
        for k, o in enumerate(_TSS32_REGS):
            _wr(cpu, obase + o, cpu.reg[k], 4)
        for k, o in enumerate(_TSS32_SEGS):
            _wr(cpu, obase + o, cpu.sreg[k], 2)
    else:
        _wr(cpu, obase + 0x0E, cpu.eip, 2)
        _wr(cpu, obase + 0x10, eflags, 2)
        for k, o in enumerate(_TSS16_REGS):
            _wr(cpu, obase + o, cpu.reg[k], 2)
        for k, o in enumerate(_TSS16_SEGS):
            _wr(cpu, obase + o, cpu.sreg[k], 2)

    # Busy bits and back link.
    old_sel = cpu.tr_sel
    if source in ("jmp", "iret"):
        oaddr = _desc_addr(cpu, old_sel)
        if oaddr >= 0:
            b = _rd(cpu, oaddr + 5, 1)
            _wr(cpu, oaddr + 5, b & ~0x02, 1)
    if source in ("call", "int"):
        _wr(cpu, nbase, old_sel, 2)
        n_flags |= F_NT
    naddr = _desc_addr(cpu, sel)
    if source != "iret" and naddr >= 0:
        _wr(cpu, naddr + 5, access | 0x02, 1)
    cpu.tr_sel = sel
    cpu.tr_base = nbase
    cpu.tr_limit = nlimit
    cpu.tr_attr = desc_attr(hi) | 0x02
    cpu.cr0 |= CR0_TS

    # Load the incoming task's state.
    if is32 and cpu.cr0 & CR0_PG:
        cpu.cr3 = n_cr3 & 0xFFFFF018
        cpu.tlb_flush()
    cpu.reg[:] = [v & 0xFFFFFFFF for v in n_regs]
    cpu.eip = n_eip
    cpu.set_eflags(n_flags)
    vm = bool(n_flags & F_VM) and is32
    # Selectors first (a fault below shows the new task's selectors), caches invalid.
    for i in range(6):
        _set_seg(cpu, i, n_segs[i], 0, 0, 0)
    cpu.ldtr_sel = n_ldt
    cpu.ldtr_base = 0
    cpu.ldtr_limit = 0
    cpu.cpl = 3 if vm else (n_segs[CS] & 3)
    cpu.update_mode()
    try:
        _task_load_segments(cpu, n_segs, n_ldt, vm)
        _check_code_limit(cpu, cpu.eip, cpu.slimit[CS])
        if error_code is not None:
            cpu.reg[4] = _cur_push(cpu, [error_code], 4 if is32 else 2)
    except CPUFault as fault:
        # Faults after the switch belong to the new task.
        cpu.update_mode()
        deliver_exception(cpu, fault.vector, fault.error_code)
        return
    cpu.update_mode()


def _task_load_segments(cpu: Any, segs: List[int], ldt: int, vm: bool) -> None:
    # LDT.
    if ldt & 0xFFFC:
        if ldt & 4:
            raise CPUFault(TS, ldt & 0xFFFC)
        addr = _desc_addr(cpu, ldt)
        if addr < 0:
            raise CPUFault(TS, ldt & 0xFFFC)
        lo, hi = _rd_desc(cpu, addr)
        if ((hi >> 8) & 0x1F) != 0x02 or not hi & 0x8000:
            raise CPUFault(TS, ldt & 0xFFFC)
        cpu.ldtr_base = desc_base(lo, hi)
        cpu.ldtr_limit = desc_limit(lo, hi)
    if vm:
        for i in range(6):
            _set_seg(cpu, i, segs[i], segs[i] << 4, 0xFFFF, _V86_CS_ATTR if i == CS else _V86_ATTR)
        return
    cpl = cpu.cpl
    # CS.
    sel = segs[CS]
    if not sel & 0xFFFC:
        raise CPUFault(TS, 0)
    addr = _desc_addr(cpu, sel)
    if addr < 0:
        raise CPUFault(TS, sel & 0xFFFC)
    lo, hi = _rd_desc(cpu, addr)
    access = (hi >> 8) & 0xFF
    dpl = (access >> 5) & 3
    if (access & 0x18) != 0x18:
        raise CPUFault(TS, sel & 0xFFFC)
    if (access & 0x04 and dpl > cpl) or (not access & 0x04 and dpl != cpl):
        raise CPUFault(TS, sel & 0xFFFC)
    if not access & 0x80:
        raise CPUFault(NP, sel & 0xFFFC)
    _set_accessed(cpu, addr, hi)
    _set_seg_desc(cpu, CS, sel, lo, hi)
    # SS.
    sel = segs[SS]
    if not sel & 0xFFFC:
        raise CPUFault(TS, 0)
    addr = _desc_addr(cpu, sel)
    if addr < 0:
        raise CPUFault(TS, sel & 0xFFFC)
    lo, hi = _rd_desc(cpu, addr)
    access = (hi >> 8) & 0xFF
    if (sel & 3) != cpl or ((access >> 5) & 3) != cpl or (access & 0x1A) != 0x12:
        raise CPUFault(TS, sel & 0xFFFC)
    if not access & 0x80:
        raise CPUFault(SSF, sel & 0xFFFC)
    _set_accessed(cpu, addr, hi)
    _set_seg_desc(cpu, SS, sel, lo, hi)
    # Data segments.
    for i in (ES, DS, FS, GS):
        sel = segs[i]
        if not sel & 0xFFFC:
            continue
        addr = _desc_addr(cpu, sel)
        if addr < 0:
            raise CPUFault(TS, sel & 0xFFFC)
        lo, hi = _rd_desc(cpu, addr)
        access = (hi >> 8) & 0xFF
        dpl = (access >> 5) & 3
        if not access & 0x10 or (access & 0x0A) == 0x08:
            raise CPUFault(TS, sel & 0xFFFC)
        if (access & 0x0C) != 0x0C and (dpl < cpl or dpl < (sel & 3)):
            raise CPUFault(TS, sel & 0xFFFC)
        if not access & 0x80:
            raise CPUFault(NP, sel & 0xFFFC)
        _set_accessed(cpu, addr, hi)
        _set_seg_desc(cpu, i, sel, lo, hi)


# ---------------------------------------------------------------------------
# System instructions
# ---------------------------------------------------------------------------

def _require_cpl0(cpu: Any) -> None:
    """#GP(0) unless at CPL 0 (v86 mode runs at CPL 3)."""
    if cpu.cr0 & CR0_PE and (cpu.cpl != 0 or cpu.get_eflags() & F_VM):
        raise CPUFault(GP, 0)


def _require_protected(cpu: Any) -> None:
    """#UD in real and v86 mode (LLDT, SLDT, LTR, STR, LAR, LSL, VERR, VERW, ARPL)."""
    if _real_mode(cpu):
        raise CPUFault(UD)


def lgdt(cpu: Any, lin: int, o32: bool) -> None:
    """LGDT m16&32 at linear address ``lin`` (24-bit base with a 16-bit operand)."""
    _require_cpl0(cpu)
    user = cpu.cpl == 3
    limit = _rd(cpu, lin, 2, user)
    base = _rd(cpu, lin + 2, 4, user)
    cpu.gdtr_limit = limit
    cpu.gdtr_base = base if o32 else base & 0xFFFFFF


def lidt(cpu: Any, lin: int, o32: bool) -> None:
    _require_cpl0(cpu)
    user = cpu.cpl == 3
    limit = _rd(cpu, lin, 2, user)
    base = _rd(cpu, lin + 2, 4, user)
    cpu.idtr_limit = limit
    cpu.idtr_base = base if o32 else base & 0xFFFFFF


def _store_table(cpu: Any, lin: int, limit: int, base: int, o32: bool) -> None:
    user = cpu.cpl == 3
    if not o32:
        base &= 0xFFFFFF
    # Check both writes before doing either.
    _paging_check_write(cpu, lin, 6, user)
    _wr(cpu, lin, limit, 2, user)
    _wr(cpu, lin + 2, base, 4, user)


def _paging_check_write(cpu: Any, lin: int, size: int, user: bool) -> None:
    cpu.translate(lin, True, user)
    cpu.translate((lin + size - 1) & 0xFFFFFFFF, True, user)


def sgdt(cpu: Any, lin: int, o32: bool) -> None:
    _store_table(cpu, lin, cpu.gdtr_limit, cpu.gdtr_base, o32)


def sidt(cpu: Any, lin: int, o32: bool) -> None:
    _store_table(cpu, lin, cpu.idtr_limit, cpu.idtr_base, o32)


def lldt(cpu: Any, sel: int) -> None:
    _require_protected(cpu)
    _require_cpl0(cpu)
    sel &= 0xFFFF
    if not sel & 0xFFFC:
        cpu.ldtr_sel = sel
        cpu.ldtr_base = 0
        cpu.ldtr_limit = 0
        return
    if sel & 4:
        raise CPUFault(GP, sel & 0xFFFC)
    lo, hi, _addr = fetch_descriptor(cpu, sel)
    if ((hi >> 8) & 0x1F) != 0x02:
        raise CPUFault(GP, sel & 0xFFFC)
    if not hi & 0x8000:
        raise CPUFault(NP, sel & 0xFFFC)
    cpu.ldtr_sel = sel
    cpu.ldtr_base = desc_base(lo, hi)
    cpu.ldtr_limit = desc_limit(lo, hi)


def sldt(cpu: Any) -> int:
    _require_protected(cpu)
    return cpu.ldtr_sel & 0xFFFF


def ltr(cpu: Any, sel: int) -> None:
    _require_protected(cpu)
    _require_cpl0(cpu)
    sel &= 0xFFFF
    if not sel & 0xFFFC:
        raise CPUFault(GP, 0)
    if sel & 4:
        raise CPUFault(GP, sel & 0xFFFC)
    lo, hi, addr = fetch_descriptor(cpu, sel)
    access = (hi >> 8) & 0xFF
    if (access & 0x1F) not in (1, 9):
        raise CPUFault(GP, sel & 0xFFFC)
    if not access & 0x80:
        raise CPUFault(NP, sel & 0xFFFC)
    _wr(cpu, addr + 5, access | 0x02, 1)
    cpu.tr_sel = sel
    cpu.tr_base = desc_base(lo, hi)
    cpu.tr_limit = desc_limit(lo, hi)
    cpu.tr_attr = desc_attr(hi) | 0x02


def str_(cpu: Any) -> int:
    _require_protected(cpu)
    return cpu.tr_sel & 0xFFFF


def _visible_descriptor(cpu: Any, sel: int) -> Optional[Tuple[int, int]]:
    """Descriptor for LAR/LSL/VERR/VERW or None (null or beyond the table: ZF=0)."""
    if not sel & 0xFFFC:
        return None
    addr = _desc_addr(cpu, sel)
    if addr < 0:
        return None
    return _rd_desc(cpu, addr)


def _privilege_visible(cpu: Any, sel: int, access: int) -> bool:
    if (access & 0x1C) == 0x1C:  # conforming code: no privilege check
        return True
    dpl = (access >> 5) & 3
    return dpl >= cpu.cpl and dpl >= (sel & 3)


_LAR_SYSTEM_TYPES = frozenset((1, 2, 3, 4, 5, 9, 11, 12))
_LSL_SYSTEM_TYPES = frozenset((1, 2, 3, 9, 11))


def lar(cpu: Any, sel: int) -> Optional[int]:
    """LAR: the access-rights dword (masked 0x00F0FF00) or None (ZF=0)."""
    _require_protected(cpu)
    d = _visible_descriptor(cpu, sel & 0xFFFF)
    if d is None:
        return None
    access = (d[1] >> 8) & 0xFF
    if not access & 0x10 and (access & 0x0F) not in _LAR_SYSTEM_TYPES:
        return None
    if not _privilege_visible(cpu, sel, access):
        return None
    return d[1] & 0x00F0FF00


def lsl(cpu: Any, sel: int) -> Optional[int]:
    """LSL: the byte-granular segment limit or None (ZF=0)."""
    _require_protected(cpu)
    d = _visible_descriptor(cpu, sel & 0xFFFF)
    if d is None:
        return None
    access = (d[1] >> 8) & 0xFF
    if not access & 0x10 and (access & 0x0F) not in _LSL_SYSTEM_TYPES:
        return None
    if not _privilege_visible(cpu, sel, access):
        return None
    return desc_limit(d[0], d[1])


def verr(cpu: Any, sel: int) -> bool:
    """VERR: True (ZF=1) when the segment is readable at the current privilege."""
    _require_protected(cpu)
    d = _visible_descriptor(cpu, sel & 0xFFFF)
    if d is None:
        return False
    access = (d[1] >> 8) & 0xFF
    if not access & 0x10:
        return False
    if access & 0x08 and not access & 0x02:
        return False
    return _privilege_visible(cpu, sel, access)


def verw(cpu: Any, sel: int) -> bool:
    """VERW: True (ZF=1) when the segment is a writable data segment at this privilege."""
    _require_protected(cpu)
    d = _visible_descriptor(cpu, sel & 0xFFFF)
    if d is None:
        return False
    access = (d[1] >> 8) & 0xFF
    if (access & 0x1A) != 0x12:
        return False
    dpl = (access >> 5) & 3
    return dpl >= cpu.cpl and dpl >= (sel & 3)


def arpl(cpu: Any, dest: int, src: int) -> Tuple[int, bool]:
    """ARPL r/m16, r16: ``(new dest, ZF)``; #UD in real and v86 mode."""
    _require_protected(cpu)
    if (dest & 3) < (src & 3):
        return (dest & 0xFFFC) | (src & 3), True
    return dest, False


def clts(cpu: Any) -> None:
    _require_cpl0(cpu)
    cpu.cr0 &= ~CR0_TS


def lmsw(cpu: Any, value: int) -> None:
    """LMSW: loads PE, MP, EM, TS; can set PE but not clear it."""
    _require_cpl0(cpu)
    old = cpu.cr0
    new = (old & ~0xE) | (value & 0xE) | (old & 1) | (value & 1)
    cpu.cr0 = new
    if (new ^ old) & CR0_PE:
        cpu.update_mode()


def smsw(cpu: Any) -> int:
    """SMSW: CR0 (the core keeps the low 16 bits for a memory or 16-bit destination)."""
    return cpu.cr0 & 0xFFFFFFFF


def invlpg(cpu: Any, lin: int) -> None:
    _require_cpl0(cpu)
    cpu.tlb_flush_page(lin & 0xFFFFFFFF)


def mov_to_cr(cpu: Any, n: int, value: int) -> None:
    """MOV CRn, r32 (SDM vol. 2 MOV—Move to/from Control Registers)."""
    if n in (1, 5, 6, 7) or n > 7:
        raise CPUFault(UD)
    _require_cpl0(cpu)
    value &= 0xFFFFFFFF
    if n == 0:
        if value & CR0_PG and not value & CR0_PE:
            raise CPUFault(GP, 0)
        if value & CR0_NW and not value & CR0_CD:
            raise CPUFault(GP, 0)
        old = cpu.cr0
        new = (value & _CR0_WRITABLE) | CR0_ET
        cpu.cr0 = new
        if (old ^ new) & (CR0_PG | CR0_WP | CR0_PE):
            cpu.tlb_flush()
        if (old ^ new) & (CR0_PG | CR0_PE):
            if not new & CR0_PE:
                cpu.cpl = 0
            cpu.update_mode()
    elif n == 2:
        cpu.cr2 = value
    elif n == 3:
        cpu.cr3 = value & 0xFFFFF018
        cpu.tlb_flush()
    elif n == 4:
        if value & ~_CR4_WRITABLE:
            raise CPUFault(GP, 0)
        old = cpu.cr4
        cpu.cr4 = value
        if (old ^ value) & (CR4_PSE | CR4_PGE):
            cpu.tlb_flush()
        cpu.update_mode()


def mov_from_cr(cpu: Any, n: int) -> int:
    if n in (1, 5, 6, 7) or n > 7:
        raise CPUFault(UD)
    _require_cpl0(cpu)
    if n == 0:
        return cpu.cr0 & 0xFFFFFFFF
    if n == 2:
        return cpu.cr2 & 0xFFFFFFFF
    if n == 3:
        return cpu.cr3 & 0xFFFFFFFF
    return cpu.cr4 & 0xFFFFFFFF


def _dr_index(cpu: Any, n: int) -> int:
    if n in (4, 5):
        if cpu.cr4 & CR4_DE:
            raise CPUFault(UD)
        return n + 2
    return n


def mov_to_dr(cpu: Any, n: int, value: int) -> None:
    """MOV DRn, r32: stored; breakpoints themselves are not implemented."""
    n = _dr_index(cpu, n)
    _require_cpl0(cpu)
    value &= 0xFFFFFFFF
    if n == 6:
        value = (value & 0xE00F) | 0xFFFF0FF0
    elif n == 7:
        value = (value & 0xFFFF2BFF) | 0x400
    cpu.dr[n] = value


def mov_from_dr(cpu: Any, n: int) -> int:
    n = _dr_index(cpu, n)
    _require_cpl0(cpu)
    return cpu.dr[n] & 0xFFFFFFFF


def cpuid(cpu: Any) -> None:
    """CPUID: leaf 0 (max leaf 1, "GenuineIntel") and leaf 1; higher leaves read as leaf 1."""
    leaf = cpu.reg[0] & 0xFFFFFFFF
    r = cpu.reg
    if leaf == 0:
        r[0] = 1
        r[3] = 0x756E6547  # "Genu"
        r[2] = 0x49656E69  # "ineI"
        r[1] = 0x6C65746E  # "ntel"
    else:
        # Leaf 1 (and any leaf above the maximum, as Intel CPUs answer with the highest one).
        r[0] = CPUID_SIGNATURE
        r[3] = 0
        r[1] = 0
        r[2] = CPUID_FEATURES_EDX


def _tsc(cpu: Any) -> int:
    src = getattr(cpu, "tsc_source", None)
    base = src() if src is not None else cpu.instruction_count
    return (base + cpu.msr.get(MSR_TSC, 0)) & 0xFFFFFFFFFFFFFFFF


def rdtsc(cpu: Any) -> None:
    """RDTSC into EDX:EAX; #GP(0) with CR4.TSD outside CPL 0."""
    if cpu.cr4 & CR4_TSD and cpu.cr0 & CR0_PE and (cpu.cpl != 0 or cpu.get_eflags() & F_VM):
        raise CPUFault(GP, 0)
    t = _tsc(cpu)
    cpu.reg[0] = t & 0xFFFFFFFF
    cpu.reg[2] = t >> 32


def rdmsr(cpu: Any) -> None:
    _require_cpl0(cpu)
    n = cpu.reg[1] & 0xFFFFFFFF
    if n == MSR_TSC:
        value = _tsc(cpu)
    elif n in _MSR_STORED:
        value = cpu.msr.get(n, 0)
    else:
        raise CPUFault(GP, 0)
    cpu.reg[0] = value & 0xFFFFFFFF
    cpu.reg[2] = (value >> 32) & 0xFFFFFFFF


def wrmsr(cpu: Any) -> None:
    _require_cpl0(cpu)
    n = cpu.reg[1] & 0xFFFFFFFF
    value = ((cpu.reg[2] & 0xFFFFFFFF) << 32) | (cpu.reg[0] & 0xFFFFFFFF)
    if n == MSR_TSC:
        src = getattr(cpu, "tsc_source", None)
        base = src() if src is not None else cpu.instruction_count
        cpu.msr[MSR_TSC] = (value - base) & 0xFFFFFFFFFFFFFFFF
    elif n in _MSR_STORED:
        cpu.msr[n] = value
    else:
        raise CPUFault(GP, 0)


def hlt(cpu: Any) -> None:
    """HLT: #GP(0) outside CPL 0; otherwise the CPU sits halted until an interrupt."""
    _require_cpl0(cpu)
    cpu.halted = True


def cli(cpu: Any) -> None:
    eflags = cpu.get_eflags()
    if cpu.cr0 & CR0_PE:
        if eflags & F_VM:
            if _iopl(eflags) < 3:
                raise CPUFault(GP, 0)
        elif cpu.cpl > _iopl(eflags):
            raise CPUFault(GP, 0)
    cpu.set_eflags(eflags & ~F_IF)


def sti(cpu: Any) -> bool:
    """STI; returns True when IF went from 0 to 1 (the core then arms the shadow)."""
    eflags = cpu.get_eflags()
    if cpu.cr0 & CR0_PE:
        if eflags & F_VM:
            if _iopl(eflags) < 3:
                raise CPUFault(GP, 0)
        elif cpu.cpl > _iopl(eflags):
            raise CPUFault(GP, 0)
    if eflags & F_IF:
        return False
    cpu.set_eflags(eflags | F_IF)
    return True


def pushf_value(cpu: Any) -> int:
    """The EFLAGS image PUSHF/PUSHFD stores (VM and RF read as 0); #GP(0) in v86 at IOPL<3."""
    eflags = cpu.get_eflags()
    if eflags & F_VM and _iopl(eflags) < 3:
        raise CPUFault(GP, 0)
    return eflags & ~(F_VM | F_RF)


def popf(cpu: Any, value: int, o32: bool) -> None:
    """POPF/POPFD with the real/protected/v86 rules of SDM vol. 2 POPF."""
    eflags = cpu.get_eflags()
    if not cpu.cr0 & CR0_PE:
        mask = _POPF_MASK | F_IF | F_IOPL
    elif eflags & F_VM:
        if _iopl(eflags) < 3:
            raise CPUFault(GP, 0)
        mask = _POPF_MASK | F_IF
    else:
        mask = _POPF_MASK
        cpl = cpu.cpl
        if cpl == 0:
            mask |= F_IOPL | F_IF
        elif cpl <= _iopl(eflags):
            mask |= F_IF
    if not o32:
        mask &= 0xFFFF
    new = (eflags & ~mask) | (value & mask)
    cpu.set_eflags(new & ~F_RF)


def io_allowed(cpu: Any, port: int, size: int) -> bool:
    """Whether IN/OUT/INS/OUTS may touch ``size`` bytes at ``port`` (SDM vol. 1 18.5)."""
    if not cpu.cr0 & CR0_PE:
        return True
    eflags = cpu.get_eflags()
    if not eflags & F_VM and cpu.cpl <= _iopl(eflags):
        return True
    # I/O permission bitmap of a 32-bit TSS.
    if (cpu.tr_attr & 0x0D) != 0x09 or cpu.tr_limit < 0x67:
        return False
    base = cpu.tr_base
    bitmap = _rd(cpu, base + 0x66, 2)
    off = bitmap + (port >> 3)
    if off + 1 > cpu.tr_limit:
        return False
    bits = _rd(cpu, base + off, 2)
    mask = ((1 << size) - 1) << (port & 7)
    return not bits & mask


def check_io(cpu: Any, port: int, size: int) -> None:
    """Raise #GP(0) unless the current privilege may access the ports."""
    if not io_allowed(cpu, port & 0xFFFF, size):
        raise CPUFault(GP, 0)


# ---------------------------------------------------------------------------
# The hooks cpu.py looks up by name
# ---------------------------------------------------------------------------

def load_segment(cpu: Any, index: int, selector: int) -> None:
    """Hook for ``cpu.load_segment``: MOV/POP Sreg and LDS..LSS in protected mode."""
    load_sreg(cpu, index, selector)


def far_jump(cpu: Any, selector: int, offset: int, opsize32: Any) -> None:
    far_jmp(cpu, selector, offset, bool(opsize32))


def far_return(cpu: Any, opsize32: Any, pop_bytes: int) -> None:
    far_ret(cpu, bool(opsize32), pop_bytes)


def io_permission(cpu: Any, port: int, size: int) -> None:
    check_io(cpu, port, size)


def _set_zf(cpu: Any, on: bool) -> None:
    eflags = cpu.get_eflags()
    cpu.set_eflags((eflags | 0x40) if on else (eflags & ~0x40))


def _need_mem(op: Any) -> None:
    if op is None or not op.is_mem:
        raise CPUFault(UD)


def system_instruction(cpu: Any, name: str, op: Any) -> None:
    """Execute the system instruction ``name`` for the core's decoder.

    ``op`` is the core's decoded ModRM operand (``reg``, ``is_mem``, ``linear``,
    ``read(size)``, ``write(value, size)``, ``read_reg``/``write_reg``, ``opsize32``) or None;
    for PUSHF/POPF/CLI/STI/CPUID/RDMSR/WRMSR/RDTSC/HLT it is None and the operand size is
    ``cpu.pending_opsize32``. Names end without the ``*`` of ``cpu.SYSTEM_INSTRUCTIONS``.
    """
    name = name.rstrip("*")
    fn = _DISPATCH.get(name)
    if fn is None:
        raise CPUFault(UD)
    fn(cpu, op)


def _si_sldt(cpu: Any, op: Any) -> None:
    v = sldt(cpu)
    op.write(v, 4 if (not op.is_mem and op.opsize32) else 2)


def _si_str(cpu: Any, op: Any) -> None:
    v = str_(cpu)
    op.write(v, 4 if (not op.is_mem and op.opsize32) else 2)


def _si_lldt(cpu: Any, op: Any) -> None:
    _require_protected(cpu)
    _require_cpl0(cpu)
    lldt(cpu, op.read(2))


def _si_ltr(cpu: Any, op: Any) -> None:
    _require_protected(cpu)
    _require_cpl0(cpu)
    ltr(cpu, op.read(2))


def _si_verr(cpu: Any, op: Any) -> None:
    _require_protected(cpu)
    _set_zf(cpu, verr(cpu, op.read(2)))


def _si_verw(cpu: Any, op: Any) -> None:
    _require_protected(cpu)
    _set_zf(cpu, verw(cpu, op.read(2)))


def _si_sgdt(cpu: Any, op: Any) -> None:
    _need_mem(op)
    base = cpu.gdtr_base if op.opsize32 else cpu.gdtr_base & 0xFFFFFF
    op.write((cpu.gdtr_limit & 0xFFFF) | (base << 16), 6)


def _si_sidt(cpu: Any, op: Any) -> None:
    _need_mem(op)
    base = cpu.idtr_base if op.opsize32 else cpu.idtr_base & 0xFFFFFF
    op.write((cpu.idtr_limit & 0xFFFF) | (base << 16), 6)


def _si_lgdt(cpu: Any, op: Any) -> None:
    _need_mem(op)
    _require_cpl0(cpu)
    v = op.read(6)
    cpu.gdtr_limit = v & 0xFFFF
    base = (v >> 16) & 0xFFFFFFFF
    cpu.gdtr_base = base if op.opsize32 else base & 0xFFFFFF


def _si_lidt(cpu: Any, op: Any) -> None:
    _need_mem(op)
    _require_cpl0(cpu)
    v = op.read(6)
    cpu.idtr_limit = v & 0xFFFF
    base = (v >> 16) & 0xFFFFFFFF
    cpu.idtr_base = base if op.opsize32 else base & 0xFFFFFF


def _si_smsw(cpu: Any, op: Any) -> None:
    v = smsw(cpu)
    if not op.is_mem and op.opsize32:
        op.write(v, 4)
    else:
        op.write(v & 0xFFFF, 2)


def _si_lmsw(cpu: Any, op: Any) -> None:
    _require_cpl0(cpu)
    lmsw(cpu, op.read(2))


def _si_invlpg(cpu: Any, op: Any) -> None:
    _need_mem(op)
    invlpg(cpu, op.linear)


def _si_lar(cpu: Any, op: Any) -> None:
    _require_protected(cpu)
    v = lar(cpu, op.read(2))
    if v is not None:
        op.write_reg(v if op.opsize32 else v & 0xFFFF, 4 if op.opsize32 else 2)
    _set_zf(cpu, v is not None)


def _si_lsl(cpu: Any, op: Any) -> None:
    _require_protected(cpu)
    v = lsl(cpu, op.read(2))
    if v is not None:
        op.write_reg(v if op.opsize32 else v & 0xFFFF, 4 if op.opsize32 else 2)
    _set_zf(cpu, v is not None)


def _si_clts(cpu: Any, op: Any) -> None:
    clts(cpu)


def _si_arpl(cpu: Any, op: Any) -> None:
    _require_protected(cpu)
    dest = op.read(2)
    new, zf = arpl(cpu, dest, op.read_reg(2))
    if zf:
        op.write(new, 2)
    _set_zf(cpu, zf)


def _si_mov_from_cr(cpu: Any, op: Any) -> None:
    op.write(mov_from_cr(cpu, op.reg), 4)


def _si_mov_to_cr(cpu: Any, op: Any) -> None:
    mov_to_cr(cpu, op.reg, op.read(4))


def _si_mov_from_dr(cpu: Any, op: Any) -> None:
    op.write(mov_from_dr(cpu, op.reg), 4)


def _si_mov_to_dr(cpu: Any, op: Any) -> None:
    mov_to_dr(cpu, op.reg, op.read(4))


def _si_cpuid(cpu: Any, op: Any) -> None:
    cpuid(cpu)


def _si_rdmsr(cpu: Any, op: Any) -> None:
    rdmsr(cpu)


def _si_wrmsr(cpu: Any, op: Any) -> None:
    wrmsr(cpu)


def _si_rdtsc(cpu: Any, op: Any) -> None:
    rdtsc(cpu)


def _si_cache(cpu: Any, op: Any) -> None:
    """WBINVD/INVD: privileged no-ops (there is no cache to write back)."""
    _require_cpl0(cpu)


def _si_hlt(cpu: Any, op: Any) -> None:
    hlt(cpu)


def _si_cli(cpu: Any, op: Any) -> None:
    cli(cpu)


def _si_sti(cpu: Any, op: Any) -> None:
    if sti(cpu):
        cpu.shadow = True


def _si_pushf(cpu: Any, op: Any) -> None:
    value = pushf_value(cpu)
    if cpu.pending_opsize32:
        cpu.reg[4] = _cur_push(cpu, [value], 4)
    else:
        cpu.reg[4] = _cur_push(cpu, [value & 0xFFFF], 2)


def _si_popf(cpu: Any, op: Any) -> None:
    o32 = bool(cpu.pending_opsize32)
    size = 4 if o32 else 2
    eflags = cpu.get_eflags()
    if eflags & F_VM and _iopl(eflags) < 3:
        raise CPUFault(GP, 0)
    esp = cpu.reg[4]
    value = _stack_read(cpu, esp, 0, size, cpu.cpl == 3)
    popf(cpu, value, o32)
    cpu.reg[4] = _add_esp(cpu, esp, size)


_DISPATCH = {
    "sldt": _si_sldt, "str": _si_str, "lldt": _si_lldt, "ltr": _si_ltr,
    "verr": _si_verr, "verw": _si_verw,
    "sgdt": _si_sgdt, "sidt": _si_sidt, "lgdt": _si_lgdt, "lidt": _si_lidt,
    "smsw": _si_smsw, "lmsw": _si_lmsw, "invlpg": _si_invlpg,
    "lar": _si_lar, "lsl": _si_lsl, "clts": _si_clts, "arpl": _si_arpl,
    "mov_from_cr": _si_mov_from_cr, "mov_to_cr": _si_mov_to_cr,
    "mov_from_dr": _si_mov_from_dr, "mov_to_dr": _si_mov_to_dr,
    "cpuid": _si_cpuid, "rdmsr": _si_rdmsr, "wrmsr": _si_wrmsr, "rdtsc": _si_rdtsc,
    "wbinvd": _si_cache, "invd": _si_cache,
    "hlt": _si_hlt, "cli": _si_cli, "sti": _si_sti, "pushf": _si_pushf, "popf": _si_popf,
}

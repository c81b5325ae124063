"""Hand-picked snippets written in NASM syntax, assembled with ``nasm -f bin`` at test time.

These cover what the random grammar does not reach or what Unicorn may get wrong: the BCD
instructions over every AL value and carry/adjust combination, AAM/AAD with any base,
SALC, CMPXCHG8B, BOUND, ARPL, LOCK prefixes, redundant prefixes and multi-byte NOPs,
PUSH/POP ESP and POP with an ESP-based destination, ENTER nesting levels, XLAT, BSF/BSR of
zero, overlapping REP MOVS, self-modifying code, near CALL/RET/JMP, one register as both
operands.  Each snippet starts with EDI at the data region and ESP at the
stack; results are stored to memory (flags via LAHF masked to the defined bits) or left in
registers.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import tempfile
from typing import Dict, List, Optional, Tuple

from . import layout
from .grammar import ARITH, Insn, Snippet, Unit

M32 = 0xFFFFFFFF


def nasm_unavailable() -> Optional[str]:
    if shutil.which("nasm") is None:
        return "nasm is not installed (Debian: nasm; scripts/setup-debian installs it)"
    return None


def assemble(source: str, base: int, bits: int = 32) -> bytes:
    """Assemble ``source`` as flat binary for address ``base + layout.CODE``."""
    with tempfile.TemporaryDirectory(prefix="pyv86-nasm-") as d:
        src = os.path.join(d, "s.asm")
        out = os.path.join(d, "s.bin")
        with open(src, "w") as f:
            f.write(f"bits {bits}\norg {base + layout.CODE:#x}\n{source}\n")
        proc = subprocess.run(["nasm", "-f", "bin", "-o", out, src], capture_output=True,
                              text=True, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"nasm failed:\n{proc.stderr}\n{source}")
        with open(out, "rb") as f:
            return f.read()


def make(name: str, source: str, base: int, undef: int = 0, seed: int = 0,
         regs: Optional[Dict[int, int]] = None, eflags: int = 0x202) -> Snippet:
    """A snippet from NASM source (one unit; ``undef``: flags undefined at its end)."""
    code = assemble(source, base)
    rng = random.Random(f"{name}:{seed}")
    r = [rng.getrandbits(32) for _ in range(8)]
    r[4] = base + layout.STACK_TOP
    r[7] = base + layout.DATA + 0x100
    for i, v in (regs or {}).items():
        r[i] = v & M32
    text = "; ".join(line.strip() for line in source.strip().splitlines()[:6])
    ins = Insn(code, text[:200] + (" ..." if source.count("\n") > 6 else ""), undef=undef)
    s = Snippet([Unit([ins], pinned=True)], r, eflags, rng.randbytes(layout.DATA_END - layout.DATA),
                rng.randbytes(layout.STACK_HI - layout.STACK_LO), True, base, f"handpicked {name}")
    s.source = source  # type: ignore[attr-defined]
    return s


# ---------------------------------------------------------------------------- BCD sweeps
# Each case: load EFLAGS (CF/AF chosen) and EAX, run the instruction, store EAX, then LAHF
# masked to the flags the SDM defines for it.  Intel SDM vol. 2: DAA/DAS define CF AF SF ZF
# PF (OF undefined); AAA/AAS define AF CF (OF SF ZF PF undefined); AAM/AAD define SF ZF PF
# (OF AF CF undefined).
_LAHF_MASK = {"daa": 0xD5, "das": 0xD5, "aaa": 0x11, "aas": 0x11, "aam": 0xC4, "aad": 0xC4}


def bcd_cases(op: str) -> List[Tuple[int, int, int]]:
    """(eax, eflags, imm) inputs for one BCD instruction."""
    cases = []
    if op in ("daa", "das"):
        for al in range(256):
            for cf, af in ((0, 0), (1, 0), (0, 1), (1, 1)):
                cases.append((0x5A00 | al, 0x202 | cf | (af << 4), 0))
    elif op in ("aaa", "aas"):
        for al in range(256):
            for cf, af in ((0, 0), (1, 1), (0, 1), (1, 0)):
                ah = (al * 7 + cf) & 0xFF
                cases.append((0xA5A50000 | (ah << 8) | al, 0x202 | cf | (af << 4), 0))
    elif op == "aam":
        for imm in (10, 16, 7, 1, 0xFF, 0x80):
            for al in range(256):
                cases.append((0x1234FF00 | al, 0x202, imm))
    else:  # aad
        rng = random.Random("aad")
        for imm in (10, 16, 7, 0, 1, 0xFF):
            for _ in range(128):
                cases.append((0x5A5A0000 | rng.getrandbits(16), 0x202, imm))
    return cases


def bcd_snippets(op: str, base: int, per_snippet: int = 64) -> List[Snippet]:
    cases = bcd_cases(op)
    out = []
    for start in range(0, len(cases), per_snippet):
        lines = []
        for k, (eax, fl, imm) in enumerate(cases[start:start + per_snippet]):
            insn = f"{op} {imm}" if op in ("aam", "aad") else op
            lines += [f"push dword {fl:#x}", "popfd", f"mov eax, {eax:#x}", insn,
                      f"mov [edi+{8 * k}], eax", "lahf", f"and ah, {_LAHF_MASK[op]:#x}",
                      f"mov [edi+{8 * k + 4}], ah"]
        out.append(make(f"{op}-sweep-{start}", "\n".join(lines), base, undef=ARITH))
    return out


# ---------------------------------------------------------------------------- single snippets
MISC: Dict[str, Tuple[str, int]] = {
    # name: (source, flags undefined at the end)
    "salc sets AL from CF (undocumented D6, P6 and AMD)": ("""
        stc
        salc
        mov [edi], al
        clc
        salc
        mov [edi+1], al
        mov al, 0x11
        stc
        salc
    """, 0),
    "cmpxchg8b stores on equal, loads on not-equal, ZF only": ("""
        mov eax, [edi]
        mov edx, [edi+4]
        mov ebx, 0x11111111
        mov ecx, 0x22222222
        cmp eax, eax
        cmpxchg8b [edi]
        setz [edi+32]
        cmpxchg8b [edi+8]
        setz [edi+33]
        lock cmpxchg8b [edi+16]
        setz [edi+34]
    """, 0),
    "bound within range does not trap (32- and 16-bit)": ("""
        mov dword [edi], -5
        mov dword [edi+4], 100
        mov eax, 7
        bound eax, [edi]
        mov eax, -5
        bound eax, [edi]
        mov eax, 100
        bound eax, [edi]
        mov word [edi+8], 3
        mov word [edi+10], 9
        mov ax, 9
        bound ax, [edi+8]
    """, 0),
    "arpl raises the RPL and sets ZF, register and memory forms": ("""
        mov ax, 0x1230
        mov bx, 0x0003
        arpl ax, bx
        setz cl
        arpl ax, bx
        setz ch
        mov word [edi], 0x4441
        arpl [edi], bx
        setz dl
        arpl [edi], ax
        setz dh
    """, 0),
    "lock prefix on read-modify-write memory operations": ("""
        lock add [edi], eax
        lock xadd [edi+4], ecx
        lock bts dword [edi+8], 5
        lock btr dword [edi+8], 9
        lock btc dword [edi+8], 31
        lock cmpxchg [edi+12], edx
        lock inc dword [edi+16]
        lock not byte [edi+20]
        lock neg word [edi+22]
        lock xchg [edi+24], ebx
        lock sbb byte [edi+28], 3
    """, 0),
    "redundant prefixes, PAUSE and multi-byte NOPs": ("""
        db 0x66, 0x66, 0x05, 0x34, 0x12
        db 0xf3, 0x90
        db 0x66, 0x90
        nop dword [eax+eax*1+0x12345678]
        db 0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00
        db 0x3e, 0x3e, 0x8b, 0x07
        db 0x2e, 0x3e, 0x03, 0x47, 0x04
        db 0xf2, 0x66, 0x90
    """, 0),
    "push esp pushes the old value, pop esp loads the popped value": ("""
        push esp
        pop eax
        push esp
        pop esp
        mov ebx, esp
        push word 0x1234
        push sp
        pop cx
        pop dx
        push 0x55
        mov [edi], esp
        pop dword [edi+4]
    """, 0),
    "pop with an ESP-based destination uses ESP after the increment": ("""
        push dword 0x12345678
        push dword 0x9abcdef0
        push dword 0x0badcafe
        pop dword [esp+4]
        pop dword [esp]
        mov eax, [esp]
        mov ebx, [esp-4]
        push word 0x7777
        pop word [esp+2]
    """, 0),
    "enter with nesting levels 1-31 and 16-bit operand size, leave": ("""
        mov ebp, esp
        sub ebp, 0x40
        enter 0x10, 1
        mov eax, ebp
        leave
        enter 0x8, 3
        mov ebx, esp
        leave
        enter 0, 31
        mov ecx, esp
        leave
        db 0x66, 0xc8, 0x04, 0x00, 0x02
        mov edx, esp
        db 0x66, 0xc9
        enter 0x123, 0
        leave
    """, 0),
    "xlat with and without a segment override": ("""
        mov ebx, edi
        mov al, 0x85
        xlatb
        mov cl, al
        mov al, 0x03
        es xlatb
        mov ch, al
        mov al, 0xff
        cs xlatb
    """, 0),
    "bsf/bsr of zero set ZF and leave the destination unchanged (AMD documents it, Intel and QEMU do it)": ("""
        mov eax, 0x12345678
        mov ebx, 0x9abcdef0
        xor ecx, ecx
        bsf eax, ecx
        setz [edi]
        bsr ebx, ecx
        setz [edi+1]
        mov dx, 0x4321
        bsf dx, cx
        bsr si, [edi+0x40]
    """, 0x1 | 0x800 | 0x80 | 0x10 | 0x4),
    "rep movsb overlapping forwards smears, backwards copies (and movsd)": ("""
        lea esi, [edi+0x200]
        lea edi, [edi+0x201]
        mov ecx, 100
        cld
        rep movsb
        mov esi, edi
        sub esi, 0x40
        lea edi, [esi-1]
        mov ecx, 77
        rep movsb
        lea edi, [esi+0x100]
        lea esi, [edi+2]
        std
        mov ecx, 50
        rep movsd
        cld
    """, 0),
    "rep stos and rep lods with count 0 change nothing; lods leaves the last element": ("""
        xor ecx, ecx
        mov eax, 0xdeadbeef
        rep stosd
        mov ecx, 5
        lea esi, [edi+0x300]
        rep lodsw
        mov ecx, 0x1000
        rep stosb
    """, 0),
    "shifts of 8- and 16-bit operands by 8..31 (SAR keeps the sign, RCL/RCR rotate through CF)": ("""
        mov eax, 0x80c0e0f0
        stc
        sar al, 9
        rcl ah, 13
        setc [edi]
        mov bx, 0x8001
        rcr bx, 17
        setc [edi+1]
        mov cx, 0x8421
        rol cx, 16
        setc [edi+2]
        ror cx, 20
        setc [edi+3]
        mov dl, 0x81
        sar dl, 31
        setc [edi+4]
    """, 0x800 | 0x10),
    "imul and mul set CF/OF from the high half in every size": ("""
        mov eax, 0x7f
        mov ecx, 0xff
        imul cl
        seto [edi]
        mov eax, 0x10
        mul cl
        setc [edi+1]
        mov eax, 0x4000
        imul ax, ax, 2
        seto [edi+2]
        mov eax, 0xffffffff
        mov edx, 2
        imul edx
        setc [edi+3]
        imul eax, [edi+0x40], -3
        seto [edi+4]
    """, 0x80 | 0x40 | 0x10 | 0x4),
    "self-modifying code: a store to the next instruction and to a loop body takes effect": ("""
        mov byte [patch1+1], 0x77
    patch1:
        mov al, 0x11
        mov [edi], al
        mov dword [patch2+1], 0
        xor ebx, ebx
        mov ecx, 4
    top:
    patch2:
        add eax, 0x01020304
        add ebx, eax
        add dword [patch2+1], 0x10
        dec ecx
        jnz top
        mov [edi+4], ebx
        mov word [patch3], 0x9090
    patch3:
        jmp short patch3_end
        mov byte [edi+8], 0x5a
    patch3_end:
    """, 0),
    "near CALL/RET/JMP: rel32, register and memory indirect, RET imm16": ("""
        mov ebx, sub1
        mov [edi], ebx
        call sub1
        call ebx
        call [edi]
        mov ecx, after_jmp
        jmp ecx
        mov eax, 0x1111
    after_jmp:
        mov dword [edi+4], after_jmp2
        jmp [edi+4]
        mov eax, 0x2222
    after_jmp2:
        push dword 0x33
        push dword 0x44
        call sub2
        mov [edi+8], esp
        jmp done
    sub1:
        add eax, 3
        mov [edi+12], esp
        ret
    sub2:
        mov edx, [esp+4]
        ret 8
    done:
    """, 0),
    "one register as both operands (xadd, xchg, cmpxchg, shld, bts, bsf, imul, movzx)": ("""
        mov eax, 0x89abcdef
        xadd eax, eax
        mov ebx, 0x12345678
        xchg ebx, ebx
        xchg bl, bh
        cmpxchg ecx, ecx
        mov edx, 0x80000001
        shld edx, edx, 5
        mov esi, 0x1234
        bts esi, esi
        bsf edi, edi
        mov ebp, 0xfffffff6
        imul ebp, ebp
        mov ecx, 0xfedcba98
        movzx ecx, cl
        movsx cx, ch
        xadd dh, dh
        cmpxchg al, al
    """, 0),
}


def misc_snippet(name: str, base: int, seed: int = 0) -> Snippet:
    source, undef = MISC[name]
    return make(name, source, base, undef=undef, seed=seed)

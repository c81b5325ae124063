"""Lazy arithmetic flags.

The core records the last flag-setting operation (``cpu.lz_op``) with its operands, carry-in
and result; the six arithmetic flags are computed only when something reads them.
``lz_sz`` is the operand size index: 0 = byte, 1 = word, 2 = dword.
"""

from __future__ import annotations

from typing import Tuple

# lazy operation kinds (0 = flags are materialized in cpu.flags)
L_ADD, L_ADC, L_SUB, L_SBB, L_LOGIC, L_INC, L_DEC, L_NEG = 1, 2, 3, 4, 5, 6, 7, 8

MASKS = (0xFF, 0xFFFF, 0xFFFFFFFF)
SIGNS = (0x80, 0x8000, 0x80000000)
SHIFT = (7, 15, 31)

# PF for every byte value
PARITY = bytes(4 if bin(i).count("1") % 2 == 0 else 0 for i in range(256))

ALL6 = 0x8D5  # CF PF AF ZF SF OF
NOCF = 0x8D4


def szp(res: int, sz: int) -> int:
    """SF, ZF and PF of a result already masked to its size."""
    return (PARITY[res & 0xFF] | (0x40 if res == 0 else 0)
            | (0x80 if res & SIGNS[sz] else 0))


def lazy_flags(op: int, a: int, b: int, c: int, res: int, sz: int) -> Tuple[int, int]:
    """Return (flag bits, mask of the bits they define) for a recorded lazy operation."""
    sh = SHIFT[sz]
    f = PARITY[res & 0xFF] | (0x40 if res == 0 else 0) | ((res >> sh) & 1) << 7
    if op == L_ADD or op == L_ADC:
        if op == L_ADD:
            cf = res < a
        else:
            cf = res < a or (c != 0 and res == a)
        f |= (1 if cf else 0) | ((a ^ b ^ res) & 0x10) | ((((a ^ res) & (b ^ res)) >> sh) & 1) << 11
        return f, ALL6
    if op == L_SUB or op == L_SBB:
        if op == L_SUB:
            cf = a < b
        else:
            cf = a < b or (c != 0 and a == b)
        f |= (1 if cf else 0) | ((a ^ b ^ res) & 0x10) | ((((a ^ b) & (a ^ res)) >> sh) & 1) << 11
        return f, ALL6
    if op == L_LOGIC:
        return f, ALL6
    if op == L_INC:  # b == 1
        f |= ((a ^ res) & 0x10) | (0x800 if res == SIGNS[sz] else 0)
        return f, NOCF
    if op == L_DEC:
        f |= ((a ^ res) & 0x10) | (0x800 if res == SIGNS[sz] - 1 else 0)
        return f, NOCF
    if op == L_NEG:  # 0 - a
        f |= (1 if res != 0 else 0) | ((a ^ res) & 0x10) | (0x800 if res == SIGNS[sz] else 0)
        return f, ALL6
    raise ValueError(f"unknown lazy flag op {op}")

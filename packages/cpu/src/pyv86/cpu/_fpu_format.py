"""Exact conversions between Python floats, integers and the x87 memory formats.

Pure functions, no state.  A finite value is handled as ``(neg, mant, e2)`` meaning
``(-1)**neg * mant * 2**e2`` with ``mant`` a non-negative Python int, so rounding to any
format is exact integer arithmetic and honours every rounding-control mode.

Rounding control (RC, control word bits 10-11): 0 nearest-even, 1 down (toward -inf),
2 up (toward +inf), 3 chop (toward zero).
"""

from __future__ import annotations

import struct
from fractions import Fraction
from math import isqrt
from typing import Optional, Tuple

_D = struct.Struct("<d")
_Q = struct.Struct("<Q")

MASK52 = (1 << 52) - 1
MASK64 = (1 << 64) - 1
INT_BIT = 1 << 63

# Exception flags (status word bits 0-5) and the stack fault bit.
IE, DE, ZE, OE, UE, PE, SF = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40

IND_D_BITS = 0xFFF8000000000000  # the "real indefinite" QNaN as a double
IND_F32 = 0xFFC00000
IND_F64 = 0xFFF8000000000000
IND_EXT = (0xFFFF << 64) | 0xC000000000000000
IND_BCD = 0xFFFFC000000000000000

INF = float("inf")
IND = _D.unpack(_Q.pack(IND_D_BITS))[0]
DBL_MAX = 1.7976931348623157e308
DBL_MIN = 2.2250738585072014e-308


def f2b(x: float) -> int:
    """The 64 bits of a double."""
    return int(_Q.unpack(_D.pack(x))[0])


def b2f(b: int) -> float:
    """The double with these 64 bits."""
    return float(_D.unpack(_Q.pack(b & MASK64))[0])


def float_parts(x: float) -> Tuple[int, int, int]:
    """Exact ``(neg, mant, e2)`` of a finite double."""
    b = f2b(x)
    e = (b >> 52) & 0x7FF
    f = b & MASK52
    if e == 0:
        return b >> 63, f, -1074
    return b >> 63, f | (1 << 52), e - 1075


def round_mant(neg: int, mant: int, e2: int, prec: int, etiny: int, rc: int
               ) -> Tuple[int, int, bool, bool]:
    """Round ``mant * 2**e2`` to ``prec`` significant bits and a unit not below 2**etiny.

    Returns ``(q, ue, inexact, away)``: the result is ``q * 2**ue``; ``away`` tells that the
    magnitude was increased (rounded away from zero)."""
    ue = e2 + mant.bit_length() - prec
    if ue < etiny:
        ue = etiny
    if ue <= e2:
        return mant, e2, False, False
    s = ue - e2
    q = mant >> s
    rem = mant - (q << s)
    if not rem:
        return q, ue, False, False
    if rc == 0:
        half = 1 << (s - 1)
        inc = rem > half or (rem == half and (q & 1) == 1)
    elif rc == 3:
        inc = False
    elif rc == 1:
        inc = bool(neg)
    else:
        inc = not neg
    if inc:
        q += 1
    return q, ue, True, inc


# (precision, etiny, emin (smallest normal exponent), emax, exponent bias, fraction bits)
F32 = (24, -149, -126, 127, 127, 23)
F64 = (53, -1074, -1022, 1023, 1023, 52)


def _overflow_bits(neg: int, rc: int, fmt: tuple) -> Tuple[int, bool]:
    """Masked overflow response: infinity or the largest finite number, by RC and sign."""
    bias, fbits = fmt[4], fmt[5]
    to_inf = rc == 0 or (rc == 1 and neg) or (rc == 2 and not neg)
    top = neg << (fbits + (11 if fbits == 52 else 8))
    if to_inf:
        return top | ((2 * bias + 1) << fbits), True
    return top | ((2 * bias) << fbits) | ((1 << fbits) - 1), False


def encode_binary(neg: int, mant: int, e2: int, rc: int, fmt: tuple, ue_unmasked: bool = False
                  ) -> Tuple[int, int, bool]:
    """Round an exact finite value to an IEEE binary format (F32/F64).

    Returns ``(bits, flags, away)`` with flags among OE, UE, PE (masked responses)."""
    prec, etiny, emin, emax, bias, fbits = fmt
    sign = neg << (fbits + (11 if fbits == 52 else 8))
    if mant == 0:
        return sign, 0, False
    # tininess is detected after rounding (to the precision, exponent unbounded), as the
    # x87 does: a value that rounds up to the smallest normal is not tiny
    tiny = e2 + mant.bit_length() - 1 < emin
    if tiny:
        q2, ue2, _, _ = round_mant(neg, mant, e2, prec, -(1 << 30), rc)
        tiny = ue2 + q2.bit_length() - 1 < emin
    q, ue, inexact, away = round_mant(neg, mant, e2, prec, etiny, rc)
    if q >> prec:
        q >>= 1
        ue += 1
    else:
        short = prec - q.bit_length()
        if short > 0 and q:
            short = min(short, ue - etiny)
            q <<= short
            ue -= short
    flags = 0
    if inexact:
        flags = PE
    if q == 0:
        return sign, (flags | UE) if (tiny and (inexact or ue_unmasked)) else flags, away
    top = ue + q.bit_length() - 1
    if top > emax:
        bits, away = _overflow_bits(neg, rc, fmt)
        return bits, OE | PE, away
    if tiny and (inexact or ue_unmasked):
        flags |= UE
    if q >> (prec - 1):
        return sign | ((ue + bias + fbits) << fbits) | (q & ((1 << fbits) - 1)), flags, away
    return sign | q, flags, away  # denormal (ue == etiny)


def double_to_ext(x: float) -> int:
    """Exact 80-bit image of a double (every double is representable)."""
    b = f2b(x)
    sign = (b >> 63) << 79
    e = (b >> 52) & 0x7FF
    f = b & MASK52
    if e == 0x7FF:
        return sign | (0x7FFF << 64) | INT_BIT | (f << 11)
    if e == 0:
        if f == 0:
            return sign
        n = f.bit_length()
        return sign | (((n - 1) - 1074 + 16383 + 63 - 63) << 64) | (f << (64 - n))
    return sign | ((e - 1023 + 16383) << 64) | INT_BIT | (f << 11)


def ext_class(raw: int) -> int:
    """0 normal, 1 zero, 2 denormal, 3 infinity, 4 NaN, 5 unsupported encoding."""
    e = (raw >> 64) & 0x7FFF
    m = raw & MASK64
    if e == 0x7FFF:
        if not m & INT_BIT:
            return 5
        return 3 if (m & (INT_BIT - 1)) == 0 else 4
    if e == 0:
        return 1 if m == 0 else 2
    return 0 if m & INT_BIT else 5


def ext_parts(raw: int) -> Tuple[int, int, int]:
    """Exact ``(neg, mant, e2)`` of a finite 80-bit value (any class but inf/NaN)."""
    e = (raw >> 64) & 0x7FFF
    return raw >> 79, raw & MASK64, (e if e else 1) - 16383 - 63


def ext_to_double(raw: int) -> float:
    """Nearest double to an 80-bit value (NaN payloads keep their top 52 bits; unsupported
    encodings become the real indefinite)."""
    cls = ext_class(raw)
    neg = raw >> 79
    if cls == 3:
        return -INF if neg else INF
    if cls == 4:
        f = (raw >> 11) & MASK52
        if f == 0:
            f = 1
        return b2f((neg << 63) | (0x7FF << 52) | f)
    if cls == 5:
        return IND
    n, m, e2 = ext_parts(raw)
    bits, _, _ = encode_binary(n, m, e2, 0, F64)
    return b2f(bits)


def parts_to_ext(neg: int, mant: int, e2: int) -> int:
    """80-bit image of an exact integer-like value whose magnitude fits 64 significant bits."""
    if mant == 0:
        return neg << 79
    n = mant.bit_length()
    if n > 64:
        raise ValueError("more than 64 significant bits")
    return (neg << 79) | ((e2 + n - 1 + 16383) << 64) | (mant << (64 - n))


def f32_to_double(bits: int) -> Tuple[float, int]:
    """Load an m32 real: ``(value, flags)``; SNaN -> IE and quieted, denormal -> DE."""
    neg = bits >> 31
    e = (bits >> 23) & 0xFF
    f = bits & 0x7FFFFF
    if e == 0xFF:
        if f == 0:
            return (-INF if neg else INF), 0
        flags = 0 if f & 0x400000 else IE
        return b2f((neg << 63) | (0x7FF << 52) | ((f | 0x400000) << 29)), flags
    if e == 0:
        if f == 0:
            return (-0.0 if neg else 0.0), 0
        v = f * 2.0 ** -149
        return (-v if neg else v), DE
    return b2f((neg << 63) | ((e - 127 + 1023) << 52) | (f << 29)), 0


def f64_to_double(bits: int) -> Tuple[float, int]:
    """Load an m64 real: ``(value, flags)``."""
    e = (bits >> 52) & 0x7FF
    if e == 0x7FF:
        if bits & MASK52 and not bits & (1 << 51):
            return b2f(bits | (1 << 51)), IE
        return b2f(bits), 0
    if e == 0 and bits & MASK52:
        return b2f(bits), DE
    return b2f(bits), 0


def is_snan(x: float) -> bool:
    b = f2b(x)
    return (b >> 52) & 0x7FF == 0x7FF and bool(b & MASK52) and not b & (1 << 51)


def quiet(x: float) -> float:
    return b2f(f2b(x) | (1 << 51))


def nan_result(a: float, b: Optional[float]) -> Tuple[float, int]:
    """x87 NaN propagation for one or two operands, at least one a NaN: ``(result, flags)``.

    An SNaN operand raises IE; with two NaNs the one with the larger significand wins."""
    flags = 0
    if a != a and is_snan(a):
        flags = IE
    if b is not None and b != b and is_snan(b):
        flags = IE
    if b is None or b == b:
        return quiet(a), flags
    if a == a:
        return quiet(b), flags
    fa = f2b(a) & MASK52 | (1 << 51)
    fb = f2b(b) & MASK52 | (1 << 51)
    if fb > fa:
        return quiet(b), flags
    if fa > fb:
        return quiet(a), flags
    return (quiet(a) if f2b(a) >> 63 == 0 else quiet(b)), flags


def exact_sign(exact: Fraction, r: float) -> int:
    """Sign of ``exact - r`` (the slow, always-correct way)."""
    d = exact - Fraction(r)
    return (d > 0) - (d < 0)


def int_round(neg: int, mant: int, e2: int, rc: int) -> Tuple[int, bool, bool]:
    """Round an exact value to an integer: ``(signed value, inexact, away)``."""
    if e2 >= 0:
        v = mant << e2
        return (-v if neg else v), False, False
    q, ue, inexact, away = round_mant(neg, mant, e2, 1 << 20, 0, rc)
    v = q << ue
    return (-v if neg else v), inexact, away


def bcd_decode(raw: int) -> int:
    """Value of an 80-bit packed BCD integer (invalid digits are taken at face value)."""
    v = 0
    for i in range(8, -1, -1):
        byte = (raw >> (8 * i)) & 0xFF
        v = v * 100 + (byte >> 4) * 10 + (byte & 0xF)
    return -v if raw >> 79 else v


def bcd_encode(v: int) -> int:
    """80-bit packed BCD of an integer with ``abs(v) < 10**18``."""
    neg = v < 0 or (v == 0 and False)
    a = -v if v < 0 else v
    raw = 0
    for i in range(9):
        a, d = divmod(a, 100)
        raw |= ((d // 10) << 4 | (d % 10)) << (8 * i)
    return raw | (0x80 << 72 if neg else 0)


def ext_fraction(raw: int) -> Optional[Fraction]:
    """Exact value of a finite 80-bit number (None for infinities, NaNs, unsupported)."""
    if ext_class(raw) > 2:
        return None
    n, m, e = ext_parts(raw)
    fr = Fraction(m << e) if e >= 0 else Fraction(m, 1 << -e)
    return -fr if n else fr


def round_fraction(x: Fraction, rc: int) -> Tuple[float, int, bool]:
    """Round an exact non-zero rational to a double: ``(value, flags, away)``."""
    neg = int(x < 0)
    num = abs(x.numerator)
    den = x.denominator
    k = 55 + den.bit_length() - num.bit_length()
    if k >= 0:
        q, r = divmod(num << k, den)
    else:
        q, r = divmod(num, den << -k)
    bits, flags, away = encode_binary(neg, (q << 1) | (1 if r else 0), -k - 1, rc, F64)
    return b2f(bits), flags, away


def sqrt_parts(mant: int, e2: int, rc: int) -> Tuple[float, int, bool]:
    """Correctly rounded square root of a positive ``mant * 2**e2``."""
    if e2 & 1:
        mant <<= 1
        e2 -= 1
    s = max(0, (112 - mant.bit_length()) // 2 + 1)
    big = mant << (2 * s)
    root = isqrt(big)
    sticky = 1 if root * root != big else 0
    bits, flags, away = encode_binary(0, (root << 1) | sticky, (e2 - 2 * s) // 2 - 1, rc, F64)
    return b2f(bits), flags, away


def round_wide(neg: int, mant: int, e2: int, rc: int, prec: int = 53, unmasked: int = 0
               ) -> Tuple[int, int, bool]:
    """Round an exact non-zero value to ``prec`` (24, 53 or 64) significant bits with the
    80-bit exponent range, as the x87 does under precision control: ``(80-bit image,
    flags, away)``.  With OE or UE in ``unmasked`` an overflowing or tiny result is
    delivered with its exponent biased by -/+24576 (SDM vol. 1, 8.5.4/8.5.5)."""
    if unmasked & (OE | UE):
        top = e2 + mant.bit_length() - 1
        if unmasked & OE and top + 16383 >= 0x7FFF:
            raw, fl, away = round_wide(neg, mant, e2 - 24576, rc, prec)
            if (raw >> 64) & 0x7FFF < 0x7FFF:        # (still too large: masked response)
                return raw, OE | (fl & PE), away
        elif unmasked & UE and top < -16382:
            raw, fl, away = round_wide(neg, mant, e2 + 24576, rc, prec)
            return raw, UE | (fl & PE), away
    tiny = e2 + mant.bit_length() - 1 < -16382
    q, ue, inexact, away = round_mant(neg, mant, e2, prec, -16445, rc)
    if q >> prec:
        q >>= 1
        ue += 1
    flags = PE if inexact else 0
    if q == 0:
        return neg << 79, (flags | UE) if inexact else flags, away
    n = q.bit_length()
    biased = ue + n - 1 + 16383
    if biased >= 0x7FFF:
        to_inf = rc == 0 or (rc == 1 and neg == 1) or (rc == 2 and neg == 0)
        if to_inf:
            return (neg << 79) | (0x7FFF << 64) | INT_BIT, OE | PE, True
        return (neg << 79) | (0x7FFE << 64) | (((1 << prec) - 1) << (64 - prec)), OE | PE, False
    if tiny and inexact:
        q2, ue2, _, _ = round_mant(neg, mant, e2, prec, -(1 << 30), rc)
        if ue2 + q2.bit_length() - 1 < -16382:
            flags |= UE
    if biased <= 0:   # an 80-bit denormal: exponent field 0, unit 2**-16445
        return (neg << 79) | (q << (ue + 16445)), flags, away
    return (neg << 79) | (biased << 64) | (q << (64 - n)), flags, away


def fraction_wide(x: Fraction, rc: int, unmasked: int = 0) -> Tuple[int, int, bool]:
    """``round_wide`` of an exact non-zero rational."""
    neg = int(x < 0)
    num = abs(x.numerator)
    den = x.denominator
    k = 55 + den.bit_length() - num.bit_length()
    if k >= 0:
        q, r = divmod(num << k, den)
    else:
        q, r = divmod(num, den << -k)
    return round_wide(neg, (q << 1) | (1 if r else 0), -k - 1, rc, 53, unmasked)


def exact_to_ext(neg: int, mant: int, e2: int) -> Optional[int]:
    """80-bit image of an exact value if it is representable without rounding, else None
    (normal numbers with up to 64 significant bits, and 80-bit denormals)."""
    if mant == 0:
        return neg << 79
    n = mant.bit_length()
    biased = e2 + n - 1 + 16383
    if biased >= 0x7FFF:
        return None
    if biased > 0:
        if n > 64:
            low = n - 64
            if mant & ((1 << low) - 1):
                return None
            mant >>= low
            n = 64
        return (neg << 79) | (biased << 64) | (mant << (64 - n))
    shift = e2 + 16445           # denormal: a multiple of 2**-16445 below 2**-16382
    if shift < 0:
        if mant & ((1 << -shift) - 1):
            return None
        return (neg << 79) | (mant >> -shift)
    return (neg << 79) | (mant << shift)


def sqrt_wide(mant: int, e2: int, rc: int, prec: int) -> Tuple[int, int, bool]:
    """Square root of a positive exact value, rounded by ``round_wide``."""
    if e2 & 1:
        mant <<= 1
        e2 -= 1
    s = max(0, (2 * prec + 6 - mant.bit_length()) // 2 + 1)
    big = mant << (2 * s)
    root = isqrt(big)
    sticky = 1 if root * root != big else 0
    return round_wide(0, (root << 1) | sticky, (e2 - 2 * s) // 2 - 1, rc, prec)


def exact_op(kind: int, na: int, ma: int, ea: int, nb: int, mb: int, eb: int, prec: int,
             rc: int, unmasked: int = 0) -> Tuple[int, int, bool]:
    """``a op b`` on exact finite values (kind: 0 add, 1 mul, 4 sub, 5 subr, 6 div, 7 divr;
    no zero divisor), rounded by ``round_wide``: ``(80-bit image, flags, away)``."""
    if kind == 1:
        return round_wide(na ^ nb, ma * mb, ea + eb, rc, prec, unmasked)
    if kind == 6 or kind == 7:
        if kind == 7:
            na, ma, ea, nb, mb, eb = nb, mb, eb, na, ma, ea
        k = max(0, prec + 3 + mb.bit_length() - ma.bit_length())
        q, r = divmod(ma << k, mb)
        return round_wide(na ^ nb, (q << 1) | (1 if r else 0), ea - eb - k - 1, rc, prec,
                          unmasked)
    if kind == 4:
        nb ^= 1
    elif kind == 5:
        na ^= 1
    if ma == 0:
        return round_wide(nb, mb, eb, rc, prec, unmasked)
    if mb == 0:
        return round_wide(na, ma, ea, rc, prec, unmasked)
    ta = ea + ma.bit_length()
    tb = eb + mb.bit_length()
    # an operand entirely below the other's last bit and rounding point only matters as a
    # sticky bit: replace it by a tiny one of the same sign to keep the integers small
    lim = min(ea, ta - prec) - 3
    if tb < lim:
        mb, eb = 1, lim - 2
    else:
        lim = min(eb, tb - prec) - 3
        if ta < lim:
            ma, ea = 1, lim - 2
    e = min(ea, eb)
    A = ma << (ea - e)
    B = mb << (eb - e)
    S = (-A if na else A) + (-B if nb else B)
    if S == 0:
        return (1 if rc == 1 else 0) << 79, 0, False
    return round_wide(int(S < 0), -S if S < 0 else S, e, rc, prec, unmasked)

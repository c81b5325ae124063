"""The x87 floating-point unit of an i686 (opcodes D8-DF), without MMX/SSE.

The core calls ``FPU.execute(opcode, modrm, addr, mem, eflags, opsize32, protected)`` for
every D8-DF instruction after its own #NM/#MF checks (see ``waits``); this module never
touches CPU registers other than the EFLAGS value it is given and returns.

Precision (where this differs from 80-bit hardware)
---------------------------------------------------
Registers hold Python floats (IEEE doubles) plus an optional exact 80-bit shadow image.
Precision control is honoured for FADD/FSUB/FMUL/FDIV (all forms) and FSQRT: with PC=double
(the Windows/FreeBSD setting) the fast path uses float arithmetic with exact error terms
(TwoSum, Dekker products, rationals as a fallback); with PC=extended (the Linux default,
CW 037F) or PC=single the exact result is computed with Python integers and rounded once to
64 or 24 bits (several times slower; the result lives in the shadow).  The exponent range
is the 80-bit one: results beyond the double range are kept exactly in the shadow (their
float is infinity or zero), so overflow and underflow happen where the x87 has them.  All
four rounding-control modes are honoured for these results, for every store to
m16/m32/m64 integer, m32/m64 real, BCD, for FRNDINT and the FLD constants; PE, UE, OE,
ZE, DE, IE and C1 (rounded away from zero) follow.

The shadow makes moves exact: values loaded by FLD m80, FILD m64 beyond 2**53, FBLD, the
FLD constants and FRSTOR / FLDENV / restore_state are stored bit-exactly again by FSTP
m80, FIST(P), FBSTP, FNSAVE and save_state; arithmetic on such an operand is computed
exactly and rounded once; FRNDINT, FPREM/FPREM1,
FSCALE, FXTRACT, FABS, FCHS, compares and FXAM use the exact 80-bit value too.
Transcendentals (FSIN FCOS FSINCOS FPTAN FPATAN F2XM1 FYL2X FYL2XP1) use the host libm on
doubles: exact argument reduction instead of the x87's 66-bit pi, results within an ulp
of the double result, C1 cleared instead of reporting the rounding direction.

Exceptions
----------
Masked exceptions produce the IEEE/x87 default results.  An unmasked exception sets ES and
B in the status word: ``pending_unmasked()`` becomes true and the core raises #MF (or IRQ
13) on the next waiting FPU instruction.  For unmasked IE, DE and ZE the destination, the
stack and TOP are left unchanged; for unmasked OE/UE the arithmetic instructions deliver
the exponent-biased result (-/+24576) to a register destination, and a memory destination
is not written.

FIP/FCS/FDP/FDS/FOP: the core may pass the instruction's offset and CS and the data
segment selector as ``fip``, ``fcs``, ``fds`` (they default to 0); FDP is ``addr`` (the linear
address: equal to the offset in flat segments).  Real-mode environment images store the
20-bit linear instruction pointer ``(fcs << 4) + fip``.
"""

from __future__ import annotations

import math
import struct
from typing import Any, Callable, List, Optional, Tuple

from . import _fpu_format as F
from ._fault import CPUFault
from ._fpu_format import DE, IE, IND, INF, OE, PE, SF, UE, ZE

__all__ = ["FPU", "waits"]

STATE_VERSION = 1

C0, C1, C2, C3 = 0x0100, 0x0200, 0x0400, 0x4000
CC_MASK = C0 | C1 | C2 | C3
ES_B = 0x8080
TOP_MASK = 0x3800

_LN2 = math.log(2.0)
_SPLIT = 134217729.0  # 2**27 + 1 (Veltkamp)
_BIG = 2.0 ** 995
_SMALL = 2.0 ** -969
_TWO63 = 2.0 ** 63
_TWO52 = 2.0 ** 52
_F32 = struct.Struct("<f")
_U32 = struct.Struct("<I")
_F32_MIN = 1.1754943508222875e-38   # smallest normal single
_F32_MAX = 3.4028234663852886e38    # largest finite single

# FLD constants: nearest-rounded 80-bit images and whether nearest rounding went up
# (then RC=down/chop give the image below; otherwise RC=up gives the image above).
_CONSTS = [
    (0x3FFF8000000000000000, None),     # FLD1
    (0x4000D49A784BCD1B8AFE, False),    # FLDL2T
    (0x3FFFB8AA3B295C17F0BC, True),     # FLDL2E
    (0x4000C90FDAA22168C235, True),     # FLDPI
    (0x3FFD9A209A84FBCFF799, True),     # FLDLG2
    (0x3FFEB17217F7D1CF79AC, True),     # FLDLN2
    (0x00000000000000000000, None),     # FLDZ
]

_INT_LIMITS = {2: (-(1 << 15), (1 << 15) - 1, 0x8000), 4: (-(1 << 31), (1 << 31) - 1, 0x80000000),
               8: (-(1 << 63), (1 << 63) - 1, 1 << 63)}


def waits(opcode: int, modrm: int) -> bool:
    """Whether this D8-DF instruction is a waiting one (checks pending unmasked exceptions
    before it executes).  FNINIT, FNCLEX, FNSTCW, FNSTSW, FNSTENV, FNSAVE (and the
    287 leftovers FNENI/FNDISI/FNSETPM) do not wait."""
    reg = (modrm >> 3) & 7
    if modrm < 0xC0:
        if opcode == 0xD9:
            return reg not in (6, 7)
        if opcode == 0xDD:
            return reg not in (6, 7)
        return True
    if opcode == 0xDB:
        return modrm not in (0xE0, 0xE1, 0xE2, 0xE3, 0xE4)
    if opcode == 0xDF:
        return modrm != 0xE0
    return True


def _sign_err_add(a: float, b: float, r: float) -> float:
    bb = r - a
    return (a - (r - bb)) + (b - bb)


def _two_prod_err(a: float, b: float, p: float) -> float:
    """Exact ``a*b - p`` for moderate magnitudes (Dekker)."""
    t = _SPLIT * a
    ah = t - (t - a)
    al = a - ah
    t = _SPLIT * b
    bh = t - (t - b)
    bl = b - bh
    return ((ah * bh - p) + ah * bl + al * bh) + al * bl


def _sgn(x: float) -> int:
    return (x > 0) - (x < 0)


def _directed(r: float, s: int, rc: int) -> Tuple[float, bool]:
    """Apply rounding control to a nearest-rounded ``r`` given ``s = sign(exact - r)``.
    Returns the final result and whether its magnitude exceeds the exact one."""
    if rc == 1:
        if s < 0:
            r = math.nextafter(r, -INF)
            s = 1
    elif rc == 2:
        if s > 0:
            r = math.nextafter(r, INF)
            s = -1
    elif rc == 3:
        if (r > 0 and s < 0) or (r < 0 and s > 0):
            r = math.nextafter(r, 0.0)
            s = -s
    return r, (r > 0 and s < 0) or (r < 0 and s > 0)


def _overflow(neg: bool, rc: int) -> Tuple[float, int, bool]:
    to_inf = rc == 0 or (rc == 1 and neg) or (rc == 2 and not neg)
    v = INF if to_inf else F.DBL_MAX
    return (-v if neg else v), OE | PE, to_inf


def _finish(r: float, s: int, rc: int) -> Tuple[float, int, bool]:
    """Common tail of the four basic operations once ``s = sign(exact - r)`` is known."""
    if s == 0:
        return r, 0, False
    r, away = _directed(r, s, rc)
    flags = PE
    if abs(r) < F.DBL_MIN:
        flags |= UE
    elif r in (INF, -INF):
        flags |= OE
    return r, flags, away


def _add(a: float, b: float, rc: int) -> Tuple[float, int, bool]:
    r = a + b
    if r != r:
        if a != a or b != b:
            v, fl = F.nan_result(a, b)
            return v, fl, False
        return IND, IE, False
    if r in (INF, -INF):
        if a in (INF, -INF) or b in (INF, -INF):
            return r, 0, False
        return _overflow(r < 0, rc)
    if r == 0.0:
        if rc == 1 and a == -b and (a != 0.0 or math.copysign(1.0, a) != math.copysign(1.0, b)):
            r = -0.0
        return r, 0, False
    return _finish(r, _sgn(_sign_err_add(a, b, r)), rc)


def _sub(a: float, b: float, rc: int) -> Tuple[float, int, bool]:
    if b != b:
        v, fl = F.nan_result(a, b)
        return v, fl, False
    return _add(a, -b, rc)


def _subr(a: float, b: float, rc: int) -> Tuple[float, int, bool]:
    return _sub(b, a, rc)


def _mul(a: float, b: float, rc: int) -> Tuple[float, int, bool]:
    r = a * b
    if r != r:
        if a != a or b != b:
            v, fl = F.nan_result(a, b)
            return v, fl, False
        return IND, IE, False
    if r in (INF, -INF):
        if a in (INF, -INF) or b in (INF, -INF):
            return r, 0, False
        return _overflow(r < 0, rc)
    if r == 0.0 and (a == 0.0 or b == 0.0):
        return r, 0, False
    ar = abs(r)
    if _SMALL < ar and abs(a) < _BIG and abs(b) < _BIG:
        s = _sgn(_two_prod_err(a, b, r))
    else:
        s = F.exact_sign(F.Fraction(a) * F.Fraction(b), r)
    return _finish(r, s, rc)


def _div(a: float, b: float, rc: int) -> Tuple[float, int, bool]:
    if a != a or b != b:
        v, fl = F.nan_result(a, b)
        return v, fl, False
    if b == 0.0:
        if a == 0.0:
            return IND, IE, False
        neg = (math.copysign(1.0, a) < 0) != (math.copysign(1.0, b) < 0)
        if a in (INF, -INF):
            return (-INF if neg else INF), 0, False
        return (-INF if neg else INF), ZE, False
    if a in (INF, -INF):
        if b in (INF, -INF):
            return IND, IE, False
        return a / math.copysign(1.0, b), 0, False
    r = a / b
    if r in (INF, -INF):
        return _overflow(r < 0, rc)
    if a == 0.0 or b in (INF, -INF):
        return r, 0, False
    ar = abs(r)
    if _SMALL < ar < _BIG and abs(b) < _BIG and abs(a) > _SMALL:
        p = r * b
        rem = (a - p) - _two_prod_err(r, b, p)
        s = _sgn(rem) * (1 if b > 0 else -1)
    else:
        s = F.exact_sign(F.Fraction(a) / F.Fraction(b), r)
    return _finish(r, s, rc)


def _divr(a: float, b: float, rc: int) -> Tuple[float, int, bool]:
    return _div(b, a, rc)


# by the reg field of D8/DC/DE/DA memory and D8 register forms (2 and 3 are compares)
_ARITH: List[Any] = [_add, _mul, None, None, _sub, _subr, _div, _divr]


def _frac(v: float, raw: Optional[int]) -> Optional[F.Fraction]:
    """Exact value of a finite register (from its 80-bit shadow if any), else None."""
    if raw is not None:
        return F.ext_fraction(raw)
    if v - v == 0.0:
        return F.Fraction(v)
    return None


def _parts(v: float, r: Optional[int]) -> Tuple[int, int, int, int]:
    """(class, neg, mant, e2) of a value and its optional 80-bit shadow: class 0 finite,
    3 infinity, 4 NaN, 5 unsupported encoding."""
    if r is not None:
        c = F.ext_class(r)
        if c in (0, 1, 2):
            n, m, e = F.ext_parts(r)
            return 0, n, m, e
        return c, r >> 79, 0, 0
    if v != v:
        return 4, int(math.copysign(1.0, v) < 0), 0, 0
    if v in (INF, -INF):
        return 3, int(v < 0), 0, 0
    n, m, e = F.float_parts(v)
    return 0, n, m, e


def _exact_value(kind: int, fa: Optional[F.Fraction], fb: Optional[F.Fraction]) -> F.Fraction:
    assert fa is not None and fb is not None
    if kind == 0:
        return fa + fb
    if kind == 1:
        return fa * fb
    if kind == 4:
        return fa - fb
    if kind == 5:
        return fb - fa
    if kind == 6:
        return fa / fb
    return fb / fa


def _exact_arith(kind: int, a: float, b: float, ra: Optional[int], rb: Optional[int], rc: int
                 ) -> Tuple[float, int, bool]:
    """An arithmetic operation where an operand has more than 53 significant bits: the
    exact result rounded once to a double (what a real x87 does with PC=53)."""
    ca = -1 if ra is None else F.ext_class(ra)
    cb = -1 if rb is None else F.ext_class(rb)
    if ca == 5 or cb == 5:
        return IND, IE, False   # unsupported encodings (unnormals, pseudo-NaN/inf)
    fa = _frac(a, ra)
    fb = _frac(b, rb)
    if fa is None or fb is None:
        return _ARITH[kind](a, b, rc)
    if not fa or not fb:
        if not fa and not fb:
            return _ARITH[kind](a, b, rc)          # two zeros: the double path is exact
        neg = (math.copysign(1.0, a) < 0) != (math.copysign(1.0, b) < 0)
        if kind == 1 or (kind == 6 and not fa) or (kind == 7 and not fb):
            return (-0.0 if neg else 0.0), 0, False
        if kind in (6, 7):                         # finite non-zero divided by zero
            return (-INF if neg else INF), ZE, False
    de = DE if ca == 2 or cb == 2 else 0    # an 80-bit denormal operand
    x = _exact_value(kind, fa, fb)
    if not x:
        return (-0.0 if rc == 1 else 0.0), de, False
    r, fl, away = F.round_fraction(x, rc)
    return r, fl | de, away


def _nan_ext(a: float, ra: Optional[int], b: float, rb: Optional[int]) -> Optional[int]:
    """80-bit NaN result of an operation with NaN operands given as 80-bit shadows (payloads
    beyond a double's kept), or None when the double result is already exact."""
    ea = F.double_to_ext(a) if ra is None else ra
    eb = F.double_to_ext(b) if rb is None else rb
    na = F.ext_class(ea) == 4
    nb = F.ext_class(eb) == 4
    q = 1 << 62
    if na and nb:
        ma, mb = ea & F.MASK64 | q, eb & F.MASK64 | q
        pick = eb if mb > ma or (mb == ma and ea >> 79) else ea
    elif na:
        pick = ea
    elif nb:
        pick = eb
    else:
        return None    # the indefinite
    res = pick | q
    v = F.ext_to_double(res)
    return None if F.double_to_ext(v) == res else res


def _compare(a: float, b: float, unordered_quiet: bool, ra: Optional[int] = None,
             rb: Optional[int] = None) -> Tuple[int, int]:
    """(relation, flags): relation 0 greater, 1 less, 2 equal, 3 unordered."""
    if ra is not None or rb is not None:
        ca = -1 if ra is None else F.ext_class(ra)
        cb = -1 if rb is None else F.ext_class(rb)
        if ca == 5 or cb == 5:
            return 3, IE
        fa = _frac(a, ra)
        fb = _frac(b, rb)
        if fa is not None and fb is not None:
            de = DE if ca == 2 or cb == 2 else 0
            return (0 if fa > fb else (1 if fa < fb else 2)), de
    if a != a or b != b:
        if not unordered_quiet or (a != a and F.is_snan(a)) or (b != b and F.is_snan(b)):
            return 3, IE
        return 3, 0
    if a > b:
        return 0, 0
    if a < b:
        return 1, 0
    return 2, 0


_REL_CC = (0, C0, C3, C3 | C2 | C0)
_REL_EFL = (0, 0x01, 0x40, 0x45)
_EFL_CMP_MASK = 0x8D5  # OF SF ZF AF PF CF


class FPU:
    """The x87 state and instruction semantics.  See the module docstring."""

    def __init__(self) -> None:
        self.st: List[float] = [0.0] * 8        # physical registers R0..R7
        self.raw: List[Optional[int]] = [None] * 8  # exact 80-bit shadow, or None
        self.full: List[bool] = [False] * 8     # tag != empty
        self.top = 0
        self.sw = 0       # status word without TOP (bits 11-13 kept zero)
        self.cw = 0x037F
        self.fip = 0
        self.fcs = 0
        self.fdp = 0
        self.fds = 0
        self.fop = 0
        self._opsize32 = True
        self._protected = True
        self._build_tables()
        self.reset()

    # ------------------------------------------------------------------ public interface
    def reset(self) -> None:
        """FNINIT: CW=037F, SW=0, all registers empty, pointers cleared."""
        self.cw = 0x037F
        self.sw = 0
        self.top = 0
        self.full = [False] * 8
        self.fip = self.fcs = self.fdp = self.fds = self.fop = 0

    def status_word(self) -> int:
        """The architectural status word, TOP merged (what FNSTSW stores)."""
        return (self.sw & ~TOP_MASK) | (self.top << 11)

    def pending_unmasked(self) -> bool:
        """True while an unmasked exception is pending (ES set): FWAIT and waiting FPU
        instructions must raise #MF / IRQ 13 first."""
        return bool(self.sw & 0x80)

    @property
    def control_word(self) -> int:
        return self.cw

    @property
    def tag_word(self) -> int:
        """The full 16-bit tag word (00 valid, 01 zero, 10 special, 11 empty per register)."""
        tw = 0
        for p in range(8):
            tw |= self._tag(p) << (2 * p)
        return tw

    def st_value(self, i: int) -> float:
        """The value of ST(i) as a float (for debuggers and tests)."""
        return self.st[(self.top + i) & 7]

    def st_ext(self, i: int) -> int:
        """The 80-bit image of ST(i)."""
        return self._ext((self.top + i) & 7)

    def execute(self, opcode: int, modrm: int, addr: Optional[int], mem: Any, eflags: int,
                opsize32: bool, protected: bool, fip: int = 0, fcs: int = 0, fds: int = 0
                ) -> int:
        """Execute one D8-DF instruction; return the new EFLAGS.

        ``addr`` is the linear address of the memory operand (None for register forms);
        ``mem`` has read/write/read_bytes/write_bytes; ``protected`` selects the
        protected-mode environment layout (pass False in real and virtual-8086 mode).
        Raises CPUFault(6) for encodings an i686 without SSE3 rejects; memory faults from
        ``mem`` propagate with no FPU state committed."""
        if not 0xD8 <= opcode <= 0xDF:
            raise ValueError(f"not an x87 opcode: {opcode:#x}")
        op = opcode & 7
        if modrm < 0xC0:
            if addr is None:
                raise ValueError("memory form without an address")
            idx = (op << 3) | ((modrm >> 3) & 7)
            if self._mem_ctl[idx]:
                self._opsize32 = opsize32
                self._protected = protected
            else:
                self.fip = fip
                self.fcs = fcs
                self.fds = fds
                self.fdp = addr
                self.fop = (op << 8) | modrm
            r = self._mem_table[idx](addr, mem)
        else:
            if not ((opcode == 0xDB and 0xE0 <= modrm <= 0xE4) or (opcode == 0xDF and modrm == 0xE0)):
                self.fip, self.fcs = fip, fcs
                self.fop = (op << 8) | modrm
            r = self._reg_table[(op << 3) | ((modrm >> 3) & 7)](modrm & 7, eflags)
        return eflags if r is None else r

    # ------------------------------------------------------------------ state save/restore
    def save_state(self) -> dict:
        return {
            "version": STATE_VERSION,
            "cw": self.cw, "sw": self.status_word(), "tw": self.tag_word,
            "regs": [self._ext(p) for p in range(8)],
            "fip": self.fip, "fcs": self.fcs, "fdp": self.fdp, "fds": self.fds, "fop": self.fop,
        }

    def restore_state(self, state: dict) -> None:
        if not isinstance(state, dict):
            raise ValueError("FPU state must be a dict")
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported FPU state version {state.get('version')!r}")
        widths = {"cw": 16, "sw": 16, "tw": 16, "fip": 32, "fcs": 16, "fdp": 32, "fds": 16,
                  "fop": 11}
        vals = {}
        for k, bits in widths.items():
            v = state.get(k)
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < (1 << bits):
                raise ValueError(f"FPU state field {k!r} must be an int in [0, 2**{bits})")
            vals[k] = v
        regs = state.get("regs")
        if not isinstance(regs, list) or len(regs) != 8 or not all(
                isinstance(r, int) and not isinstance(r, bool) and 0 <= r < (1 << 80) for r in regs):
            raise ValueError("FPU state 'regs' must be a list of 8 ints in [0, 2**80)")
        self.cw = vals["cw"]
        self.top = (vals["sw"] >> 11) & 7
        self.sw = vals["sw"] & ~TOP_MASK
        self._update_es()
        for p in range(8):
            self._set_raw(p, regs[p])
            self.full[p] = ((vals["tw"] >> (2 * p)) & 3) != 3
        self.fip, self.fcs, self.fdp, self.fds, self.fop = (
            vals["fip"], vals["fcs"], vals["fdp"], vals["fds"], vals["fop"])

    # ------------------------------------------------------------------ helpers
    def _update_es(self) -> None:
        if self.sw & ~self.cw & 0x3F:
            self.sw |= ES_B
        else:
            self.sw &= ~ES_B

    def _signal(self, flags: int) -> bool:
        """Record exception flags; True when an unmasked IE/DE/ZE aborts the instruction
        (then only the flags of that pre-computation exception are recorded)."""
        if not flags:
            return False
        unm = flags & ~self.cw & 0x3F
        if unm:
            if unm & 0x07:
                self.sw |= (flags & (IE | DE | ZE | SF)) | ES_B
                return True
            self.sw |= flags | ES_B
            return False
        self.sw |= flags
        return False

    def _masked(self, flags: int) -> bool:
        return not (flags & ~self.cw & 0x3F)

    def _set_c1(self, on: bool) -> None:
        if on:
            self.sw |= C1
        else:
            self.sw &= ~C1

    def _set_raw(self, p: int, raw: int) -> None:
        v = F.ext_to_double(raw)
        self.st[p] = v
        self.raw[p] = None if F.double_to_ext(v) == raw else raw

    def _ext(self, p: int) -> int:
        r = self.raw[p]
        return F.double_to_ext(self.st[p]) if r is None else r

    def _tag(self, p: int) -> int:
        if not self.full[p]:
            return 3
        r = self.raw[p]
        if r is not None:
            c = F.ext_class(r)
            return 0 if c == 0 else (1 if c == 1 else 2)
        v = self.st[p]
        if v == 0.0:
            return 1
        if v != v or v in (INF, -INF):
            return 2
        return 0

    def _exact(self, p: int) -> Tuple[int, int, int, int]:
        """(class, neg, mant, e2) of a register: class 0 finite, 3 inf, 4 NaN, 5 unsupported."""
        return _parts(self.st[p], self.raw[p])

    def _denormal(self, p: int) -> int:
        """DE when register p holds an 80-bit denormal (a double never is one in 80 bits)."""
        r = self.raw[p]
        return DE if r is not None and F.ext_class(r) == 2 else 0

    def _underflow(self) -> bool:
        """Stack underflow: IE|SF with C1=0.  Returns True if masked (write indefinite)."""
        self.sw &= ~C1
        return not self._signal(IE | SF)

    def _push(self, value: float, raw: Optional[int] = None, flags: int = 0) -> None:
        """Push a value (flags from loading it are signalled first)."""
        p = (self.top - 1) & 7
        if self.full[p]:
            self.sw |= C1
            if self._signal(IE | SF | flags):
                return
            value, raw = IND, None
        else:
            if self._signal(flags):
                return
            self.sw &= ~C1
        self.top = p
        self.st[p] = value
        self.raw[p] = raw
        self.full[p] = True

    def _pop(self) -> None:
        self.full[self.top] = False
        self.top = (self.top + 1) & 7

    def _write(self, p: int, value: float) -> None:
        self.st[p] = value
        self.raw[p] = None
        self.full[p] = True

    # ------------------------------------------------------------------ arithmetic
    def _arith(self, kind: int, pd: int, a: float, b: float, pop: bool, flags: int = 0,
               ra: Optional[int] = None, rb: Optional[int] = None) -> None:
        rc = (self.cw >> 10) & 3
        pc = self.cw & 0x300
        if pc != 0x200 and self._arith_prec(kind, pd, a, b, pop, flags, ra, rb, rc, pc):
            return
        if ra is not None or rb is not None:
            r, fl, away = _exact_arith(kind, a, b, ra, rb, rc)
            if fl & (OE | UE) or (r == 0.0 and fl & PE):
                self._arith_wide(kind, pd, a, b, pop, flags, ra, rb, rc)
                return
            if r != r:
                rr = _nan_ext(a, ra, b, rb)
                if self._signal(fl | flags):
                    return
                self.sw &= ~C1
                self._write(pd, r)
                self.raw[pd] = rr
                if pop:
                    self._pop()
                return
        else:
            r, fl, away = _ARITH[kind](a, b, rc)
            if fl & (OE | UE) or (r == 0.0 and fl & PE):
                self._arith_wide(kind, pd, a, b, pop, flags, ra, rb, rc)
                return
        if fl & (IE | ZE):
            flags &= ~DE      # invalid and zero-divide take precedence (SDM vol. 1, 8.5)
        if self._signal(fl | flags):
            return
        self._set_c1(away)
        self._write(pd, r)
        if pop:
            self._pop()

    def _arith_prec(self, kind: int, pd: int, a: float, b: float, pop: bool, flags: int,
                    ra: Optional[int], rb: Optional[int], rc: int, pc: int) -> bool:
        """Precision control single (PC=00) or extended (PC=11): exact integer arithmetic
        rounded to 24 or 64 bits.  False for operands the double path handles exactly
        (NaN, infinity, zero products and quotients)."""
        ca, na, ma, ea = _parts(a, ra)
        cb, nb, mb, eb = _parts(b, rb)
        if ca or cb or (ma == 0 and mb == 0) or (kind != 0 and kind < 4 and (ma == 0 or mb == 0)):
            return False
        if kind >= 6 and (ma == 0 or mb == 0):
            return False
        raw, fl, away = F.exact_op(kind, na, ma, ea, nb, mb, eb, 24 if pc == 0 else 64, rc,
                                   ~self.cw & (OE | UE))
        if (ra is not None and F.ext_class(ra) == 2) or (rb is not None and F.ext_class(rb) == 2):
            fl |= DE
        if self._signal(fl | flags):
            return True
        self._set_c1(away)
        self.full[pd] = True
        self._set_raw(pd, raw)
        if pop:
            self._pop()
        return True

    def _arith_wide(self, kind: int, pd: int, a: float, b: float, pop: bool, flags: int,
                    ra: Optional[int], rb: Optional[int], rc: int) -> None:
        """A result outside the double range: computed exactly and kept in the 80-bit shadow
        with the 80-bit exponent range (overflow/underflow only where the x87 has them)."""
        x = _exact_value(kind, _frac(a, ra), _frac(b, rb))
        raw, fl, away = F.fraction_wide(x, rc, ~self.cw & (OE | UE))
        if self._signal(fl | flags):
            return
        self._set_c1(away)
        self.full[pd] = True
        self._set_raw(pd, raw)
        if pop:
            self._pop()

    def _reg_arith(self, kind: int, i: int, to_sti: bool, pop: bool) -> None:
        p0 = self.top
        pi = (self.top + i) & 7
        full = self.full
        if not (full[p0] and full[pi]):
            if self._underflow():
                self._write(pi if to_sti else p0, IND)
                if pop:
                    self._pop()
            return
        if to_sti:
            self._arith(kind, pi, self.st[pi], self.st[p0], pop, 0, self.raw[pi], self.raw[p0])
        else:
            self._arith(kind, p0, self.st[p0], self.st[pi], pop, 0, self.raw[p0], self.raw[pi])

    def _mem_arith(self, kind: int, value: float, flags: int) -> None:
        p0 = self.top
        if not self.full[p0]:
            if self._underflow():
                self._write(p0, IND)
            return
        a = self.st[p0]
        if flags & DE and (a != a or value != value):
            flags &= ~DE            # a NaN operand takes precedence over a denormal one
        if kind == 2 or kind == 3:
            self._com(a, value, False, kind == 3, flags, self.raw[p0])
            return
        self._arith(kind, p0, a, value, False, flags, self.raw[p0])

    def _com(self, a: float, b: float, quiet: bool, pops: int, flags: int = 0,
             ra: Optional[int] = None, rb: Optional[int] = None) -> None:
        rel, fl = _compare(a, b, quiet, ra, rb)
        if self._signal(fl | flags):
            return
        self.sw = (self.sw & ~CC_MASK) | _REL_CC[rel]
        for _ in range(pops):
            self._pop()

    def _reg_com(self, i: int, quiet: bool, pops: int) -> None:
        p0 = self.top
        pi = (self.top + i) & 7
        if not (self.full[p0] and self.full[pi]):
            if self._underflow():
                self.sw = (self.sw & ~CC_MASK) | C3 | C2 | C0
                for _ in range(pops):
                    self._pop()
            return
        self._com(self.st[p0], self.st[pi], quiet, pops, 0, self.raw[p0], self.raw[pi])

    def _comi(self, i: int, quiet: bool, pop: bool, eflags: int) -> int:
        p0 = self.top
        pi = (self.top + i) & 7
        if not (self.full[p0] and self.full[pi]):
            if self._underflow():
                if pop:
                    self._pop()
                return (eflags & ~_EFL_CMP_MASK) | 0x45
            return eflags
        rel, fl = _compare(self.st[p0], self.st[pi], quiet, self.raw[p0], self.raw[pi])
        if self._signal(fl):     # C1 is left alone (as the hardware does)
            return eflags
        if pop:
            self._pop()
        return (eflags & ~_EFL_CMP_MASK) | _REL_EFL[rel]

    # ------------------------------------------------------------------ memory operands
    def _rd_f32(self, addr: int, mem: Any) -> Tuple[float, int]:
        return F.f32_to_double(mem.read(addr, 4))

    def _rd_f64(self, addr: int, mem: Any) -> Tuple[float, int]:
        return F.f64_to_double(mem.read(addr, 8))

    def _rd_i16(self, addr: int, mem: Any) -> Tuple[float, int]:
        v = mem.read(addr, 2)
        return float(v - 0x10000 if v & 0x8000 else v), 0

    def _rd_i32(self, addr: int, mem: Any) -> Tuple[float, int]:
        v = mem.read(addr, 4)
        return float(v - 0x100000000 if v & 0x80000000 else v), 0

    def _store_real(self, addr: int, mem: Any, size: int, pop: bool) -> None:
        """FST/FSTP m32/m64."""
        p0 = self.top
        if not self.full[p0]:
            if self._masked(IE):
                mem.write(addr, F.IND_F32 if size == 4 else F.IND_F64, size)
                self._underflow()
                if pop:
                    self._pop()
            else:
                self._underflow()
            return
        rc = (self.cw >> 10) & 3
        fmt = F.F32 if size == 4 else F.F64
        flags = 0
        away = False
        raw = self.raw[p0]
        v = self.st[p0]
        if size == 8 and raw is None:
            bits = F.f2b(v)
            if v != v and F.is_snan(v):
                flags = IE
                bits |= 1 << 51
        elif raw is None and rc == 0 and _F32_MIN <= abs(v) <= _F32_MAX:
            # the common case: a normal single, nearest rounding (the host conversion)
            bits = _U32.unpack(_F32.pack(v))[0]
            back = _F32.unpack(_F32.pack(v))[0]
            if back != v:
                flags = PE
                away = abs(back) > abs(v)
        else:
            cls, neg, mant, e2 = self._exact(p0)
            if cls == 0:
                bits, flags, away = F.encode_binary(neg, mant, e2, rc, fmt,
                                                    ue_unmasked=not self.cw & 0x10)
            elif cls == 3:
                bits = (neg << (size * 8 - 1)) | (0x7F800000 if size == 4 else 0x7FF0000000000000)
            elif cls == 4:
                m = self._ext(p0) & F.MASK64
                if not m & (1 << 62):
                    flags = IE
                if size == 4:
                    bits = (neg << 31) | 0x7FC00000 | ((m >> 40) & 0x3FFFFF)
                else:
                    bits = (neg << 63) | 0x7FF8000000000000 | ((m >> 11) & (F.MASK52 >> 1))
            else:
                flags = IE
                bits = F.IND_F32 if size == 4 else F.IND_F64
        unm = flags & ~self.cw & 0x3F
        if unm & (OE | UE):  # unmasked OE/UE: memory not written, stack not popped, no PE
            self._signal(unm & (OE | UE))
            return
        if not unm & IE:
            mem.write(addr, bits, size)
        if self._signal(flags):
            return
        self._set_c1(away)
        if pop:
            self._pop()

    def _store_int(self, addr: int, mem: Any, size: int, pop: bool) -> None:
        """FIST/FISTP m16/m32/m64 with the current rounding control."""
        p0 = self.top
        lo, hi, ind = _INT_LIMITS[size]
        if not self.full[p0]:
            if self._masked(IE):
                mem.write(addr, ind, size)
                self._underflow()
                if pop:
                    self._pop()
            else:
                self._underflow()
            return
        flags = 0
        away = False
        val = ind
        v = self.st[p0]
        rc = (self.cw >> 10) & 3
        if self.raw[p0] is None and -_TWO52 < v < _TWO52:
            if rc == 0:
                n = round(v)
            elif rc == 3:
                n = int(v)
            elif rc == 1:
                n = math.floor(v)
            else:
                n = math.ceil(v)
            inexact = n != v
            away = abs(n) > abs(v)
            cls = 0
        else:
            cls, neg, mant, e2 = self._exact(p0)
            if cls == 0:
                n, inexact, away = F.int_round(neg, mant, e2, rc)
        if cls != 0:
            flags = IE
        else:
            if n < lo or n > hi:
                flags = IE
                away = False
            else:
                val = n & ((1 << (8 * size)) - 1)
                if inexact:
                    flags = PE
        if flags & IE:
            if not self._masked(IE):
                self._signal(flags)
                return
            val = ind
        mem.write(addr, val, size)
        self._signal(flags)
        self._set_c1(away)
        if pop:
            self._pop()

    # ------------------------------------------------------------------ tables
    def _build_tables(self) -> None:
        m: List[Callable[[int, Any], Optional[int]]] = [self._ud_mem] * 64
        r: List[Callable[[int, int], Optional[int]]] = [self._ud_reg] * 64
        ctl = [False] * 64

        # D8: arithmetic with m32 real; register forms ST(0) op ST(i)
        for k in range(8):
            m[k] = self._mk_mem_arith(k, self._rd_f32)
            m[(2 << 3) | k] = self._mk_mem_arith(k, self._rd_i32)
            m[(4 << 3) | k] = self._mk_mem_arith(k, self._rd_f64)
            m[(6 << 3) | k] = self._mk_mem_arith(k, self._rd_i16)
            r[k] = self._mk_reg_d8(k)
            r[(4 << 3) | k] = self._mk_reg_dc(k, False)
            r[(6 << 3) | k] = self._mk_reg_dc(k, True)
        # D9
        m[(1 << 3) | 0] = self._fld_m32
        m[(1 << 3) | 2] = lambda a, mm: self._store_real(a, mm, 4, False)
        m[(1 << 3) | 3] = lambda a, mm: self._store_real(a, mm, 4, True)
        m[(1 << 3) | 4] = self._fldenv
        m[(1 << 3) | 5] = self._fldcw
        m[(1 << 3) | 6] = self._fnstenv
        m[(1 << 3) | 7] = self._fnstcw
        for k in (4, 5, 6, 7):
            ctl[(1 << 3) | k] = True
        r[(1 << 3) | 0] = self._fld_sti
        r[(1 << 3) | 1] = self._fxch
        r[(1 << 3) | 2] = self._d9_d0
        r[(1 << 3) | 3] = self._fstp_sti   # D9 D8+i: undocumented FSTP1 alias
        r[(1 << 3) | 4] = self._d9_e0
        r[(1 << 3) | 5] = self._d9_e8
        r[(1 << 3) | 6] = self._d9_f0
        r[(1 << 3) | 7] = self._d9_f8
        # DA register forms: FCMOVB/E/BE/U, FUCOMPP
        r[(2 << 3) | 0] = self._mk_fcmov(lambda f: f & 0x01, True)
        r[(2 << 3) | 1] = self._mk_fcmov(lambda f: f & 0x40, True)
        r[(2 << 3) | 2] = self._mk_fcmov(lambda f: f & 0x41, True)
        r[(2 << 3) | 3] = self._mk_fcmov(lambda f: f & 0x04, True)
        r[(2 << 3) | 5] = self._da_e8
        # DB
        m[(3 << 3) | 0] = self._fild_m32
        m[(3 << 3) | 2] = lambda a, mm: self._store_int(a, mm, 4, False)
        m[(3 << 3) | 3] = lambda a, mm: self._store_int(a, mm, 4, True)
        m[(3 << 3) | 5] = self._fld_m80
        m[(3 << 3) | 7] = self._fstp_m80
        r[(3 << 3) | 0] = self._mk_fcmov(lambda f: f & 0x01, False)
        r[(3 << 3) | 1] = self._mk_fcmov(lambda f: f & 0x40, False)
        r[(3 << 3) | 2] = self._mk_fcmov(lambda f: f & 0x41, False)
        r[(3 << 3) | 3] = self._mk_fcmov(lambda f: f & 0x04, False)
        r[(3 << 3) | 4] = self._db_e0
        r[(3 << 3) | 5] = lambda i, f: self._comi(i, True, False, f)
        r[(3 << 3) | 6] = lambda i, f: self._comi(i, False, False, f)
        # DC: m64 arithmetic (set above); register forms with ST(i) destination
        r[(4 << 3) | 2] = lambda i, f: self._reg_com(i, False, 0)   # FCOM2 alias
        r[(4 << 3) | 3] = lambda i, f: self._reg_com(i, False, 1)   # FCOMP3 alias
        # DD
        m[(5 << 3) | 0] = self._fld_m64
        m[(5 << 3) | 2] = lambda a, mm: self._store_real(a, mm, 8, False)
        m[(5 << 3) | 3] = lambda a, mm: self._store_real(a, mm, 8, True)
        m[(5 << 3) | 4] = self._frstor
        m[(5 << 3) | 6] = self._fnsave
        m[(5 << 3) | 7] = self._fnstsw_m
        for k in (4, 6, 7):
            ctl[(5 << 3) | k] = True
        r[(5 << 3) | 0] = self._ffree
        r[(5 << 3) | 1] = self._fxch                 # FXCH4 alias
        r[(5 << 3) | 2] = self._fst_sti
        r[(5 << 3) | 3] = self._fstp_sti
        r[(5 << 3) | 4] = lambda i, f: self._reg_com(i, True, 0)
        r[(5 << 3) | 5] = lambda i, f: self._reg_com(i, True, 1)
        # DE: m16 integer arithmetic (set above); register forms pop
        r[(6 << 3) | 2] = lambda i, f: self._reg_com(i, False, 1)   # FCOMP5 alias
        r[(6 << 3) | 3] = self._de_d8
        # DF
        m[(7 << 3) | 0] = self._fild_m16
        m[(7 << 3) | 2] = lambda a, mm: self._store_int(a, mm, 2, False)
        m[(7 << 3) | 3] = lambda a, mm: self._store_int(a, mm, 2, True)
        m[(7 << 3) | 4] = self._fbld
        m[(7 << 3) | 5] = self._fild_m64
        m[(7 << 3) | 6] = self._fbstp
        m[(7 << 3) | 7] = lambda a, mm: self._store_int(a, mm, 8, True)
        r[(7 << 3) | 0] = self._ffreep
        r[(7 << 3) | 1] = self._fxch                 # FXCH7 alias
        r[(7 << 3) | 2] = self._fstp_sti             # FSTP8 alias
        r[(7 << 3) | 3] = self._fstp_sti             # FSTP9 alias
        r[(7 << 3) | 4] = self._df_e0
        r[(7 << 3) | 5] = lambda i, f: self._comi(i, True, True, f)
        r[(7 << 3) | 6] = lambda i, f: self._comi(i, False, True, f)
        self._mem_table = m
        self._reg_table = r
        self._mem_ctl = ctl
        self._d9_e0_ops: List[Optional[Callable[[], None]]] = [
            self._fchs, self._fabs, None, None, self._ftst, self._fxam, None, None]
        self._d9_f0_ops: List[Callable[[], None]] = [
            self._f2xm1, self._fyl2x, self._fptan, self._fpatan,
            self._fxtract, lambda: self._fprem(True), self._fdecstp, self._fincstp]
        self._d9_f8_ops: List[Callable[[], None]] = [
            lambda: self._fprem(False), self._fyl2xp1, self._fsqrt, self._fsincos,
            self._frndint, self._fscale, self._fsin, self._fcos]

    def _ud_mem(self, addr: int, mem: Any) -> None:
        raise CPUFault(6)

    def _ud_reg(self, i: int, eflags: int) -> None:
        raise CPUFault(6)

    def _mk_mem_arith(self, kind: int, reader: Callable[[int, Any], Tuple[float, int]]
                      ) -> Callable[[int, Any], None]:
        def h(addr: int, mem: Any) -> None:
            v, fl = reader(addr, mem)
            self._mem_arith(kind, v, fl)
        return h

    def _mk_reg_d8(self, kind: int) -> Callable[[int, int], None]:
        if kind == 2:
            return lambda i, f: self._reg_com(i, False, 0)
        if kind == 3:
            return lambda i, f: self._reg_com(i, False, 1)
        return lambda i, f: self._reg_arith(kind, i, False, False)

    def _mk_reg_dc(self, kind: int, pop: bool) -> Callable[[int, int], None]:
        k = kind ^ 1 if kind >= 4 else kind
        return lambda i, f: self._reg_arith(k, i, True, pop)

    def _mk_fcmov(self, cond: Callable[[int], int], when_set: bool) -> Callable[[int, int], None]:
        def h(i: int, eflags: int) -> None:
            p0 = self.top
            pi = (self.top + i) & 7
            if not (self.full[p0] and self.full[pi]):
                if self._underflow():
                    self._write(p0, IND)
                return
            if bool(cond(eflags)) == when_set:   # C1 is left alone (as the hardware does)
                self.st[p0] = self.st[pi]
                self.raw[p0] = self.raw[pi]
        return h

    # ------------------------------------------------------------------ loads
    def _fld_m32(self, addr: int, mem: Any) -> None:
        v, fl = self._rd_f32(addr, mem)
        self._push(v, None, fl)

    def _fld_m64(self, addr: int, mem: Any) -> None:
        v, fl = self._rd_f64(addr, mem)
        self._push(v, None, fl)

    def _fld_m80(self, addr: int, mem: Any) -> None:
        raw = int.from_bytes(mem.read_bytes(addr, 10), "little")
        v = F.ext_to_double(raw)
        self._push(v, None if F.double_to_ext(v) == raw else raw)

    def _fild(self, n: int) -> None:
        if n == 0:
            self._push(0.0, 0)
        else:
            neg = n < 0
            a = -n if neg else n
            self._push(float(n), None if a < (1 << 53) else F.parts_to_ext(int(neg), a, 0))

    def _fild_m16(self, addr: int, mem: Any) -> None:
        v = mem.read(addr, 2)
        self._fild(v - 0x10000 if v & 0x8000 else v)

    def _fild_m32(self, addr: int, mem: Any) -> None:
        v = mem.read(addr, 4)
        self._fild(v - (1 << 32) if v & 0x80000000 else v)

    def _fild_m64(self, addr: int, mem: Any) -> None:
        v = mem.read(addr, 8)
        self._fild(v - (1 << 64) if v >> 63 else v)

    def _fbld(self, addr: int, mem: Any) -> None:
        raw = int.from_bytes(mem.read_bytes(addr, 10), "little")
        n = F.bcd_decode(raw)
        if n == 0:
            self._push(-0.0 if raw >> 79 else 0.0)
        else:
            self._fild(n)

    def _fld_sti(self, i: int, eflags: int) -> None:
        pi = (self.top + i) & 7
        if not self.full[pi]:
            # underflow (masked: push the indefinite); overflow is checked by _push
            self.sw &= ~C1
            if self._signal(IE | SF):
                return
            self._push_nocheck(IND)   # the underflow is reported, not a stack overflow
            return
        self._push(self.st[pi], self.raw[pi])

    def _fldconst(self, k: int) -> None:
        raw, went_up = _CONSTS[k]
        rc = (self.cw >> 10) & 3
        if went_up is True and rc in (1, 3):
            raw -= 1
        elif went_up is False and rc == 2:
            raw += 1
        v = F.ext_to_double(raw)
        self._push(v, None if F.double_to_ext(v) == raw else raw)

    # ------------------------------------------------------------------ stores
    def _fstp_m80(self, addr: int, mem: Any) -> None:
        p0 = self.top
        if not self.full[p0]:
            if self._masked(IE):
                mem.write_bytes(addr, F.IND_EXT.to_bytes(10, "little"))
            if self._underflow():
                self._pop()
            return
        mem.write_bytes(addr, self._ext(p0).to_bytes(10, "little"))
        self.sw &= ~C1
        self._pop()

    def _fbstp(self, addr: int, mem: Any) -> None:
        p0 = self.top
        if not self.full[p0]:
            if self._masked(IE):
                mem.write_bytes(addr, F.IND_BCD.to_bytes(10, "little"))
            if self._underflow():
                self._pop()
            return
        cls, neg, mant, e2 = self._exact(p0)
        flags = 0
        away = False
        out = F.IND_BCD
        if cls != 0:
            flags = IE
        else:
            n, inexact, away = F.int_round(neg, mant, e2, (self.cw >> 10) & 3)
            if abs(n) >= 10 ** 18:
                flags = IE
                away = False
            else:
                out = F.bcd_encode(abs(n)) | ((neg << 79) if n <= 0 and neg else 0)
                if inexact:
                    flags = PE
        if flags & IE and not self._masked(IE):
            self._signal(flags)
            return
        mem.write_bytes(addr, out.to_bytes(10, "little"))
        self._signal(flags)
        self._set_c1(away)
        self._pop()

    def _fst_sti(self, i: int, eflags: int) -> None:
        p0 = self.top
        pi = (self.top + i) & 7
        if not self.full[p0]:
            if self._underflow():
                self._write(pi, IND)
            return
        self.sw &= ~C1
        self.st[pi] = self.st[p0]
        self.raw[pi] = self.raw[p0]
        self.full[pi] = True

    def _fstp_sti(self, i: int, eflags: int) -> None:
        p0 = self.top
        pi = (self.top + i) & 7
        if not self.full[p0]:
            if self._underflow():
                self._write(pi, IND)
                self._pop()
            return
        self.sw &= ~C1
        self.st[pi] = self.st[p0]
        self.raw[pi] = self.raw[p0]
        self.full[pi] = True
        self._pop()

    # ------------------------------------------------------------------ register group ops
    def _fxch(self, i: int, eflags: int) -> None:
        p0 = self.top
        pi = (self.top + i) & 7
        if not (self.full[p0] and self.full[pi]):
            if not self._underflow():
                return
            for p in (p0, pi):
                if not self.full[p]:
                    self._write(p, IND)
        else:
            self.sw &= ~C1
        self.st[p0], self.st[pi] = self.st[pi], self.st[p0]
        self.raw[p0], self.raw[pi] = self.raw[pi], self.raw[p0]

    def _ffree(self, i: int, eflags: int) -> None:
        self.sw &= ~C1
        self.full[(self.top + i) & 7] = False

    def _ffreep(self, i: int, eflags: int) -> None:
        self.full[(self.top + i) & 7] = False
        self._pop()

    def _d9_d0(self, i: int, eflags: int) -> None:
        if i != 0:
            raise CPUFault(6)
        # FNOP

    def _d9_e0(self, i: int, eflags: int) -> None:
        h = self._d9_e0_ops[i]
        if h is None:
            raise CPUFault(6)
        h()

    def _d9_e8(self, i: int, eflags: int) -> None:
        if i == 7:
            raise CPUFault(6)
        self._fldconst(i)

    def _d9_f0(self, i: int, eflags: int) -> None:
        self._d9_f0_ops[i]()

    def _d9_f8(self, i: int, eflags: int) -> None:
        self._d9_f8_ops[i]()

    def _da_e8(self, i: int, eflags: int) -> None:
        if i != 1:
            raise CPUFault(6)
        self._reg_com(1, True, 2)   # FUCOMPP

    def _de_d8(self, i: int, eflags: int) -> None:
        if i != 1:
            raise CPUFault(6)
        self._reg_com(1, False, 2)  # FCOMPP

    def _db_e0(self, i: int, eflags: int) -> None:
        if i == 2:      # FNCLEX
            self.sw &= ~(0x3F | SF | ES_B)
        elif i == 3:    # FNINIT
            self.reset()
        elif i in (0, 1, 4):
            pass        # FNENI, FNDISI, FNSETPM: no-ops on a 387 and later
        else:
            raise CPUFault(6)

    def _df_e0(self, i: int, eflags: int) -> None:
        if i != 0:
            raise CPUFault(6)
        # FNSTSW AX: the core writes AX = status_word() itself

    # ------------------------------------------------------------------ one-operand ops on ST(0)
    def _st0(self) -> Optional[int]:
        """Physical index of ST(0), or None after handling an empty ST(0) (underflow,
        masked response: ST(0) becomes the indefinite)."""
        p0 = self.top
        if self.full[p0]:
            return p0
        if self._underflow():
            self._write(p0, IND)
        return None

    def _unary_result(self, p0: int, r: float, flags: int, away: bool = False) -> None:
        if self._signal(flags):
            return
        self._set_c1(away)
        self._write(p0, r)

    def _fchs(self) -> None:
        p0 = self._st0()
        if p0 is not None:
            self.sw &= ~C1
            raw = self.raw[p0]
            self.st[p0] = -self.st[p0]
            self.raw[p0] = None if raw is None else raw ^ (1 << 79)

    def _fabs(self) -> None:
        p0 = self._st0()
        if p0 is not None:
            self.sw &= ~C1
            raw = self.raw[p0]
            self.st[p0] = math.copysign(self.st[p0], 1.0)
            self.raw[p0] = None if raw is None else raw & ~(1 << 79)

    def _ftst(self) -> None:
        p0 = self.top
        if not self.full[p0]:
            if self._underflow():
                self.sw = (self.sw & ~CC_MASK) | C3 | C2 | C0
            return
        self._com(self.st[p0], 0.0, False, 0)

    def _fxam(self) -> None:
        p0 = self.top
        cc = 0
        raw = self.raw[p0]
        v = self.st[p0]
        if raw is not None:
            neg = raw >> 79
            cls = F.ext_class(raw)
        else:
            neg = int(math.copysign(1.0, v) < 0)
            cls = 4 if v != v else (3 if v in (INF, -INF) else (1 if v == 0.0 else 0))
        if not self.full[p0]:
            cc = C3 | C0
        else:
            cc = (C2, C3, C3 | C2, C2 | C0, C0, 0)[cls]
        self.sw = (self.sw & ~CC_MASK) | cc | (C1 if neg else 0)

    def _fsqrt(self) -> None:
        p0 = self._st0()
        if p0 is None:
            return
        a = self.st[p0]
        rc = (self.cw >> 10) & 3
        if a > 0.0 and a != INF and self.raw[p0] is None and self.cw & 0x300 == 0x200:
            self._fsqrt_double(p0, a, rc)
            return
        cls, neg, mant, e2 = self._exact(p0)
        if cls == 4:
            r, fl = F.nan_result(a, None)
            self._unary_result(p0, r, fl)
            return
        if cls == 0 and mant == 0:
            self.sw &= ~C1            # sqrt(-0) = -0
            return
        if neg or cls == 5:
            self._unary_result(p0, IND, IE)
            return
        if cls == 3:
            self.sw &= ~C1
            return
        pc = self.cw & 0x300
        if pc != 0x200 or self.raw[p0] is not None:
            raw, fl, away = F.sqrt_wide(mant, e2, rc, 53 if pc == 0x200 else (24 if pc == 0 else 64))
            if self._signal(fl | self._denormal(p0)):
                return
            self._set_c1(away)
            self._set_raw(p0, raw)
            return
        self._fsqrt_double(p0, a, rc)

    def _fsqrt_double(self, p0: int, a: float, rc: int) -> None:
        """FSQRT of a positive finite double with precision control at double."""
        r = math.sqrt(a)
        if 2.0 ** -900 < a < 2.0 ** 900:
            p = r * r
            s = _sgn((a - p) - _two_prod_err(r, r, p))
        else:
            d = F.Fraction(a) - F.Fraction(r) * F.Fraction(r)
            s = (d > 0) - (d < 0)
        r, fl, away = _finish(r, s, rc)
        self._unary_result(p0, r, fl & ~UE, away)

    def _frndint(self) -> None:
        p0 = self._st0()
        if p0 is None:
            return
        cls, neg, mant, e2 = self._exact(p0)
        a = self.st[p0]
        if cls == 4:
            r, fl = F.nan_result(a, None)
            self._unary_result(p0, r, fl)
            return
        if cls != 0 or e2 >= 0:
            self.sw &= ~C1
            return
        n, inexact, away = F.int_round(neg, mant, e2, (self.cw >> 10) & 3)
        if self._signal(PE if inexact else 0):
            return
        self._set_c1(away)
        self.full[p0] = True
        self._set_raw(p0, F.parts_to_ext(neg, -n if n < 0 else n, 0))   # exact, up to 64 bits

    def _fscale(self) -> None:
        p0 = self.top
        p1 = (self.top + 1) & 7
        if not (self.full[p0] and self.full[p1]):
            if self._underflow():
                self._write(p0, IND)
            return
        a, b = self.st[p0], self.st[p1]
        if a != a or b != b:
            r, fl = F.nan_result(a, b)
            self._unary_result(p0, r, fl)
            return
        if b in (INF, -INF):
            if (b > 0 and a == 0.0) or (b < 0 and a in (INF, -INF)):
                self._unary_result(p0, IND, IE)
            elif b > 0:
                self._unary_result(p0, a if a in (INF, -INF) else math.copysign(INF, a), 0)
            else:
                self._unary_result(p0, math.copysign(0.0, a) if a not in (INF, -INF) else a, 0)
            return
        if a == 0.0 or a in (INF, -INF):
            if self._signal(self._denormal(p1)):
                return
            self.sw &= ~C1      # zero and infinity scale to themselves
            return
        n = int(b)
        n = max(-100000, min(100000, n))
        # the result is kept exactly in the 80-bit shadow, with the 80-bit exponent range
        _, neg, mant, e2 = self._exact(p0)
        rc = (self.cw >> 10) & 3
        biased = e2 + n + mant.bit_length() - 1 + 16383
        away = False
        if biased >= 0x7FFF:
            fl = OE | PE
            away = rc == 0 or (rc == 1 and neg == 1) or (rc == 2 and neg == 0)
            raw = (neg << 79) | ((0x7FFF << 64) | F.INT_BIT if away else (0x7FFE << 64) | F.MASK64)
        elif biased <= 0:
            q, ue, inexact, away = F.round_mant(neg, mant, e2 + n, 64, -16445, rc)
            q <<= ue + 16445          # as a multiple of the smallest 80-bit denormal
            fl = UE | PE if inexact else 0
            raw = (neg << 79) | ((1 << 64) | q if q >> 63 else q)
        else:
            fl = 0
            raw = F.parts_to_ext(neg, mant, e2 + n)
        fl |= self._denormal(p0) | self._denormal(p1)
        if self._signal(fl):
            return
        self._set_c1(away)
        self._set_raw(p0, raw)

    def _fxtract(self) -> None:
        p0 = self.top
        if not self.full[p0]:
            if self._underflow():     # masked: both results are the indefinite
                self._write(p0, IND)
                self._push_nocheck(IND)
            return
        a = self.st[p0]
        if self.full[(self.top - 1) & 7]:
            self.sw |= C1
            if self._signal(IE | SF):
                return
            self._write(p0, IND)
            self._push_nocheck(IND)
            return
        self.sw &= ~C1
        if a != a:
            r, fl = F.nan_result(a, None)
            if self._signal(fl):
                return
            self._write(p0, r)
            self._push_nocheck(r)
            return
        if a == 0.0:
            if self._signal(ZE):
                return
            self._write(p0, -INF)
            self._push_nocheck(a)
            return
        if a in (INF, -INF):
            self._write(p0, INF)
            self._push_nocheck(a)
            return
        raw = self.raw[p0]
        if raw is not None and F.ext_class(raw) in (0, 2):
            # keep all 64 significand bits: the significand is the same mantissa at 2**0
            _, mant, e2 = F.ext_parts(raw)
            n = mant.bit_length()
            self._write(p0, float(e2 + n - 1))
            self._push_nocheck(0.0)
            self._set_raw(self.top, (raw & (1 << 79)) | (0x3FFF << 64) | (mant << (64 - n)))
            return
        m, e = math.frexp(a)
        self._write(p0, float(e - 1))
        self._push_nocheck(m * 2.0)

    def _push_nocheck(self, v: float) -> None:
        self.top = (self.top - 1) & 7
        self._write(self.top, v)

    def _fprem(self, nearest: bool) -> None:
        p0 = self.top
        p1 = (self.top + 1) & 7
        if not (self.full[p0] and self.full[p1]):
            self.sw &= ~C2
            if self._underflow():
                self._write(p0, IND)
            return
        a, b = self.st[p0], self.st[p1]
        if a != a or b != b:
            r, fl = F.nan_result(a, b)
            self.sw &= ~C2
            self._unary_result(p0, r, fl)
            return
        ca, na, ma, ea = self._exact(p0)     # classes from the 80-bit value when kept
        cb, _, mb, eb = self._exact(p1)
        if (cb == 0 and mb == 0) or ca == 3:
            self.sw &= ~C2
            self._unary_result(p0, IND, IE)
            return
        de = self._denormal(p0) | self._denormal(p1)
        if self._signal(de):
            return
        if (ca == 0 and ma == 0) or cb == 3:
            self.sw &= ~(C0 | C1 | C2 | C3)
            return
        d = (ea + ma.bit_length()) - (eb + mb.bit_length())
        e = min(ea, eb)
        A = ma << (ea - e)
        B = mb << (eb - e)
        if d >= 64:
            # partial remainder: reduce by a chopped quotient of the top bits only
            shift = (d // 32) * 32 - 32   # leaves an exponent difference of 32..63
            Bs = B << shift
            q = A // Bs
            R = A - q * Bs
            self.sw |= C2
            rneg = na
        else:
            q, R = divmod(A, B)
            rneg = na
            if nearest and (2 * R > B or (2 * R == B and q & 1)):
                q += 1
                R = B - R
                rneg ^= 1
            cc = 0
            if q & 4:
                cc |= C0
            if q & 2:
                cc |= C3
            if q & 1:
                cc |= C1
            self.sw = (self.sw & ~(C0 | C1 | C2 | C3)) | cc
        if R == 0:
            self._write(p0, -0.0 if na else 0.0)
            return
        img = F.exact_to_ext(rneg, R, e)     # the remainder is exact
        if img is not None:
            self._set_raw(p0, img)
        else:
            bits, fl, _ = F.encode_binary(rneg, R, e, 0, F.F64)
            self._write(p0, F.b2f(bits))

    # transcendental functions
    def _trig(self, fn: Callable[[float], float], zero_exact: bool) -> Optional[Tuple[int, float]]:
        """Common checks for FSIN/FCOS/FPTAN/FSINCOS.  Returns (p0, result) or None."""
        p0 = self._st0()
        if p0 is None:
            return None
        a = self.st[p0]
        if a != a:
            r, fl = F.nan_result(a, None)
            self.sw &= ~C2
            self._unary_result(p0, r, fl)
            return None
        if a in (INF, -INF):
            self.sw &= ~C2
            self._unary_result(p0, IND, IE)
            return None
        if abs(a) >= _TWO63:
            self.sw |= C2
            return None
        self.sw &= ~(C2 | C1)
        return p0, fn(a)

    def _fsin(self) -> None:
        t = self._trig(math.sin, True)
        if t is not None:
            p0, r = t
            a = self.st[p0]
            self._unary_result(p0, r, 0 if a == 0.0 else PE)

    def _fcos(self) -> None:
        t = self._trig(math.cos, False)
        if t is not None:
            p0, r = t
            self._unary_result(p0, r, 0 if self.st[p0] == 0.0 else PE)

    def _two_result(self, fn: Callable[[float], Tuple[float, float]]) -> None:
        p0 = self.top
        if self.full[p0] and self.full[(p0 - 1) & 7]:
            self.sw |= C1
            if self._signal(IE | SF):
                return
            self._write(p0, IND)
            self._push_nocheck(IND)
            return
        a = self.st[p0]
        if self.full[p0] and a == a and a not in (INF, -INF) and abs(a) < _TWO63:
            st0, pushed = fn(a)
            self.sw &= ~(C2 | C1)
            if self._signal(0 if a == 0.0 else PE):
                return
            self._write(p0, st0)
            self._push_nocheck(pushed)
            return
        if not self.full[p0]:
            if self._underflow():
                self._write(p0, IND)
                self._push_nocheck(IND)
            return
        if abs(a) >= _TWO63 and a == a and a not in (INF, -INF):
            self.sw |= C2
            return
        # NaN or infinity: both results are the NaN (masked invalid for infinity)
        self.sw &= ~C2
        r, fl = F.nan_result(a, None) if a != a else (IND, IE)
        if self._signal(fl):
            return
        self._write(p0, r)
        self._push_nocheck(r)

    def _fptan(self) -> None:
        self._two_result(lambda a: (math.tan(a), 1.0))

    def _fsincos(self) -> None:
        self._two_result(lambda a: (math.sin(a), math.cos(a)))

    def _binary_st1(self) -> Optional[Tuple[int, int, float, float]]:
        """ST(1) op ST(0) with pop (FPATAN, FYL2X, FYL2XP1): underflow/NaN handling."""
        p0 = self.top
        p1 = (self.top + 1) & 7
        if not (self.full[p0] and self.full[p1]):
            if self._underflow():
                self._write(p1, IND)
                self._pop()
            return None
        x, y = self.st[p0], self.st[p1]
        if x != x or y != y:
            r, fl = F.nan_result(x, y)
            self._result_pop(p1, r, fl)
            return None
        return p0, p1, x, y

    def _result_pop(self, p1: int, r: float, flags: int) -> None:
        if self._signal(flags):
            return
        self.sw &= ~C1
        self._write(p1, r)
        self._pop()

    def _fpatan(self) -> None:
        t = self._binary_st1()
        if t is None:
            return
        _, p1, x, y = t
        r = math.atan2(y, x)
        exact = y == 0.0 and math.copysign(1.0, x) > 0
        self._result_pop(p1, r, 0 if exact else PE)

    def _fyl2x(self) -> None:
        t = self._binary_st1()
        if t is None:
            return
        _, p1, x, y = t
        if x < 0 or (x == 0.0 and y == 0.0) or (x == INF and y == 0.0) or \
                (x == 1.0 and y in (INF, -INF)):
            self._result_pop(p1, IND, IE)
            return
        if x == 0.0:
            self._result_pop(p1, -math.copysign(INF, y), 0 if y in (INF, -INF) else ZE)
            return
        if x == INF:
            self._result_pop(p1, math.copysign(INF, y), 0)
            return
        r, fl, _ = _mul(y, math.log2(x), 0)
        self._result_pop(p1, r, fl | (0 if x == 1.0 else PE))  # the x87 reports PE even when the result is exact

    def _fyl2xp1(self) -> None:
        t = self._binary_st1()
        if t is None:
            return
        _, p1, x, y = t
        if x < -1.0 or (x == -1.0 and y == 0.0) or (x in (INF, -INF) and y == 0.0):
            self._result_pop(p1, IND, IE)
            return
        if x == -1.0:
            self._result_pop(p1, -math.copysign(INF, y), 0 if y in (INF, -INF) else ZE)
            return
        if x == 0.0:
            if y in (INF, -INF):
                self._result_pop(p1, IND, IE)
            else:
                self._result_pop(p1, y * x, 0)
            return
        if x == INF:
            self._result_pop(p1, math.copysign(INF, y), 0)
            return
        r, fl, _ = _mul(y, math.log1p(x) / _LN2, 0)
        self._result_pop(p1, r, fl | PE)

    def _f2xm1(self) -> None:
        p0 = self._st0()
        if p0 is None:
            return
        a = self.st[p0]
        if a != a:
            r, fl = F.nan_result(a, None)
            self._unary_result(p0, r, fl)
        elif a == 0.0 or a == INF:
            self._unary_result(p0, a, 0)
        elif a == -INF:
            self._unary_result(p0, -1.0, 0)
        elif a == 1.0 or a == -1.0:
            self._unary_result(p0, 1.0 if a > 0 else -0.5, PE)
        else:
            self._unary_result(p0, math.expm1(a * _LN2), PE)

    def _fincstp(self) -> None:
        self.sw &= ~C1
        self.top = (self.top + 1) & 7

    def _fdecstp(self) -> None:
        self.sw &= ~C1
        self.top = (self.top - 1) & 7

    # ------------------------------------------------------------------ control and environment
    def _fldcw(self, addr: int, mem: Any) -> None:
        self.cw = mem.read(addr, 2) | 0x0040   # bit 6 reads as 1 on 387 and later
        self._update_es()

    def _fnstcw(self, addr: int, mem: Any) -> None:
        mem.write(addr, self.cw, 2)

    def _fnstsw_m(self, addr: int, mem: Any) -> None:
        mem.write(addr, self.status_word(), 2)

    def _env_bytes(self) -> bytes:
        tw = self.tag_word
        sw = self.status_word()
        cw = self.cw
        fip, fcs, fdp, fds, fop = self.fip, self.fcs, self.fdp, self.fds, self.fop
        if self._opsize32:
            if self._protected:
                words = [cw | 0xFFFF0000, sw | 0xFFFF0000, tw | 0xFFFF0000, fip,
                         fcs | (fop << 16), fdp, fds | 0xFFFF0000]
            else:
                lip = ((fcs << 4) + fip) & 0xFFFFFFFF
                words = [cw | 0xFFFF0000, sw | 0xFFFF0000, tw | 0xFFFF0000,
                         (lip & 0xFFFF) | 0xFFFF0000, ((lip >> 16) << 12) | fop,
                         (fdp & 0xFFFF) | 0xFFFF0000, (fdp >> 16) << 12]
            return b"".join((w & 0xFFFFFFFF).to_bytes(4, "little") for w in words)
        if self._protected:
            words = [cw, sw, tw, fip, fcs, fdp, fds]
        else:
            lip = ((fcs << 4) + fip) & 0xFFFFF
            words = [cw, sw, tw, lip & 0xFFFF, ((lip >> 16) << 12) | fop,
                     fdp & 0xFFFF, ((fdp >> 16) & 0xF) << 12]
        return b"".join((w & 0xFFFF).to_bytes(2, "little") for w in words)

    def _load_env(self, data: bytes) -> None:
        if self._opsize32:
            w = [int.from_bytes(data[i:i + 4], "little") for i in range(0, 28, 4)]
        else:
            w = [int.from_bytes(data[i:i + 2], "little") for i in range(0, 14, 2)]
        self.cw = (w[0] & 0xFFFF) | 0x0040
        sw = w[1] & 0xFFFF
        self.top = (sw >> 11) & 7
        self.sw = sw & ~TOP_MASK
        tw = w[2] & 0xFFFF
        for p in range(8):
            self.full[p] = ((tw >> (2 * p)) & 3) != 3
        if self._protected:
            self.fip = w[3] if self._opsize32 else w[3] & 0xFFFF
            self.fcs = w[4] & 0xFFFF
            self.fop = (w[4] >> 16) & 0x7FF if self._opsize32 else self.fop
            self.fdp = w[5] if self._opsize32 else w[5] & 0xFFFF
            self.fds = w[6] & 0xFFFF
        else:
            self.fip = (w[3] & 0xFFFF) | (((w[4] >> 12) & (0xFFFF if self._opsize32 else 0xF)) << 16)
            self.fcs = 0
            self.fop = w[4] & 0x7FF
            self.fdp = (w[5] & 0xFFFF) | (((w[6] >> 12) & (0xFFFF if self._opsize32 else 0xF)) << 16)
            self.fds = 0
        self._update_es()

    def _env_size(self) -> int:
        return 28 if self._opsize32 else 14

    def _fnstenv(self, addr: int, mem: Any) -> None:
        mem.write_bytes(addr, self._env_bytes())
        self.cw |= 0x3F
        self._update_es()

    def _fldenv(self, addr: int, mem: Any) -> None:
        self._load_env(mem.read_bytes(addr, self._env_size()))

    def _fnsave(self, addr: int, mem: Any) -> None:
        regs = b"".join(self._ext((self.top + i) & 7).to_bytes(10, "little") for i in range(8))
        mem.write_bytes(addr, self._env_bytes() + regs)
        self.reset()

    def _frstor(self, addr: int, mem: Any) -> None:
        n = self._env_size()
        data = mem.read_bytes(addr, n + 80)
        self._load_env(data[:n])
        for i in range(8):
            raw = int.from_bytes(data[n + 10 * i:n + 10 * i + 10], "little")
            self._set_raw((self.top + i) & 7, raw)

"""Unicorn (QEMU's TCG, PyPI ``unicorn``) as an oracle: 32-bit flat protected mode
(``UC_MODE_32``: CS/SS 32-bit, base 0) and 16-bit real mode (``UC_MODE_16``, segments 0).

One engine per mode is reused; before each snippet its memory and registers are rewritten and
its translation cache for the code page is dropped.  Unicorn follows QEMU's choices for
undefined flags, so the comparison masks them (``grammar.UNDEFINED``).
"""

from __future__ import annotations

import struct
from typing import Any, Dict

from . import layout
from .grammar import Snippet

M32 = 0xFFFFFFFF

try:  # the caller skips with a reason when this fails (no wheel for PyPy)
    import unicorn
    from unicorn import x86_const as X
except ImportError:  # pragma: no cover - depends on the interpreter
    unicorn = None

_REGS = ("EAX", "ECX", "EDX", "EBX", "ESP", "EBP", "ESI", "EDI")


def _descriptor(base: int, limit: int, access: int, flags: int) -> bytes:
    return struct.pack("<HHBBBB", limit & 0xFFFF, base & 0xFFFF, (base >> 16) & 0xFF, access,
                       (flags << 4) | (limit >> 16), base >> 24)


# The same selectors as run_pyv86: 08 code32, 10 data32, 18 code16, 20 data16 (B=0).
_GDT = (bytes(8) + _descriptor(0, 0xFFFFF, 0x9B, 0xC) + _descriptor(0, 0xFFFFF, 0x93, 0xC)
        + _descriptor(0, 0xFFFF, 0x9B, 0) + _descriptor(0, 0xFFFF, 0x93, 0))


class UnicornOracle:
    """``stack16``: 32-bit code with a 16-bit stack segment (SS = 20h, B=0: PUSH/POP use SP)."""

    def __init__(self, code32: bool, stack16: bool = False, stack32: bool = False) -> None:
        """``stack32`` (with ``code32=False``): 16-bit protected-mode code (CS = 18h) on a
        32-bit stack segment (SS = 10h, B=1: PUSH/POP use ESP)."""
        if unicorn is None:
            raise RuntimeError("unicorn is not installed")
        self.stack32 = stack32 and not code32
        mode = unicorn.UC_MODE_32 if code32 or self.stack32 else unicorn.UC_MODE_16
        self.code32 = code32
        self.stack16 = stack16 and code32
        self.uc = unicorn.Uc(unicorn.UC_ARCH_X86, mode)
        self.uc.mem_map(0, layout.MEM_SIZE)
        self.intno = None
        self.uc.hook_add(unicorn.UC_HOOK_INTR, self._on_intr)
        self.zero_region = bytes(layout.REGION)
        # real mode: the same IVT and HLT stubs run_pyv86 installs (compared in layout.WRAP)
        ivt = bytearray(layout.REGION)
        for v in range(32):
            ivt[4 * v:4 * v + 4] = struct.pack("<HH", layout.FAULT_STUBS + v, 0)
            ivt[layout.FAULT_STUBS + v] = 0xF4
        self.ivt = bytes(ivt)

    def _on_intr(self, uc: Any, intno: int, user: Any) -> None:
        self.intno = intno
        uc.emu_stop()

    def run(self, snippet: Snippet, max_steps: int = 10000) -> Dict[str, Any]:
        if snippet.base != 0:
            raise ValueError("the Unicorn oracle runs snippets generated for base 0")
        uc = self.uc
        code = snippet.code
        uc.mem_write(0, self.ivt if not self.code32 else self.zero_region)
        uc.mem_write(layout.CODE, code)
        uc.mem_write(layout.DATA, snippet.data)
        uc.mem_write(layout.STACK_LO, snippet.stack)
        try:
            uc.ctl_remove_cache(layout.CODE, layout.DATA)
        except AttributeError:  # pragma: no cover - unicorn 1.x
            pass
        if self.stack16:
            uc.mem_write(layout.GDT, _GDT)
            uc.reg_write(X.UC_X86_REG_GDTR, (0, layout.GDT, len(_GDT) - 1, 0))
            uc.reg_write(X.UC_X86_REG_SS, 0x20)
        if self.stack32:
            uc.mem_write(layout.GDT, _GDT)
            uc.reg_write(X.UC_X86_REG_GDTR, (0, layout.GDT, len(_GDT) - 1, 0))
            for seg in (X.UC_X86_REG_DS, X.UC_X86_REG_ES, X.UC_X86_REG_FS, X.UC_X86_REG_GS):
                uc.reg_write(seg, 0x20)
            uc.reg_write(X.UC_X86_REG_SS, 0x10)
            uc.reg_write(X.UC_X86_REG_CS, 0x18)
        elif not self.code32:
            for seg in (X.UC_X86_REG_CS, X.UC_X86_REG_DS, X.UC_X86_REG_ES, X.UC_X86_REG_SS,
                        X.UC_X86_REG_FS, X.UC_X86_REG_GS):
                uc.reg_write(seg, 0)
        for name, value in zip(_REGS, snippet.regs):
            uc.reg_write(getattr(X, "UC_X86_REG_" + name), value)
        uc.reg_write(X.UC_X86_REG_EFLAGS, snippet.eflags)
        self.intno = None
        fault = None
        end = layout.CODE + len(code)
        try:
            uc.emu_start(layout.CODE, end, count=max_steps)
        except unicorn.UcError as exc:
            fault = f"unicorn error: {exc}"
        eip = uc.reg_read(X.UC_X86_REG_EIP)
        if self.intno is not None:
            fault = f"exception {self.intno}"
        elif fault is None and eip != end:
            fault = f"stopped at {eip:#x} before the end"
        return {
            "regs": [uc.reg_read(getattr(X, "UC_X86_REG_" + n)) & M32 for n in _REGS],
            "eip": eip,
            "eflags": uc.reg_read(X.UC_X86_REG_EFLAGS),
            "data": bytes(uc.mem_read(layout.DATA, layout.DATA_END - layout.DATA)),
            "stack": bytes(uc.mem_read(layout.STACK_LO, layout.STACK_HI - layout.STACK_LO)),
            "wrap": b"".join(bytes(uc.mem_read(lo, hi - lo)) for lo, hi in layout.WRAP),
            "fault": fault,
        }

"""The CPU object: architectural state, linear/physical memory access, the run loop.

State layout (names fixed by the internal contract, docs in the package README):

- ``reg``: 8 ints (EAX ECX EDX EBX ESP EBP ESI EDI), ``eip``, ``instruction_count``.
- EFLAGS is lazy: ``flags`` holds every bit except the six arithmetic flags of the last
  lazily-evaluated operation, which ``lz_op``/``lz_a``/``lz_b``/``lz_c``/``lz_res``/``lz_sz``
  describe.  Everyone outside the core uses ``get_eflags()``/``set_eflags()``.
- Segments ES CS SS DS FS GS (0-5): ``sreg``, ``sbase``, ``slimit``, ``sattr``; derived access
  windows ``seg_lo``/``seg_rhi``/``seg_whi`` are recomputed by ``update_mode()``.
- System registers: ``cpl cr0 cr2 cr3 cr4 dr gdtr_* idtr_* ldtr_* tr_* msr halted a20_mask fpu``.
- Mode helpers: ``protected vm86 code32 stack32 paging``.

Hooks the core calls in ``_system`` (all take the CPU first; real-mode interrupts, far
transfers and IRET are done by the core itself in ``_ops``):

==========================================  ==================================================
``interrupt(cpu, vector, kind, error_code)``  kind "external" / "soft" / "exception"; EIP is
                                              the return address already
``deliver_exception(cpu, vector, error_code)``  EIP already rolled back to the faulting insn
``load_segment(cpu, index, selector)``        MOV/POP Sreg, LDS..LSS in protected mode
``far_jump(cpu, selector, offset, opsize32)``   protected-mode JMP FAR
``far_call(cpu, selector, offset, opsize32)``   CALL FAR; cpu.eip is the return offset
``far_return(cpu, opsize32, pop_bytes)``        RETF [imm16]
``iret(cpu, opsize32)``                         IRET in protected / v86 mode
``system_instruction(cpu, name, op)``           see ``SYSTEM_INSTRUCTIONS`` below
``io_permission(cpu, port, size)``              raise CPUFault(13, 0) when CPL > IOPL (or v86)
                                                and the TSS bitmap denies the port
==========================================  ==================================================

``op`` for ``system_instruction`` is a :class:`pyv86.cpu._ops.ModRM` (``reg`` field,
``is_mem``, ``linear``, ``read(size)``, ``write(value, size)``, ``opsize32``) or None for
instructions without a ModRM byte.  On ``_paging``: ``translate(cpu, lin, write, user) ->
physical`` (raises CPUFault(14, code) and sets CR2).
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Dict, List, Optional

from ._fault import CPUFault
from ._flags import lazy_flags

# Instructions the core hands to _system.system_instruction in protected / v86 mode (and for
# the ones marked * in every mode).
SYSTEM_INSTRUCTIONS = (
    "sldt", "str", "lldt", "ltr", "verr", "verw",            # 0F 00 /0-/5
    "sgdt", "sidt", "lgdt", "lidt", "smsw", "lmsw", "invlpg",  # 0F 01 /0-/7
    "lar", "lsl", "clts", "arpl",
    "mov_from_cr", "mov_to_cr", "mov_from_dr", "mov_to_dr",  # op.reg = CR/DR number, rm = GPR
    "cpuid*", "rdmsr*", "wrmsr*", "rdtsc*", "wbinvd", "invd",
    "hlt", "cli", "sti", "pushf", "popf",                    # pushf/popf: op is None,
                                                              # cpu.pending_opsize32 tells 16/32
)

ES, CS, SS, DS, FS, GS = range(6)
SEG_NAMES = ("es", "cs", "ss", "ds", "fs", "gs")
REG32 = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")
REG16 = ("ax", "cx", "dx", "bx", "sp", "bp", "si", "di")
REG8 = ("al", "cl", "dl", "bl", "ah", "ch", "dh", "bh")

# EFLAGS bits
CF, PF, AF, ZF, SF, TF, IF, DF, OF = 0x1, 0x4, 0x10, 0x40, 0x80, 0x100, 0x200, 0x400, 0x800
IOPL, NT, RF, VM, AC, VIF, VIP, ID = 0x3000, 0x4000, 0x10000, 0x20000, 0x40000, 0x80000, 0x100000, 0x200000
ARITH = CF | PF | AF | ZF | SF | OF
# Bits software can change on an i686 without VME/PVI semantics (ID is kept: CPUID exists).
EFLAGS_WRITABLE = 0x3F7FD5

CR0_PE, CR0_MP, CR0_EM, CR0_TS, CR0_ET, CR0_NE, CR0_WP, CR0_AM, CR0_NW, CR0_CD, CR0_PG = (
    1, 2, 4, 8, 0x10, 0x20, 0x10000, 0x40000, 0x20000000, 0x40000000, 0x80000000)

SIGNATURE = 0x00000633  # EDX at reset; family 6 (i686-class), what CPUID leaf 1 reports

STATE_VERSION = 1

# Visits before the run loop compiles a block (see _blocks.py and the README's "Speed").
# CPython: 64, compiling costs about as much as interpreting a few hundred instructions.
# PyPy: 10000.  Its JIT traces the interpreter well, but every exec'd block is a code object
# of its own: each needs its own traces, the run loop that calls them all gets a guard and
# a bridge per block, and compile() is slower than on CPython.  With thousands of blocks
# (a Linux boot) that made PyPy 3.6 times slower than with none; compiling only the few
# hundred blocks that run ten thousand times keeps tight loops fast (x10 over the JIT'd
# interpreter) without that cost.
BLOCK_THRESHOLD_CPYTHON = 64
BLOCK_THRESHOLD_PYPY = 10000
ON_PYPY = sys.implementation.name == "pypy"

_system: Any = None
_paging: Any = None


def _load_system() -> Any:
    global _system
    if _system is None:
        try:
            from . import _system as mod
        except ImportError:  # pragma: no cover - only while the module is being written
            return None
        _system = mod
    return _system


def _load_paging() -> Any:
    global _paging
    if _paging is None:
        try:
            from . import _paging as mod
        except ImportError:  # pragma: no cover
            return None
        _paging = mod
    return _paging


def system_hook(name: str) -> Optional[Callable[..., Any]]:
    """The ``_system`` function ``name``, or None while that module (or function) is missing."""
    mod = _load_system()
    return getattr(mod, name, None) if mod is not None else None


class CPU:
    """An i686-class x86 CPU.  See the package README for the machine-facing API."""

    def __init__(self, memory: Any, io: Any, intc: Any = None,
                 tsc_source: Optional[Callable[[], int]] = None,
                 on_reset: Optional[Callable[[str], None]] = None) -> None:
        self.memory = memory
        self.io = io
        self.intc = intc
        self.tsc_source = tsc_source
        self.on_reset = on_reset
        self.trace: Optional[Callable[[CPU], None]] = None
        self.fpu: Any = None
        try:
            from .fpu import FPU
            self.fpu = FPU()
        except ImportError:  # pragma: no cover - while fpu.py is being written
            self.fpu = None
        self.instruction_count = 0
        self.a20_mask = 0xFFFFFFFF
        self.msr: Dict[int, int] = {}
        self._stop = False
        self._init_caches()
        self.reset()

    # ------------------------------------------------------------------ reset / caches
    def _init_caches(self) -> None:
        # software TLB: key = linear page | (user << 20) -> physical page base (RAM pages only)
        self.tlb_r: Dict[int, int] = {}
        self.tlb_w: Dict[int, int] = {}
        # decoded-instruction cache: physical address -> decoded entry; pages holding code
        self.icache: Dict[int, Any] = {}
        self.code_pages: Dict[int, List[int]] = {}
        self.code_gen = 0            # bumped whenever decoded code is dropped
        self.use_blocks = True       # compile hot code to Python (see _blocks.py)
        # compile a block on its 64th visit (10000th on PyPy; tuned on a Linux boot)
        self.block_threshold = BLOCK_THRESHOLD_PYPY if ON_PYPY else BLOCK_THRESHOLD_CPYTHON
        self.hot: Dict[int, int] = {}  # visits of not-yet-compiled block starts
        self.ram = self.memory.ram
        self.page_kind = self.memory.page_kind

    def reset(self) -> None:
        """Processor reset (power-on / INIT): real mode at F000:FFF0, base FFFF0000."""
        self.reg: List[int] = [0, 0, SIGNATURE, 0, 0, 0, 0, 0]
        self.eip = 0xFFF0
        self.flags = 2
        self.lz_op = 0
        self.lz_a = self.lz_b = self.lz_c = self.lz_res = 0
        self.lz_sz = 0
        self.sreg = [0, 0xF000, 0, 0, 0, 0]
        self.sbase = [0, 0xFFFF0000, 0, 0, 0, 0]
        self.slimit = [0xFFFF] * 6
        self.sattr = [0x93, 0x9B, 0x93, 0x93, 0x93, 0x93]
        self.seg_lo = [0] * 6
        self.seg_rhi = [0xFFFF] * 6
        self.seg_whi = [0xFFFF] * 6
        self.cpl = 0
        self.cr0 = CR0_ET | CR0_NW | CR0_CD
        self.cr2 = 0
        self.cr3 = 0
        self.cr4 = 0
        self.dr = [0, 0, 0, 0, 0, 0, 0xFFFF0FF0, 0x400]
        self.gdtr_base = 0
        self.gdtr_limit = 0xFFFF
        self.idtr_base = 0
        self.idtr_limit = 0xFFFF
        self.ldtr_sel = 0
        self.ldtr_base = 0
        self.ldtr_limit = 0xFFFF
        self.tr_sel = 0
        self.tr_base = 0
        self.tr_limit = 0xFFFF
        self.tr_attr = 0x8B
        self.msr = {}
        self.halted = False
        self.shadow = False          # one-instruction interrupt shadow (STI, MOV/POP SS)
        self.pending_opsize32 = False
        if self.fpu is not None:
            self.fpu.reset()
        self.update_mode()
        self.flush_caches()

    def flush_caches(self) -> None:
        """Forget every translation and decoded instruction (RAM changed behind our back)."""
        self.tlb_r.clear()
        self.tlb_w.clear()
        self.icache.clear()
        self.code_pages.clear()
        self.hot.clear()
        self.code_gen += 1
        self.ram = self.memory.ram
        self.page_kind = self.memory.page_kind

    def invalidate_code(self, start: int, length: int) -> None:
        """Physical range [start, start+length) was written outside the CPU: drop decoded code."""
        if length <= 0:
            return
        first = start >> 12
        last = (start + length - 1) >> 12
        for page in range(first, last + 1):
            if page in self.code_pages:
                self._drop_code_page(page)

    def _drop_code_page(self, page: int) -> None:
        addrs = self.code_pages.pop(page, ())
        ic = self.icache
        for addr in addrs:
            ic.pop(addr, None)
        self.code_gen += 1

    def _add_code(self, phys: int, entry: Any) -> None:
        """Remember decoded code at ``phys``; its page then always takes the slow write path."""
        page = phys >> 12
        addrs = self.code_pages.get(page)
        if addrs is None:
            addrs = self.code_pages[page] = []
            base = page << 12
            tw = self.tlb_w
            for key in [k for k, v in tw.items() if v == base]:
                del tw[key]
        addrs.append(phys)
        self.icache[phys] = entry

    def tlb_flush(self) -> None:
        self.tlb_r.clear()
        self.tlb_w.clear()

    def tlb_flush_page(self, lin: int) -> None:
        page = (lin & 0xFFFFFFFF) >> 12
        for key in (page, page | (1 << 20)):
            self.tlb_r.pop(key, None)
            self.tlb_w.pop(key, None)

    def set_a20(self, enabled: bool) -> None:
        mask = 0xFFFFFFFF if enabled else 0xFFEFFFFF
        if mask != self.a20_mask:
            self.a20_mask = mask
            self.tlb_flush()

    def request_stop(self) -> None:
        self._stop = True

    # ------------------------------------------------------------------ modes
    def update_mode(self) -> None:
        """Re-derive mode helpers and segment access windows after system state changed."""
        cr0 = self.cr0
        paging = bool(cr0 & CR0_PG) and bool(cr0 & CR0_PE)
        if getattr(self, "paging", None) != paging:
            self.tlb_flush()
        self.protected = bool(cr0 & CR0_PE)
        self.vm86 = self.protected and bool(self.flags & VM)
        self.paging = paging
        if self.protected and not self.vm86:
            self.code32 = bool(self.sattr[CS] & 0x4000)
            self.stack32 = bool(self.sattr[SS] & 0x4000)
        else:
            self.code32 = False
            self.stack32 = False
            if self.vm86:
                self.cpl = 3
            elif not self.protected:
                self.cpl = 0
        for s in range(6):
            self._update_segment_window(s)

    def _update_segment_window(self, s: int) -> None:
        attr = self.sattr[s]
        limit = self.slimit[s]
        if not self.protected or self.vm86:
            # real / v86: segments stay readable and writable whatever was cached
            self.seg_lo[s] = 0
            self.seg_rhi[s] = limit
            self.seg_whi[s] = limit
            return
        if not (attr & 0x80) or not (attr & 0x10):
            # null / unusable / system descriptor: every access faults
            self.seg_lo[s] = 0
            self.seg_rhi[s] = -1
            self.seg_whi[s] = -1
            return
        typ = attr & 0xF
        if typ & 0x8:  # code
            self.seg_lo[s] = 0
            self.seg_rhi[s] = limit if typ & 0x2 else -1
            self.seg_whi[s] = -1
            return
        if typ & 0x4:  # expand-down data
            upper = 0xFFFFFFFF if attr & 0x4000 else 0xFFFF
            self.seg_lo[s] = limit + 1
            self.seg_rhi[s] = upper
            self.seg_whi[s] = upper if typ & 0x2 else -1
            return
        self.seg_lo[s] = 0
        self.seg_rhi[s] = limit
        self.seg_whi[s] = limit if typ & 0x2 else -1

    # ------------------------------------------------------------------ flags
    def get_eflags(self) -> int:
        if self.lz_op:
            self._materialize_flags()
        return self.flags

    def _materialize_flags(self) -> None:
        op = self.lz_op
        bits, mask = lazy_flags(op, self.lz_a, self.lz_b, self.lz_c, self.lz_res, self.lz_sz)
        self.flags = (self.flags & ~mask) | bits
        self.lz_op = 0

    def set_eflags(self, value: int) -> None:
        """Load EFLAGS (reserved bits forced: bit 1 set, 3/5/15/22+ clear).  No privilege checks."""
        old_vm = self.flags & VM
        self.lz_op = 0
        self.flags = (value & EFLAGS_WRITABLE) | 2
        if (self.flags & VM) != old_vm:
            self.update_mode()

    # ------------------------------------------------------------------ registers
    def get_register(self, name: str) -> int:
        n = name.lower()
        if n in REG32:
            return self.reg[REG32.index(n)]
        if n in REG16:
            return self.reg[REG16.index(n)] & 0xFFFF
        if n in REG8:
            i = REG8.index(n)
            return (self.reg[i & 3] >> (8 if i & 4 else 0)) & 0xFF
        if n == "eip":
            return self.eip
        if n == "ip":
            return self.eip & 0xFFFF
        if n in ("eflags", "flags"):
            return self.get_eflags() if n == "eflags" else self.get_eflags() & 0xFFFF
        if n in ("cr0", "cr2", "cr3", "cr4"):
            return int(getattr(self, n))
        if n in SEG_NAMES:
            return self.sreg[SEG_NAMES.index(n)]
        raise ValueError(f"unknown register name {name!r}")

    def set_register(self, name: str, value: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"register value must be an int, got {value!r}")
        n = name.lower()
        if n in REG32:
            self.reg[REG32.index(n)] = value & 0xFFFFFFFF
        elif n in REG16:
            i = REG16.index(n)
            self.reg[i] = (self.reg[i] & 0xFFFF0000) | (value & 0xFFFF)
        elif n in REG8:
            i = REG8.index(n)
            if i & 4:
                self.reg[i & 3] = (self.reg[i & 3] & 0xFFFF00FF) | ((value & 0xFF) << 8)
            else:
                self.reg[i] = (self.reg[i] & 0xFFFFFF00) | (value & 0xFF)
        elif n == "eip":
            self.eip = value & 0xFFFFFFFF
        elif n == "ip":
            self.eip = value & 0xFFFF
        elif n == "eflags":
            self.set_eflags(value)
        elif n == "flags":
            self.set_eflags((self.get_eflags() & 0xFFFF0000) | (value & 0xFFFF))
        elif n in ("cr0", "cr2", "cr3", "cr4"):
            setattr(self, n, value & 0xFFFFFFFF)
            if n != "cr2":
                self.update_mode()
                self.tlb_flush()
        else:
            raise ValueError(f"unknown register name {name!r}")

    def set_segment(self, index: Any, selector: int, base: int, limit: int, attr: int) -> None:
        """Load a descriptor cache directly (loaders, tests, _system after its checks)."""
        s = self._seg_index(index)
        self.sreg[s] = selector & 0xFFFF
        self.sbase[s] = base & 0xFFFFFFFF
        self.slimit[s] = limit & 0xFFFFFFFF
        self.sattr[s] = attr & 0xFFFF
        if s == CS or s == SS:
            self.update_mode()
        else:
            self._update_segment_window(s)

    @staticmethod
    def _seg_index(index: Any) -> int:
        if isinstance(index, str):
            n = index.lower()
            if n not in SEG_NAMES:
                raise ValueError(f"unknown segment {index!r}")
            return SEG_NAMES.index(n)
        if isinstance(index, int) and 0 <= index < 6:
            return index
        raise ValueError(f"segment index must be 0-5 or a name, got {index!r}")

    def load_segment(self, index: Any, selector: int) -> None:
        """Architectural segment load in the current mode (MOV Sreg semantics)."""
        s = self._seg_index(index)
        selector &= 0xFFFF
        if self.protected and not self.vm86:
            hook = system_hook("load_segment")
            if hook is None:
                raise NotImplementedError("protected-mode segment loads need pyv86.cpu._system")
            hook(self, s, selector)
            if s == CS or s == SS:
                self.update_mode()
            else:
                self._update_segment_window(s)
            return
        self.sreg[s] = selector
        self.sbase[s] = selector << 4
        if self.vm86:
            self.slimit[s] = 0xFFFF
            self.sattr[s] = 0xF3 if s != CS else 0xFB
        self._update_segment_window(s)

    # ------------------------------------------------------------------ physical memory
    def read_phys8(self, addr: int) -> int:
        page = addr >> 12
        pk = self.page_kind
        if page < len(pk) and pk[page] <= 1 and addr < len(self.ram):
            return self.ram[addr]
        return self.memory.read(addr, 1) & 0xFF

    def read_phys16(self, addr: int) -> int:
        if (addr & 0xFFF) == 0xFFF:
            return self.read_phys8(addr) | (self.read_phys8(addr + 1) << 8)
        page = addr >> 12
        pk = self.page_kind
        if page < len(pk) and pk[page] <= 1 and addr + 1 < len(self.ram):
            ram = self.ram
            return ram[addr] | (ram[addr + 1] << 8)
        return self.memory.read(addr, 2) & 0xFFFF

    def read_phys32(self, addr: int) -> int:
        if (addr & 0xFFF) > 0xFFC:
            return self.read_phys16(addr) | (self.read_phys16(addr + 2) << 16)
        page = addr >> 12
        pk = self.page_kind
        if page < len(pk) and pk[page] <= 1 and addr + 3 < len(self.ram):
            return int.from_bytes(self.ram[addr:addr + 4], "little")
        return self.memory.read(addr, 4) & 0xFFFFFFFF

    def write_phys8(self, addr: int, value: int) -> None:
        page = addr >> 12
        pk = self.page_kind
        if page < len(pk) and addr < len(self.ram):
            kind = pk[page]
            if kind == 0:
                if page in self.code_pages:
                    self._drop_code_page(page)
                self.ram[addr] = value & 0xFF
                return
            if kind == 1:
                return
        self.memory.write(addr, value & 0xFF, 1)

    def write_phys16(self, addr: int, value: int) -> None:
        if (addr & 0xFFF) == 0xFFF:
            self.write_phys8(addr, value)
            self.write_phys8(addr + 1, value >> 8)
            return
        page = addr >> 12
        pk = self.page_kind
        if page < len(pk) and addr + 1 < len(self.ram):
            kind = pk[page]
            if kind == 0:
                if page in self.code_pages:
                    self._drop_code_page(page)
                self.ram[addr] = value & 0xFF
                self.ram[addr + 1] = (value >> 8) & 0xFF
                return
            if kind == 1:
                return
        self.memory.write(addr, value & 0xFFFF, 2)

    def write_phys32(self, addr: int, value: int) -> None:
        if (addr & 0xFFF) > 0xFFC:
            self.write_phys16(addr, value)
            self.write_phys16(addr + 2, value >> 16)
            return
        page = addr >> 12
        pk = self.page_kind
        if page < len(pk) and addr + 3 < len(self.ram):
            kind = pk[page]
            if kind == 0:
                if page in self.code_pages:
                    self._drop_code_page(page)
                self.ram[addr:addr + 4] = (value & 0xFFFFFFFF).to_bytes(4, "little")
                return
            if kind == 1:
                return
        self.memory.write(addr, value & 0xFFFFFFFF, 4)

    # ------------------------------------------------------------------ linear memory (TLB)
    def translate(self, lin: int, write: bool, user: bool) -> int:
        """Linear -> physical, filling the TLB for RAM pages.  May raise CPUFault(14)."""
        lin &= 0xFFFFFFFF
        if self.paging:
            paging = _load_paging()
            if paging is None:
                raise NotImplementedError("paging needs pyv86.cpu._paging")
            phys = paging.translate(self, lin, write, user)
        else:
            phys = lin
        phys &= self.a20_mask
        ppage = phys >> 12
        pk = self.page_kind
        if ppage < len(pk) and ((ppage + 1) << 12) <= len(self.ram):
            kind = pk[ppage]
            key = (lin >> 12) | (1 << 20 if user else 0)
            if write:
                if kind == 0 and ppage not in self.code_pages:
                    self.tlb_w[key] = ppage << 12
            elif kind <= 1:
                self.tlb_r[key] = ppage << 12
        return phys

    def read8(self, lin: int) -> int:
        user = self.cpl == 3
        t = self.tlb_r.get((lin >> 12) | (1 << 20 if user else 0))
        if t is not None:
            return self.ram[t | (lin & 0xFFF)]
        return self.read_phys8(self.translate(lin, False, user))

    def read16(self, lin: int) -> int:
        if (lin & 0xFFF) == 0xFFF:
            return self.read8(lin) | (self.read8((lin + 1) & 0xFFFFFFFF) << 8)
        user = self.cpl == 3
        t = self.tlb_r.get((lin >> 12) | (1 << 20 if user else 0))
        if t is not None:
            a = t | (lin & 0xFFF)
            ram = self.ram
            return ram[a] | (ram[a + 1] << 8)
        return self.read_phys16(self.translate(lin, False, user))

    def read32(self, lin: int) -> int:
        if (lin & 0xFFF) > 0xFFC:
            return self.read16(lin) | (self.read16((lin + 2) & 0xFFFFFFFF) << 16)
        user = self.cpl == 3
        t = self.tlb_r.get((lin >> 12) | (1 << 20 if user else 0))
        if t is not None:
            a = t | (lin & 0xFFF)
            ram = self.ram
            return ram[a] | (ram[a + 1] << 8) | (ram[a + 2] << 16) | (ram[a + 3] << 24)
        return self.read_phys32(self.translate(lin, False, user))

    def write8(self, lin: int, value: int) -> None:
        user = self.cpl == 3
        t = self.tlb_w.get((lin >> 12) | (1 << 20 if user else 0))
        if t is not None:
            self.ram[t | (lin & 0xFFF)] = value & 0xFF
            return
        self.write_phys8(self.translate(lin, True, user), value)

    def write16(self, lin: int, value: int) -> None:
        if (lin & 0xFFF) == 0xFFF:
            # translate both pages first so a fault on the second leaves memory untouched
            user = self.cpl == 3
            p0 = self.translate(lin, True, user)
            p1 = self.translate((lin + 1) & 0xFFFFFFFF, True, user)
            self.write_phys8(p0, value)
            self.write_phys8(p1, value >> 8)
            return
        user = self.cpl == 3
        t = self.tlb_w.get((lin >> 12) | (1 << 20 if user else 0))
        if t is not None:
            a = t | (lin & 0xFFF)
            ram = self.ram
            ram[a] = value & 0xFF
            ram[a + 1] = (value >> 8) & 0xFF
            return
        self.write_phys16(self.translate(lin, True, user), value)

    def write32(self, lin: int, value: int) -> None:
        if (lin & 0xFFF) > 0xFFC:
            user = self.cpl == 3
            n0 = 0x1000 - (lin & 0xFFF)
            p0 = self.translate(lin, True, user)
            p1 = self.translate((lin + n0) & 0xFFFFFFFF, True, user)
            for i in range(4):
                self.write_phys8((p0 + i) if i < n0 else (p1 + i - n0), value >> (8 * i))
            return
        user = self.cpl == 3
        t = self.tlb_w.get((lin >> 12) | (1 << 20 if user else 0))
        if t is not None:
            a = t | (lin & 0xFFF)
            self.ram[a:a + 4] = (value & 0xFFFFFFFF).to_bytes(4, "little")
            return
        self.write_phys32(self.translate(lin, True, user), value)

    # generic sized helpers (FPU memory view and system code use these)
    def read(self, lin: int, size: int) -> int:
        if size == 1:
            return self.read8(lin)
        if size == 2:
            return self.read16(lin)
        if size == 4:
            return self.read32(lin)
        if size == 8:
            return self.read32(lin) | (self.read32((lin + 4) & 0xFFFFFFFF) << 32)
        raise ValueError(f"bad access size {size}")

    def write(self, lin: int, value: int, size: int) -> None:
        if size == 1:
            self.write8(lin, value)
        elif size == 2:
            self.write16(lin, value)
        elif size == 4:
            self.write32(lin, value)
        elif size == 8:
            # probe both halves for write access before changing anything
            user = self.cpl == 3
            self.translate(lin, True, user)
            self.translate((lin + 7) & 0xFFFFFFFF, True, user)
            self.write32(lin, value)
            self.write32((lin + 4) & 0xFFFFFFFF, value >> 32)
        else:
            raise ValueError(f"bad access size {size}")

    def read_bytes(self, lin: int, n: int) -> bytes:
        return bytes(self.read8((lin + i) & 0xFFFFFFFF) for i in range(n))

    def write_bytes(self, lin: int, data: bytes) -> None:
        user = self.cpl == 3
        if data:
            self.translate(lin, True, user)
            self.translate((lin + len(data) - 1) & 0xFFFFFFFF, True, user)
        for i, b in enumerate(data):
            self.write8((lin + i) & 0xFFFFFFFF, b)

    # ------------------------------------------------------------------ segmented access
    def seg_linear(self, s: int, off: int, size: int, write: bool) -> int:
        """Check ``size`` bytes at ``s:off`` against the segment window; return the linear address."""
        hi = self.seg_whi[s] if write else self.seg_rhi[s]
        if off < self.seg_lo[s] or off + size - 1 > hi:
            if self.protected and not self.vm86 and s != SS and self.seg_rhi[s] < 0 and \
                    not (self.sattr[s] & 0x80):
                raise CPUFault(13, 0)
            raise CPUFault(12 if s == SS else 13, 0)
        return (self.sbase[s] + off) & 0xFFFFFFFF

    # ------------------------------------------------------------------ running
    def step(self) -> int:
        """Execute one instruction (or deliver one interrupt); return instructions executed."""
        return self.run(1)

    def run(self, budget: int) -> int:
        from ._exec import run
        return run(self, budget)

    # ------------------------------------------------------------------ state
    def save_state(self) -> dict:
        from ._state import save_state
        return save_state(self)

    def restore_state(self, state: dict) -> None:
        from ._state import restore_state
        restore_state(self, state)

"""Run a snippet on pyv86's CPU and return its final state.

32-bit code runs in flat protected mode at CPL 0 with real descriptor tables (GDT at
``layout.GDT``, an IDT whose 32 interrupt gates point at one HLT each), so an exception shows
up as a halt at a known stub.  Every segment has base ``-snippet.base`` (mod 2**32): the
snippet's absolute addresses ``base + offset`` then reach physical ``offset`` in a 1 MiB RAM.
16-bit code runs in real mode with every segment at 0 and the IVT pointing at the same stubs.
"""

from __future__ import annotations

import struct
from typing import Any, Dict

from pyv86.cpu import CPU, NullIO, SimpleMemory

from . import layout
from .grammar import Snippet

M32 = 0xFFFFFFFF


def _descriptor(base: int, limit_pages: int, access: int, flags: int) -> bytes:
    lim = limit_pages & 0xFFFFF
    return struct.pack("<HHBBBB", lim & 0xFFFF, base & 0xFFFF, (base >> 16) & 0xFF, access,
                       (flags << 4) | (lim >> 16), (base >> 24) & 0xFF)


def _gate(selector: int, offset: int) -> bytes:
    return struct.pack("<HHBBH", offset & 0xFFFF, selector, 0, 0x8E, (offset >> 16) & 0xFFFF)


def make_cpu(snippet: Snippet, pm16: bool = False) -> Any:
    """A CPU loaded with the snippet; ``pm16`` runs 16-bit code in 16-bit protected mode
    (CS/SS/DS/ES/FS/GS 16-bit descriptors, base 0, limit FFFFh) instead of real mode."""
    mem = SimpleMemory(layout.MEM_SIZE)
    ram = mem.ram
    ram[layout.DATA:layout.DATA_END] = snippet.data
    ram[layout.STACK_LO:layout.STACK_HI] = snippet.stack
    code = snippet.code + b"\xf4"                   # HLT after the snippet ends the run
    ram[layout.CODE:layout.CODE + len(code)] = code
    for v in range(32):
        ram[layout.FAULT_STUBS + v] = 0xF4          # HLT
    cpu = CPU(mem, NullIO())
    base = (-snippet.base) & M32
    if not snippet.code32:
        # the real-mode IVT (also written in 16-bit protected mode, where it is plain memory,
        # so the compared low memory matches the oracle's)
        for v in range(32):
            ram[4 * v:4 * v + 4] = struct.pack("<HH", layout.FAULT_STUBS + v, 0)
    if snippet.code32 or pm16:
        gdt = bytes(8) + _descriptor(base, 0xFFFFF, 0x9B, 0xC) + _descriptor(base, 0xFFFFF, 0x93, 0xC)
        gdt += _descriptor(0, 0xFFFF, 0x9B, 0) + _descriptor(0, 0xFFFF, 0x93, 0)   # 0x18, 0x20
        ram[layout.GDT:layout.GDT + len(gdt)] = gdt
        for v in range(32):
            off = (layout.FAULT_STUBS + v + snippet.base) & M32
            ram[layout.IDT + 8 * v:layout.IDT + 8 * v + 8] = _gate(0x08, off)
        cpu.gdtr_base, cpu.gdtr_limit = layout.GDT, len(gdt) - 1
        cpu.idtr_base, cpu.idtr_limit = layout.IDT, 32 * 8 - 1
        cpu.set_register("cr0", cpu.cr0 | 1)
        for s in range(6):
            if pm16:
                sel, attr = (0x18, 0x009B) if s == 1 else (0x20, 0x0093)
                cpu.set_segment(s, sel, 0, 0xFFFF, attr)
            else:
                sel, attr = (0x08, 0xC09B) if s == 1 else (0x10, 0xC093)
                cpu.set_segment(s, sel, base, 0xFFFFFFFF, attr)
    else:
        cpu.idtr_base, cpu.idtr_limit = 0, 0x3FF
        for s in range(6):
            cpu.set_segment(s, 0, 0, 0xFFFF, 0x9B if s == 1 else 0x93)
    cpu.reg[:] = list(snippet.regs)
    cpu.eip = (snippet.base + layout.CODE) & M32
    cpu.set_eflags(snippet.eflags)
    cpu.flush_caches()
    return cpu


ENGINES = ("interp", "blocks", "step", "paged", "chunks", "pm16", "stack16", "pm16-stack32")

# "paged": 4 KiB pages, the snippet's data and stack pages on scattered physical frames, so
# every access that straddles a page boundary must be split between unrelated frames.
PAGE_DIR = 0x70000
PAGE_TABLE = 0x71000
FRAMES_AT = 0x80000


def _frame_of(page: int) -> int:
    """Physical frame number of linear page ``page`` (< 16) in the "paged" engine."""
    if layout.DATA >> 12 <= page < layout.STACK_HI >> 12:
        return (FRAMES_AT >> 12) + ((page * 7) % 16) * 2   # scattered, never adjacent
    return page


def _enable_paging(cpu: Any) -> None:
    ram = cpu.memory.ram
    ram[PAGE_DIR:PAGE_DIR + 4] = struct.pack("<I", PAGE_TABLE | 7)
    for page in range(256):
        frame = _frame_of(page) if page < 16 else page
        ram[PAGE_TABLE + 4 * page:PAGE_TABLE + 4 * page + 4] = struct.pack("<I", (frame << 12) | 7)
    # move the data and stack bytes to their frames
    for page in range(layout.DATA >> 12, layout.STACK_HI >> 12):
        src, dst = page << 12, _frame_of(page) << 12
        ram[dst:dst + 0x1000] = ram[src:src + 0x1000]
        ram[src:src + 0x1000] = b"\xcc" * 0x1000      # stale copy: must never be read
    cpu.cr3 = PAGE_DIR
    cpu.set_register("cr0", cpu.cr0 | 0x80000000)
    cpu.tlb_flush()


def _linear_bytes(cpu: Any, lo: int, hi: int, paged: bool) -> bytes:
    ram = cpu.memory.ram
    if not paged:
        return bytes(ram[lo:hi])
    out = []
    for page in range(lo >> 12, ((hi - 1) >> 12) + 1):
        a, b = max(lo, page << 12), min(hi, (page + 1) << 12)
        phys = (_frame_of(page) << 12) + (a & 0xFFF)
        out.append(bytes(ram[phys:phys + (b - a)]))
    return b"".join(out)
ERROR_CODE_VECTORS = (8, 10, 11, 12, 13, 14, 17)


def _unwind_exception_frame(cpu: Any, snippet: Snippet, vector: int) -> None:
    """Undo the exception frame the CPL-0 interrupt gate pushed, so the state reads as the
    host's signal frame does: registers, EIP and EFLAGS at the faulting instruction.  The
    host pushes its signal frame elsewhere, so ``cpu.frame`` records which stack bytes the
    frame overwrote (the comparison ignores them)."""
    esp = cpu.reg[4]
    lin = (esp - snippet.base) & M32
    skip = 4 if vector in ERROR_CODE_VECTORS else 0
    cpu.eip = cpu.read32(lin + skip)
    cpu.set_eflags(cpu.read32(lin + skip + 8))
    cpu.reg[4] = (esp + skip + 12) & M32
    cpu.frame = (lin, lin + skip + 12)


def run(snippet: Snippet, engine: str = "interp", max_steps: int = 10000) -> Dict[str, Any]:
    """Final state: regs, eip (as an absolute snippet address), eflags, data, stack, fault.

    The snippet is followed by HLT and runs with one ``cpu.run`` call.  ``engine``:
    ``"interp"`` turns the block compiler off (``cpu.use_blocks = False``: every instruction
    through the interpreter), ``"blocks"`` leaves it on, compiles at the first visit
    (``cpu.block_threshold = 1``) and primes the TLB entry of the code page so the very first
    block is compiled (``_blocks.py``), ``"step"`` calls ``cpu.run(1)``
    per instruction, ``"paged"`` is ``"blocks"`` with paging on and the data and stack pages
    on scattered physical frames (memory is compared in the linear view), ``"chunks"`` is
    ``"blocks"`` run with many small budgets (1, 2, 3, 5, 7, 11 instructions per call),
    ``"pm16"`` runs a 16-bit snippet in 16-bit protected mode (blocks on), where non-faulting
    code without segment loads behaves as in real mode, ``"stack16"`` runs 32-bit code with
    a 16-bit stack segment (blocks on), ``"pm16-stack32"`` 16-bit protected-mode code on a
    32-bit stack segment (blocks on).
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}")
    if engine.startswith("pm16") and snippet.code32:
        raise ValueError("the pm16 engines run 16-bit snippets")
    cpu = make_cpu(snippet, pm16=engine.startswith("pm16"))
    if engine == "pm16-stack32":
        cpu.set_segment(2, 0x10, 0, 0xFFFFFFFF, 0xC093)   # 32-bit stack: PUSH/POP use ESP
    end = (snippet.base + layout.CODE + len(snippet.code)) & M32
    fault = None
    # block engines compile at the first visit (the default waits for hot code)
    if engine != "interp" and hasattr(cpu, "block_threshold"):
        cpu.block_threshold = 1
    if engine == "interp":
        cpu.use_blocks = False
    elif engine == "paged":
        if not snippet.code32:
            raise ValueError("the paged engine runs 32-bit snippets")
        _enable_paging(cpu)
        cpu.use_blocks = True
        cpu.translate(layout.CODE, False, False)
    elif engine == "stack16":
        if not snippet.code32:
            raise ValueError("the stack16 engine runs 32-bit snippets")
        cpu.set_segment(2, 0x20, 0, 0xFFFF, 0x0093)   # 16-bit stack: PUSH/POP use SP
        cpu.use_blocks = True
        cpu.translate(layout.CODE, False, False)
    elif engine in ("blocks", "chunks", "pm16", "pm16-stack32"):
        cpu.use_blocks = True
        cpu.translate(layout.CODE, False, False)    # code page in the TLB: compile from eip
    try:
        if engine == "chunks":
            # the machine's way: many run() calls with small budgets, so blocks that do not
            # fit the remaining budget fall back to the interpreter mid-stream
            budgets = (1, 2, 3, 5, 7, 11)
            steps = i = 0
            while not cpu.halted and steps < max_steps:
                steps += cpu.run(budgets[i % len(budgets)]) or 1
                i += 1
        elif engine == "step":
            steps = 0
            while cpu.eip != end and not cpu.halted and steps < max_steps:
                cpu.run(1)
                steps += 1
        else:
            cpu.run(max_steps)
        if cpu.halted:
            if cpu.eip == (end + 1) & M32:
                cpu.eip = end
            else:
                stub = (cpu.eip - snippet.base - layout.FAULT_STUBS - 1) & M32
                fault = f"exception {stub}" if stub < 32 else f"halted at {cpu.eip:#x}"
                if stub < 32 and snippet.code32:
                    _unwind_exception_frame(cpu, snippet, stub)
        elif cpu.eip != end:
            fault = f"did not reach the end after {max_steps} instructions (eip={cpu.eip:#x})"
    except Exception as exc:  # a crash inside the emulator is a finding, not a harness error
        fault = f"pyv86 raised {type(exc).__name__}: {exc}"
    paged = engine == "paged"
    return {
        "regs": list(cpu.reg),
        "eip": cpu.eip,
        "eflags": cpu.get_eflags() if fault is None or "raised" not in fault else 0,
        "data": _linear_bytes(cpu, layout.DATA, layout.DATA_END, paged),
        "stack": _linear_bytes(cpu, layout.STACK_LO, layout.STACK_HI, paged),
        "fault": fault,
        "frame": getattr(cpu, "frame", None),
        "wrap": b"".join(_linear_bytes(cpu, lo, hi, paged) for lo, hi in layout.WRAP)
        if snippet.base == 0 else None,
    }

"""Helpers to run small code snippets on a bare CPU (tests, differential checks, benches)."""

from __future__ import annotations

from typing import Any, Optional

from ._memory import NullIO, SimpleMemory
from .cpu import CPU

CODE = 0x1000


def real_mode_cpu(code: bytes = b"", *, memory_size: int = 1 << 20, io: Any = None,
                  intc: Any = None, cs: int = 0, ip: int = CODE) -> CPU:
    """A CPU in real mode with ``code`` at CS:IP (CS=0, IP=0x1000), SS:SP = 0:0x8000."""
    mem = SimpleMemory(memory_size)
    cpu = CPU(mem, io if io is not None else NullIO(), intc=intc)
    for s in range(6):
        cpu.set_segment(s, cs if s == 1 else 0, (cs << 4) if s == 1 else 0, 0xFFFF,
                        0x9B if s == 1 else 0x93)
    cpu.reg[4] = 0x8000
    cpu.eip = ip
    load(cpu, (cs << 4) + ip, code)
    return cpu


def flat32_cpu(code: bytes = b"", *, memory_size: int = 4 << 20, io: Any = None,
               intc: Any = None, paging: bool = False) -> CPU:
    """A CPU in flat 32-bit protected mode (CPL 0, base 0, 4 GiB limits), code at 0x1000,
    ESP = 0x90000.  With ``paging`` the first 4 MiB are identity-mapped with 4 KiB pages
    (page directory at 0x100000, page table at 0x101000, all present/writable/user)."""
    mem = SimpleMemory(memory_size)
    cpu = CPU(mem, io if io is not None else NullIO(), intc=intc)
    cpu.cr0 = 0x60000011
    for s in range(6):
        cpu.set_segment(s, 8 if s == 1 else 0x10, 0, 0xFFFFFFFF, 0xC09B if s == 1 else 0xC093)
    cpu.reg[4] = 0x90000
    if paging:
        pd, pt = 0x100000, 0x101000
        mem.ram[pd:pd + 4] = (pt | 7).to_bytes(4, "little")
        for i in range(1024):
            mem.ram[pt + 4 * i:pt + 4 * i + 4] = ((i << 12) | 7).to_bytes(4, "little")
        cpu.cr3 = pd
        cpu.cr0 |= 0x80000000
    cpu.update_mode()
    cpu.tlb_flush()
    cpu.eip = CODE
    load(cpu, CODE, code)
    return cpu


def load(cpu: CPU, phys: int, data: bytes) -> None:
    """Write ``data`` to physical memory behind the CPU's back (and drop stale decoded code)."""
    if data:
        cpu.memory.ram[phys:phys + len(data)] = data
        cpu.invalidate_code(phys, len(data))


def run_until_hlt(cpu: CPU, limit: int = 100000) -> int:
    """Run until the CPU halts; return the instructions executed (the HLT included)."""
    total = 0
    while not cpu.halted and total < limit:
        n = cpu.run(min(1000, limit - total))
        total += n
        if n == 0 and not cpu.halted:
            break
    if not cpu.halted:
        raise RuntimeError(f"no HLT within {limit} instructions (EIP={cpu.eip:#x})")
    return total


def step(cpu: CPU, n: int = 1) -> Optional[int]:
    """Execute exactly ``n`` instructions."""
    return cpu.run(n)

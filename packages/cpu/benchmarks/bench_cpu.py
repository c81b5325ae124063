"""CPU throughput on named workloads, in millions of guest instructions per second (MIPS).

    python packages/cpu/benchmarks/bench_cpu.py [--seconds S]

Each workload runs flat 32-bit protected-mode code for about S seconds of wall time (after a
short warm-up so PyPy's JIT has compiled the loop) and prints a human line plus a
``BENCH {json}`` line that ``nox -s bench`` collects to compute the PyPy/CPython ratio.
Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import time

from pyv86.cpu import CPU, NullIO, SimpleMemory

CODE = 0x1000
PD = 0x100000
PT = 0x101000
SRC = 0x200000
DST = 0x280000


def flat_cpu(paging: bool = False) -> CPU:
    mem = SimpleMemory(4 << 20)
    cpu = CPU(mem, NullIO())
    cpu.cr0 = 0x60000011
    for s in range(6):
        cpu.set_segment(s, 8 if s == 1 else 0x10, 0, 0xFFFFFFFF, 0xC09B if s == 1 else 0xC093)
    cpu.reg[4] = 0x90000
    if paging:
        # identity-map the first 4 MiB with 4 KiB pages (present, writable, supervisor)
        ram = mem.ram
        ram[PD:PD + 4] = (PT | 3).to_bytes(4, "little")
        for i in range(1024):
            ram[PT + 4 * i:PT + 4 * i + 4] = ((i << 12) | 3).to_bytes(4, "little")
        cpu.cr3 = PD
        cpu.cr0 |= 0x80000000
    cpu.update_mode()
    cpu.tlb_flush()
    return cpu


def asm(*parts: bytes) -> bytes:
    return b"".join(parts)


def d32(v: int) -> bytes:
    return (v & 0xFFFFFFFF).to_bytes(4, "little")


# register loop:  l: add eax,ebx / xor edx,eax / inc esi / dec ecx / jnz l ; jmp start
REG_LOOP = asm(b"\xb9" + d32(100000),                 # mov ecx, 100000
               b"\x01\xd8", b"\x31\xc2", b"\x46", b"\x49",  # add eax,ebx; xor edx,eax; inc esi; dec ecx
               b"\x75\xf8",                           # jnz -8
               b"\xeb\xf1")                           # jmp start

# memory loop (paging on): l: mov eax,[esi] / add eax,1 / mov [esi+4],eax / add esi,8 /
#                             and esi,0x23fff8 (stay in a 256 KiB buffer) / dec ecx / jnz l
MEM_LOOP = asm(b"\xb9" + d32(100000),                 # mov ecx, 100000
               b"\xbe" + d32(SRC),                    # mov esi, SRC
               b"\x8b\x06",                           # mov eax,[esi]
               b"\x83\xc0\x01",                       # add eax,1
               b"\x89\x46\x04",                       # mov [esi+4],eax
               b"\x83\xc6\x08",                       # add esi,8
               b"\x81\xe6" + d32(0x23FFF8),           # and esi,0x23fff8
               b"\x49",                               # dec ecx
               b"\x75\xec",                           # jnz l
               b"\xeb\xe0")                           # jmp start

# string copy: mov esi,SRC / mov edi,DST / mov ecx,1024 / rep movsd / jmp start (4 KiB per pass)
STR_LOOP = asm(b"\xbe" + d32(SRC), b"\xbf" + d32(DST), b"\xb9" + d32(1024),
               b"\xf3\xa5", b"\xeb\xed")


def measure(name: str, code: bytes, seconds: float, paging: bool = False,
            bytes_per_insn: int = 0) -> None:
    cpu = flat_cpu(paging)
    cpu.memory.ram[CODE:CODE + len(code)] = code
    cpu.eip = CODE
    cpu.run(20000)  # warm-up (JIT, caches)
    executed = 0
    copied = 0
    start = time.perf_counter()
    while True:
        count0 = cpu.instruction_count
        esi0 = cpu.reg[6]
        cpu.run(50000)
        executed += cpu.instruction_count - count0
        if bytes_per_insn:
            copied += 0
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
    del esi0
    mips = executed / elapsed / 1e6
    unit = "MIPS"
    print(f"{name:28} {mips:8.3f} {unit}  ({executed} instructions in {elapsed:.2f} s)")
    print("BENCH " + json.dumps({"name": name, "value": round(mips, 4), "unit": unit}))


def measure_copy(name: str, seconds: float) -> None:
    """rep movsd counts as one instruction per pass, so this one reports MB/s copied too."""
    cpu = flat_cpu(False)
    cpu.memory.ram[CODE:CODE + len(STR_LOOP)] = STR_LOOP
    cpu.eip = CODE
    cpu.run(2000)
    passes = 0
    start = time.perf_counter()
    while True:
        # one pass = 4 setup/jump instructions + 1024 dword moves
        cpu.run(5)
        passes += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
    mbs = passes * 4096 / elapsed / 1e6
    # architectural work: each dword moved is one iteration; report iterations as "MIPS"
    mips = passes * (1024 + 4) / elapsed / 1e6
    print(f"{name:28} {mips:8.3f} MIPS  ({mbs:.2f} MB/s, iterations counted as instructions)")
    print("BENCH " + json.dumps({"name": name, "value": round(mips, 4), "unit": "MIPS"}))
    print("BENCH " + json.dumps({"name": name + " bandwidth", "value": round(mbs, 4), "unit": "MB/s"}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    measure("register loop", REG_LOOP, args.seconds)
    try:
        from pyv86.cpu import _paging  # noqa: F401
    except ImportError:  # pragma: no cover
        print("memory loop (paging on)      pending: pyv86.cpu._paging is not there yet")
    else:
        measure("memory loop (paging on)", MEM_LOOP, args.seconds, paging=True)
    measure_copy("string copy (rep movsd)", args.seconds)


if __name__ == "__main__":
    main()

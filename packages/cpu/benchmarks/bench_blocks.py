"""Code with thousands of distinct blocks, each run a few hundred times (what a Linux boot
looks like to the block compiler), in millions of guest instructions per second (MIPS).

    python packages/cpu/benchmarks/bench_blocks.py [--seconds S] [--functions N]

The guest calls N distinct small functions (load, add, xor, store, ret) in turn, over and
over: 2N distinct blocks (each function and each call site), none hot enough on its own
for a tight-loop benchmark to notice. Printed for the default compile threshold of this
interpreter (``cpu.block_threshold``: 64 on CPython, 10000 on PyPy) and for a few fixed
ones, so one run shows what the threshold costs or saves here. The loop benchmarks in
bench_cpu.py are the opposite case (one block run millions of times). The rows run one
after the other in one process, so on PyPy a later row starts with the JIT's traces of the
earlier ones. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Optional

from pyv86.cpu.testing import flat32_cpu

DRIVER = 0x1000
FUNCS = 0x10000
DATA = 0x200000


def d32(v: int) -> bytes:
    return (v & 0xFFFFFFFF).to_bytes(4, "little")


def program(functions: int) -> bytes:
    """The driver: mov ebx, DATA ; call f0 ; call f1 ; ... ; jmp DRIVER (+ the functions)."""
    code = bytearray(b"\xbb" + d32(DATA))
    for i in range(functions):
        here = DRIVER + len(code)
        code += b"\xe8" + d32(FUNCS + 32 * i - (here + 5))
    here = DRIVER + len(code)
    code += b"\xe9" + d32(DRIVER - (here + 5))
    return bytes(code)


def function(i: int) -> bytes:
    # mov eax,[ebx+4i] ; add eax,i*7+1 ; xor edx,eax ; mov [ebx+4i],eax ; ret
    return (b"\x8b\x83" + d32(4 * i) + b"\x05" + d32(i * 7 + 1) + b"\x31\xc2"
            + b"\x89\x83" + d32(4 * i) + b"\xc3")


def measure(name: str, functions: int, seconds: float, threshold: Optional[int]) -> None:
    driver = program(functions)
    cpu = flat32_cpu(driver)
    if threshold == 0:
        cpu.use_blocks = False
    elif threshold is not None:
        cpu.block_threshold = threshold
    ram = cpu.memory.ram
    for i in range(functions):
        f = function(i)
        ram[FUNCS + 32 * i:FUNCS + 32 * i + len(f)] = f
    per_pass = 1 + functions * 6 + 1
    executed = 0
    start = time.perf_counter()
    while True:
        executed += cpu.run(per_pass)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
    compiled = sum(1 for b in cpu.icache.values() if b.n)
    mips = executed / elapsed / 1e6
    print(f"{name:44} {mips:8.3f} MIPS  ({executed} instructions in {elapsed:.2f} s, "
          f"{executed / per_pass:.0f} passes, {compiled} blocks compiled)")
    print("BENCH " + json.dumps({"name": name, "value": round(mips, 4), "unit": "MIPS"}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--functions", type=int, default=3000)
    args = ap.parse_args()
    n = args.functions
    measure(f"{2 * n} distinct blocks, default threshold", n, args.seconds, None)
    measure(f"{2 * n} distinct blocks, threshold 64", n, args.seconds, 64)
    measure(f"{2 * n} distinct blocks, interpreter only", n, args.seconds, 0)


if __name__ == "__main__":
    main()

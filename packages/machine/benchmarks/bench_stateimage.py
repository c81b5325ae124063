"""Save and restore time and image size of a 64 MiB state image with realistic memory content.

    python bench_stateimage.py             the writer's defaults (the figures nox -s bench shows)
    python bench_stateimage.py --explore   every zlib level x run length combination tried
                                           when the defaults were chosen

Memory, laid out like a small booted Linux guest (all bytes from a seeded generator or from
files that both interpreters see alike, so CPython and PyPy store the same image):

- a few low pages (zero page, command line, GDT) with small structures,
- 8 MiB of machine code and data at 1 MiB (the kernel): the host's shared libraries
  (/usr/lib/<triplet>/*.so*, in name order),
- 4 MiB of already-compressed data (an initrd, packed files): incompressible,
- 4 MiB of page-cache text (the Python sources of this repository),
- 2048 scattered pages each holding a few words (page tables, slab objects),
- everything else zero.

Figures are printed, never asserted. One `BENCH {...}` JSON line per figure.
"""

from __future__ import annotations

import fnmatch
import glob
import io
import json
import os
import random
import sys
import time

from pyv86.machine.stateimage import (
    DEFAULT_LEVEL,
    RUN_PAGES,
    StateImage,
    read_image,
    write_image,
)

MIB = 1 << 20
SIZE = 64 * MIB


def _files(folder: str, pattern: str, want: int) -> bytes:
    out = bytearray()
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            if fnmatch.fnmatch(name, pattern) and not os.path.islink(os.path.join(root, name)):
                try:
                    with open(os.path.join(root, name), "rb") as f:
                        out += f.read(want - len(out))
                except OSError:
                    continue
                if len(out) >= want:
                    return bytes(out)
    return bytes(out)


def realistic_memory() -> bytearray:
    rng = random.Random(86)
    mem = bytearray(SIZE)
    for page in (0x10, 0x20, 0x30, 0x9F):  # zero page, command line, GDT, EBDA
        off = page * 4096
        mem[off:off + 512] = bytes(rng.randrange(0, 16) for _ in range(512))
    code = b""
    for libdir in [*sorted(glob.glob("/usr/lib/*-linux-gnu")), "/usr/lib", "/lib"]:
        code += _files(libdir, "*.so*", 8 * MIB - len(code))
        if len(code) >= 8 * MIB:
            break
    if len(code) < 8 * MIB:  # not a Debian-like host: this interpreter's executable
        with open(sys.executable, "rb") as f:
            code += f.read()
    code = (code * (8 * MIB // max(1, len(code)) + 1))[:8 * MIB]
    mem[MIB:9 * MIB] = code
    packed = rng.getrandbits(8 * 4 * MIB).to_bytes(4 * MIB, "little")
    mem[16 * MIB:20 * MIB] = packed
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    text = _files(repo, "*.py", 4 * MIB) or b"def f(x):\n    return x\n"
    text = (text * (4 * MIB // max(1, len(text)) + 1))[:4 * MIB]
    mem[24 * MIB:28 * MIB] = text
    for page in rng.sample(range(32 * MIB // 4096, SIZE // 4096), 2048):
        off = page * 4096
        for _ in range(8):
            word = rng.randrange(0, 4096 - 4, 4)
            mem[off + word:off + word + 4] = rng.getrandbits(32).to_bytes(4, "little")
    return mem


def components() -> dict:
    rng = random.Random(7)
    return {
        "cpu": {"version": 1, "reg": [rng.getrandbits(32) for _ in range(8)],
                "msr": {0x10: rng.getrandbits(64)}, "fpu": None},
        "nic": {"version": 1, "ram": rng.getrandbits(8 * 32768).to_bytes(32768, "little"),
                "registers": {f"r{i}": i for i in range(24)}, "tx_remaining": 0.5},
        "pit": {"version": 1, "channels": [{"count": 65536, "mode": 2}] * 3},
    }


def measure(mem: bytearray, level: int, run_pages: int) -> tuple:
    image = StateImage(config={"memory_size": SIZE}, versions={"pyv86-machine": "bench"},
                       components=components(), memory=mem)
    buf = io.BytesIO()
    t0 = time.perf_counter()
    write_image(buf, image, level=level, run_pages=run_pages)
    t1 = time.perf_counter()
    data = buf.getvalue()
    t2 = time.perf_counter()
    back = read_image(data, expected_config={"memory_size": SIZE})
    t3 = time.perf_counter()
    if back.memory != mem:
        raise SystemExit("restore did not give back the memory")
    return t1 - t0, t3 - t2, len(data)


def bench(name: str, value: float, unit: str) -> None:
    print("BENCH " + json.dumps({"name": name, "value": round(value, 6), "unit": unit}))


def main() -> None:
    impl = sys.implementation.name
    mem = realistic_memory()
    nonzero = sum(1 for i in range(0, SIZE, 4096) if not mem.startswith(bytes(4096), i))
    print(f"{impl}: 64 MiB memory, {nonzero} non-zero pages ({nonzero * 4096 / MIB:.1f} MiB)")
    if "--explore" in sys.argv:
        print(f"{'level':>5} {'run':>5} {'save s':>8} {'restore s':>9} {'size MiB':>9}")
        for level in (1, 3, 6):
            for run_pages in (1, 16, 64, 256):
                save, restore, size = measure(mem, level, run_pages)
                print(f"{level:>5} {run_pages:>5} {save:>8.3f} {restore:>9.3f} "
                      f"{size / MIB:>9.2f}")
        return
    measure(mem, DEFAULT_LEVEL, RUN_PAGES)  # warm-up (PyPy's JIT)
    runs = [measure(mem, DEFAULT_LEVEL, RUN_PAGES) for _ in range(3)]
    save = min(r[0] for r in runs)
    restore = min(r[1] for r in runs)
    size = runs[0][2]
    print(f"save {save:.3f} s ({SIZE / MIB / save:.0f} MiB/s of guest memory), "
          f"restore {restore:.3f} s ({SIZE / MIB / restore:.0f} MiB/s), "
          f"image {size / MIB:.2f} MiB ({size / SIZE:.1%} of memory); "
          f"zlib level {DEFAULT_LEVEL}, runs of {RUN_PAGES} pages, best of 3")
    bench("state image save 64 MiB", save, "s")
    bench("state image restore 64 MiB", restore, "s")
    bench("state image size 64 MiB", size / MIB, "MiB")


if __name__ == "__main__":
    main()

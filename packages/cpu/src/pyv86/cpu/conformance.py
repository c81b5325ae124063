"""Run hardware-captured single-instruction vectors (schema ``ssts-80286-real-subset/1``).

    python -m pyv86.cpu.conformance DIR [--verbose] [--only FILE ...]

Every ``*.json.gz`` in DIR is run on a fresh real-mode CPU with 16 MiB of RAM and A20
enabled (the data does not wrap at 1 MiB).  Vectors that do not apply to a 386-class CPU are
counted as skipped, never as passed:

- whole files with ``skip_on_386`` in metadata.json (POPF/IRET load IOPL/NT on a 386,
  ESC without an 80287 on the 286),
- tests listed in ``skip_tests_on_386``: ``lock_ud`` (the 386 raises #UD for LOCK on a
  non-lockable form), ``length_gt_10`` (the 386 limit is 15 bytes), ``ss_overrun`` (the 386
  raises #SS, not int 13, for stack-segment overruns), ``fs_gs`` (MOV Sreg 4/5 are FS/GS).

One class is *adapted* rather than skipped: a string instruction (MOVS CMPS STOS LODS SCAS
INS OUTS) that takes int 13 on a word at offset FFFFh.  The 286 has already stepped SI/DI
(and CX under REP) for the faulting element when it raises the exception; a 386/486 string
instruction is restartable and leaves SI, DI and CX at the faulting element (Intel SDM vol. 1,
"fault during a string instruction": the registers point to the next element to process).
The 286 values are irregular (it has stepped some of them, CX sometimes twice), so the runner
derives the 386 values from the initial registers alone: k elements complete before the first
one whose word sits at offset FFFFh, so SI/DI = initial + k*step and CX = initial - k.  All
other registers, memory and the exception frame are compared as captured.

One line per file gives its pass rate; the last line gives the overall passed and total of
the applicable vectors.  The exit status is non-zero while any applicable vector fails.
"""

from __future__ import annotations

import argparse
import gzip
import json
import pathlib
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ._fault import CPUFault
from ._memory import NullIO, SimpleMemory
from .cpu import CPU

REGS16 = ("ax", "cx", "dx", "bx", "sp", "bp", "si", "di")
SEGS = ("es", "cs", "ss", "ds")
MEMORY_SIZE = 16 << 20
MAX_STEPS = 64


class Runner:
    """Runs vectors on one reusable CPU; RAM touched by a test is cleared afterwards."""

    def __init__(self, blocks: bool = False) -> None:
        self.memory = SimpleMemory(MEMORY_SIZE)
        self.cpu = CPU(self.memory, NullIO())
        self.blocks = blocks

    def run_test(self, test: Dict[str, Any], flags_mask: int) -> Optional[str]:
        """Run one vector; return None when it passes or a description of the first mismatch."""
        cpu = self.cpu
        ram = self.memory.ram
        init = test["initial"]
        regs = init["regs"]
        touched: List[int] = []
        for addr, value in init["ram"]:
            ram[addr] = value
            touched.append(addr)
        cpu.reset()
        cpu.set_a20(True)
        cpu.cr0 = 0x60000010
        cpu.update_mode()
        for i, name in enumerate(REGS16):
            cpu.reg[i] = regs[name]
        for i, name in enumerate(SEGS):
            sel = regs[name]
            cpu.set_segment(i, sel, sel << 4, 0xFFFF, 0x9B if name == "cs" else 0x93)
        cpu.set_segment(4, 0, 0, 0xFFFF, 0x93)
        cpu.set_segment(5, 0, 0, 0xFFFF, 0x93)
        cpu.eip = regs["ip"]
        cpu.set_eflags(regs["flags"] & 0x0FFF)
        cpu.flush_caches()
        error: Optional[str] = None
        cpu.use_blocks = self.blocks
        cpu.block_threshold = 1  # compile at the first visit
        try:
            if self.blocks:
                # prime the TLB so the instruction under test runs as a compiled block
                cpu.translate((cpu.sbase[1] + cpu.eip) & 0xFFFFFFFF, False, False)
            steps = 0
            while not cpu.halted and steps < MAX_STEPS:
                steps += cpu.run(MAX_STEPS if self.blocks else 1) or 1
            if not cpu.halted:
                error = "did not reach HLT"
        except (NotImplementedError, CPUFault) as exc:  # pragma: no cover - reported as failure
            error = f"raised {exc!r}"
        except Exception as exc:  # pragma: no cover - a crash is a failed vector, keep going
            error = f"crashed: {type(exc).__name__}: {exc}"
        final = test["final"]
        if error is None:
            error = self._compare(test, adapt_for_386(test), flags_mask)
        for addr, _ in final["ram"]:
            touched.append(addr)
        for addr in touched:
            ram[addr] = 0
        return error

    def _compare(self, test: Dict[str, Any], final: Dict[str, Any], flags_mask: int) -> Optional[str]:
        cpu = self.cpu
        init = test["initial"]["regs"]
        exp = dict(init)
        exp.update(final["regs"])
        for i, name in enumerate(REGS16):
            if cpu.reg[i] != exp[name]:
                return f"{name}={cpu.reg[i]:#x} expected {exp[name]:#x}"
        for i, name in enumerate(SEGS):
            if cpu.sreg[i] != exp[name]:
                return f"{name}={cpu.sreg[i]:#x} expected {exp[name]:#x}"
        if cpu.eip != exp["ip"]:
            return f"ip={cpu.eip:#x} expected {exp['ip']:#x}"
        fl = cpu.get_eflags() & 0xFFFF
        want = exp["flags"] if "flags" in final["regs"] else exp["flags"] & 0x0FFF
        if (fl ^ want) & flags_mask:
            return f"flags={fl:#06x} expected {want:#06x} (mask {flags_mask:#06x})"
        exc = test.get("exception")
        fw = exc["flags_word_address"] if exc else -1
        ram = self.memory.ram
        for addr, value in final["ram"]:
            mask = 0xFF
            if addr == fw:
                mask = flags_mask & 0xFF
            elif exc and addr == self._flags_high(test, fw):
                mask = flags_mask >> 8
            if (ram[addr] ^ value) & mask:
                return f"ram[{addr:#x}]={ram[addr]:#04x} expected {value:#04x}"
        return None

    @staticmethod
    def _flags_high(test: Dict[str, Any], fw: int) -> int:
        # the high byte of the pushed FLAGS word is at the next offset within SS
        ss = test["final"]["regs"].get("ss", test["initial"]["regs"]["ss"])
        off = (fw - (ss << 4)) & 0xFFFF
        return (ss << 4) + ((off + 1) & 0xFFFF)


STRING_OPS = {0xA4: "sd", 0xA5: "sd", 0xA6: "sd", 0xA7: "sd", 0xAA: "d", 0xAB: "d",
              0xAC: "s", 0xAD: "s", 0xAE: "d", 0xAF: "d", 0x6C: "d", 0x6D: "d",
              0x6E: "s", 0x6F: "s"}
PREFIXES = {0x26, 0x2E, 0x36, 0x3E, 0xF0, 0xF2, 0xF3}


def adapt_for_386(test: Dict[str, Any]) -> Dict[str, Any]:
    """The expected final state on a 386-class CPU (see the module docstring)."""
    final = test["final"]
    exc = test.get("exception")
    if not exc or exc.get("number") != 13:
        return final
    code = test["bytes"]
    i = 0
    rep = False
    while i < len(code) and code[i] in PREFIXES:
        rep = rep or code[i] in (0xF2, 0xF3)
        i += 1
    if i >= len(code) or code[i] not in STRING_OPS:
        return final
    op = code[i]
    init = test["initial"]["regs"]
    if not (op & 1):
        return final  # byte elements never overrun offset FFFFh
    delta = -2 if (init["flags"] & 0x400) else 2
    # the faulting element is the first one whose word access sits at offset FFFFh
    steps = []
    for name in ("si", "di"):
        r0 = init[name]
        if name[0] in STRING_OPS[op] and r0 & 1:
            steps.append((((0xFFFF - r0) if delta > 0 else (r0 - 0xFFFF)) & 0xFFFF) // 2)
    if not steps:
        return final
    k = min(steps)
    regs = dict(final["regs"])
    for name in ("si", "di"):
        if name[0] in STRING_OPS[op]:
            regs[name] = (init[name] + k * delta) & 0xFFFF
    if rep:
        regs["cx"] = (init["cx"] - k) & 0xFFFF
    for name in ("si", "di", "cx"):
        if name in regs and regs[name] == init[name]:
            del regs[name]
    return {"regs": regs, "ram": final["ram"]}


def load_metadata(folder: pathlib.Path) -> Dict[str, Any]:
    meta = folder / "metadata.json"
    if not meta.is_file():
        return {}
    data = json.loads(meta.read_text())
    files = data.get("files", {})
    return files if isinstance(files, dict) else {}


def run_folder(folder: pathlib.Path, only: Sequence[str] = (), verbose: bool = False,
               out: Any = None, blocks: bool = False) -> Tuple[int, int, int]:
    """Run every vector file in ``folder``; return (passed, applicable, skipped).

    With ``blocks`` the instruction under test runs through the block compiler where it
    supports the instruction (the interpreter otherwise); without, one instruction at a time.
    """
    out = out or sys.stdout
    meta = load_metadata(folder)
    runner = Runner(blocks)
    total_pass = total = total_skip = 0
    files = sorted(folder.glob("*.json.gz"))
    if only:
        files = [f for f in files if f.name[:-len(".json.gz")] in only]
    for path in files:
        data = json.loads(gzip.decompress(path.read_bytes()))
        name = data.get("file", path.name[:-len(".json.gz")])
        info = meta.get(name, {})
        mask = int(data.get("flags_mask", info.get("flags_mask", 0xFFFF)))
        tests = data["tests"]
        if info.get("skip_on_386"):
            total_skip += len(tests)
            print(f"{name:6} skipped  {len(tests)} vectors: {info.get('skip_on_386_reason')}", file=out)
            continue
        skip_ids = {int(k) for k in (info.get("skip_tests_on_386") or {})}
        passed = n = skipped = 0
        failures: List[str] = []
        for test in tests:
            if test["idx"] in skip_ids:
                skipped += 1
                continue
            n += 1
            err = runner.run_test(test, mask)
            if err is None:
                passed += 1
            else:
                failures.append(f"  #{test['idx']} {test['name']}: {err}")
        total_pass += passed
        total += n
        total_skip += skipped
        rate = 100.0 * passed / n if n else 100.0
        extra = f" ({skipped} not applicable)" if skipped else ""
        print(f"{name:6} {passed:3}/{n:<3} {rate:6.2f}%{extra}", file=out)
        if verbose or (failures and len(failures) <= 3):
            for line in failures[: (None if verbose else 3)]:
                print(line, file=out)
    print(f"passed {total_pass} of {total} applicable vectors ({total_skip} not applicable)", file=out)
    return total_pass, total, total_skip


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pyv86.cpu.conformance", description=__doc__.split("\n")[0])
    ap.add_argument("folder", type=pathlib.Path)
    ap.add_argument("--only", nargs="*", default=(), help="file names (e.g. 00 F6.6) to run")
    ap.add_argument("--verbose", "-v", action="store_true", help="list every failing vector")
    ap.add_argument("--blocks", action="store_true",
                    help="run through the block compiler instead of single-stepping")
    args = ap.parse_args(argv)
    if not args.folder.is_dir():
        print(f"error: {args.folder} is not a folder", file=sys.stderr)
        return 2
    passed, total, _ = run_folder(args.folder, args.only, args.verbose, blocks=args.blocks)
    if total == 0:
        print("error: no applicable vectors found", file=sys.stderr)
        return 2
    return 0 if passed == total else 1


if __name__ == "__main__":
    sys.exit(main())

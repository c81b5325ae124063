"""Compare two final states, shrink a failing snippet, format a reproducer."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any, Callable, Dict, List, Optional

from . import layout
from .grammar import ARITH, COMPARED_FLAGS, R32, Snippet

FLAG_NAMES = ((0x1, "CF"), (0x4, "PF"), (0x10, "AF"), (0x40, "ZF"), (0x80, "SF"),
              (0x400, "DF"), (0x800, "OF"))

State = Dict[str, Any]
Runner = Callable[[Snippet], State]


def flag_text(mask: int) -> str:
    return " ".join(n for b, n in FLAG_NAMES if mask & b) or "-"


def differences(snippet: Snippet, ref: State, got: State, ref_name: str = "oracle") -> List[str]:
    """Human-readable differences, first one first (empty when the states agree)."""
    out: List[str] = []
    if ref["fault"] != got["fault"]:
        out.append(f"fault: {ref_name}={ref['fault']} pyv86={got['fault']}")
        return out
    frame = got.get("frame")
    if frame and ref["fault"]:
        # bytes pyv86's exception frame overwrote (the host's signal frame lives elsewhere)
        lo, hi = frame[0] - layout.STACK_LO, frame[1] - layout.STACK_LO
        if 0 <= lo and hi <= len(got["stack"]):
            got = dict(got, stack=got["stack"][:lo] + ref["stack"][lo:hi] + got["stack"][hi:])
    for i in range(8):
        if ref["regs"][i] != got["regs"][i]:
            out.append(f"{R32[i]}: {ref_name}={ref['regs'][i]:#010x} pyv86={got['regs'][i]:#010x}")
    if ref["eip"] != got["eip"]:
        out.append(f"eip: {ref_name}={ref['eip']:#x} pyv86={got['eip']:#x}")
    mask = COMPARED_FLAGS & ~snippet.undef_at_end
    a, b = ref["eflags"] & mask, got["eflags"] & mask
    if a != b:
        out.append(f"eflags (compared {flag_text(mask)}; undefined {flag_text(snippet.undef_at_end & ARITH)}): "
                   f"{ref_name}={ref['eflags']:#x} pyv86={got['eflags']:#x} differ in {flag_text(a ^ b)}")
    if ref.get("wrap") is not None and got.get("wrap") is not None and ref["wrap"] != got["wrap"]:
        x, y = ref["wrap"], got["wrap"]
        first = next(i for i in range(len(x)) if x[i] != y[i])
        lo0, hi0 = layout.WRAP[0]
        addr = first if first < hi0 - lo0 else layout.WRAP[1][0] + first - (hi0 - lo0)
        out.append(f"memory (64 KiB wrap regions): first difference at {addr:#x}: "
                   f"{ref_name}={x[first:first + 8].hex(' ')} pyv86={y[first:first + 8].hex(' ')}")
    for key, start in (("data", layout.DATA), ("stack", layout.STACK_LO)):
        x, y = ref[key], got[key]
        if x != y:
            idx = [i for i in range(len(x)) if x[i] != y[i]]
            first, last = idx[0], idx[-1]
            addr = snippet.base + start + first
            out.append(f"memory: {len(idx)} byte(s) differ in [{addr:#x}, {snippet.base + start + last:#x}]; "
                       f"at {addr:#x}: {ref_name}={x[first:first + 8].hex(' ')} "
                       f"pyv86={y[first:first + 8].hex(' ')}")
    return out


def shrink(snippet: Snippet, still_fails: Callable[[Snippet], bool]) -> Snippet:
    """Drop unpinned units one at a time while the snippet still fails."""
    cur = snippet
    i = len(cur.units) - 1
    while i >= 0:
        if not cur.units[i].pinned:
            cand = cur.without(i)
            if cand.units and still_fails(cand):
                cur = cand
        i -= 1
    return cur


def ndisasm(snippet: Snippet) -> Optional[str]:
    """Disassembly by nasm's ndisasm when it is installed (an independent decoder)."""
    tool = shutil.which("ndisasm")
    if tool is None:
        return None
    try:
        out = subprocess.run([tool, "-b", "32" if snippet.code32 else "16",
                              "-o", str(snippet.base + layout.CODE), "-"],
                             input=snippet.code, capture_output=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return "\n".join("  " + line for line in out.stdout.decode().splitlines())


def reproducer(snippet: Snippet, ref: State, got: State, ref_name: str) -> str:
    """Everything needed to reproduce a difference by hand."""
    diffs = differences(snippet, ref, got, ref_name)
    regs = " ".join(f"{n}={v:#x}" for n, v in zip(R32, snippet.regs))
    lines = [
        f"{snippet.label}",
        f"first difference: {diffs[0] if diffs else 'none'}",
        *(f"  also: {d}" for d in diffs[1:6]),
        f"code ({len(snippet.code)} bytes at {snippet.base + layout.CODE:#x}): {snippet.code.hex()}",
        "listing (generator's text):",
        snippet.listing(),
    ]
    dis = ndisasm(snippet)
    if dis:
        lines += ["ndisasm:", dis]
    lines += [
        f"initial: {regs} eflags={snippet.eflags:#x}",
        f"initial memory: data [{snippet.base + layout.DATA:#x}, {snippet.base + layout.DATA_END:#x}) and "
        f"stack [{snippet.base + layout.STACK_LO:#x}, {snippet.base + layout.STACK_HI:#x}) from the seed "
        f"(regenerate with diffharness.grammar.generate)",
        f"final {ref_name}: " + " ".join(f"{n}={v:#x}" for n, v in zip(R32, ref['regs'])) +
        f" eflags={ref['eflags']:#x} fault={ref['fault']}",
        "final pyv86:  " + " ".join(f"{n}={v:#x}" for n, v in zip(R32, got['regs'])) +
        f" eflags={got['eflags']:#x} fault={got['fault']}",
    ]
    return "\n".join(lines)


def check(snippet: Snippet, oracle: Runner, pyv86: Runner, ref_name: str) -> Optional[str]:
    """None when pyv86 agrees with the oracle; else a shrunk reproducer."""
    ref, got = oracle(snippet), pyv86(snippet)
    if ref["fault"] and not getattr(snippet, "faults", False):
        # the generator promises non-faulting code: an oracle fault is a harness bug
        raise AssertionError(f"{ref_name} faulted on a generated snippet:\n"
                             + reproducer(snippet, ref, got, ref_name))
    if not differences(snippet, ref, got, ref_name):
        return None

    def fails(s: Snippet) -> bool:
        r, g = oracle(s), pyv86(s)
        if r["fault"] and not getattr(s, "faults", False):
            return False
        return bool(differences(s, r, g, ref_name))

    small = shrink(snippet, fails)
    return reproducer(small, oracle(small), pyv86(small), ref_name)

"""pyv86 against Unicorn (QEMU's TCG) on random snippets from a curated grammar.

Each test generates seeded snippets of one instruction group (``diffharness.grammar``: ALU
ops in all sizes and addressing modes incl. SIB, disp8/disp32 and 16-bit address forms,
shifts and rotates by 0/1/>width, SHLD/SHRD, MUL/IMUL/DIV/IDIV, string ops with REP and both
directions, Jcc/SETcc/CMOVcc, BT*, BSF/BSR, XCHG/XADD/CMPXCHG/BSWAP, LEA, PUSH/POP/PUSHA/
ENTER/LEAVE, LAHF/SAHF/CBW/CWDE/CDQ, BCD, operand/address-size prefixes), runs each on
Unicorn and on pyv86 from the same registers and memory, and compares registers, EIP, the
data and stack memory and EFLAGS with the flags the Intel SDM leaves undefined masked.
A failure prints a shrunk reproducer (bytes, listing, ndisasm, initial state, the first
difference).  Long runs: ``python packages/cpu/tests/diffharness/fuzz.py --help``.

Unicorn has no PyPy wheel (pip would build all of QEMU from source), so the ``test`` extra
installs it on CPython only and these tests skip on PyPy; the host-CPU oracle
(test_diff_host.py) runs on both interpreters.
"""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # diffharness (importlib import mode)

from diffharness import compare, grammar, layout, run_pyv86

pytest.importorskip(
    "unicorn",
    reason="Unicorn has no PyPy wheel (a source build of QEMU); the unicorn test extra is "
           "CPython-only and test_diff_host.py covers PyPy")

from diffharness.oracle_unicorn import UnicornOracle

# Cases per (group, engine) in 32-bit flat protected mode and in 16-bit real mode.
CASES_32 = {
    "alu": 60, "mov": 50, "shift": 60, "shld": 50, "muldiv": 50, "string": 50, "cc": 50,
    "bt": 50, "xchg": 40, "stack": 50, "flagops": 40, "bcd": 40, "mixed": 60, "loop": 40,
}
CASES_16 = {g: n // 3 for g, n in CASES_32.items()}
# interp: the interpreter alone; blocks: code compiled to Python from the first instruction;
# paged: blocks with paging on and data/stack pages on scattered frames; chunks: blocks run
# with many small budgets, as the machine does (run_pyv86.py)
ENGINES_32 = ("interp", "blocks", "paged")
ENGINES_16 = ("interp", "blocks", "pm16")   # pm16: the same code in 16-bit protected mode
CHUNKED_GROUPS = ("mixed", "loop", "cc")

# (group, code size, engine) -> the exact finding (see diffharness/FINDINGS.md); strict xfail.
KNOWN: dict = {}
# Findings 1 and 2 were fixed in the core (e4992d8, d98882c); none open.


def _params(cases: dict, bits: int) -> list:
    out = []
    for group in cases:
        engines = ENGINES_32 if bits == 32 else ENGINES_16
        if group in CHUNKED_GROUPS:
            engines = (*engines, "chunks")
        for engine in engines:
            reason = KNOWN.get((group, bits, engine))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            out.append(pytest.param(group, engine, id=f"{group}-{engine}", marks=marks))
    return out


@pytest.fixture(scope="module")
def unicorn32() -> UnicornOracle:
    return UnicornOracle(code32=True)


@pytest.fixture(scope="module")
def unicorn16() -> UnicornOracle:
    return UnicornOracle(code32=False)


def _run_group(oracle: UnicornOracle, group: str, engine: str, count: int, code32: bool,
               stack16: bool = False) -> None:
    failures = []
    for seed in range(count):
        snippet = grammar.generate(seed, group, code32=code32, stack16=stack16)
        rep = compare.check(snippet, oracle.run, lambda s: run_pyv86.run(s, engine), "unicorn")
        if rep:
            failures.append(rep)
            if len(failures) >= 3:
                break
    assert not failures, (f"{len(failures)} snippet(s) of group {group!r} differ "
                          f"(engine {engine}); first ones, shrunk:\n\n" + "\n\n".join(failures))


@pytest.mark.parametrize("group,engine", _params(CASES_32, 32))
def test_random_32bit_flat_snippets_match_unicorn(unicorn32: UnicornOracle, group: str,
                                                  engine: str) -> None:
    _run_group(unicorn32, group, engine, CASES_32[group], code32=True)


@pytest.mark.parametrize("group,engine", _params(CASES_16, 16))
def test_random_16bit_real_mode_snippets_match_unicorn(unicorn16: UnicornOracle, group: str,
                                                       engine: str) -> None:
    _run_group(unicorn16, group, engine, CASES_16[group], code32=False)


STACK16_GROUPS = {"stack": 60, "mixed": 40, "loop": 30, "string": 30, "alu": 30}


@pytest.fixture(scope="module")
def unicorn_stack16() -> UnicornOracle:
    return UnicornOracle(code32=True, stack16=True)


@pytest.mark.parametrize("group", [
    pytest.param(g, marks=[pytest.mark.xfail(strict=True, reason=KNOWN[(g, "stack16")])]
                 if (g, "stack16") in KNOWN else []) for g in STACK16_GROUPS])
def test_random_32bit_code_on_a_16bit_stack_segment_matches_unicorn(
        unicorn_stack16: UnicornOracle, group: str) -> None:
    # SS.B = 0: PUSH/POP/ENTER/LEAVE use SP and keep ESP's upper half (Intel SDM vol. 1 6.2.3)
    _run_group(unicorn_stack16, group, "stack16", STACK16_GROUPS[group], code32=True,
               stack16=True)


@pytest.mark.parametrize("code,text", [
    pytest.param("c8040000", "enter 4, 0", id="o32-level0"),
    pytest.param("c8100000c9", "enter 0x10, 0; leave", id="o32-level0-leave"),
    pytest.param("66c8040001", "o16 enter 4, 1", id="o16-level1"),
    pytest.param("66c8080003", "o16 enter 8, 3", id="o16-level3"),
    pytest.param("66c806000266c9", "o16 enter 6, 2; o16 leave", id="o16-level2-leave"),
    pytest.param("c9", "leave", id="o32-leave"),
    pytest.param("66c9", "o16 leave", id="o16-leave"),
    pytest.param("5458", "push esp; pop eax", id="push-esp"),
    pytest.param("545c", "push esp; pop esp", id="pop-esp"),
    pytest.param("6654665c", "push sp; pop sp", id="push-sp-pop-sp"),
    pytest.param("68785634125c", "push 0x12345678; pop esp", id="pop-esp-imm"),
    pytest.param("e80000000058", "call next; pop eax", id="call"),
    pytest.param("e802000000eb03c20400", "call; ret 4", id="call-ret-imm"),
    pytest.param("9c9d", "pushfd; popfd", id="pushfd"),
    pytest.param("6061", "pushad; popad", id="pushad"),
    pytest.param("66606661", "pushaw; popaw", id="pushaw"),
    pytest.param("6a05665a5a", "push 5; pop dx; pop edx", id="mixed-sizes"),
])
def test_stack_instructions_on_a_16bit_stack_segment_match_unicorn(unicorn_stack16: UnicornOracle,
                                                        code: str, text: str) -> None:
    # SS.B = 0: the stack instructions use SP and keep ESP's upper half (Intel SDM vol. 1
    # 6.2.3); ENTER: with StackSize = 16, "BP := FrameTemp; SP := SP - Size" (vol. 2 ENTER).
    # EBP's upper half differs from ESP's here.
    regs = [0, 0, 0, 0, 0x1234E000, 0x5678DF00, 0, 0]
    snippet = grammar.Snippet([grammar.Unit([grammar.Insn(bytes.fromhex(code), text)], True)],
                              regs, 0x202, bytes(layout.DATA_END - layout.DATA),
                              bytes(range(256)) * ((layout.STACK_HI - layout.STACK_LO) // 256),
                              True, 0, f"handmade {text} on a 16-bit stack")
    rep = compare.check(snippet, unicorn_stack16.run, lambda s: run_pyv86.run(s, "stack16"),
                        "unicorn")
    assert rep is None, rep


@pytest.fixture(scope="module")
def unicorn_pm16_stack32() -> UnicornOracle:
    return UnicornOracle(code32=False, stack32=True)


@pytest.mark.parametrize("group", [
    pytest.param(g, marks=[pytest.mark.xfail(strict=True, reason=KNOWN[(g, "pm16-stack32")])]
                 if (g, "pm16-stack32") in KNOWN else []) for g in STACK16_GROUPS])
def test_random_16bit_code_on_a_32bit_stack_segment_matches_unicorn(
        unicorn_pm16_stack32: UnicornOracle, group: str) -> None:
    # 16-bit protected-mode code (CS.D = 0) with SS.B = 1: PUSH/POP use ESP
    _run_group(unicorn_pm16_stack32, group, "pm16-stack32", STACK16_GROUPS[group], code32=False)


@pytest.mark.parametrize("code,text,ebp", [
    pytest.param("c8040000", "enter 4, 0", 0x5678DF00, id="o16-level0"),
    pytest.param("c8040001", "enter 4, 1", 0x5678DF00, id="o16-level1"),
    pytest.param("c8080003", "enter 8, 3", 0xDF00, id="o16-level3-ebp-in-stack"),
    pytest.param("66c8040001", "o32 enter 4, 1", 0x5678DF00, id="o32-level1"),
    pytest.param("c9", "leave", 0xDF00, id="o16-leave"),
    pytest.param("66c9", "o32 leave", 0xDF00, id="o32-leave"),
    pytest.param("5458", "push sp; pop ax", 0, id="push-sp"),
    pytest.param("6654665c", "push esp; pop esp", 0, id="pop-esp"),
    pytest.param("e8000058", "call next; pop ax", 0, id="call"),
    pytest.param("e80200eb03c20400", "call; ret 4", 0, id="call-ret-imm"),
    pytest.param("9c9d", "pushf; popf", 0, id="pushf"),
    pytest.param("6061", "pusha; popa", 0, id="pusha"),
    pytest.param("678f0424", "pop word [esp]", 0, id="pop-mem-esp"),
])
def test_stack_instructions_of_16bit_code_on_a_32bit_stack_segment_match_unicorn(
        unicorn_pm16_stack32: UnicornOracle, code: str, text: str, ebp: int) -> None:
    # SS.B = 1: the stack instructions use ESP whatever the code size (Intel SDM vol. 1 6.2.3);
    # ENTER: with StackSize = 32, "EBP := FrameTemp" where FrameTemp := ESP (vol. 2 ENTER)
    regs = [0, 0, 0, 0, 0xE000, ebp, 0, 0]
    snippet = grammar.Snippet([grammar.Unit([grammar.Insn(bytes.fromhex(code), text)], True)],
                              regs, 0x202, bytes(layout.DATA_END - layout.DATA),
                              bytes(range(256)) * ((layout.STACK_HI - layout.STACK_LO) // 256),
                              False, 0, f"handmade {text}: 16-bit code, 32-bit stack")
    rep = compare.check(snippet, unicorn_pm16_stack32.run,
                        lambda s: run_pyv86.run(s, "pm16-stack32"), "unicorn")
    assert rep is None, rep

"""The differential harness itself: deterministic generation, flag masking, reproducers.

These make sure test_diff_unicorn.py and test_diff_host.py can fail: a comparison that
ignored a defined flag or a register would make every differential test pass vacuously.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))  # diffharness (importlib import mode)

from diffharness import compare, grammar, layout, run_pyv86
from diffharness.grammar import AF, CF, OF, SF, ZF, Insn, Snippet, Unit


def _snippet(*insns: Insn) -> Snippet:
    units = [Unit([i], pinned=False) for i in insns]
    return Snippet(units, [0, 0, 0, 0, layout.STACK_TOP, 0, 0, 0], 0x202, bytes(0x8000),
                   bytes(0x3000), True, 0, "hand-made")


def test_same_seed_same_snippet_and_initial_state() -> None:
    a = grammar.generate(7, "mixed")
    b = grammar.generate(7, "mixed")
    c = grammar.generate(8, "mixed")
    assert (a.code, a.regs, a.eflags, a.data) == (b.code, b.regs, b.eflags, b.data)
    assert a.code != c.code


def test_every_group_generates_code_in_32_16_and_host_layouts() -> None:
    for group in grammar.GROUPS:
        for code32, base in ((True, 0), (False, 0), (True, layout.HOST_BASE)):
            s = grammar.generate(1, group, code32=code32, base=base, a16_ok=base == 0)
            assert 0 < len(s.code) < layout.DATA - layout.CODE


def test_mul_leaves_sf_zf_af_pf_undefined_and_cf_of_defined() -> None:
    # mul ecx (F7 E1): Intel SDM vol. 2 MUL: "SF, ZF, AF, and PF flags are undefined"
    s = _snippet(Insn(b"\xf7\xe1", "mul ecx", writes=CF | OF, undef=SF | ZF | AF | 0x4))
    assert s.undef_at_end == SF | ZF | AF | 0x4
    got = run_pyv86.run(s)
    flipped = dict(got, eflags=got["eflags"] ^ (SF | ZF | AF))
    assert compare.differences(s, got, flipped) == []
    flipped = dict(got, eflags=got["eflags"] ^ CF)
    assert "differ in CF" in compare.differences(s, got, flipped)[0]


def test_reader_of_an_undefined_flag_gets_a_flag_reset_first() -> None:
    # bsf leaves CF undefined; adc reads it: the snippet must define CF in between
    s = _snippet(Insn(b"\x0f\xbc\xc1", "bsf eax, ecx", writes=ZF, undef=CF | OF | SF | AF | 0x4),
                 Insn(b"\x11\xc8", "adc eax, ecx", reads=CF, writes=0x8D5))
    assert [i.text for i in s.insns][1].endswith("flag reset")


def test_register_and_memory_differences_are_reported_first_register_first() -> None:
    s = _snippet(Insn(b"\xb8\x78\x56\x34\x12", "mov eax, 0x12345678"))
    got = run_pyv86.run(s)
    assert got["regs"][0] == 0x12345678 and got["fault"] is None
    bad = dict(got, regs=[0x12345679, *got["regs"][1:]],
               data=b"\x01" + got["data"][1:])
    diffs = compare.differences(s, got, bad, "oracle")
    assert diffs[0].startswith("eax: oracle=0x12345678 pyv86=0x12345679")
    assert diffs[-1].startswith("memory: 1 byte(s) differ in [0x4000, 0x4000]")
    text = compare.reproducer(s, got, bad, "oracle")
    assert "b8 78 56 34 12" in text and "first difference: eax" in text


def test_shrinking_keeps_only_the_units_that_still_fail() -> None:
    s = _snippet(Insn(b"\x90", "nop"), Insn(b"\x40", "inc eax"), Insn(b"\x90", "nop"))
    small = compare.shrink(s, lambda c: any(i.text == "inc eax" for i in c.insns))
    assert [i.text for i in small.insns] == ["inc eax"]


def test_a_fault_in_pyv86_is_reported_with_its_vector() -> None:
    # div ecx with ecx = 0: #DE (vector 0) lands on the HLT stub of vector 0
    s = _snippet(Insn(b"\xf7\xf1", "div ecx"))
    assert run_pyv86.run(s)["fault"] == "exception 0"

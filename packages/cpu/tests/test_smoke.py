"""Smoke test: runs against the installed wheel alone (nox -s isolation) and in place."""

import re

import pyv86.cpu
from pyv86.cpu import CPU, NullIO, SimpleMemory


def test_version_is_pep440():
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+|a\d+|b\d+|rc\d+)?", pyv86.cpu.__version__)


def test_a_real_mode_program_runs_to_hlt():
    mem = SimpleMemory(1 << 20)
    cpu = CPU(mem, NullIO())
    # at the reset vector F000:FFF0 (linear FFFFFFF0 aliases nothing here, so jump via RAM):
    # load the program at 0000:1000 and start there
    for s in range(6):
        cpu.set_segment(s, 0, 0, 0xFFFF, 0x9B if s == 1 else 0x93)
    cpu.eip = 0x1000
    # mov cx, 10 ; l: add ax, cx ; loop l ; hlt
    mem.ram[0x1000:0x1008] = b"\xb9\x0a\x00\x01\xc8\xe2\xfc\xf4"
    executed = cpu.run(1000)
    assert cpu.halted
    assert cpu.get_register("ax") == 55
    assert executed == 1 + 2 * 10 + 1

"""End to end: x87 instructions decoded and run by the CPU core, which calls FPU.execute
for D8-DF (contract: cpu-contract.md, "x87 interface")."""

from __future__ import annotations

import struct

from pyv86.cpu.cpu import CPU


class Memory:
    def __init__(self, size: int = 0x100000) -> None:
        self.ram = bytearray(size)
        self.page_kind = bytearray(size >> 12)

    def read(self, addr: int, size: int) -> int:
        return (1 << (8 * size)) - 1

    def write(self, addr: int, value: int, size: int) -> None:
        pass


class Ports:
    def read(self, port: int, size: int) -> int:
        return (1 << (8 * size)) - 1

    def write(self, port: int, value: int, size: int) -> None:
        pass


def flat32(code: bytes) -> CPU:
    cpu = CPU(Memory(), Ports())
    cpu.cr0 = 0x11 | 0x20            # PE, ET, NE
    cpu.set_segment("cs", 0x08, 0, 0xFFFFFFFF, 0xC09B)
    for s in ("ds", "es", "ss"):
        cpu.set_segment(s, 0x10, 0, 0xFFFFFFFF, 0xC093)
    cpu.update_mode()
    cpu.memory.ram[0x1000:0x1000 + len(code)] = code
    cpu.eip = 0x1000
    cpu.reg[4] = 0x8000
    return cpu


def test_fld_fadd_fst_fnstsw_fcomi_fcmov_through_the_cpu() -> None:
    code = bytes.fromhex(
        "dd0500200000"      # fld qword [0x2000]
        "dc0508200000"      # fadd qword [0x2008]
        "dd1510200000"      # fst qword [0x2010]
        "dfe0"              # fnstsw ax
        "d9e8"              # fld1
        "dbf1"              # fcomi st, st(1)      1.0 < 3.5: CF=1
        "dac1"              # fcmovb st, st(1)     taken: ST0 = 3.5
        "dd1d18200000"      # fstp qword [0x2018]
        "f4")               # hlt
    cpu = flat32(code)
    cpu.memory.ram[0x2000:0x2010] = struct.pack("<dd", 1.25, 2.25)
    cpu.run(20)
    assert cpu.halted
    assert struct.unpack("<dd", bytes(cpu.memory.ram[0x2010:0x2020])) == (3.5, 3.5)
    assert cpu.reg[0] & 0xFFFF == 7 << 11          # FNSTSW AX after one push: TOP = 7
    assert cpu.get_eflags() & 0x45 == 0x01          # FCOMI: CF set, ZF/PF clear
    assert cpu.fpu.status_word() >> 11 & 7 == 7


def test_fnstenv_in_real_mode_uses_the_real_mode_layout() -> None:
    cpu = CPU(Memory(), Ports())
    cpu.reset()
    code = bytes.fromhex(
        "d9e8"          # fld1
        "66d9360005"    # o32 fnstenv [0x500]
        "f4")
    cpu.set_segment("cs", 0x0000, 0, 0xFFFF, 0x9B)
    cpu.set_segment("ds", 0x0000, 0, 0xFFFF, 0x93)
    cpu.update_mode()
    cpu.memory.ram[0x7C00:0x7C00 + len(code)] = code
    cpu.eip = 0x7C00
    cpu.run(10)
    assert cpu.halted
    env = bytes(cpu.memory.ram[0x500:0x500 + 28])
    cw, sw, tw = struct.unpack("<HxxHxxHxx", env[:12])
    assert cw == 0x037F and sw >> 11 & 7 == 7 and tw == 0x3FFF
    assert 0x500 + 28 <= len(cpu.memory.ram)

"""End to end: x87 instructions decoded and run by the CPU core, which calls FPU.execute
for D8-DF (contract: cpu-contract.md, "x87 interface")."""

from __future__ import annotations

import struct

from pyv86.cpu.cpu import CPU
from pyv86.cpu.testing import NullIO, SimpleMemory


def flat32(code: bytes) -> CPU:
    cpu = CPU(SimpleMemory(0x100000), NullIO())
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
    cpu = CPU(SimpleMemory(0x100000), NullIO())
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


def test_unmasked_exception_raises_mf_on_the_next_waiting_instruction_with_cr0_ne() -> None:
    """SDM vol. 1, 8.7: the faulting FDIV completes with ES set; the next waiting x87
    instruction (here FLD1) raises #MF (vector 16) with CR0.NE=1, pointing at itself."""
    cpu = CPU(SimpleMemory(0x100000), NullIO())
    cpu.reset()
    cpu.cr0 |= 0x20                                  # NE: native x87 error reporting
    for s in ("cs", "ds", "es", "ss"):
        cpu.set_segment(s, 0x0000, 0, 0xFFFF, 0x9B if s == "cs" else 0x93)
    cpu.update_mode()
    ram = cpu.memory.ram
    ram[16 * 4:16 * 4 + 4] = struct.pack("<HH", 0x8000, 0x0000)   # IVT[16] -> 0000:8000
    ram[0x8000] = 0xF4                                             # handler: hlt
    ram[0x600:0x602] = struct.pack("<H", 0x037B)                   # ZM clear
    code = bytes.fromhex(
        "d92e0006"      # fldcw [0x600]
        "d9e8"          # fld1
        "d9ee"          # fldz
        "def9"          # fdivp st(1), st    -> ZE, pending
        "d9e8"          # fld1               -> #MF here
        "f4")
    ram[0x7C00:0x7C00 + len(code)] = code
    cpu.eip = 0x7C00
    cpu.reg[4] = 0x7000
    cpu.run(20)
    assert cpu.halted and cpu.eip == 0x8001
    ret_ip = struct.unpack("<H", bytes(ram[cpu.reg[4] & 0xFFFF:(cpu.reg[4] & 0xFFFF) + 2]))[0]
    assert ret_ip == 0x7C0A                        # the FLD1 that found the pending error
    assert cpu.fpu.status_word() & 0x8084 == 0x8084
    # unmasked ZE: FDIVP neither stored nor popped (TOP 6), and the faulting FLD1 did not push
    assert cpu.fpu.status_word() >> 11 & 7 == 6


def test_fnstenv_in_protected_mode_records_the_instruction_and_operand_pointers() -> None:
    """SDM vol. 1, 8.1.8-8.1.10 and figure 8-9: the 32-bit protected-mode environment holds
    the last non-control instruction's offset (FIP) and CS selector, its opcode (FOP) and
    its operand's offset (FDP) and segment selector (FDS: here the FS override)."""
    code = bytes.fromhex(
        "d9e8"              # 1000: fld1
        "64d90500200000"    # 1002: fld dword [fs:0x2000]
        "d9ee"              # 1009: fldz (register form: FIP/FCS move, FDP/FDS stay)
        "d93500300000"      # 100b: fnstenv [0x3000] (a control instruction: changes none)
        "f4")
    cpu = flat32(code)
    cpu.set_segment("fs", 0x18, 0, 0xFFFFFFFF, 0xC093)
    cpu.memory.ram[0x2000:0x2004] = struct.pack("<f", 2.0)
    cpu.run(10)
    assert cpu.halted
    w = struct.unpack("<7I", bytes(cpu.memory.ram[0x3000:0x301C]))
    assert w[3] == 0x1009                           # FIP: the FLDZ
    assert w[4] & 0xFFFF == 0x08                    # FCS
    assert (w[4] >> 16) & 0x7FF == 0x1EE            # FOP of FLDZ (D9 EE)
    assert w[5] == 0x2000                           # FDP of the FLD m32
    assert w[6] & 0xFFFF == 0x18                    # FDS: the override segment's selector


def test_fnstenv_in_virtual_8086_mode_uses_the_real_mode_layout() -> None:
    """SDM vol. 1, 8.1.10 / figure 8-11: in virtual-8086 mode (as in real mode) the
    environment holds 20-bit linear instruction and operand pointers, not selector:offset."""
    cpu = CPU(SimpleMemory(0x100000), NullIO())
    cpu.cr0 = 0x11 | 0x20
    cpu.set_segment("cs", 0x100, 0x1000, 0xFFFF, 0xFB)
    for s in ("ds", "es", "ss", "fs", "gs"):
        cpu.set_segment(s, 0x200, 0x2000, 0xFFFF, 0xF3)
    cpu.cpl = 3
    cpu.set_eflags(0x20002)                         # VM
    cpu.update_mode()
    assert cpu.vm86 and not cpu.code32
    code = bytes.fromhex(
        "d9060002"          # 0010: fld dword [0x200]   (linear 0x2200)
        "d9360003")         # 0014: fnstenv [0x300]     (linear 0x2300, 14 bytes)
    cpu.memory.ram[0x1010:0x1010 + len(code)] = code
    cpu.memory.ram[0x2200:0x2204] = struct.pack("<f", 2.0)
    cpu.eip = 0x10
    cpu.reg[4] = 0x1000
    assert cpu.run(2) == 2
    w = struct.unpack("<7H", bytes(cpu.memory.ram[0x2300:0x230E]))
    assert w[0] == 0x037F
    assert w[3] == 0x1010                           # FIP(15:0) = (CS << 4) + IP
    assert w[4] == 0x0106                           # FIP(19:16) << 12 | FOP (D9 06)
    assert w[5] == 0x2200 and w[6] == 0             # FDP as a 20-bit linear address

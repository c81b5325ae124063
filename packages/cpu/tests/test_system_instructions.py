"""System instructions (Intel SDM vol. 2): CPUID, MSRs, TSC, control and debug registers,
LAR/LSL/VERR/VERW/ARPL, descriptor-table registers.

Most tests call the ``_system`` functions on a CPU object set up in protected mode; the
LAR/LSL/VERR/VERW and SGDT cases also run through the decoder as nasm programs with the
harness of test_system_protected.py.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from pyv86.cpu import _system
from pyv86.cpu._fault import CPUFault
from pyv86.cpu.cpu import CPU
from pyv86.cpu.testing import SimpleMemory

_spec = importlib.util.spec_from_file_location(
    "_pyv86_system_harness", Path(__file__).with_name("test_system_protected.py"))
assert _spec is not None and _spec.loader is not None
harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(harness)
Machine = harness.Machine
NO_VECTOR = harness.NO_VECTOR


class Clock:
    def __init__(self) -> None:
        self.now = 1000

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def cpu() -> CPU:
    clock = Clock()
    c = CPU(SimpleMemory(0x400000), harness.PortLog(), tsc_source=clock)
    c.cr0 = 0x11
    c.set_segment("cs", 0x08, 0, 0xFFFFFFFF, 0xC09B)
    c.set_segment("ss", 0x10, 0, 0xFFFFFFFF, 0xC093)
    c.update_mode()
    return c


def gp0(fn, *args) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CPUFault) as info:
        fn(*args)
    assert info.value.vector == 13 and info.value.error_code == 0


def at_ring3(c: CPU) -> None:
    c.set_segment("cs", 0x1B, 0, 0xFFFFFFFF, 0xC0FB)
    c.cpl = 3
    c.update_mode()


def test_cpuid_vendor_and_max_leaf(cpu: CPU) -> None:
    cpu.reg[0] = 0
    _system.cpuid(cpu)
    vendor = b"".join(cpu.reg[i].to_bytes(4, "little") for i in (3, 2, 1))
    assert vendor == b"GenuineIntel"
    assert cpu.reg[0] == 1


def test_cpuid_reports_only_what_is_implemented(cpu: CPU) -> None:
    cpu.reg[0] = 1
    _system.cpuid(cpu)
    edx = cpu.reg[2]
    for bit in (0, 3, 4, 5, 8, 13, 15):  # FPU PSE TSC MSR CX8 PGE CMOV
        assert edx >> bit & 1
    for bit in (1, 6, 9, 11, 12, 16, 23, 24, 25, 26):  # VME PAE APIC SEP MTRR PAT MMX FXSR SSE SSE2
        assert not edx >> bit & 1
    assert cpu.reg[1] == 0  # ECX: no SSE3 etc.
    assert (cpu.reg[0] >> 8) & 0xF == 6  # family 6 (i686)


def test_cpuid_above_max_leaf_answers_like_the_highest_leaf(cpu: CPU) -> None:
    cpu.reg[0] = 0x80000000
    _system.cpuid(cpu)
    assert cpu.reg[0] < 0x80000000  # Linux reads this as "no extended leaves"


def test_rdtsc_follows_tsc_source_and_wrmsr_sets_it(cpu: CPU) -> None:
    _system.rdtsc(cpu)
    assert (cpu.reg[2] << 32 | cpu.reg[0]) == 1000
    cpu.reg[1], cpu.reg[2], cpu.reg[0] = 0x10, 1, 5  # TSC := 0x1_00000005
    _system.wrmsr(cpu)
    cpu.tsc_source.now += 10  # type: ignore[union-attr]
    _system.rdtsc(cpu)
    assert (cpu.reg[2] << 32 | cpu.reg[0]) == 0x1_0000000F
    cpu.reg[1] = 0x10
    _system.rdmsr(cpu)
    assert (cpu.reg[2] << 32 | cpu.reg[0]) == 0x1_0000000F


def test_rdtsc_with_cr4_tsd_faults_outside_ring0(cpu: CPU) -> None:
    cpu.cr4 = 0x4
    _system.rdtsc(cpu)
    at_ring3(cpu)
    gp0(_system.rdtsc, cpu)


def test_unknown_msr_is_gp_and_known_ones_read_back(cpu: CPU) -> None:
    cpu.reg[1] = 0x1B  # APIC base: no APIC reported
    gp0(_system.rdmsr, cpu)
    gp0(_system.wrmsr, cpu)
    cpu.reg[1], cpu.reg[2], cpu.reg[0] = 0x174, 0, 0x10  # SYSENTER_CS
    _system.wrmsr(cpu)
    cpu.reg[0] = cpu.reg[2] = 0
    _system.rdmsr(cpu)
    assert cpu.reg[0] == 0x10


def test_msr_access_at_ring3_is_gp(cpu: CPU) -> None:
    at_ring3(cpu)
    cpu.reg[1] = 0x10
    gp0(_system.rdmsr, cpu)


def test_mov_cr0_pg_without_pe_is_gp(cpu: CPU) -> None:
    gp0(_system.mov_to_cr, cpu, 0, 0x80000000)


def test_mov_cr0_nw_without_cd_is_gp(cpu: CPU) -> None:
    gp0(_system.mov_to_cr, cpu, 0, 0x20000001)


def test_mov_cr0_keeps_et_and_clearing_pe_returns_to_real_mode(cpu: CPU) -> None:
    _system.mov_to_cr(cpu, 0, 0x0)
    assert cpu.cr0 == 0x10 and not cpu.protected and cpu.cpl == 0


def test_mov_cr4_reserved_bits_are_gp(cpu: CPU) -> None:
    gp0(_system.mov_to_cr, cpu, 4, 0x20)  # PAE is not implemented
    gp0(_system.mov_to_cr, cpu, 4, 0x1)  # VME is not implemented
    _system.mov_to_cr(cpu, 4, 0x90)  # PSE | PGE
    assert _system.mov_from_cr(cpu, 4) == 0x90


def test_mov_cr_at_ring3_is_gp_and_cr1_is_ud(cpu: CPU) -> None:
    with pytest.raises(CPUFault) as info:
        _system.mov_to_cr(cpu, 1, 0)
    assert info.value.vector == 6
    at_ring3(cpu)
    gp0(_system.mov_from_cr, cpu, 0)


def test_mov_cr3_flushes_the_tlb(cpu: CPU) -> None:
    cpu.tlb_r[5] = 0x5000
    _system.mov_to_cr(cpu, 3, 0x12345FFF)
    assert cpu.cr3 == 0x12345018  # PCD/PWT kept, other low bits ignored
    assert not cpu.tlb_r


def test_debug_registers_dr6_dr7_fixed_bits_and_dr4_alias(cpu: CPU) -> None:
    _system.mov_to_dr(cpu, 7, 0)
    assert _system.mov_from_dr(cpu, 7) == 0x400
    _system.mov_to_dr(cpu, 6, 0)
    assert _system.mov_from_dr(cpu, 4) == 0xFFFF0FF0  # DR4 aliases DR6 with CR4.DE=0
    cpu.cr4 = 0x8
    with pytest.raises(CPUFault) as info:
        _system.mov_from_dr(cpu, 4)
    assert info.value.vector == 6


def test_lmsw_sets_but_cannot_clear_pe(cpu: CPU) -> None:
    _system.lmsw(cpu, 0xE)
    assert cpu.cr0 & 0xF == 0xF
    _system.lmsw(cpu, 0)
    assert cpu.cr0 & 0xF == 0x1


def test_clts_clears_ts_and_is_privileged(cpu: CPU) -> None:
    cpu.cr0 |= 8
    _system.clts(cpu)
    assert not cpu.cr0 & 8
    at_ring3(cpu)
    gp0(_system.clts, cpu)


def test_hlt_at_ring3_is_gp(cpu: CPU) -> None:
    at_ring3(cpu)
    gp0(_system.hlt, cpu)


def test_arpl_raises_rpl(cpu: CPU) -> None:
    assert _system.arpl(cpu, 0x10, 0x1B) == (0x13, True)
    assert _system.arpl(cpu, 0x13, 0x08) == (0x13, False)


def test_protected_only_instructions_are_ud_in_real_mode(cpu: CPU) -> None:
    cpu.cr0 = 0x10
    cpu.update_mode()
    for fn in (_system.sldt, _system.str_):
        with pytest.raises(CPUFault) as info:
            fn(cpu)
        assert info.value.vector == 6


def test_iopl_sensitive_popf_rules(cpu: CPU) -> None:
    cpu.set_eflags(0x2)
    _system.popf(cpu, 0x3202, True)  # CPL 0: IOPL and IF change
    assert cpu.get_eflags() & 0x3200 == 0x3200
    cpu.set_eflags(0x1002)  # IOPL 1
    at_ring3(cpu)
    _system.popf(cpu, 0x3203, True)  # CPL 3 > IOPL: IF and IOPL kept, CF changes
    assert cpu.get_eflags() & 0x3201 == 0x1001


def test_lar_lsl_verr_verw_through_the_decoder(tmp_path: Path) -> None:
    # SDM vol. 2 LAR/LSL/VERR/VERW: ZF reports success; the access rights are the high
    # descriptor dword masked with 0x00F0FF00; LSL gives the byte-granular limit.
    m = Machine(tmp_path, """
%macro ZF 1
  setz al
  mov [RES+%1], al
%endmacro
test:
  mov ebx, 0x10
  lar eax, ebx
  mov [RES+0], eax
  ZF 4
  lsl eax, ebx
  mov [RES+8], eax
  ZF 12
  mov ebx, 0x30                         ; byte-granular data, limit 0x1234, DPL 0
  lsl eax, ebx
  mov [RES+16], eax
  verr bx
  ZF 20
  verw bx
  ZF 21
  mov ebx, 0x08                         ; code, readable
  verr bx
  ZF 22
  verw bx
  ZF 23
  mov ebx, 0x1000                       ; beyond the GDT
  lar eax, ebx
  ZF 24
  mov ebx, 0x38                         ; interrupt gate: LAR fails, LSL fails
  lar eax, ebx
  ZF 25
  lsl eax, ebx
  ZF 26
  mov ebx, 0x28                         ; TSS: both succeed
  lar eax, ebx
  ZF 27
  sgdt [RES+32]
  hlt
""", gdt_extra="""
  DESC 0x5000, 0x1234, 0x92, 0x4       ; 0x30
  dq 0x00008E0000080000                 ; 0x38 a 386 interrupt gate in the GDT
""")
    m.run()
    assert m.last_vector() == NO_VECTOR
    # Bits 19:16 are undefined ("00FxFF00H"); the accessed bit was set by loading DS.
    assert m.res(0) & 0xFFF0FFFF == 0x00C09300
    assert m.mem.ram[0x7004] == 1
    assert m.res(2) == 0xFFFFFFFF
    assert m.res(4) == 0x1234
    assert list(m.mem.ram[0x7014:0x7018]) == [1, 1, 1, 0]
    assert list(m.mem.ram[0x7018:0x701C]) == [0, 0, 0, 1]
    assert m.mem.ram[0x7020] | m.mem.ram[0x7021] << 8 == m.cpu.gdtr_limit
    assert m.get32(0x7022) == m.cpu.gdtr_base

"""Two-level paging walk (Intel SDM vol. 3A 4.3, 4.6, 4.7, 4.8): called directly on a CPU.

Each test builds a page directory and page tables in RAM, turns paging on through the CPU
state and calls ``_paging.translate`` / ``_paging.lookup`` the way the core's TLB does on a
miss, then checks the physical address, the #PF error code and CR2, and the A/D bits left
in the entries.
"""

from __future__ import annotations

import pytest

from pyv86.cpu import _paging
from pyv86.cpu._fault import CPUFault
from pyv86.cpu.cpu import CPU
from pyv86.cpu.testing import NullIO, SimpleMemory

PD = 0x10000  # page directory
PT = 0x11000  # page table for linear 0x00000000-0x003FFFFF
PT2 = 0x12000  # page table for linear 0x00400000-0x007FFFFF

P, RW, US, A, D, PS, G = 1, 2, 4, 0x20, 0x40, 0x80, 0x100


def put32(cpu: CPU, addr: int, value: int) -> None:
    cpu.memory.ram[addr:addr + 4] = value.to_bytes(4, "little")


def get32(cpu: CPU, addr: int) -> int:
    return int.from_bytes(cpu.memory.ram[addr:addr + 4], "little")


@pytest.fixture
def cpu() -> CPU:
    c = CPU(SimpleMemory(0x800000), NullIO())
    put32(c, PD + 0, PT | P | RW | US)
    put32(c, PD + 4, PT2 | P | RW | US)
    c.cr3 = PD
    c.cr0 = 0x80000011  # PG | ET | PE
    c.update_mode()
    return c


def fault_of(cpu: CPU, lin: int, write: bool, user: bool) -> int:
    with pytest.raises(CPUFault) as info:
        _paging.translate(cpu, lin, write, user)
    assert info.value.vector == 14
    assert cpu.cr2 == lin
    return info.value.error_code


def test_4k_page_maps_frame_and_offset(cpu: CPU) -> None:
    put32(cpu, PT + 5 * 4, 0x345000 | P | RW | US)
    assert _paging.translate(cpu, 0x5ABC, False, False) == 0x345ABC


def test_not_present_pte_faults_with_p_clear_and_cr2(cpu: CPU) -> None:
    # Error code bit 0 = 0 (not present), bit 1 = write, bit 2 = user (SDM 4.7).
    assert fault_of(cpu, 0x7123, False, False) == 0
    assert fault_of(cpu, 0x7123, True, False) == 2
    assert fault_of(cpu, 0x7123, True, True) == 6


def test_not_present_pde_faults(cpu: CPU) -> None:
    assert fault_of(cpu, 0x00800010, False, True) == 4


def test_user_access_to_supervisor_page_is_protection_fault(cpu: CPU) -> None:
    put32(cpu, PT + 1 * 4, 0x200000 | P | RW)
    assert fault_of(cpu, 0x1000, False, True) == 5
    assert fault_of(cpu, 0x1000, True, True) == 7
    assert _paging.translate(cpu, 0x1000, True, False) == 0x200000


def test_us_bit_must_be_set_at_both_levels(cpu: CPU) -> None:
    put32(cpu, PD + 4, PT2 | P | RW)  # directory entry supervisor-only
    put32(cpu, PT2 + 0, 0x300000 | P | RW | US)
    assert fault_of(cpu, 0x400000, False, True) == 5


def test_user_write_to_read_only_page_faults(cpu: CPU) -> None:
    put32(cpu, PT + 2 * 4, 0x201000 | P | US)
    assert _paging.translate(cpu, 0x2004, False, True) == 0x201004
    assert fault_of(cpu, 0x2004, True, True) == 7


def test_cr0_wp_decides_supervisor_writes_to_read_only_pages(cpu: CPU) -> None:
    put32(cpu, PT + 3 * 4, 0x202000 | P | US)
    assert _paging.translate(cpu, 0x3000, True, False) == 0x202000  # WP=0: allowed
    cpu.cr0 |= 1 << 16
    assert fault_of(cpu, 0x3000, True, False) == 3


def test_accessed_and_dirty_bits_are_written_back(cpu: CPU) -> None:
    put32(cpu, PT + 4 * 4, 0x203000 | P | RW)
    _paging.translate(cpu, 0x4000, False, False)
    assert get32(cpu, PT + 4 * 4) & (A | D) == A
    assert get32(cpu, PD) & A
    _paging.translate(cpu, 0x4000, True, False)
    assert get32(cpu, PT + 4 * 4) & (A | D) == A | D
    # The directory entry of a 4 KiB page never gets a dirty bit.
    assert not get32(cpu, PD) & D


def test_faulting_access_sets_no_accessed_bit(cpu: CPU) -> None:
    put32(cpu, PT + 6 * 4, 0x204000 | P)
    fault_of(cpu, 0x6000, False, True)
    assert not get32(cpu, PT + 6 * 4) & A
    assert not get32(cpu, PD) & A


def test_pse_4mib_page(cpu: CPU) -> None:
    cpu.cr4 |= 0x10
    put32(cpu, PD + 8, 0x00C00000 | PS | P | RW | US)
    assert _paging.translate(cpu, 0x00812345, True, True) == 0x00C12345
    entry = get32(cpu, PD + 8)
    assert entry & (A | D) == A | D


def test_ps_bit_ignored_without_cr4_pse(cpu: CPU) -> None:
    # Without CR4.PSE the PDE points to a page table even with bit 7 set.
    put32(cpu, PD + 8, PT2 | PS | P | RW | US)
    put32(cpu, PT2 + 0x12 * 4, 0x00250000 | P | RW | US)
    assert _paging.translate(cpu, 0x00812345, False, False) == 0x00250345


def test_pse_reserved_bits_fault_with_rsvd(cpu: CPU) -> None:
    # Bits 21:13 of a 4 MiB PDE are reserved without PSE-36: error code has RSVD (bit 3)
    # and P (bit 0) set.
    cpu.cr4 |= 0x10
    put32(cpu, PD + 8, 0x00C00000 | 0x2000 | PS | P | RW | US)
    assert fault_of(cpu, 0x00800000, False, False) == 9
    assert fault_of(cpu, 0x00800000, True, True) == 15


def test_lookup_gives_write_permission_only_when_dirty(cpu: CPU) -> None:
    put32(cpu, PT + 8 * 4, 0x205000 | P | RW | US)
    phys, flags = _paging.lookup(cpu, 0x8010, False, True)
    assert phys == 0x205010
    assert flags & _paging.TLB_USER
    assert not flags & (_paging.TLB_USER_WRITE | _paging.TLB_SUPER_WRITE)
    _phys, flags = _paging.lookup(cpu, 0x8010, True, True)
    assert flags & _paging.TLB_USER_WRITE and flags & _paging.TLB_SUPER_WRITE


def test_lookup_reports_supervisor_only_and_global(cpu: CPU) -> None:
    cpu.cr4 |= 0x80  # PGE
    put32(cpu, PT + 9 * 4, 0x206000 | P | RW | D | G)
    _phys, flags = _paging.lookup(cpu, 0x9000, False, False)
    assert not flags & _paging.TLB_USER
    assert flags & _paging.TLB_SUPER_WRITE
    assert flags & _paging.TLB_GLOBAL


def test_read_only_page_is_supervisor_writable_only_without_wp(cpu: CPU) -> None:
    put32(cpu, PT + 10 * 4, 0x207000 | P | US | D)
    _phys, flags = _paging.lookup(cpu, 0xA000, False, False)
    assert flags & _paging.TLB_SUPER_WRITE and not flags & _paging.TLB_USER_WRITE
    cpu.cr0 |= 1 << 16
    _phys, flags = _paging.lookup(cpu, 0xA000, False, False)
    assert not flags & _paging.TLB_SUPER_WRITE


def test_a20_mask_applies_to_walk_and_result(cpu: CPU) -> None:
    put32(cpu, PT + 11 * 4, 0x00112000 | P | RW)
    cpu.a20_mask = 0xFFEFFFFF
    assert _paging.translate(cpu, 0xB004, False, False) == 0x00012004


def test_paging_off_translate_is_identity_through_a20(cpu: CPU) -> None:
    cpu.cr0 = 0x11
    cpu.a20_mask = 0xFFEFFFFF
    assert _paging.translate(cpu, 0x00123456, True, True) == 0x00023456


def test_probe_reads_without_side_effects(cpu: CPU) -> None:
    put32(cpu, PT + 12 * 4, 0x208000 | P)
    assert _paging.probe(cpu, 0xC123) == 0x208123
    assert not get32(cpu, PT + 12 * 4) & A
    assert _paging.probe(cpu, 0xD000) == -1


def test_linear_access_through_the_cpu_uses_the_walk(cpu: CPU) -> None:
    # The core's read32/write32 fill its TLB from the same walk.
    put32(cpu, PT + 13 * 4, 0x209000 | P | RW | US)
    cpu.write32(0xD010, 0xCAFEBABE)
    assert get32(cpu, 0x209010) == 0xCAFEBABE
    assert get32(cpu, PT + 13 * 4) & (A | D) == A | D
    cpu.cpl = 3
    with pytest.raises(CPUFault) as info:
        cpu.read32(0x7000)
    assert info.value.error_code == 4 and cpu.cr2 == 0x7000

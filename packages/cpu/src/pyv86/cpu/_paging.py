"""Two-level 32-bit paging (Intel SDM vol. 3A, 4.3 "32-bit paging").

The core's software TLB calls :func:`lookup` on a miss (or :func:`translate` when it only
needs the address). Both walk the page directory and page table in physical memory, check
the access against the U/S and R/W bits of both levels (CR0.WP decides whether supervisor
writes honour R/W), set the accessed bits and, for a write, the dirty bit exactly as the
hardware does (only once the access is allowed), and raise ``CPUFault(14, code)`` with CR2
set to the faulting linear address when it is not.

Page-fault error code (SDM 4.7): bit 0 P (0 = not present, 1 = protection violation),
bit 1 W/R (the access was a write), bit 2 U/S (the access was made at CPL 3), bit 3 RSVD
(a reserved bit was set in a 4 MiB PDE).

4 MiB pages (CR4.PSE with PDE.PS): this CPU reports PSE but not PSE-36, so bits 21:13 of a
large-page PDE are reserved and a set one faults with RSVD. Global pages (CR4.PGE, G bit):
accepted and reported through :data:`TLB_GLOBAL`; the core may keep such entries across a
CR3 load or flush them too (a TLB is a cache: flushing more is always allowed).

Page-table reads and A/D writes use ``cpu.read_phys32`` / ``cpu.write_phys32`` (the core's
physical accessors, which see RAM, ROM and MMIO) on addresses masked with ``cpu.a20_mask``.
"""

from __future__ import annotations

from typing import Any, Tuple

from ._fault import CPUFault

# Flags returned by lookup(): what the core may cache for this 4 KiB page.
TLB_USER = 1  # user (CPL 3) accesses may read
TLB_USER_WRITE = 2  # user accesses may write (and the dirty bit is already set)
TLB_SUPER_WRITE = 4  # supervisor accesses may write (and the dirty bit is already set)
TLB_GLOBAL = 8  # the G bit is set and CR4.PGE is on
TLB_LARGE = 16  # the mapping comes from a 4 MiB page

PF_P = 1
PF_W = 2
PF_U = 4
PF_RSVD = 8

CR0_WP = 1 << 16
CR4_PSE = 1 << 4
CR4_PGE = 1 << 7

# Reserved bits of a 4 MiB PDE without PSE-36 (bits 21:13).
_LARGE_RSVD = 0x003FE000


def lookup(cpu: Any, lin: int, write: bool, user: bool) -> Tuple[int, int]:
    """Translate ``lin`` for one access and return ``(physical address, TLB flags)``.

    The flags say what else the same page allows without another walk: a write bit is
    only given when the dirty bit is already set, so the core walks again (and this sets
    the dirty bit) on the first write through a mapping it cached for reading.
    Raises ``CPUFault(14, error_code)`` and sets ``cpu.cr2`` when the access is refused.
    """
    lin &= 0xFFFFFFFF
    a20 = cpu.a20_mask
    read_phys32 = cpu.read_phys32
    pde_addr = ((cpu.cr3 & 0xFFFFF000) | ((lin >> 20) & 0xFFC)) & a20
    pde = read_phys32(pde_addr)
    if not pde & 1:
        _fault(cpu, lin, write, user, 0)
    if pde & 0x80 and cpu.cr4 & CR4_PSE:
        # 4 MiB page: the PDE is the leaf.
        if pde & _LARGE_RSVD:
            _fault(cpu, lin, write, user, PF_P | PF_RSVD)
        combined = pde
        pte_addr = -1
        leaf = pde
        phys_page = (pde & 0xFFC00000) | (lin & 0x003FF000)
        large = TLB_LARGE
    else:
        pte_addr = ((pde & 0xFFFFF000) | ((lin >> 10) & 0xFFC)) & a20
        leaf = read_phys32(pte_addr)
        if not leaf & 1:
            _fault(cpu, lin, write, user, 0)
        combined = pde & leaf
        phys_page = leaf & 0xFFFFF000
        large = 0

    # Permission check (SDM 4.6): U/S and R/W of both levels combine with AND.
    user_ok = combined & 4
    rw = combined & 2
    if user:
        if not user_ok or (write and not rw):
            _fault(cpu, lin, write, user, PF_P)
    elif write and not rw and cpu.cr0 & CR0_WP:
        _fault(cpu, lin, write, user, PF_P)

    # Accessed and dirty bits, written only once the access is known to succeed.
    write_phys32 = cpu.write_phys32
    if pte_addr < 0:
        new = pde | 0x20
        if write:
            new |= 0x40
        if new != pde:
            write_phys32(pde_addr, new)
        dirty = new & 0x40
    else:
        if not pde & 0x20:
            write_phys32(pde_addr, pde | 0x20)
        new = leaf | 0x20
        if write:
            new |= 0x40
        if new != leaf:
            write_phys32(pte_addr, new)
        dirty = new & 0x40

    flags = large
    if user_ok:
        flags |= TLB_USER
    if dirty:
        if rw:
            flags |= TLB_SUPER_WRITE
            if user_ok:
                flags |= TLB_USER_WRITE
        elif not cpu.cr0 & CR0_WP:
            flags |= TLB_SUPER_WRITE
    if leaf & 0x100 and cpu.cr4 & CR4_PGE:
        flags |= TLB_GLOBAL
    return ((phys_page | (lin & 0xFFF)) & a20), flags


def translate(cpu: Any, lin: int, write: bool, user: bool) -> int:
    """Physical address of linear ``lin`` for one access (faults as :func:`lookup`).

    With paging off this is the linear address through the A20 gate.
    """
    if not cpu.cr0 & 0x80000000:
        return lin & 0xFFFFFFFF & cpu.a20_mask
    return lookup(cpu, lin, write, user)[0]


def probe(cpu: Any, lin: int) -> int:
    """Physical address of ``lin`` without permission checks, A/D updates or faults.

    Returns -1 when the page is not present. For debuggers and trace output.
    """
    lin &= 0xFFFFFFFF
    if not cpu.cr0 & 0x80000000:
        return lin & cpu.a20_mask
    a20 = cpu.a20_mask
    pde = cpu.read_phys32(((cpu.cr3 & 0xFFFFF000) | ((lin >> 20) & 0xFFC)) & a20)
    if not pde & 1:
        return -1
    if pde & 0x80 and cpu.cr4 & CR4_PSE:
        return ((pde & 0xFFC00000) | (lin & 0x003FFFFF)) & a20
    pte = cpu.read_phys32(((pde & 0xFFFFF000) | ((lin >> 10) & 0xFFC)) & a20)
    if not pte & 1:
        return -1
    return ((pte & 0xFFFFF000) | (lin & 0xFFF)) & a20


def _fault(cpu: Any, lin: int, write: bool, user: bool, code: int) -> None:
    if write:
        code |= PF_W
    if user:
        code |= PF_U
    cpu.cr2 = lin
    raise CPUFault(14, code)

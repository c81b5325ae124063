"""Paging seen by programs (Intel SDM vol. 3A chapter 4): user-mode faults, restartable
faulting instructions, INVLPG and 4 MiB pages, run as nasm programs with the harness of
test_system_protected.py. The page tables map the low 4 MiB one to one, user-accessible.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "_pyv86_system_harness", Path(__file__).with_name("test_system_protected.py"))
assert _spec is not None and _spec.loader is not None
harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(harness)
Machine = harness.Machine
NO_VECTOR = harness.NO_VECTOR
TO_RING3 = harness.TO_RING3

PT = 0x21000
PAGING_ON = """
  mov edi, 0x21000
  mov eax, 0x7
  mov ecx, 1024
.fill:
  mov [edi], eax
  add eax, 0x1000
  add edi, 4
  loop .fill
  mov dword [0x20000], 0x21007
  mov eax, 0x20000
  mov cr3, eax
  mov eax, cr0
  or eax, 0x80010000
  mov cr0, eax
"""

PF_RECORDER = """
pf:
  push eax
  mov ax, 0x10
  mov ds, ax
  mov eax, [esp+4]
  mov [RES+0], eax                      ; error code
  mov eax, cr2
  mov [RES+4], eax
  mov eax, [esp+8]
  mov [RES+8], eax                      ; faulting EIP
  mov eax, [esp+12]
  mov [RES+12], eax                     ; CS
  mov dword [0x7F00], 14
  hlt
"""


def test_user_read_of_a_supervisor_page_faults_with_us_bit(tmp_path: Path) -> None:
    m = Machine(tmp_path, """
test:
""" + PAGING_ON + """
  and dword [0x21000 + 0x50*4], ~4      ; page 0x50000: supervisor only
""" + TO_RING3 + """
user:
  mov eax, [0x50010]
  hlt
""" + PF_RECORDER, idt={14: ("pf", 0x8E)})
    m.run()
    assert m.last_vector() == 14
    assert m.res(0) == 5  # P | U/S, a read
    assert m.res(1) == 0x50010
    assert m.res(3) & 0xFFFF == 0x1B
    assert m.mem.ram[m.res(2)] == 0xA1


def test_user_write_to_a_read_only_page_faults_and_user_read_is_allowed(
        tmp_path: Path) -> None:
    m = Machine(tmp_path, """
test:
""" + PAGING_ON + """
  and dword [0x21000 + 0x51*4], ~2      ; page 0x51000: read-only
""" + TO_RING3 + """
user:
  mov eax, [0x51000]
  mov dword [0x51004], 1
  hlt
""" + PF_RECORDER, idt={14: ("pf", 0x8E)})
    m.run()
    assert m.last_vector() == 14
    assert m.res(0) == 7  # P | W | U
    assert m.res(1) == 0x51004


def test_invlpg_drops_a_cached_translation(tmp_path: Path) -> None:
    # After a PTE changes, INVLPG makes the next access walk the tables again.
    m = Machine(tmp_path, """
test:
""" + PAGING_ON + """
  mov dword [0x60000], 0xAAAA
  mov dword [0x61000], 0xBBBB
  mov eax, [0x60000]                    ; cache the translation of 0x60000
  mov [RES+0], eax
  mov dword [0x21000 + 0x60*4], 0x61007 ; now 0x60000 -> 0x61000
  invlpg [0x60000]
  mov eax, [0x60000]
  mov [RES+4], eax
  mov dword [0x21000 + 0x60*4], 0x60007
  mov eax, cr3
  mov cr3, eax                          ; a CR3 load flushes everything
  mov eax, [0x60000]
  mov [RES+8], eax
  hlt
""")
    m.run()
    assert m.last_vector() == NO_VECTOR
    assert (m.res(0), m.res(1), m.res(2)) == (0xAAAA, 0xBBBB, 0xAAAA)


def test_4mib_page_through_cr4_pse(tmp_path: Path) -> None:
    m = Machine(tmp_path, """
test:
""" + PAGING_ON + """
  mov eax, cr4
  or eax, 0x10
  mov cr4, eax
  mov dword [0x20000 + 2*4], 0x00000083 ; linear 8 MiB -> physical 0, 4 MiB page
  mov dword [0x3010], 0x4321
  mov eax, [0x00803010]
  mov [RES+0], eax
  mov dword [0x00803014], 0x8765
  mov eax, [0x20008]
  mov [RES+4], eax
  hlt
""")
    m.run()
    assert m.last_vector() == NO_VECTOR
    assert m.res(0) == 0x4321
    assert m.get32(0x3014) == 0x8765
    assert m.res(1) & 0x60 == 0x60  # accessed and dirty in the 4 MiB PDE


def test_page_fault_while_pushing_the_exception_frame_is_a_double_fault(
        tmp_path: Path) -> None:
    # SDM vol. 3 table 6-5: #GP (contributory) then #PF while delivering it -> #PF is
    # delivered serially; #PF then #PF -> #DF. Here the ring 0 stack page is not present:
    # the #PF raised while pushing the #GP frame and the #PF raised while pushing the #PF
    # frame make a double fault, handled through a task gate with a valid stack.
    m = Machine(tmp_path, """
test:
""" + PAGING_ON + """
  mov esp, 0x70000
  mov dword [0x21000 + 0x6F*4], 0       ; the page below ESP is not present
  mov ax, 0x1000
  mov ds, ax                            ; #GP -> #PF (stack) -> #PF -> #DF
  hlt
df_task:
  mov eax, cr2
  mov [RES+0], eax
  mov eax, [esp]
  mov [RES+4], eax
  hlt
align 4
tss_df:
  dd 0, 0, 0, 0, 0, 0, 0
  dd 0x20000                            ; CR3
  dd A(df_task), 2
  dd 0, 0, 0, 0, 0x9A00, 0, 0, 0
  dd 0x10, 0x08, 0x10, 0x10, 0x10, 0x10
  dd 0
  dw 0, 0x68
""", gdt_extra="  DESC A(tss_df), 0x67, 0x89, 0         ; 0x30 #DF task\n",
        idt={8: ("start", 0x85, 0x30)})
    m.run()
    assert m.last_vector() == NO_VECTOR
    assert m.res(0) == 0x6FFFC
    assert m.res(1) == 0


def test_fault_on_the_inner_stack_leaves_the_ring3_state_uncommitted(tmp_path: Path) -> None:
    # INT 0x80 from ring 3 with ESP0 on a not-present page: the pushes fault before CS, SS,
    # ESP or CPL change (SDM vol. 3 6.12.1), the #PF cannot be delivered either -> #DF
    # through a task gate; the outgoing task's TSS then holds the ring 3 state of the INT.
    m = Machine(tmp_path, """
test:
""" + PAGING_ON + """
  mov dword [0x21000 + 0x4F*4], 0       ; the page below ESP0 is not present
  mov dword [tss + 4], 0x50000          ; ESP0
""" + TO_RING3 + """
user:
  mov ebx, 0x5151
  int 0x80
  hlt
df_task:
  mov eax, cr2
  mov [RES+0], eax
  mov eax, [tss + 0x4C]                 ; saved CS
  mov [RES+4], eax
  mov eax, [tss + 0x50]                 ; saved SS
  mov [RES+8], eax
  mov eax, [tss + 0x38]                 ; saved ESP
  mov [RES+12], eax
  mov eax, [tss + 0x34]                 ; saved EBX
  mov [RES+16], eax
  mov eax, [tss + 0x20]                 ; saved EIP: the INT instruction
  mov [RES+20], eax
  hlt
align 4
tss_df:
  dd 0, 0, 0, 0, 0, 0, 0
  dd 0x20000
  dd A(df_task), 2
  dd 0, 0, 0, 0, 0x9A00, 0, 0, 0
  dd 0x10, 0x08, 0x10, 0x10, 0x10, 0x10
  dd 0
  dw 0, 0x68
""", gdt_extra="  DESC A(tss_df), 0x67, 0x89, 0         ; 0x30 #DF task\n",
        idt={8: ("start", 0x85, 0x30), 0x80: ("default_128", 0xEE)})
    m.run()
    assert m.last_vector() == NO_VECTOR
    assert m.res(0) == 0x4FFFC
    assert m.res(1) & 0xFFFF == 0x1B and m.res(2) & 0xFFFF == 0x23
    assert m.res(3) == 0x8F00 and m.res(4) == 0x5151
    assert m.mem.ram[m.res(5)] == 0xCD

"""Far transfers, gates and local descriptor tables (Intel SDM vol. 2 CALL/JMP/RET/IRET,
vol. 3 5.8 and 7), run as nasm programs with the harness of test_system_protected.py.
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

IDENTITY_PAGING = """
  mov edi, 0x21000
  mov eax, 0x7
  mov ecx, 1024
.fill:
  mov [edi], eax
  add eax, 0x1000
  add edi, 4
  loop .fill
  mov dword [0x20000], 0x21007
  mov dword [0x22000], 0x21007          ; a second directory with the same mapping
  mov eax, 0x20000
  mov cr3, eax
  mov eax, cr0
  or eax, 0x80000000
  mov cr0, eax
"""


def test_far_call_and_retf_to_a_code_segment_at_the_same_level(tmp_path: Path) -> None:
    m = Machine(tmp_path, """
test:
  mov esp, 0x9000
  call 0x30:A(far_target)               ; a second ring 0 code segment, same base
  mov [RES+8], esp
  hlt
far_target:
  mov ax, cs
  mov [RES+0], eax
  mov eax, [esp+4]
  mov [RES+4], eax                      ; pushed CS
  retf
""", gdt_extra="  dq 0x00CF9A000000FFFF                 ; 0x30 ring 0 code\n")
    m.run()
    assert m.last_vector() == NO_VECTOR
    assert m.res(0) & 0xFFFF == 0x30 and m.res(1) == 0x08 and m.res(2) == 0x9000


def test_conforming_code_runs_at_the_callers_privilege(tmp_path: Path) -> None:
    # SDM vol. 3 5.8.1.2: a conforming segment is entered with CPL unchanged and the
    # selector's RPL set to CPL.
    m = Machine(tmp_path, "test:\n" + TO_RING3 + """
user:
  call 0x30:A(conf)
  mov [RES+8], esp
  int3
conf:
  mov ax, cs
  mov [RES+0], eax
  mov ax, ss
  mov [RES+4], eax
  retf
""", gdt_extra="  dq 0x00CF9E000000FFFF                 ; 0x30 conforming code, DPL 0\n",
        idt={3: ("default_3", 0xEE)})
    m.run()
    assert m.res(0) & 0xFFFF == 0x33
    assert m.res(1) & 0xFFFF == 0x23  # no stack switch
    assert m.res(2) == 0x8F00
    assert m.last_vector() == 3


def test_far_call_to_nonconforming_code_of_another_level_is_gp(tmp_path: Path) -> None:
    m = Machine(tmp_path, "test:\n" + TO_RING3 + """
user:
  call 0x08:0
""")
    m.run()
    assert m.last_vector() == 13 and m.get32(0x7F04) == 0x08


def test_jmp_through_a_call_gate_stays_at_the_same_level(tmp_path: Path) -> None:
    m = Machine(tmp_path, """
test:
  jmp 0x30:0
  hlt
gate_target:
  mov ax, cs
  mov [RES+0], eax
  hlt
""", gdt_extra="""
  dw A(gate_target) & 0xFFFF, 0x08
  db 0, 0x8C
  dw A(gate_target) >> 16              ; 0x30 386 call gate, DPL 0
""")
    m.run()
    assert m.last_vector() == NO_VECTOR
    assert m.res(0) & 0xFFFF == 0x08


def test_call_gate_with_dpl_below_cpl_is_gp(tmp_path: Path) -> None:
    m = Machine(tmp_path, "test:\n" + TO_RING3 + """
user:
  call 0x33:0
gate_target:
  hlt
""", gdt_extra="""
  dw A(gate_target) & 0xFFFF, 0x08
  db 0, 0x8C
  dw A(gate_target) >> 16              ; 0x30 call gate, DPL 0
""")
    m.run()
    assert m.last_vector() == 13 and m.get32(0x7F04) == 0x30


def test_286_interrupt_gate_pushes_a_16_bit_frame(tmp_path: Path) -> None:
    # A 16-bit gate (type 6) pushes FLAGS, CS, IP as words (only 16 bits of EIP: the code
    # runs in a segment based at 0x10000 so its offsets fit); IRET with a 16-bit operand.
    m = Machine(tmp_path, """
test:
  jmp 0x30:(low_code - 0x10000)
low_code:
  mov esp, 0x9000
  int 0x60
back:
  mov [RES+8], esp
  hlt
handler16:
  mov [RES+0], esp
  movzx eax, word [esp]
  mov [RES+4], eax
  movzx eax, word [esp+2]
  mov [RES+12], eax
  o16 iret
""", gdt_extra="  DESC 0x10000, 0xFFFF, 0x9A, 0x4         ; 0x30 code based at 0x10000\n",
        idt={0x60: ("(handler16 - 0x10000)", 0x86, 0x30)})
    m.run()
    assert m.last_vector() == NO_VECTOR
    assert m.res(0) == 0x9000 - 6
    assert m.mem.ram[0x10000 + m.res(1)] == 0x89  # IP of "back"
    assert m.res(3) == 0x30
    assert m.res(2) == 0x9000


def test_lldt_and_segments_from_the_ldt(tmp_path: Path) -> None:
    # LLDT takes an LDT descriptor from the GDT; selectors with TI=1 index it.
    m = Machine(tmp_path, """
test:
  mov ax, 0x30
  lldt ax
  sldt bx
  mov [RES+0], ebx
  mov ax, 0x0C                          ; LDT entry 1, RPL 0
  mov es, ax
  mov dword [es:0], 0xC0FFEE            ; base 0x6000
  mov ax, 0x14                          ; LDT entry 2: not present
  mov fs, ax
  hlt
align 8
ldt:
  dq 0
  DESC 0x6000, 0xFFF, 0x92, 0
  DESC 0x6000, 0xFFF, 0x12, 0
ldt_end:
""", gdt_extra="  DESC A(ldt), ldt_end - ldt - 1, 0x82, 0 ; 0x30 LDT\n")
    m.run()
    assert m.res(0) & 0xFFFF == 0x30
    assert m.get32(0x6000) == 0xC0FFEE
    assert m.last_vector() == 11 and m.get32(0x7F04) == 0x14


def test_task_switch_loads_cr3_ldt_and_segments_of_the_new_task(tmp_path: Path) -> None:
    # SDM vol. 3 7.3: with paging on, CR3 comes from the new TSS; LDTR and the segment
    # registers are loaded from it, DS here through the new LDT.
    m = Machine(tmp_path, """
test:
""" + IDENTITY_PAGING + """
  jmp 0x30:0
  hlt
task_b:                                 ; DS is based at 0x6000 here: report through ES
  mov eax, cr3
  mov [es:RES+0], eax
  sldt ax
  mov [es:RES+4], eax
  mov ax, ds
  mov [es:RES+8], eax
  mov eax, [0]                          ; DS base 0x6000
  mov [es:RES+12], eax
  hlt
align 8
ldt:
  dq 0
  DESC 0x6000, 0xFFFF, 0x92, 0
ldt_end:
align 4
tss_b:
  dd 0, 0x9E00, 0x10, 0, 0, 0, 0
  dd 0x22000                            ; CR3
  dd A(task_b), 2
  dd 0, 0, 0, 0, 0x9A00, 0, 0, 0
  dd 0x10, 0x08, 0x10, 0x0C, 0x10, 0x10
  dd 0x38                               ; LDT
  dw 0, 0x68
""", gdt_extra="""
  DESC A(tss_b), 0x67, 0x89, 0          ; 0x30 task B
  DESC A(ldt), ldt_end - ldt - 1, 0x82, 0 ; 0x38 task B's LDT
""")
    m.put32(0x6000, 0x5EED)
    m.run()
    assert m.last_vector() == NO_VECTOR
    assert m.res(0) == 0x22000
    assert m.res(1) & 0xFFFF == 0x38
    assert m.res(2) & 0xFFFF == 0x0C
    assert m.res(3) == 0x5EED


def test_jmp_to_a_task_gate_in_the_gdt(tmp_path: Path) -> None:
    m = Machine(tmp_path, """
test:
  jmp 0x38:0
  hlt
task_b:
  str ax
  mov [RES+0], eax
  hlt
align 4
tss_b:
  dd 0, 0x9E00, 0x10, 0, 0, 0, 0, 0
  dd A(task_b), 2
  dd 0, 0, 0, 0, 0x9A00, 0, 0, 0
  dd 0x10, 0x08, 0x10, 0x10, 0x10, 0x10
  dd 0
  dw 0, 0x68
""", gdt_extra="""
  DESC A(tss_b), 0x67, 0x89, 0          ; 0x30 task B
  dw 0, 0x30
  db 0, 0x85
  dw 0                                  ; 0x38 task gate to 0x30
""")
    m.run()
    assert m.last_vector() == NO_VECTOR
    assert m.res(0) & 0xFFFF == 0x30


def test_stack_segment_not_present_is_ss_fault(tmp_path: Path) -> None:
    m = Machine(tmp_path, """
test:
  mov ax, 0x30
  mov ss, ax
  hlt
""", gdt_extra="  dq 0x00CF12000000FFFF                 ; 0x30 writable data, not present\n")
    m.run()
    assert m.last_vector() == 12 and m.get32(0x7F04) == 0x30


def test_286_call_gate_switches_stacks_with_word_frame_and_parameter(tmp_path: Path) -> None:
    # A 16-bit call gate (type 4) copies its parameters as words and pushes SS, SP, CS, IP
    # as words on the inner stack (SDM vol. 3 5.8.5). Caller and callee run in segments
    # based at 0x10000 so their offsets fit in 16 bits; RETF 2 returns to ring 3.
    m = Machine(tmp_path, """
test:
  mov ax, 0x23
  mov ds, ax
  mov es, ax
  push dword 0x23
  push dword 0x8F00
  pushfd
  push dword 0x43                       ; ring 3 code based at 0x10000
  push dword user16 - 0x10000
  iretd
user16:
  push word 0xBEEF
  call 0x33:0                           ; 286 call gate
  mov [RES+24], esp
  mov ax, cs
  mov [RES+28], eax
  int3
target16:
  mov [RES+0], esp
  movzx eax, word [esp]                 ; IP
  mov [RES+4], eax
  movzx eax, word [esp+2]               ; CS
  mov [RES+8], eax
  movzx eax, word [esp+4]               ; the parameter
  mov [RES+12], eax
  movzx eax, word [esp+6]               ; SP
  mov [RES+16], eax
  movzx eax, word [esp+8]               ; SS
  mov [RES+20], eax
  o16 retf 2
""", gdt_extra="""
  dw target16 - 0x10000, 0x38
  db 1, 0xE4
  dw 0                                  ; 0x30 286 call gate, DPL 3, 1 word parameter
  DESC 0x10000, 0xFFFF, 0x9A, 0x4       ; 0x38 ring 0 code based at 0x10000
  DESC 0x10000, 0xFFFF, 0xFA, 0x4       ; 0x40 ring 3 code based at 0x10000
""", idt={3: ("default_3", 0xEE)})
    m.run()
    assert m.res(0) == 0x9F00 - 10
    assert m.res(2) == 0x43
    assert m.res(3) == 0xBEEF
    assert m.res(4) == 0x8F00 - 2 and m.res(5) == 0x23
    assert m.res(6) == 0x8F00 and m.res(7) & 0xFFFF == 0x43
    assert m.last_vector() == 3

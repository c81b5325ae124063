"""Hardware task switches (Intel SDM vol. 3 chapter 7), run as nasm programs.

The harness (GDT/IDT/TSS prelude, mailbox at 0x7000, default handlers) is the one in
test_system_protected.py. Task A is the TSS at selector 0x28 the prelude loads with LTR;
task B is a second 32-bit TSS at selector 0x30 whose initial state starts it at ``task_b``.
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

TSS_B = """
align 4
tss_b:
  dd 0                                  ; back link
  dd 0x9E00, 0x10                       ; ESP0, SS0
  dd 0, 0, 0, 0
  dd 0                                  ; CR3
  dd A({entry})                         ; EIP
  dd 2                                  ; EFLAGS
  dd 0xB0, 0xB1, 0xB2, 0xB3             ; EAX ECX EDX EBX
  dd 0x9A00, 0, 0, 0                    ; ESP EBP ESI EDI
  dd 0x10, 0x08, 0x10, {ds}, 0x10, 0x10   ; ES CS SS DS FS GS
  dd 0                                  ; LDT
  dw 0, 0x68                            ; T, I/O map base beyond the limit
"""

GDT_B = "  DESC A(tss_b), 0x67, 0x89, 0          ; 0x30 task B TSS\n"


def tss_b(entry: str = "task_b", ds: str = "0x10") -> str:
    return TSS_B.format(entry=entry, ds=ds)


def gdt_type(m: object, sel: int) -> int:
    """Type field of GDT entry ``sel`` (the program's GDT, found through GDTR)."""
    cpu = m.cpu  # type: ignore[attr-defined]
    return m.mem.ram[cpu.gdtr_base + sel + 5] & 0x1F  # type: ignore[attr-defined,no-any-return]


def test_jmp_to_tss_switches_and_jmp_back_resumes_task_a(tmp_path: Path) -> None:
    # SDM vol. 3 7.3: JMP clears the old busy bit, sets the new one, leaves NT and the
    # back link alone, sets CR0.TS; the outgoing state is saved in the old TSS.
    m = Machine(tmp_path, """
test:
  mov eax, 0xA0
  mov esi, 0xA6
  jmp 0x30:0
back_in_a:
  mov [RES+0], eax
  mov [RES+4], esi
  str ax
  mov [RES+8], eax
  hlt
task_b:
  mov [RES+12], eax                     ; EAX from task B's TSS
  mov [RES+16], esp
  str ax
  mov [RES+20], eax
  pushfd
  pop eax
  mov [RES+24], eax
  mov eax, cr0
  mov [RES+28], eax
  mov eax, [tss_b]
  mov [RES+32], eax                     ; back link (untouched by JMP)
  clts
  jmp 0x28:0
""", gdt_extra=GDT_B, data=tss_b())
    m.run()
    assert m.last_vector() == NO_VECTOR
    assert m.res(3) == 0xB0 and m.res(4) == 0x9A00
    assert m.res(5) & 0xFFFF == 0x30
    assert not m.res(6) & 0x4000  # NT clear after JMP
    assert m.res(7) & 0x8  # CR0.TS set by the switch
    assert m.res(8) == 0
    # Back in task A: registers restored from its TSS, EIP after the JMP.
    assert m.res(0) == 0xA0 and m.res(1) == 0xA6
    assert m.res(2) & 0xFFFF == 0x28
    assert gdt_type(m, 0x28) == 0x0B and gdt_type(m, 0x30) == 0x09


def test_call_to_tss_nests_and_iret_returns(tmp_path: Path) -> None:
    # SDM vol. 3 7.4: CALL sets NT and the back link in the new TSS and keeps the old task
    # busy; IRET with NT set returns to the back link and clears the inner task's busy bit.
    m = Machine(tmp_path, """
test:
  mov ebx, 0xA3
  call 0x30:0
  mov [RES+0], ebx
  pushfd
  pop eax
  mov [RES+4], eax
  hlt
task_b:
  pushfd
  pop eax
  mov [RES+8], eax
  mov eax, [tss_b]
  mov [RES+12], eax
  mov eax, [gdt + 0x28 + 4]
  mov [RES+16], eax
  iretd
""", gdt_extra=GDT_B, data=tss_b())
    m.run()
    assert m.last_vector() == NO_VECTOR
    assert m.res(2) & 0x4000  # NT set in the called task
    assert m.res(3) == 0x28  # back link
    assert (m.res(4) >> 8) & 0x1F == 0x0B  # task A stays busy while nested
    assert m.res(0) == 0xA3
    assert not m.res(1) & 0x4000
    assert gdt_type(m, 0x30) == 0x09  # task B no longer busy after IRET


def test_jmp_to_busy_tss_is_gp(tmp_path: Path) -> None:
    m = Machine(tmp_path, """
test:
  jmp 0x28:0                            ; the current task is busy
  hlt
""")
    m.run()
    assert m.last_vector() == 13 and m.get32(0x7F04) == 0x28


def test_double_fault_through_task_gate_runs_the_handler_task(tmp_path: Path) -> None:
    # Linux handles #DF with a task gate: the fault is delivered by a task switch, the
    # error code (0) is pushed on the new task's stack and the back link names the faulting
    # task (SDM vol. 3 6.12.2, 7.4).
    m = Machine(tmp_path, """
test:
  mov ax, 0x1000
  mov ds, ax                            ; #GP(0x1000), whose gate is not present -> #DF
  hlt
df_task:
  mov eax, [esp]
  mov [RES+0], eax                      ; error code
  mov [RES+4], esp
  mov eax, [tss_b]
  mov [RES+8], eax                      ; back link
  pushfd
  pop eax
  mov [RES+12], eax
  mov eax, [tss + 0x20]                 ; task A's saved EIP: the faulting MOV
  mov [RES+16], eax
  hlt
""", gdt_extra=GDT_B, data=tss_b("df_task"),
        idt={13: ("default_13", 0x0E), 8: ("start", 0x85, 0x30)})
    m.run()
    assert m.last_vector() == NO_VECTOR
    assert m.res(0) == 0
    assert m.res(1) == 0x9A00 - 4
    assert m.res(2) == 0x28
    assert m.res(3) & 0x4000
    eip = m.res(4)
    assert m.mem.ram[eip] == 0x8E  # mov ds, ax


def test_fault_while_loading_new_task_is_delivered_in_the_new_task(tmp_path: Path) -> None:
    # SDM vol. 3 7.3 step 13 / table 7-1: a bad DS in the new TSS raises #TS(selector)
    # after the switch, so the handler sees task B's EIP and TR.
    m = Machine(tmp_path, """
test:
  jmp 0x30:0
  hlt
task_b:
  hlt
""", gdt_extra=GDT_B, data=tss_b(ds="0x1000"))
    m.run()
    assert m.last_vector() == 10
    assert m.get32(0x7F04) == 0x1000
    assert m.cpu.tr_sel == 0x30


def test_jmp_to_a_16_bit_tss_loads_word_registers(tmp_path: Path) -> None:
    # An 80286 TSS (type 1): IP at 0x0E, FLAGS 0x10, AX..DI 0x12-0x20, ES CS SS DS at
    # 0x22-0x28, LDT at 0x2A (SDM vol. 3 7.6). The code runs in a segment based at 0x10000
    # so its entry offset fits in 16 bits.
    m = Machine(tmp_path, """
test:
  mov eax, 0xAAAA0000
  jmp 0x30:0
  hlt
task16:
  mov [RES+0], eax
  mov [RES+4], esp
  str ax
  mov [RES+8], eax
  hlt
align 4
tss16:
  dw 0                                  ; back link
  dw 0x9E00, 0x10, 0, 0, 0, 0           ; SP0 SS0 SP1 SS1 SP2 SS2
  dw task16 - 0x10000                   ; IP
  dw 2                                  ; FLAGS
  dw 0x1234, 0, 0, 0, 0x9A00, 0, 0, 0   ; AX CX DX BX SP BP SI DI
  dw 0x10, 0x40, 0x10, 0x10             ; ES CS SS DS
  dw 0                                  ; LDT
""", gdt_extra="""
  DESC A(tss16), 0x2B, 0x81, 0          ; 0x30 16-bit TSS (available)
  dq 0                                  ; 0x38
  DESC 0x10000, 0xFFFF, 0x9A, 0x4       ; 0x40 32-bit code based at 0x10000
""")
    m.run()
    assert m.last_vector() == NO_VECTOR
    # The low word comes from the TSS; the upper half of EAX is left as it was.
    assert m.res(0) == 0xAAAA1234
    assert m.res(1) & 0xFFFF == 0x9A00
    assert m.res(2) & 0xFFFF == 0x30
    assert gdt_type(m, 0x30) == 0x03  # busy 16-bit TSS

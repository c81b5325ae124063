"""External interrupts, the interrupt shadow and exception frames, run as nasm programs.

The harness is the one in test_system_protected.py; ``PendingIRQ`` is a one-shot
interrupt controller (``has_interrupt``/``acknowledge`` of docs/architecture.md).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "_pyv86_system_harness", Path(__file__).with_name("test_system_protected.py"))
assert _spec is not None and _spec.loader is not None
harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(harness)
Machine = harness.Machine
PendingIRQ = harness.PendingIRQ
NO_VECTOR = harness.NO_VECTOR

IRQ_HANDLER = """
irq:
  mov [RES+0], eax                      ; what the interrupted code had done
  mov [RES+4], ebx
  mov eax, [esp]
  mov [RES+8], eax                      ; return EIP
  mov eax, [esp+8]
  mov [RES+12], eax                     ; EFLAGS (IF set)
  pushfd
  pop eax
  mov [RES+16], eax                     ; IF cleared by the interrupt gate
  mov dword [RES+20], 1
  iretd
"""


def test_sti_shadow_delays_a_pending_interrupt_by_one_instruction(tmp_path: Path) -> None:
    # SDM vol. 3 6.8.3: after STI the processor accepts interrupts only after the next
    # instruction.
    irq = PendingIRQ(0x41)
    m = Machine(tmp_path, """
test:
  xor eax, eax
  xor ebx, ebx
  mov dword [0x5000], 0
  mov byte [0x5000], 1                  ; the harness arms the IRQ from here on
  sti
  mov eax, 1
  mov ebx, 2
  cli
  hlt
""" + IRQ_HANDLER, idt={0x41: ("irq", 0x8E)}, intc=irq)
    cpu = m.cpu
    fired = False
    for _ in range(200):
        if m.mem.ram[0x5000] and not fired:
            irq.armed = fired = True
        cpu.run(1)
        if cpu.halted:
            break
    assert m.res(5) == 1
    assert (m.res(0), m.res(1)) == (1, 0)
    assert m.mem.ram[m.res(2)] == 0xBB  # returns to MOV EBX
    assert m.res(3) & 0x200 and not m.res(4) & 0x200


def test_mov_ss_shadow_delays_an_interrupt(tmp_path: Path) -> None:
    # SDM vol. 3 6.8.3: a MOV SS inhibits interrupts until after the next instruction.
    irq = PendingIRQ(0x41)
    m = Machine(tmp_path, """
test:
  xor eax, eax
  xor ebx, ebx
  sti
  nop
  mov byte [0x5000], 1
  mov cx, ss
  mov ss, cx
  mov eax, 1
  mov ebx, 2
  cli
  hlt
""" + IRQ_HANDLER, idt={0x41: ("irq", 0x8E)}, intc=irq)
    cpu = m.cpu
    fired = False
    for _ in range(200):
        ram = m.mem.ram
        if ram[0x5000] and not fired and ram[cpu.eip - 2] == 0x8E and ram[cpu.eip] == 0xB8:
            irq.armed = fired = True  # pending right after MOV SS executed
        cpu.run(1)
        if cpu.halted:
            break
    assert m.res(5) == 1
    assert (m.res(0), m.res(1)) == (1, 0)


def test_external_interrupt_wakes_hlt_and_returns_after_it(tmp_path: Path) -> None:
    irq = PendingIRQ(0x41)
    m = Machine(tmp_path, """
test:
  mov eax, 7
  mov ebx, 8
  sti
  hlt
  mov dword [RES+24], 0x600D
  cli
  hlt
""" + IRQ_HANDLER, idt={0x41: ("irq", 0x8E)}, intc=irq)
    m.cpu.run(100)
    assert m.cpu.halted and m.res(5) == 0
    irq.armed = True
    m.cpu.run(100)
    assert m.res(5) == 1 and m.res(6) == 0x600D


@pytest.mark.parametrize("code,vector,error", [
    ("  mov eax, 0\n  div eax\n", 0, None),          # #DE: no error code
    ("  ud2\n", 6, None),                              # #UD: no error code
    ("  mov ax, 0x1000\n  mov es, ax\n", 13, 0x1000),  # #GP(selector)
    ("  int 0x7F\n", 0x7F, None),                      # INT n through a DPL 0 gate at CPL 0
])
def test_exception_frames_carry_error_codes_only_for_the_right_vectors(
        tmp_path: Path, code: str, vector: int, error: object) -> None:
    # SDM vol. 3 6.13: error codes for 8, 10-14, 17 only. The handler compares ESP
    # with the value before the fault to measure the frame.
    m = Machine(tmp_path, """
test:
  mov esp, 0x9000
""" + code + """
  hlt
catch:
  mov [RES+0], esp
  mov eax, [esp]
  mov [RES+4], eax
  hlt
""", idt={vector: ("catch", 0x8E)})
    m.run()
    frame = 0x9000 - m.res(0)
    if error is None:
        assert frame == 12
    else:
        assert frame == 16 and m.res(1) == error


def test_trap_gate_keeps_if(tmp_path: Path) -> None:
    # SDM vol. 3 6.12.1.3: a trap gate does not clear IF, an interrupt gate does.
    m = Machine(tmp_path, """
test:
  sti
  int 0x60
  int 0x61
  cli
  hlt
trap:
  pushfd
  pop eax
  mov [RES+0], eax
  iretd
intr:
  pushfd
  pop eax
  mov [RES+4], eax
  iretd
""", idt={0x60: ("trap", 0x8F), 0x61: ("intr", 0x8E)})
    m.run()
    assert m.res(0) & 0x200
    assert not m.res(1) & 0x200

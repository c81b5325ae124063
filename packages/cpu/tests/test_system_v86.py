"""Virtual-8086 mode (Intel SDM vol. 3 chapter 20, without VME), run as nasm programs.

Ring 0 enters v86 mode with IRETD (VM set in the popped EFLAGS, SDM IRET
"RETURN-TO-VIRTUAL-8086-MODE"); the v86 code lives in the same image at 1000:xxxx.
The harness is the one in test_system_protected.py.
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


def to_v86(iopl: int) -> str:
    eflags = 0x20002 | (iopl << 12)
    return f"""
  push dword 0x0004                     ; GS
  push dword 0x0003                     ; FS
  push dword 0x0700                     ; DS: mailbox 0x7000 at DS:0
  push dword 0x0001                     ; ES
  push dword 0x0800                     ; SS
  push dword 0x0F00                     ; ESP -> linear 0x8F00
  push dword 0x{eflags:X}
  push dword 0x1000                     ; CS
  push dword A(v86_code) - 0x10000      ; IP
  iretd
"""


GP_RECORDER = """
gp_handler:
  mov ebx, 0
  mov bx, ds
  mov ax, 0x10
  mov ds, ax
  mov [RES+64], ebx                     ; DS inside the handler (nulled)
  mov ecx, 0
.copy:
  mov eax, [esp+ecx*4]
  mov [RES+68+ecx*4], eax
  inc ecx
  cmp ecx, 10
  jne .copy
  mov dword [0x7F00], 13
  hlt
"""


def test_iretd_enters_v86_and_sensitive_cli_is_gp_with_v86_frame(tmp_path: Path) -> None:
    # SDM vol. 3 20.2.7: CLI at IOPL < 3 in v86 mode is #GP(0); the ring 0 handler gets
    # error code, EIP, CS, EFLAGS (VM set), ESP, SS, ES, DS, FS, GS and null data segments.
    m = Machine(tmp_path, "test:\n" + to_v86(0) + """
bits 16
v86_code:
  mov word [0], 0x1234                  ; DS=0x0700: linear 0x7000
  mov ax, cs
  mov [4], ax
  cli
  hlt
bits 32
""" + GP_RECORDER, idt={13: ("gp_handler", 0x8E)})
    m.run()
    assert m.res(0) & 0xFFFF == 0x1234
    assert m.res(1) & 0xFFFF == 0x1000
    assert m.last_vector() == 13
    frame = [m.res(17 + i) for i in range(10)]
    err, eip, cs, eflags, esp, ss, es, ds, fs, gs = frame
    assert err == 0
    assert cs == 0x1000 and m.mem.ram[0x10000 + eip] == 0xFA  # the CLI
    assert eflags & 0x20000
    assert esp == 0x0F00 and ss == 0x0800
    assert (es, ds, fs, gs) == (1, 0x700, 3, 4)
    assert m.res(16) == 0  # DS was loaded with null on entry to ring 0


def test_int_n_in_v86_with_iopl0_is_gp(tmp_path: Path) -> None:
    m = Machine(tmp_path, "test:\n" + to_v86(0) + """
bits 16
v86_code:
  int 0x30
bits 32
""" + GP_RECORDER, idt={13: ("gp_handler", 0x8E), 0x30: ("default_48", 0xEE)})
    m.run()
    assert m.last_vector() == 13
    assert m.res(17) == 0
    assert m.mem.ram[0x10000 + m.res(18)] == 0xCD


def test_int_n_in_v86_with_iopl3_goes_to_ring0_and_iret_returns(tmp_path: Path) -> None:
    # SDM vol. 3 20.3.1.1 (no VME): INT n at IOPL 3 goes through the IDT to a ring 0
    # handler; IRETD with VM in the frame goes back to v86 mode.
    m = Machine(tmp_path, "test:\n" + to_v86(3) + """
bits 16
v86_code:
  mov ax, 5
  int 0x30
  mov [8], ax                           ; handler doubled AX
  pushf
  pop bx
  mov [12], bx
  mov ax, cs
  mov [16], ax
  pushf                                 ; real-mode style IRET inside v86 (IOPL 3)
  push cs
  push word after_iret - v86_code + (A(v86_code) - 0x10000)
  iret
after_iret:
  mov word [20], 0x77
  hlt                                   ; #GP: HLT is privileged
bits 32
int30:
  mov ebx, 0
  mov bx, ds
  mov ecx, 0x10
  mov ds, cx
  mov [RES+24], ebx                     ; DS nulled on entry from v86
  mov ecx, [esp+8]
  mov [RES+28], ecx                     ; EFLAGS with VM
  mov ecx, [esp+24]
  mov [RES+32], ecx                     ; pushed DS (0x700)
  add ax, ax
  iretd
""" + GP_RECORDER, idt={13: ("gp_handler", 0x8E), 0x30: ("int30", 0xEE)})
    m.run()
    assert m.res(6) == 0
    assert m.res(7) & 0x20000
    assert m.res(8) == 0x700
    assert m.res(2) & 0xFFFF == 10
    assert m.res(4) & 0xFFFF == 0x1000
    assert m.res(5) & 0xFFFF == 0x77
    assert m.last_vector() == 13
    assert m.res(17) == 0


def test_popf_in_v86_keeps_iopl(tmp_path: Path) -> None:
    # SDM vol. 2 POPF: in v86 mode at IOPL 3 the IOPL field is not changed.
    m = Machine(tmp_path, "test:\n" + to_v86(3) + """
bits 16
v86_code:
  push word 0x0200                      ; IOPL 0, IF 1
  popf
  pushf
  pop ax
  mov [0], ax
  hlt
bits 32
""" + GP_RECORDER, idt={13: ("gp_handler", 0x8E)})
    m.run()
    assert m.res(0) & 0x3200 == 0x3200


def test_external_interrupt_in_v86_mode_goes_to_ring0_with_the_v86_frame(
        tmp_path: Path) -> None:
    # SDM vol. 3 20.3.1.1: hardware interrupts in v86 mode are not IOPL-sensitive; the
    # handler runs at ring 0 with the segment registers pushed, and IRETD resumes v86 code.
    irq = harness.PendingIRQ(0x41)
    m = Machine(tmp_path, "test:\n" + to_v86(0) + """
bits 16
v86_code:
  mov word [0], 1
  mov word [0], 2
  mov word [0], 3
.spin:
  cmp word [2], 0x99
  jne .spin
  hlt                                   ; #GP ends the test
bits 32
irq41:
  mov ax, 0x10
  mov ds, ax
  mov eax, [esp+8]
  mov [RES+16], eax                     ; EFLAGS with VM
  mov eax, [esp+24]
  mov [RES+20], eax                     ; pushed DS
  mov word [RES+2], 0x99
  iretd
""" + GP_RECORDER, idt={13: ("gp_handler", 0x8E), 0x41: ("irq41", 0x8E)}, intc=irq)
    cpu = m.cpu
    fired = False
    for _ in range(400):
        if m.mem.ram[0x7000] == 2 and not fired:
            irq.armed = fired = True
            cpu.set_eflags(cpu.get_eflags() | 0x200)  # IF on (v86 code cannot STI at IOPL 0)
        cpu.run(1)
        if cpu.halted:
            break
    assert m.res(4) & 0x20000
    assert m.res(5) == 0x700
    assert m.mem.ram[0x7000] == 3  # v86 code resumed after the interrupt
    assert m.last_vector() == 13

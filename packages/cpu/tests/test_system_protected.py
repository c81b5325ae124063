"""Protected-mode system behaviour, checked by running small programs through the CPU.

Each program is assembled with nasm at test time (Debian package ``nasm``) from the source in
this file: a flat 32-bit image at 0x10000 carrying its own GDT, IDT and TSS, which it loads
with LGDT/LIDT/LTR. Results are written to a mailbox in RAM at 0x7000 (user-writable, so ring 3
code can report too) and checked against the Intel SDM vol. 3 rules each test names.
Exceptions that a test does not expect land in a default handler that records the vector
(0x7F00), the first two stack dwords (0x7F04, 0x7F08) and halts.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

from pyv86.cpu.cpu import CPU
from pyv86.cpu.testing import SimpleMemory

BASE = 0x10000
RES = 0x7000
LASTVEC = 0x7F00
NO_VECTOR = 0xFFFFFFFF


class PortLog:
    def __init__(self) -> None:
        self.writes: List[Tuple[int, int, int]] = []

    def read(self, port: int, size: int) -> int:
        return (1 << (8 * size)) - 1

    def write(self, port: int, value: int, size: int) -> None:
        self.writes.append((port, value, size))


class PendingIRQ:
    """A one-shot interrupt controller: raises ``vector`` once when armed."""

    def __init__(self, vector: int) -> None:
        self.vector = vector
        self.armed = False

    def has_interrupt(self) -> bool:
        return self.armed

    def acknowledge(self) -> int:
        self.armed = False
        return self.vector


PRELUDE = """
bits 32
org 0x10000
%define BASE 0x10000
%define A(x) ((x) - $$ + BASE)
%macro DESC 4
  dw (%2) & 0xFFFF
  dw (%1) & 0xFFFF
  db ((%1) >> 16) & 0xFF
  db %3
  db (((%2) >> 16) & 0x0F) | ((%4) << 4)
  db ((%1) >> 24) & 0xFF
%endmacro
%macro GATE 3
  dw A(%1) & 0xFFFF
  dw %2
  db 0, %3
  dw A(%1) >> 16
%endmacro
%define RES 0x7000

start:
  lgdt [gdtr]
  lidt [idtr]
  jmp 0x08:.cs_loaded
.cs_loaded:
  mov ax, 0x10
  mov ds, ax
  mov es, ax
  mov fs, ax
  mov gs, ax
  mov ss, ax
  mov esp, 0x9800
  mov ax, 0x28
  ltr ax
  jmp test

gdtr: dw gdt_end - gdt - 1
      dd A(gdt)
idtr: dw idt_end - idt - 1
      dd A(idt)

align 8
gdt:
  dq 0
  dq 0x00CF9A000000FFFF        ; 0x08 ring 0 code, flat 32-bit
  dq 0x00CF92000000FFFF        ; 0x10 ring 0 data
  dq 0x00CFFA000000FFFF        ; 0x18 ring 3 code
  dq 0x00CFF2000000FFFF        ; 0x20 ring 3 data
  DESC A(tss), tss_end - tss - 1, 0x89, 0   ; 0x28 32-bit TSS (available)
{gdt_extra}
gdt_end:

align 4
tss:
  dd 0                         ; back link
  dd 0x9F00                    ; ESP0
  dd 0x10                      ; SS0
  times 0x64 - 12 db 0
  dw 0                         ; T
  dw iomap - tss               ; I/O map base
iomap:
{iomap}
  db 0xFF
tss_end:
{data}
"""


def _idt(overrides: Dict[int, Tuple[Any, ...]]) -> str:
    """IDT source: (handler, attr[, selector]) per vector; default ring 0 interrupt gates."""
    lines = ["align 8", "idt:"]
    for v in range(0x82):
        entry = overrides.get(v, (f"default_{v}", 0x8E))
        selector = entry[2] if len(entry) > 2 else 0x08
        lines.append(f"  GATE {entry[0]}, 0x{selector:02X}, 0x{entry[1]:02X}")
    lines.append("idt_end:")
    for v in range(0x82):
        lines += [
            f"default_{v}:",
            "  mov ax, 0x10",
            "  mov ds, ax",
            f"  mov dword [0x7F00], {v}",
            "  mov eax, [esp]",
            "  mov [0x7F04], eax",
            "  mov eax, [esp+4]",
            "  mov [0x7F08], eax",
            "  hlt",
        ]
    return "\n".join(lines)


class Machine:
    def __init__(self, tmp_path: Path, code: str, *, gdt_extra: str = "", data: str = "",
                 iomap: str = "  times 32 db 0xFF",
                 idt: Optional[Dict[int, Tuple[Any, ...]]] = None,
                 intc: object = None) -> None:
        nasm = shutil.which("nasm")
        if nasm is None:
            pytest.skip("nasm is not installed")
        src = PRELUDE.format(gdt_extra=gdt_extra, iomap=iomap, data=data)
        src += "\n" + _idt(idt or {}) + "\n" + code + "\n"
        asm = tmp_path / "t.asm"
        out = tmp_path / "t.bin"
        asm.write_text(src)
        proc = subprocess.run([nasm, "-f", "bin", "-o", str(out), str(asm)],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        self.mem = SimpleMemory(0x400000)
        self.io = PortLog()
        self.resets: List[str] = []
        self.cpu = CPU(self.mem, self.io, intc=intc, on_reset=self.resets.append)
        image = out.read_bytes()
        self.mem.ram[BASE:BASE + len(image)] = image
        self.put32(LASTVEC, NO_VECTOR)
        c = self.cpu
        # Enter flat 32-bit protected mode directly; the program reloads everything.
        c.cr0 = 0x11
        c.set_segment("cs", 0x08, 0, 0xFFFFFFFF, 0xC09B)
        for s in ("ds", "es", "ss", "fs", "gs"):
            c.set_segment(s, 0x10, 0, 0xFFFFFFFF, 0xC093)
        c.update_mode()
        c.eip = BASE
        c.reg[4] = 0x9800

    def put32(self, addr: int, value: int) -> None:
        self.mem.ram[addr:addr + 4] = value.to_bytes(4, "little")

    def get32(self, addr: int) -> int:
        return int.from_bytes(self.mem.ram[addr:addr + 4], "little")

    def res(self, n: int) -> int:
        return self.get32(RES + 4 * n)

    def run(self, budget: int = 20000) -> None:
        total = 0
        while total < budget and not self.cpu.halted and not self.resets:
            n = self.cpu.run(budget - total)
            total += n
            if n == 0:
                break
        assert self.cpu.halted or self.resets, "program did not finish"

    def last_vector(self) -> int:
        return self.get32(LASTVEC)


TO_RING3 = """
  mov ax, 0x23
  mov ds, ax
  mov es, ax
  push dword 0x23
  push dword 0x8F00
  pushfd
  push dword 0x1B
  push dword A(user)
  iretd
"""


def test_program_loads_gdt_idt_tr_and_halts_at_ring0(tmp_path: Path) -> None:
    m = Machine(tmp_path, """
test:
  mov dword [RES], 0x600D
  str ax
  mov [RES+4], eax
  sldt ax
  mov [RES+8], eax
  hlt
""")
    m.run()
    assert m.last_vector() == NO_VECTOR
    assert m.res(0) == 0x600D
    assert m.res(1) & 0xFFFF == 0x28
    # LTR marks the TSS descriptor busy (type 9 -> 11) (SDM vol. 2 LTR).
    assert m.cpu.tr_attr & 0x0F == 0x0B
    assert m.cpu.sreg[1] == 0x08 and m.cpu.cpl == 0


def test_real_mode_to_protected_to_paging(tmp_path: Path) -> None:
    # The classic switch (SDM vol. 3 9.9.1): LGDT, set CR0.PE, far jump, reload data
    # segments, build an identity map plus one alias page, set CR3 and CR0.PG.
    nasm = shutil.which("nasm")
    if nasm is None:
        pytest.skip("nasm is not installed")
    src = """
bits 16
org 0x7C00
  cli
  xor ax, ax
  mov ds, ax
  lgdt [gdtr]
  mov eax, cr0
  or al, 1
  mov cr0, eax
  jmp 0x08:pm
bits 32
pm:
  mov ax, 0x10
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov esp, 0x9000
  ; page directory at 0x20000, one page table at 0x21000 mapping 0-4 MiB identically
  mov edi, 0x21000
  mov eax, 0x3
  mov ecx, 1024
.fill:
  mov [edi], eax
  add eax, 0x1000
  add edi, 4
  loop .fill
  mov dword [0x20000], 0x21003
  ; alias: linear 0x00400000 -> physical 0x00005000 via a second table at 0x22000
  mov dword [0x22000], 0x5003
  mov dword [0x20004], 0x22003
  mov eax, 0x20000
  mov cr3, eax
  mov eax, cr0
  or eax, 0x80000000
  mov cr0, eax
  jmp .paged
.paged:
  mov dword [0x00400010], 0x12345678
  mov eax, [0x5010]
  mov [0x6000], eax
  mov eax, cr0
  mov [0x6004], eax
  hlt
align 8
gdt: dq 0, 0x00CF9A000000FFFF, 0x00CF92000000FFFF
gdtr: dw 23
      dd gdt
"""
    (tmp_path / "m.asm").write_text(src)
    subprocess.run([nasm, "-f", "bin", "-o", str(tmp_path / "m.bin"), str(tmp_path / "m.asm")],
                   check=True)
    mem = SimpleMemory(0x400000)
    cpu = CPU(mem, PortLog())
    image = (tmp_path / "m.bin").read_bytes()
    mem.ram[0x7C00:0x7C00 + len(image)] = image
    cpu.set_segment("cs", 0, 0, 0xFFFF, 0x9B)
    cpu.eip = 0x7C00
    cpu.update_mode()
    cpu.run(20000)
    assert cpu.halted
    assert int.from_bytes(mem.ram[0x6000:0x6004], "little") == 0x12345678
    # PG, PE and ET set; CD and NW keep their reset value (SDM vol. 3 table 9-1).
    assert int.from_bytes(mem.ram[0x6004:0x6008], "little") == 0xE0000011
    assert cpu.protected and cpu.paging and cpu.code32
    # The alias PTE got its accessed and dirty bits (SDM vol. 3 4.8).
    assert int.from_bytes(mem.ram[0x22000:0x22004], "little") & 0x60 == 0x60


def test_page_fault_pushes_error_code_and_faulting_eip_and_sets_cr2(tmp_path: Path) -> None:
    m = Machine(tmp_path, """
test:
  mov edi, 0x20000
  mov eax, 0x3
  mov ecx, 1024
.fill:
  mov [edi], eax
  add eax, 0x1000
  add edi, 4
  loop .fill
  mov dword [0x20000 + 0x50*4], 0       ; page 0x50000 not present
  mov dword [0x20000 + 0x51*4], 0x51001 ; page 0x51000 read-only, supervisor
  mov dword [0x21000], 0x20003
  mov eax, 0x21000
  mov cr3, eax
  mov eax, cr0
  or eax, 0x80010000                    ; PG and WP
  mov cr0, eax
  mov dword [RES+12], 0
fault1:
  mov eax, [0x50123]
  mov dword [RES+12], 1
fault2:
  mov dword [0x51008], 7
  mov dword [RES+16], 2
  hlt
pf_handler:
  mov eax, [esp]                        ; error code
  mov ebx, cr2
  mov ecx, [esp+4]                      ; saved EIP
  mov edx, [RES+20]
  mov [RES+24+edx*4], eax
  mov [RES+40+edx*4], ebx
  mov [RES+56+edx*4], ecx
  inc dword [RES+20]
  ; map the page and retry the instruction
  mov esi, ebx
  shr esi, 12
  mov dword [0x20000+esi*4], 0
  shl esi, 12
  or esi, 3
  shr ebx, 12
  mov [0x20000+ebx*4], esi
  shl ebx, 12
  invlpg [ebx]
  add esp, 4
  iretd
""", idt={14: ("pf_handler", 0x8E)})
    m.run()
    assert m.last_vector() == NO_VECTOR
    assert m.res(5) == 2  # two page faults
    # Not-present read at CPL 0: error code 0; write to read-only page with WP: 3.
    assert (m.res(6), m.res(7)) == (0, 3)
    assert (m.res(10), m.res(11)) == (0x50123, 0x51008)
    # The saved EIP is the faulting instruction (fault, restartable).
    fault1 = m.res(14)
    fault2 = m.res(15)
    assert m.mem.ram[fault1] == 0xA1  # mov eax, [moffs32]
    assert m.mem.ram[fault2] == 0xC7
    assert m.res(3) == 1 and m.res(4) == 2


def test_interrupt_gate_from_ring3_switches_to_tss_stack_and_iret_returns(
        tmp_path: Path) -> None:
    # SDM vol. 3 6.12.1: a more privileged handler gets SS:ESP from the TSS and the frame
    # SS, ESP, EFLAGS, CS, EIP; IRET to ring 3 reloads SS:ESP.
    m = Machine(tmp_path, """
test:
""" + TO_RING3 + """
user:
  mov eax, 0x1234
  int 0x80
after_int:
  mov [RES+40], eax
  mov ax, ss
  mov [RES+44], eax
  mov [RES+48], esp
  mov ax, cs
  mov [RES+52], eax
  hlt                                   ; #GP(0) at CPL 3
syscall:
  mov [RES+0], esp
  mov ebx, [esp]
  mov [RES+4], ebx                      ; EIP
  mov ebx, [esp+4]
  mov [RES+8], ebx                      ; CS
  mov ebx, [esp+8]
  mov [RES+12], ebx                     ; EFLAGS
  mov ebx, [esp+12]
  mov [RES+16], ebx                     ; ESP
  mov ebx, [esp+16]
  mov [RES+20], ebx                     ; SS
  mov bx, ss
  mov [RES+24], ebx
  mov bx, cs
  mov [RES+28], ebx
  pushfd
  pop ebx
  mov [RES+32], ebx
  add eax, 1
  iretd
""", idt={0x80: ("syscall", 0xEE)})
    m.run()
    assert m.res(0) == 0x9F00 - 20
    assert m.res(2) == 0x1B and m.res(4) == 0x8F00 and m.res(5) == 0x23
    assert m.res(6) & 0xFFFF == 0x10 and m.res(7) & 0xFFFF == 0x08
    assert m.res(8) & 0x200 == 0  # interrupt gate cleared IF
    assert m.res(10) == 0x1235
    assert m.res(11) & 0xFFFF == 0x23 and m.res(12) == 0x8F00 and m.res(13) & 0xFFFF == 0x1B
    # HLT at CPL 3 is #GP(0), taken on the ring 0 stack.
    assert m.last_vector() == 13
    assert m.get32(0x7F04) == 0


def test_int_n_through_dpl0_gate_from_ring3_is_gp_with_idt_error_code(
        tmp_path: Path) -> None:
    # SDM vol. 3 6.12.1.1: INT n with gate DPL < CPL -> #GP(vector*8 + 2).
    m = Machine(tmp_path, "test:\n" + TO_RING3 + "user:\n  int 0x40\n  hlt\n")
    m.run()
    assert m.last_vector() == 13
    assert m.get32(0x7F04) == 0x40 * 8 + 2


def test_call_gate_to_ring0_copies_parameters_and_retf_returns_to_ring3(
        tmp_path: Path) -> None:
    # SDM vol. 3 5.8.5: CALL through a 386 call gate with 2 parameters; RETF 8 to ring 3.
    m = Machine(tmp_path, """
test:
""" + TO_RING3 + """
user:
  push dword 0x1111
  push dword 0x2222
  call 0x33:0                           ; call gate selector 0x30, RPL 3
  mov [RES+32], esp
  mov ax, cs
  mov [RES+36], eax
  mov dword [RES+40], 0x600D
  mov eax, 0
  mov ds, ax                            ; a null selector is fine in DS
  int3
gate_target:
  mov [RES+0], esp
  mov eax, [esp]                        ; EIP
  mov [RES+4], eax
  mov eax, [esp+4]                      ; CS
  mov [RES+8], eax
  mov eax, [esp+8]                      ; parameter copied first (0x2222)
  mov [RES+12], eax
  mov eax, [esp+12]
  mov [RES+16], eax
  mov eax, [esp+16]                     ; caller ESP
  mov [RES+20], eax
  mov eax, [esp+20]                     ; caller SS
  mov [RES+24], eax
  retf 8
""", gdt_extra="""
  dw A(gate_target) & 0xFFFF, 0x08
  db 2, 0xEC
  dw A(gate_target) >> 16              ; 0x30 386 call gate, DPL 3, 2 parameters
""", idt={3: ("default_3", 0xEE)})
    m.run()
    assert m.res(0) == 0x9F00 - 24
    assert m.res(2) & 0xFFFF == 0x1B
    assert (m.res(3), m.res(4)) == (0x2222, 0x1111)
    assert m.res(5) == 0x8F00 - 8 and m.res(6) & 0xFFFF == 0x23
    # RETF 8 releases the parameters on both stacks.
    assert m.res(8) == 0x8F00 and m.res(9) & 0xFFFF == 0x1B
    assert m.res(10) == 0x600D
    assert m.last_vector() == 3


def test_return_to_ring3_nulls_data_segments_with_dpl0(tmp_path: Path) -> None:
    # SDM IRET/RET pseudocode: ES, DS, FS, GS with DPL < new CPL are loaded with null.
    m = Machine(tmp_path, """
test:
  mov ax, 0x23
  mov fs, ax                            ; ring 3 data stays
  mov ax, 0x10
  mov gs, ax                            ; ring 0 data is nulled
""" + TO_RING3 + """
user:
  mov ax, fs
  mov ebx, 0
  mov bx, gs
  mov ecx, 0x23
  mov ds, cx
  mov [RES+0], eax
  mov [RES+4], ebx
  mov eax, [gs:0]                       ; #GP(0) through the null segment
  hlt
""")
    m.run()
    assert m.res(0) & 0xFFFF == 0x23
    assert m.res(1) == 0
    assert m.last_vector() == 13 and m.get32(0x7F04) == 0


@pytest.mark.parametrize("selector,vector,error", [
    (0x1000, 13, 0x1000),  # beyond the GDT limit: #GP(selector)
    (0x38, 11, 0x38),      # not present: #NP(selector)
    (0x08 | 3, 13, 0x08),  # execute-only code segment in DS: #GP(selector)
    (0x44, 13, 0x44),      # TI=1 with a null LDT: #GP(selector)
])
def test_data_segment_load_faults(tmp_path: Path, selector: int, vector: int,
                                  error: int) -> None:
    m = Machine(tmp_path, f"""
test:
  mov ax, {selector}
  mov ds, ax
  mov dword [RES], 1
  hlt
""", gdt_extra="""
  dq 0                                  ; 0x30
  dq 0x00CF12000000FFFF                 ; 0x38 data, not present
""")
    m.run()
    assert m.last_vector() == vector
    assert m.get32(0x7F04) == error


def test_stack_segment_load_checks(tmp_path: Path) -> None:
    # MOV SS: null -> #GP(0); DPL != CPL -> #GP(selector) (SDM vol. 2 MOV).
    m = Machine(tmp_path, """
test:
  xor eax, eax
  mov ss, ax
  hlt
""")
    m.run()
    assert m.last_vector() == 13 and m.get32(0x7F04) == 0
    m = Machine(tmp_path, """
test:
  mov ax, 0x20
  mov ss, ax
  hlt
""")
    m.run()
    assert m.last_vector() == 13 and m.get32(0x7F04) == 0x20


def test_segment_load_sets_accessed_bit(tmp_path: Path) -> None:
    m = Machine(tmp_path, """
test:
  mov ax, 0x30
  mov es, ax
  mov eax, [gdt_entry_30 + 4]
  mov [RES], eax
  hlt
""", gdt_extra="""
gdt_entry_30:
  dq 0x00CF92000000FFFF & ~0x0000010000000000  ; 0x30 data, accessed clear
""")
    m.run()
    assert m.last_vector() == NO_VECTOR
    assert m.res(0) & 0x100


def test_io_permission_bitmap_at_ring3(tmp_path: Path) -> None:
    # SDM vol. 1 18.5.2: with CPL > IOPL, a port is allowed when its bitmap bit is 0.
    m = Machine(tmp_path, "test:\n" + TO_RING3 + """
user:
  mov al, 1
  out 0x80, al                          ; allowed
  out 0x81, al                          ; denied: #GP(0)
  hlt
""", iomap="  times 16 db 0xFF\n  db 0xFE\n  times 15 db 0xFF")
    m.run()
    assert (0x80, 1, 1) in m.io.writes
    assert all(p != 0x81 for p, _v, _s in m.io.writes)
    assert m.last_vector() == 13 and m.get32(0x7F04) == 0


def test_word_access_straddling_allowed_and_denied_ports_faults(tmp_path: Path) -> None:
    m = Machine(tmp_path, "test:\n" + TO_RING3 + """
user:
  mov dx, 0x87
  out dx, ax                            ; port 0x87 allowed, 0x88 denied
  hlt
""", iomap="  times 16 db 0xFF\n  db 0x7F\n  times 15 db 0xFF")
    m.run()
    assert m.io.writes == []
    assert m.last_vector() == 13


def test_cli_at_ring3_with_iopl0_is_gp(tmp_path: Path) -> None:
    m = Machine(tmp_path, "test:\n" + TO_RING3 + "user:\n  cli\n  hlt\n")
    m.run()
    assert m.last_vector() == 13 and m.get32(0x7F04) == 0


def test_popf_at_ring3_keeps_iopl_and_if(tmp_path: Path) -> None:
    # SDM vol. 2 POPF: at CPL > IOPL, IF and IOPL are left unchanged, no fault.
    m = Machine(tmp_path, "test:\n" + TO_RING3 + """
user:
  pushfd
  pop eax
  mov [RES+0], eax
  push dword 0x3000 | 0x200 | 0x1       ; try IOPL=3, IF=1, CF=1
  popfd
  pushfd
  pop eax
  mov [RES+4], eax
  int3
""", idt={3: ("default_3", 0xEE)})
    m.run()
    before, after = m.res(0), m.res(1)
    assert after & 0x3200 == before & 0x3200
    assert after & 1 == 1


def test_triple_fault_calls_on_reset(tmp_path: Path) -> None:
    # An IDT too small for #GP, #DF or #UD: #UD -> #GP (IDT limit) -> #DF -> shutdown.
    m = Machine(tmp_path, """
test:
  lidt [tiny_idtr]
  ud2
  hlt
tiny_idtr: dw 0
  dd 0
""")
    m.run()
    assert m.resets == ["triple-fault"]


def test_double_fault_when_gp_handler_not_present(tmp_path: Path) -> None:
    # SDM vol. 3 table 6-5: #NP while delivering #GP (both contributory) -> #DF(0).
    m = Machine(tmp_path, """
test:
  mov ax, 0x1000
  mov ds, ax
  hlt
""", idt={13: ("default_13", 0x0E)})  # present bit clear
    m.run()
    assert m.last_vector() == 8
    assert m.get32(0x7F04) == 0


def test_pop_ss_steps_esp_with_the_old_stack_size(tmp_path: Path) -> None:
    # SDM vol. 2 POP: the pop (and the ESP/SP increment) uses the stack-address size of the
    # SS in force before the load. A 16-bit SS at SP=FFFC popping a 32-bit-B selector
    # leaves ESP = (ESP & FFFF0000) | 0000, not ESP + 4.
    m = Machine(tmp_path, """
test:
  mov ax, 0x30
  mov ss, ax                            ; 16-bit stack segment
  mov esp, 0x2FFFC
  mov dword [0xFFFC], 0x10              ; 32-bit flat data selector to pop
  o32 pop ss
  mov [RES+0], esp
  hlt
""", gdt_extra="  dq 0x000F92000000FFFF                 ; 0x30 16-bit data, limit 0xFFFFF\n")
    m.run()
    assert m.last_vector() == NO_VECTOR
    assert m.res(0) == 0x20000

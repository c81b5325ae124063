"""The CPU's contract with the machine: interrupts, HLT, rollback on faults, memory kinds,
A20, state save/restore (docs/architecture.md, the cpu package README)."""

import pytest

from pyv86.cpu import CPU, NullIO, SimpleMemory
from pyv86.cpu.testing import flat32_cpu, real_mode_cpu, run_until_hlt

HLT = b"\xf4"
IF = 0x200


class FakePIC:
    def __init__(self):
        self.pending = []
        self.acked = []

    def has_interrupt(self):
        return bool(self.pending)

    def acknowledge(self):
        v = self.pending.pop(0)
        self.acked.append(v)
        return v


def _ivt(cpu, vector, offset):
    cpu.memory.ram[vector * 4:vector * 4 + 4] = offset.to_bytes(2, "little") + b"\x00\x00"


def test_reset_state_is_real_mode_at_f000_fff0():
    cpu = CPU(SimpleMemory(1 << 20), NullIO())
    assert cpu.eip == 0xFFF0 and cpu.sreg[1] == 0xF000 and cpu.sbase[1] == 0xFFFF0000
    assert not cpu.protected and cpu.get_eflags() == 2 and cpu.cr0 == 0x60000010


def test_hlt_returns_control_and_an_interrupt_wakes_the_cpu():
    pic = FakePIC()
    # sti ; hlt ; inc bx ; hlt     handler for vector 0x20: inc ax ; iret
    cpu = real_mode_cpu(b"\xfb" + HLT + b"\x43" + HLT, intc=pic)
    _ivt(cpu, 0x20, 0x3000)
    cpu.memory.ram[0x3000:0x3002] = b"\x40\xcf"
    assert cpu.run(100) == 2 and cpu.halted
    assert cpu.run(100) == 0  # still halted, nothing pending
    pic.pending.append(0x20)
    cpu.run(100)
    assert cpu.halted and cpu.eip == 0x1004
    assert cpu.reg[0] & 0xFFFF == 1 and cpu.reg[3] & 0xFFFF == 1 and pic.acked == [0x20]


def test_no_interrupt_while_if_is_clear():
    pic = FakePIC()
    pic.pending.append(0x20)
    cpu = real_mode_cpu(b"\x90\x90" + HLT, intc=pic)
    run_until_hlt(cpu)
    assert pic.acked == []


def test_sti_shadow_delays_the_interrupt_by_one_instruction():
    pic = FakePIC()
    # sti ; inc bx ; inc bx ; hlt      handler copies bx to cx: mov cx, bx ; iret
    cpu = real_mode_cpu(b"\xfb\x43\x43" + HLT, intc=pic)
    _ivt(cpu, 0x20, 0x3000)
    cpu.memory.ram[0x3000:0x3003] = b"\x89\xd9\xcf"
    pic.pending.append(0x20)
    run_until_hlt(cpu)
    assert cpu.reg[1] & 0xFFFF == 1  # the instruction after STI ran before the interrupt


def test_mov_ss_shadow_delays_the_interrupt_by_one_instruction():
    pic = FakePIC()
    # mov ss, ax ; inc bx ; inc bx ; hlt     (IF already set)
    cpu = real_mode_cpu(b"\x8e\xd0\x43\x43" + HLT, intc=pic)
    cpu.set_eflags(0x202)
    _ivt(cpu, 0x20, 0x3000)
    cpu.memory.ram[0x3000:0x3003] = b"\x89\xd9\xcf"

    def raise_irq_during_mov_ss(c):
        if c.eip == 0x1000:
            pic.pending.append(0x20)

    cpu.trace = raise_irq_during_mov_ss
    run_until_hlt(cpu)
    assert pic.acked == [0x20]
    assert cpu.reg[1] & 0xFFFF == 1


def test_run_respects_the_budget_and_request_stop():
    cpu = flat32_cpu(b"\xeb\xfe")  # jmp $
    assert cpu.run(500) == 500
    assert cpu.instruction_count == 500

    class Stopper:
        def __init__(self, cpu):
            self.cpu = cpu
            self.n = 0

        def __call__(self, c):
            self.n += 1
            if self.n == 10:
                c.request_stop()

    cpu.trace = Stopper(cpu)
    assert cpu.run(1000) == 10


def _paged_cpu_with_hole(code):
    """Flat paging with the page at 0x40000 not present; #PF handler at IDT vector 14."""
    cpu = flat32_cpu(code, paging=True)
    pt = 0x101000
    cpu.memory.ram[pt + 4 * 0x40:pt + 4 * 0x40 + 4] = b"\x00\x00\x00\x00"
    cpu.tlb_flush()
    return cpu


def test_page_fault_in_rep_movs_leaves_registers_at_the_faulting_element():
    # rep movsd from 0x3FFF0 into 0x50000: the source hits the missing page after 4 dwords
    cpu = _paged_cpu_with_hole(b"\xf3\xa5" + HLT)
    cpu.reg[6], cpu.reg[7], cpu.reg[1] = 0x3FFF0, 0x50000, 8
    faults = []
    from pyv86.cpu import _exec
    orig = _exec.deliver

    def record(c, vector, kind, error_code=None):
        faults.append((vector, error_code, c.eip, c.cr2))
        c.halted = True

    _exec.deliver = record
    try:
        cpu.run(10)
    finally:
        _exec.deliver = orig
    assert faults == [(14, 0, 0x1000, 0x40000)]
    assert cpu.reg[1] == 4 and cpu.reg[6] == 0x40000 and cpu.reg[7] == 0x50010


def test_page_fault_on_push_leaves_esp_unchanged():
    # push eax with ESP just above the missing page
    cpu = _paged_cpu_with_hole(b"\x50" + HLT)
    cpu.reg[4] = 0x41000
    from pyv86.cpu import _exec
    seen = []
    orig = _exec.deliver

    def record(c, vector, kind, error_code=None):
        seen.append((vector, error_code & 2, c.reg[4], c.eip))
        c.halted = True

    _exec.deliver = record
    try:
        cpu.run(5)
    finally:
        _exec.deliver = orig
    assert seen == [(14, 2, 0x41000, 0x1000)]


def test_self_modifying_code_is_seen_by_the_next_execution():
    # mov byte [0x1010], 0x40 (inc eax) ; jmp to 0x1010, which held a hlt before
    code = b"\xc6\x05\x10\x10\x00\x00\x40" + b"\xeb\x07" + b"\x90" * 7 + HLT + HLT
    cpu = flat32_cpu(code)
    run_until_hlt(cpu)
    assert cpu.reg[0] == 1


def test_mmio_pages_go_through_memory_read_and_write():
    class MMIOMemory(SimpleMemory):
        def __init__(self):
            super().__init__(1 << 20)
            self.page_kind[0xA0] = 2  # 0xA0000 is MMIO
            self.log = []

        def read(self, addr, size):
            self.log.append(("r", addr, size))
            return 0x12345678 & ((1 << (8 * size)) - 1)

        def write(self, addr, value, size):
            self.log.append(("w", addr, value, size))

    mem = MMIOMemory()
    cpu = CPU(mem, NullIO())
    cpu.write16(0xA0010, 0xBEEF)
    assert cpu.read32(0xA0000) == 0x12345678
    assert mem.log == [("w", 0xA0010, 0xBEEF, 2), ("r", 0xA0000, 4)]


def test_read_only_pages_drop_writes():
    mem = SimpleMemory(1 << 20)
    mem.page_kind[0xF0] = 1
    mem.ram[0xF0000] = 0x55
    cpu = CPU(mem, NullIO())
    cpu.write8(0xF0000, 0xAA)
    assert cpu.read8(0xF0000) == 0x55


def test_a20_line_masks_bit_20():
    mem = SimpleMemory(2 << 20)
    cpu = CPU(mem, NullIO())
    cpu.write8(0x100000, 0x11)
    cpu.set_a20(False)
    assert cpu.read8(0x100000) == mem.ram[0]
    cpu.set_a20(True)
    assert cpu.read8(0x100000) == 0x11


def test_io_instructions_reach_the_io_bus():
    io = NullIO()
    # mov dx, 0x3f8 ; mov al, 0x41 ; out dx, al ; in al, 0x60
    cpu = real_mode_cpu(b"\xba\xf8\x03\xb0\x41\xee\xe4\x60" + HLT, io=io)
    run_until_hlt(cpu)
    assert io.writes == {(0x3F8, 1): 0x41}
    assert cpu.reg[0] & 0xFF == 0xFF  # nothing decodes port 0x60 here: all ones


def test_state_round_trip_restores_every_register_and_pending_state():
    cpu = flat32_cpu(b"\x40" * 10 + HLT)
    cpu.run(3)
    cpu.reg[5] = 0xDEADBEEF
    cpu.msr[0x1A0] = 7
    cpu.shadow = True
    state = cpu.save_state()
    other = flat32_cpu(b"\x40" * 10 + HLT)
    other.restore_state(state)
    assert other.save_state() == state
    assert other.reg == cpu.reg and other.eip == cpu.eip and other.shadow
    assert other.sattr == cpu.sattr and other.code32
    run_until_hlt(other)
    assert other.reg[0] == 10


@pytest.mark.parametrize("mutate,word", [
    (lambda s: s.update(version=99), "version"),
    (lambda s: s.update(reg=[0] * 7), "reg"),
    (lambda s: s.update(eip="x"), "eip"),
    (lambda s: s.update(cpl=5), "cpl"),
    (lambda s: s.update(msr={"a": 1}), "MSR"),
    (lambda s: s.pop("halted"), "halted"),
])
def test_restore_state_rejects_bad_input_with_value_error(mutate, word):
    cpu = flat32_cpu(b"")
    state = cpu.save_state()
    mutate(state)
    with pytest.raises(ValueError, match=word):
        cpu.restore_state(state)


def test_restore_state_rejects_non_dict():
    with pytest.raises(ValueError):
        flat32_cpu(b"").restore_state([1, 2])


def test_register_access_by_name_and_errors():
    cpu = flat32_cpu(b"")
    cpu.set_register("eax", 0x11223344)
    cpu.set_register("ah", 0xFF)
    assert cpu.get_register("ax") == 0xFF44 and cpu.get_register("al") == 0x44
    with pytest.raises(ValueError):
        cpu.get_register("rax")
    with pytest.raises(ValueError):
        cpu.set_register("eax", "1")
    with pytest.raises(ValueError):
        cpu.set_segment(9, 0, 0, 0, 0)


def test_fault_during_real_mode_delivery_reports_shutdown():
    reasons = []
    mem = SimpleMemory(1 << 20)
    cpu = CPU(mem, NullIO(), on_reset=reasons.append)
    for s in range(6):
        cpu.set_segment(s, 0, 0, 0xFFFF, 0x93 if s != 1 else 0x9B)
    cpu.eip = 0x1000
    mem.ram[0x1000:0x1002] = b"\xcd\x21"
    cpu.idtr_limit = 0  # an IVT limit of 0 makes any interrupt a shutdown (reboot trick)
    cpu.run(5)
    assert reasons == ["triple-fault"] and cpu.halted

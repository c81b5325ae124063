"""Compiled blocks must behave exactly like the interpreter (which the conformance vectors
and the Unicorn comparison check): random straight-line sequences ending in a branch are
run both ways and every register, flag and byte of memory is compared."""

import random
import sys

import pytest

from pyv86.cpu import _blocks
from pyv86.cpu.testing import flat32_cpu, real_mode_cpu, run_until_hlt

DATA = 0x20000
REGS_RANDOM = (0, 1, 2, 5, 6, 7)  # ebx is the data pointer, esp the stack


def _modrm(r, mem_ok=True):
    if mem_ok and r.random() < 0.4:
        return bytes([0x43 | (r.randrange(8) << 3), r.randrange(0, 0x40)])  # [ebx+disp8]
    return bytes([0xC0 | r.randrange(64)])


def _insn(r, code32=True):
    p = b"\x66" if r.random() < 0.25 else b""
    k = r.randrange(16)
    if k < 4:
        op = r.choice([0, 1, 2, 3, 8, 9, 0x10, 0x11, 0x18, 0x19, 0x20, 0x21, 0x23, 0x28, 0x29,
                       0x2B, 0x30, 0x31, 0x33, 0x38, 0x39, 0x3A, 0x3B])
        return p + bytes([op]) + _modrm(r)
    if k == 4:
        op = r.choice([0x80, 0x81, 0x83])
        n = 1 if op != 0x81 else (2 if p else 4)
        return p + bytes([op]) + _modrm(r) + bytes(r.randrange(256) for _ in range(n))
    if k == 5:
        return p + bytes([r.choice([0x40, 0x48]) + r.choice(REGS_RANDOM)])
    if k == 6:
        return p + bytes([r.choice([0x88, 0x89, 0x8A, 0x8B, 0x84, 0x85])]) + _modrm(r)
    if k == 7:
        return p + bytes([0xB8 + r.choice(REGS_RANDOM)]) + bytes(r.randrange(256) for _ in range(2 if p else 4))
    if k == 8:
        return p + b"\x0f" + bytes([r.choice([0xB6, 0xB7, 0xBE, 0xBF])]) + _modrm(r)
    if k == 9:
        op = r.choice([0xC1, 0xD1])
        m = bytes([0xC0 | (r.choice([0, 1, 4, 5, 7]) << 3) | r.randrange(8)])
        return p + bytes([op]) + m + (bytes([r.randrange(33)]) if op == 0xC1 else b"")
    if k == 10:
        return p + bytes([0xF7, 0xC0 | (r.choice([2, 3]) << 3) | r.choice(REGS_RANDOM)])
    if k == 11:
        return bytes([r.choice([0xF8, 0xF9, 0xF5, 0x90])])
    if k == 12:
        return b"\x0f" + bytes([0x90 + r.randrange(16)]) + _modrm(r)
    if k == 13:
        return p + b"\x0f" + bytes([0x40 + r.randrange(16)]) + _modrm(r)
    if k == 14:
        return bytes([r.choice([0x50, 0x58]) + r.choice(REGS_RANDOM)])
    return p + b"\x0f\xaf" + _modrm(r)


def _program(r):
    body = b""
    for _ in range(r.randrange(1, 12)):
        body += _insn(r)
    # end with a conditional jump over a hlt, then hlt
    return body + bytes([0x70 + r.randrange(16), 0x01]) + b"\xf4\xf4"


def _run(code, regs, flags, data, blocks):
    cpu = flat32_cpu(code)
    cpu.block_threshold = 1  # compile at the first visit
    cpu.use_blocks = blocks
    cpu.memory.ram[DATA:DATA + len(data)] = data
    cpu.reg[:] = regs
    cpu.set_eflags(flags)
    run_until_hlt(cpu, 1000)
    return cpu


@pytest.mark.parametrize("seed", range(12))
def test_random_blocks_match_the_interpreter(seed):
    r = random.Random(seed)
    for _ in range(60):
        code = _program(r)
        regs = [r.getrandbits(32) for _ in range(8)]
        regs[3] = DATA
        regs[4] = 0x80000
        flags = 0x2 | (r.getrandbits(12) & 0x8D5)
        data = bytes(r.getrandbits(8) for _ in range(0x60))
        a = _run(code, regs, flags, data, True)
        b = _run(code, regs, flags, data, False)
        where = code.hex()
        assert a.reg == b.reg, where
        assert a.eip == b.eip, where
        assert a.get_eflags() == b.get_eflags(), where
        assert a.memory.ram[DATA:DATA + 0x60] == b.memory.ram[DATA:DATA + 0x60], where
        assert a.memory.ram[0x7FF00:0x80000] == b.memory.ram[0x7FF00:0x80000], where
        assert a.instruction_count == b.instruction_count, where


def test_a_loop_is_compiled_once_and_counts_every_instruction():
    # mov ecx, 1000 ; l: add eax, ecx ; dec ecx ; jnz l ; hlt
    cpu = flat32_cpu(b"\xb9\xe8\x03\x00\x00\x01\xc8\x49\x75\xfb\xf4")
    cpu.block_threshold = 1  # compile at the first visit
    n = run_until_hlt(cpu)
    assert cpu.reg[0] == sum(range(1, 1001))
    assert n == 1 + 3 * 1000 + 1 == cpu.instruction_count
    compiled = [b for b in cpu.icache.values() if isinstance(b, _blocks.Block) and b.n]
    assert compiled and all("def block" in b.source for b in compiled)


def test_a_write_into_the_running_block_takes_effect_at_the_next_instruction():
    # mov byte [0x100c], 0x40 (turns the nop below into inc eax) ; nop ; nop ; hlt
    code = b"\xc6\x05\x0c\x10\x00\x00\x40" + b"\x90" * 5 + b"\x90\xf4"
    cpu = flat32_cpu(code)
    cpu.block_threshold = 1  # compile at the first visit
    run_until_hlt(cpu)
    assert cpu.reg[0] == 1


def test_page_fault_inside_a_block_reports_the_faulting_instruction():
    # inc eax ; inc eax ; mov ebx, [0x40000] (page not present) ; inc eax ; hlt
    cpu = flat32_cpu(b"\x40\x40\x8b\x1d\x00\x00\x04\x00\x40\xf4", paging=True)
    cpu.block_threshold = 1  # compile at the first visit
    cpu.memory.ram[0x101000 + 4 * 0x40:0x101000 + 4 * 0x40 + 4] = b"\x00" * 4
    cpu.tlb_flush()
    from pyv86.cpu import _exec
    seen = []
    orig = _exec.deliver

    def record(c, vector, kind, error_code=None):
        seen.append((vector, c.eip, c.reg[0], c.cr2))
        c.halted = True

    _exec.deliver = record
    try:
        cpu.run(10)   # the first pass interprets and fills the TLB
        cpu.halted = False
        cpu.eip = 0x1000
        cpu.reg[0] = 0
        cpu.run(10)   # the second runs the compiled block
    finally:
        _exec.deliver = orig
    assert seen == [(14, 0x1002, 2, 0x40000)] * 2


def test_blocks_in_real_mode_use_16bit_addressing():
    # mov ax, [bx+si+2] ; add ax, 1 ; jmp short +0 ; hlt   (twice, to run the compiled block)
    cpu = real_mode_cpu(b"\x8b\x40\x02\x83\xc0\x01\xeb\x00\xf4")
    cpu.block_threshold = 1  # compile at the first visit
    cpu.memory.ram[0x3012:0x3014] = b"\x41\x00"
    cpu.reg[3], cpu.reg[6] = 0x3000, 0x10
    run_until_hlt(cpu)
    cpu.halted = False
    cpu.eip = 0x1000
    run_until_hlt(cpu)
    assert cpu.reg[0] & 0xFFFF == 0x42


def test_an_instruction_longer_than_15_bytes_faults_even_when_compiled():
    # 15 operand-size prefixes + inc eax is 16 bytes: #GP(0); in real mode through IVT 13
    code = b"\x66" * 15 + b"\x40" + b"\xf4"
    cpu = real_mode_cpu(b"\xeb\x00" + code)  # the jmp makes the next pass start a block
    cpu.memory.ram[13 * 4:13 * 4 + 4] = (0x3000).to_bytes(2, "little") + b"\x00\x00"
    cpu.memory.ram[0x3000] = 0xF4
    run_until_hlt(cpu)
    assert cpu.eip == 0x3001 and cpu.reg[0] == 0


def test_blocks_hand_other_instructions_to_the_interpreter_in_line():
    # xchg eax, ebx ; mul ecx ; rep stosb ; cdq ; inc esi ; jmp short +0 ; hlt   (run twice)
    code = b"\x93\xf7\xe1\xf3\xaa\x99\x46\xeb\x00\xf4"
    results = []
    for blocks in (True, False):
        cpu = flat32_cpu(code)
        cpu.block_threshold = 1  # compile at the first visit
        cpu.use_blocks = blocks
        cpu.reg[0], cpu.reg[3], cpu.reg[1], cpu.reg[7] = 7, 3, 4, 0x6000
        run_until_hlt(cpu)
        cpu.halted = False
        cpu.eip = 0x1000
        cpu.reg[1], cpu.reg[7] = 4, 0x6100
        run_until_hlt(cpu)
        results.append((list(cpu.reg), cpu.get_eflags(), bytes(cpu.memory.ram[0x6000:0x6200]),
                        cpu.instruction_count))
    assert results[0] == results[1]


def test_a_fault_in_an_interpreted_instruction_inside_a_block_restores_esp():
    # inc eax ; pusha (ESP just above a missing page: faults after nothing is committed) ; hlt
    cpu = flat32_cpu(b"\xeb\x00\x40\x60\xf4", paging=True)
    cpu.block_threshold = 1  # compile at the first visit
    cpu.memory.ram[0x101000 + 4 * 0x40:0x101000 + 4 * 0x40 + 4] = b"\x00" * 4
    cpu.tlb_flush()
    cpu.reg[4] = 0x41010
    from pyv86.cpu import _exec
    seen = []
    orig = _exec.deliver

    def record(c, vector, kind, error_code=None):
        seen.append((vector, c.eip, c.reg[4], c.reg[0]))
        c.halted = True

    _exec.deliver = record
    try:
        cpu.run(10)
    finally:
        _exec.deliver = orig
    assert seen == [(14, 0x1003, 0x41010, 1)]
    assert any(b.n >= 2 for b in cpu.icache.values())  # inc + pusha ran as one block


def test_only_code_that_runs_repeatedly_is_compiled_by_default():
    # mov ecx, N ; l: inc eax ; dec ecx ; jnz l ; hlt   (N: a few more than the threshold)
    probe = flat32_cpu(b"\xf4")
    assert probe.block_threshold > 1
    n = probe.block_threshold + 36
    cpu = flat32_cpu(b"\xb9" + n.to_bytes(4, "little") + b"\x40\x49\x75\xfc\xf4")
    cpu.run(4 * n)  # one budget: a budget ending inside the loop would leave a block half run
    assert cpu.halted
    compiled = {phys for phys, b in cpu.icache.items() if b.n}
    assert compiled == {0x1005}  # the loop body; the run-once mov and hlt stay interpreted
    assert cpu.reg[0] == n


def test_the_default_compile_threshold_is_the_one_for_this_interpreter():
    # PyPy's JIT handles the interpreter well and thousands of exec'd blocks badly (README,
    # "Speed"): it compiles far later than CPython does
    from pyv86.cpu import cpu as cpu_module

    cpu = flat32_cpu(b"\xf4")
    expected = (cpu_module.BLOCK_THRESHOLD_PYPY if sys.implementation.name == "pypy"
                else cpu_module.BLOCK_THRESHOLD_CPYTHON)
    assert cpu.block_threshold == expected
    assert cpu_module.BLOCK_THRESHOLD_CPYTHON < cpu_module.BLOCK_THRESHOLD_PYPY


def test_16bit_code_running_up_to_offset_ffff_wraps_ip_like_the_interpreter():
    # unreal-mode CS limit (4 GiB) with 16-bit code ending at FFFF: inc ax at FFFE, nop at FFFF,
    # then IP wraps to 0000 where a hlt sits
    cpu = real_mode_cpu(b"\x40\x90", cs=0x100, ip=0xFFFE)
    cpu.block_threshold = 1
    cpu.set_segment("cs", 0x100, 0x1000, 0xFFFFFFFF, 0x9B)
    cpu.memory.ram[0x1000] = 0xF4
    cpu.translate(0x1000 + 0xFFFE, False, False)  # TLB hit so a block is tried at once
    run_until_hlt(cpu)
    assert cpu.eip == 1 and cpu.reg[0] & 0xFFFF == 1


def test_a_write_through_a_second_virtual_page_on_the_same_frame_drops_compiled_code():
    # linear 0x1000 (code) and 0x300000 map the same physical frame 0x1000
    cpu = flat32_cpu(b"\x40\xc3", paging=True)  # 0x1000: inc eax ; ret
    cpu.block_threshold = 1
    pt = 0x101000
    cpu.memory.ram[pt + 4 * 0x300:pt + 4 * 0x300 + 4] = (0x1000 | 7).to_bytes(4, "little")
    cpu.tlb_flush()
    # caller at 0x2000: call 0x1000 ; call 0x1000 ; mov byte [0x300000], 0x48 (dec eax) ;
    #                   call 0x1000 ; hlt
    caller = (b"\xe8" + (0x1000 - 0x2005).to_bytes(4, "little", signed=True)
              + b"\xe8" + (0x1000 - 0x200A).to_bytes(4, "little", signed=True)
              + b"\xc6\x05\x00\x00\x30\x00\x48"
              + b"\xe8" + (0x1000 - 0x2016).to_bytes(4, "little", signed=True) + b"\xf4")
    cpu.memory.ram[0x2000:0x2000 + len(caller)] = caller
    cpu.eip = 0x2000
    run_until_hlt(cpu)
    assert cpu.reg[0] == 1  # +1 +1 -1: the third call ran the rewritten instruction


class _ClockIO:
    """I/O bus whose port reads and writes record the CPU's instruction count, as a machine
    whose deterministic clock (PIT, TSC via tsc_source) derives from it does."""

    def __init__(self):
        self.cpu = None
        self.seen = []

    def read(self, port, size):
        self.seen.append(("in", self.cpu.instruction_count))
        return 0

    def write(self, port, value, size):
        self.seen.append(("out", self.cpu.instruction_count))


def test_time_read_inside_a_compiled_loop_advances_with_every_instruction():
    # Linux calibrates the TSC against the PIT in a tight loop of RDTSC and IN: the count both
    # derive from must be exact at the I/O access and RDTSC, not only after the block loop.
    #   mov ecx, 50 ; l: rdtsc ; mov [edi], eax ; add edi, 4 ; in al, 0x40 ; out 0x80, al ;
    #   dec ecx ; jnz l ; hlt
    code = (b"\xb9\x32\x00\x00\x00" b"\x0f\x31" b"\x89\x07" b"\x83\xc7\x04" b"\xe4\x40"
            b"\xe6\x80" b"\x49" b"\x75\xf2" b"\xf4")
    io = _ClockIO()
    cpu = flat32_cpu(code, io=io)
    io.cpu = cpu
    cpu.block_threshold = 1  # compile at the first visit
    cpu.reg[7] = 0x6000
    assert cpu.run(10000) == 1 + 7 * 50 + 1 and cpu.halted
    assert any(b.n == 7 for b in cpu.icache.values())  # the loop body ran as one block
    # instruction i of iteration j ran after 1 + 7 * j + i instructions had completed
    tsc = [int.from_bytes(cpu.memory.ram[0x6000 + 4 * j:0x6004 + 4 * j], "little")
           for j in range(50)]
    assert tsc == [1 + 7 * j for j in range(50)]
    assert io.seen == [x for j in range(50) for x in (("in", 4 + 7 * j), ("out", 5 + 7 * j))]
    assert cpu.instruction_count == 1 + 7 * 50 + 1


def test_a_fault_after_chained_blocks_keeps_their_instructions_counted():
    # mov ecx, 20 ; l: inc eax ; dec ecx ; jnz l ; mov ebx, [0x40000] (not present) ; hlt
    cpu = flat32_cpu(b"\xb9\x14\x00\x00\x00\x40\x49\x75\xfc\x8b\x1d\x00\x00\x04\x00\xf4",
                     paging=True)
    cpu.block_threshold = 1  # compile at the first visit
    cpu.memory.ram[0x101000 + 4 * 0x40:0x101000 + 4 * 0x40 + 4] = b"\x00" * 4
    cpu.tlb_flush()
    cpu.translate(0x1009, False, False)  # TLB hit, so the faulting mov also runs compiled
    from pyv86.cpu import _exec
    seen = []
    orig = _exec.deliver

    def record(c, vector, kind, error_code=None):
        seen.append((vector, c.eip, c.instruction_count))
        c.halted = True

    _exec.deliver = record
    try:
        executed = cpu.run(1000)
    finally:
        _exec.deliver = orig
    # the fault is delivered after the 1 + 3 * 20 completed instructions; the faulting one
    # counts as executed, as in the interpreter
    assert seen == [(14, 0x1009, 1 + 3 * 20)]
    assert executed == cpu.instruction_count == 1 + 3 * 20 + 1

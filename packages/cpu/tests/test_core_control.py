"""Control flow, stack, string instructions and prefixes (Intel SDM vol. 2)."""

from pyv86.cpu.testing import flat32_cpu, real_mode_cpu, run_until_hlt

HLT = b"\xf4"
ZF = 0x40


def test_call_and_ret_near_32bit():
    # call +1 (E8 01 00 00 00) ; hlt ; inc eax ; ret
    cpu = flat32_cpu(b"\xe8\x01\x00\x00\x00" + HLT + b"\x40\xc3")
    run_until_hlt(cpu)
    assert cpu.reg[0] == 1 and cpu.reg[4] == 0x90000 and cpu.eip == 0x1006


def test_loop_counts_ecx_down_to_zero():
    # mov ecx, 5 ; l: inc eax ; loop l
    cpu = flat32_cpu(b"\xb9\x05\x00\x00\x00\x40\xe2\xfd" + HLT)
    run_until_hlt(cpu)
    assert cpu.reg[0] == 5 and cpu.reg[1] == 0


def test_jcxz_uses_address_size_counter():
    # 16-bit code: mov cx, 0 ; jcxz +1 ; hlt ; inc ax ; hlt
    cpu = real_mode_cpu(b"\xb9\x00\x00\xe3\x01" + HLT + b"\x40" + HLT)
    run_until_hlt(cpu)
    assert cpu.reg[0] & 0xFFFF == 1


def test_push_pop_and_push_esp_pushes_the_old_value():
    # push esp ; pop eax
    cpu = flat32_cpu(b"\x54\x58" + HLT)
    run_until_hlt(cpu)
    assert cpu.reg[0] == 0x90000 and cpu.reg[4] == 0x90000


def test_pusha_popa_restore_everything_but_esp():
    # pusha ; xor eax,eax ; xor edi,edi ; popa
    cpu = flat32_cpu(b"\x60\x31\xc0\x31\xff\x61" + HLT)
    cpu.reg[0], cpu.reg[7] = 0x1234, 0x5678
    run_until_hlt(cpu)
    assert cpu.reg[0] == 0x1234 and cpu.reg[7] == 0x5678 and cpu.reg[4] == 0x90000


def test_enter_and_leave_build_and_drop_a_frame():
    # enter 16, 0 (C8 10 00 00) ; leave (C9)
    cpu = flat32_cpu(b"\xc8\x10\x00\x00" + HLT + b"\xc9" + HLT)
    cpu.reg[5] = 0xABCD
    run_until_hlt(cpu)
    assert cpu.reg[5] == 0x90000 - 4 and cpu.reg[4] == 0x90000 - 4 - 16
    cpu.halted = False
    run_until_hlt(cpu)
    assert cpu.reg[5] == 0xABCD and cpu.reg[4] == 0x90000


def test_enter_with_nesting_level_copies_frame_pointers():
    # enter 0, 2: pushes ebp, one copied frame pointer, then the new frame pointer
    cpu = flat32_cpu(b"\xc8\x00\x00\x02" + HLT)
    cpu.reg[5] = 0x80000
    cpu.memory.ram[0x80000 - 4:0x80000] = (0xCAFE).to_bytes(4, "little")
    run_until_hlt(cpu)
    assert cpu.reg[4] == 0x90000 - 12
    assert cpu.read32(0x90000 - 8) == 0xCAFE
    assert cpu.read32(0x90000 - 12) == 0x90000 - 4


def test_rep_movsd_copies_and_updates_registers():
    # rep movsd with ecx = 300 (crosses a page)
    cpu = flat32_cpu(b"\xf3\xa5" + HLT)
    src = bytes(range(256)) * 5
    cpu.memory.ram[0x20F00:0x20F00 + 1200] = src[:1200]
    cpu.reg[6], cpu.reg[7], cpu.reg[1] = 0x20F00, 0x30F80, 300
    run_until_hlt(cpu)
    assert bytes(cpu.memory.ram[0x30F80:0x30F80 + 1200]) == src[:1200]
    assert cpu.reg[1] == 0 and cpu.reg[6] == 0x20F00 + 1200 and cpu.reg[7] == 0x30F80 + 1200


def test_overlapping_rep_movsb_replicates_a_byte_like_hardware():
    # rep movsb with edi = esi + 1 spreads the first byte forward
    cpu = flat32_cpu(b"\xf3\xa4" + HLT)
    cpu.memory.ram[0x5000] = 0x77
    cpu.reg[6], cpu.reg[7], cpu.reg[1] = 0x5000, 0x5001, 64
    run_until_hlt(cpu)
    assert bytes(cpu.memory.ram[0x5000:0x5041]) == b"\x77" * 65


def test_std_rep_stosw_goes_downward():
    # std ; rep stosw (66 F3 AB)
    cpu = flat32_cpu(b"\xfd\x66\xf3\xab" + HLT)
    cpu.reg[0], cpu.reg[7], cpu.reg[1] = 0xBEEF, 0x6010, 4
    run_until_hlt(cpu)
    assert bytes(cpu.memory.ram[0x600A:0x6012]) == b"\xef\xbe" * 4
    assert cpu.reg[7] == 0x6008


def test_repe_cmpsb_stops_at_first_difference():
    cpu = flat32_cpu(b"\xf3\xa6" + HLT)
    cpu.memory.ram[0x7000:0x7005] = b"abcXe"
    cpu.memory.ram[0x7100:0x7105] = b"abcde"
    cpu.reg[6], cpu.reg[7], cpu.reg[1] = 0x7000, 0x7100, 5
    run_until_hlt(cpu)
    assert cpu.reg[1] == 1 and cpu.reg[6] == 0x7004 and not cpu.get_eflags() & ZF


def test_repne_scasb_finds_a_byte():
    cpu = flat32_cpu(b"\xf2\xae" + HLT)
    cpu.memory.ram[0x7000:0x7006] = b"hello\x00"
    cpu.reg[0], cpu.reg[7], cpu.reg[1] = 0, 0x7000, 0xFFFFFFFF
    run_until_hlt(cpu)
    assert cpu.reg[7] == 0x7006 and cpu.get_eflags() & ZF


def test_segment_override_and_address_size_prefix_in_real_mode():
    # mov ax, es:[bx+si] (26 8B 00) with es = 0x100
    cpu = real_mode_cpu(b"\x26\x8b\x00" + HLT)
    cpu.load_segment("es", 0x100)
    cpu.reg[3], cpu.reg[6] = 0x10, 0x20
    cpu.memory.ram[0x1030:0x1032] = b"\x34\x12"
    run_until_hlt(cpu)
    assert cpu.reg[0] & 0xFFFF == 0x1234
    # 67-prefixed 32-bit addressing in real mode: mov eax, [ebx+ecx*4+8] (66 67 8B 44 8B 08)
    cpu = real_mode_cpu(b"\x66\x67\x8b\x44\x8b\x08" + HLT)
    cpu.reg[3], cpu.reg[1] = 0x2000, 3
    cpu.memory.ram[0x2014:0x2018] = (0xDEADBEEF).to_bytes(4, "little")
    run_until_hlt(cpu)
    assert cpu.reg[0] == 0xDEADBEEF


def test_word_access_at_offset_ffff_faults_instead_of_wrapping():
    # mov ax, [0xFFFF] (A1 FF FF): #GP (int 13) in real mode on a 386
    cpu = real_mode_cpu(b"\xa1\xff\xff" + HLT)
    cpu.memory.ram[13 * 4:13 * 4 + 4] = (0x3000).to_bytes(2, "little") + b"\x00\x00"
    cpu.memory.ram[0x3000] = 0xF4
    run_until_hlt(cpu)
    assert cpu.eip == 0x3001
    assert cpu.read16(0x8000 - 6) == 0x1000  # faulting IP pushed


def test_far_jump_and_far_call_in_real_mode():
    # jmp 0x0200:0x0010 (EA 10 00 00 02) ; at 0x2010: call far 0x0000:0x1100 ; at 0x1100: retf
    cpu = real_mode_cpu(b"\xea\x10\x00\x00\x02")
    cpu.memory.ram[0x2010:0x2016] = b"\x9a\x00\x11\x00\x00" + HLT
    cpu.memory.ram[0x1100] = 0xCB
    run_until_hlt(cpu)
    assert cpu.sreg[1] == 0x200 and cpu.eip == 0x16 and cpu.reg[4] & 0xFFFF == 0x8000


def test_int_and_iret_in_real_mode():
    # int 0x21 -> handler at 0000:3000 does inc ax ; iret
    cpu = real_mode_cpu(b"\xcd\x21" + HLT)
    cpu.memory.ram[0x21 * 4:0x21 * 4 + 4] = (0x3000).to_bytes(2, "little") + b"\x00\x00"
    cpu.memory.ram[0x3000:0x3002] = b"\x40\xcf"
    run_until_hlt(cpu)
    assert cpu.reg[0] & 0xFFFF == 1 and cpu.eip == 0x1003


def test_16bit_ip_wraps_after_an_instruction_ending_at_ffff():
    # nop at CS:FFFF, then hlt at CS:0000
    cpu = real_mode_cpu(b"\x90", cs=0x100, ip=0xFFFF)
    cpu.memory.ram[0x1000] = 0xF4
    run_until_hlt(cpu)
    assert cpu.eip == 1


def test_xlat_and_bound_within_range():
    # xlat with bx=0x4000 al=3
    cpu = real_mode_cpu(b"\xd7" + HLT)
    cpu.memory.ram[0x4003] = 0x99
    cpu.reg[3], cpu.reg[0] = 0x4000, 3
    run_until_hlt(cpu)
    assert cpu.reg[0] & 0xFF == 0x99
    # bound ax, [0x5000] with bounds 0..10 and ax = 11 -> int 5 with the BOUND IP pushed
    cpu = real_mode_cpu(b"\x62\x06\x00\x50" + HLT)
    cpu.memory.ram[0x5000:0x5004] = b"\x00\x00\x0a\x00"
    cpu.memory.ram[20:24] = (0x3000).to_bytes(2, "little") + b"\x00\x00"
    cpu.memory.ram[0x3000] = 0xF4
    cpu.reg[0] = 11
    run_until_hlt(cpu)
    assert cpu.eip == 0x3001 and cpu.read16(0x8000 - 6) == 0x1000


def test_enter_sets_the_frame_pointer_by_the_stack_size_not_the_operand_size():
    # 16-bit ENTER (66 C8 04 00 00) on a 32-bit stack: EBP := the whole new ESP frame value
    cpu = flat32_cpu(b"\x66\xc8\x04\x00\x00" + HLT)
    cpu.reg[5] = 0x5678DF00
    run_until_hlt(cpu)
    assert cpu.reg[5] == 0x90000 - 2 and cpu.reg[4] == 0x90000 - 2 - 4
    # 32-bit ENTER on a 16-bit stack (SS.B = 0): only BP changes, EBP's upper half stays
    cpu = flat32_cpu(b"\xc8\x04\x00\x00" + HLT)
    cpu.set_segment("ss", 0x10, 0, 0xFFFF, 0x0093)
    cpu.reg[4] = 0x1234E000
    cpu.reg[5] = 0x5678DF00
    run_until_hlt(cpu)
    assert cpu.reg[5] == 0x5678DFFC and cpu.reg[4] == 0x1234DFF8

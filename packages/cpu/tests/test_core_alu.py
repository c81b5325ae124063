"""Integer arithmetic, logic, shifts, BCD and bit instructions (Intel SDM vol. 2 flag tables).

Snippets are hand-assembled; the comment above each shows the assembly.  Flag values are
the documented ones; flags the SDM calls undefined are not checked.
"""

import pytest

from pyv86.cpu.testing import flat32_cpu, real_mode_cpu, run_until_hlt

CF, PF, AF, ZF, SF, OF = 0x1, 0x4, 0x10, 0x40, 0x80, 0x800
HLT = b"\xf4"


def run32(code, **regs):
    cpu = flat32_cpu(code + HLT)
    for k, v in regs.items():
        cpu.set_register(k, v)
    run_until_hlt(cpu)
    return cpu


def test_add_sets_carry_zero_parity_and_auxiliary_on_wraparound():
    # add eax, ebx   with eax=0xFFFFFFFF, ebx=1
    cpu = run32(b"\x01\xd8", eax=0xFFFFFFFF, ebx=1)
    assert cpu.reg[0] == 0
    assert cpu.get_eflags() & (CF | ZF | PF | AF | SF | OF) == CF | ZF | PF | AF


def test_add_signed_overflow_sets_of_and_sf():
    # add eax, 1    (83 C0 01) with eax=0x7FFFFFFF
    cpu = run32(b"\x83\xc0\x01", eax=0x7FFFFFFF)
    assert cpu.reg[0] == 0x80000000
    f = cpu.get_eflags()
    assert f & OF and f & SF and not f & CF


def test_adc_uses_carry_in_and_sets_carry_when_sum_equals_operand():
    # stc ; adc al, 0xFF   with al=0  -> 0x100: al=0, CF=1
    cpu = run32(b"\xf9\x14\xff", eax=0)
    assert cpu.reg[0] & 0xFF == 0
    assert cpu.get_eflags() & (CF | ZF) == CF | ZF


def test_sbb_borrow_chain_across_words():
    # 16-bit: sub ax, 1 ; sbb dx, 0   with dx:ax = 0x0001:0000 -> 0x0000:FFFF
    cpu = run32(b"\x66\x83\xe8\x01\x66\x83\xda\x00", eax=0, edx=1)
    assert cpu.reg[0] & 0xFFFF == 0xFFFF and cpu.reg[2] & 0xFFFF == 0
    assert not cpu.get_eflags() & CF


def test_cmp_below_and_less_conditions_via_setcc():
    # cmp eax, ebx ; setb cl ; setl dl   with eax=1, ebx=0xFFFFFFFF (unsigned below, signed greater)
    cpu = run32(b"\x39\xd8\x0f\x92\xc1\x0f\x9c\xc2", eax=1, ebx=0xFFFFFFFF)
    assert cpu.reg[1] & 0xFF == 1
    assert cpu.reg[2] & 0xFF == 0


def test_inc_preserves_carry_and_dec_to_zero_sets_zf():
    # stc ; inc eax ; dec ebx    with eax=0x7FFFFFFF, ebx=1
    cpu = run32(b"\xf9\x40\x4b", eax=0x7FFFFFFF, ebx=1)
    f = cpu.get_eflags()
    assert f & CF  # INC/DEC leave CF alone
    assert f & ZF  # from dec ebx
    assert cpu.reg[0] == 0x80000000


def test_neg_zero_clears_carry_and_neg_nonzero_sets_it():
    # neg eax (F7 D8) with eax=0
    assert not run32(b"\xf7\xd8", eax=0).get_eflags() & CF
    cpu = run32(b"\xf7\xd8", eax=5)
    assert cpu.reg[0] == 0xFFFFFFFB and cpu.get_eflags() & CF


def test_logic_ops_clear_cf_and_of():
    # stc ; or eax, ebx
    cpu = run32(b"\xf9\x09\xd8", eax=0x80000000, ebx=1)
    f = cpu.get_eflags()
    assert cpu.reg[0] == 0x80000001 and not f & (CF | OF) and f & SF


@pytest.mark.parametrize("code,eax,cl,expect,cf", [
    (b"\xd3\xe0", 0x80000001, 1, 0x00000002, 1),   # shl eax, cl
    (b"\xd3\xe8", 0x80000001, 1, 0x40000000, 1),   # shr eax, cl
    (b"\xd3\xf8", 0x80000000, 4, 0xF8000000, 0),   # sar eax, cl
    (b"\xd3\xc0", 0x80000001, 1, 0x00000003, 1),   # rol eax, cl
    (b"\xd3\xc8", 0x00000001, 1, 0x80000000, 1),   # ror eax, cl
    (b"\xd3\xe0", 0x12345678, 32, 0x12345678, None),  # count masked to 5 bits: 32 -> 0, no change
])
def test_shift_and_rotate_results_and_carry(code, eax, cl, expect, cf):
    cpu = run32(b"\xf8" + code, eax=eax, ecx=cl)  # clc first
    assert cpu.reg[0] == expect
    if cf is not None:
        assert cpu.get_eflags() & CF == cf


def test_rcl_rotates_through_carry():
    # stc ; rcl al, 1   with al = 0x80 -> al = 0x01, CF = 1, OF = MSB(result) ^ CF = 1
    cpu = run32(b"\xf9\xd0\xd0", eax=0x80)
    assert cpu.reg[0] & 0xFF == 0x01
    assert cpu.get_eflags() & (CF | OF) == CF | OF


def test_shift_by_zero_leaves_flags_untouched():
    # stc ; shl eax, 0 (C1 E0 00)
    cpu = run32(b"\xf9\xc1\xe0\x00", eax=0)
    assert cpu.get_eflags() & CF and not cpu.get_eflags() & ZF


def test_shld_and_shrd_double_shifts():
    # shld eax, ebx, 8 (0F A4 D8 08) ; shrd ecx, edx, 4 (0F AC D1 04)
    cpu = run32(b"\x0f\xa4\xd8\x08\x0f\xac\xd1\x04", eax=0x11223344, ebx=0xAABBCCDD,
                ecx=0x12345678, edx=0x9)
    assert cpu.reg[0] == 0x223344AA
    assert cpu.reg[1] == 0x91234567


def test_mul_sets_cf_of_when_high_half_nonzero():
    # mul ebx (F7 E3)
    cpu = run32(b"\xf7\xe3", eax=0x80000000, ebx=4)
    assert cpu.reg[0] == 0 and cpu.reg[2] == 2
    assert cpu.get_eflags() & (CF | OF) == CF | OF


def test_imul_three_operand_truncates_and_flags_overflow():
    # imul eax, ebx, -2 (6B C3 FE)
    cpu = run32(b"\x6b\xc3\xfe", ebx=0x40000000)  # -0x80000000 still fits: no overflow
    assert cpu.reg[0] == 0x80000000 and not cpu.get_eflags() & (CF | OF)
    cpu = run32(b"\x6b\xc3\xfe", ebx=0x40000001)  # -0x80000002 does not
    assert cpu.reg[0] == 0x7FFFFFFE
    assert cpu.get_eflags() & (CF | OF) == CF | OF
    cpu = run32(b"\x6b\xc3\xfe", ebx=3)
    assert cpu.reg[0] == 0xFFFFFFFA and not cpu.get_eflags() & CF


def test_div_and_idiv_quotient_remainder_sign():
    # div ebx (F7 F3): edx:eax = 0x1_00000005 / 0x10
    cpu = run32(b"\xf7\xf3", eax=5, edx=1, ebx=0x10)
    assert cpu.reg[0] == 0x10000000 and cpu.reg[2] == 5
    # idiv bl (F6 FB): ax = -7 / 2 -> al = -3, ah = -1 (truncation toward zero)
    cpu = run32(b"\xf6\xfb", eax=0xFFF9, ebx=2)
    assert cpu.reg[0] & 0xFFFF == 0xFFFD


def test_divide_by_zero_raises_de_with_registers_unchanged():
    # div ebx with ebx = 0 in real mode: #DE through IVT vector 0, pushes the IP of the DIV
    cpu = real_mode_cpu(b"\x66\xf7\xf3" + HLT)
    cpu.memory.ram[0:4] = (0x2000).to_bytes(2, "little") + b"\x00\x00"  # IVT[0] = 0000:2000
    cpu.memory.ram[0x2000] = 0xF4
    cpu.reg[0] = 1234
    run_until_hlt(cpu)
    assert cpu.eip == 0x2001 and cpu.reg[0] == 1234
    assert cpu.read16(0x8000 - 6) == 0x1000  # return IP = the faulting instruction


def test_daa_after_bcd_addition():
    # mov al, 0x38 ; add al, 0x45 ; daa  -> 0x83
    cpu = run32(b"\xb0\x38\x04\x45\x27")
    assert cpu.reg[0] & 0xFF == 0x83 and not cpu.get_eflags() & CF


def test_aam_divides_and_aad_multiplies():
    # mov al, 63 ; aam (D4 0A) -> ah=6 al=3 ; aad (D5 0A) -> al=63 ah=0
    cpu = run32(b"\xb0\x3f\xd4\x0a")
    assert cpu.reg[0] & 0xFFFF == 0x0603
    cpu = run32(b"\xb0\x3f\xd4\x0a\xd5\x0a")
    assert cpu.reg[0] & 0xFFFF == 63


def test_bt_family_with_register_bit_offset_into_memory():
    # bts [ebx], ecx (0F AB 0B) with ecx = 35 -> sets bit 3 of the dword at ebx+4
    cpu = flat32_cpu(b"\x0f\xab\x0b" + HLT)
    cpu.reg[3] = 0x3000
    cpu.reg[1] = 35
    run_until_hlt(cpu)
    assert cpu.read32(0x3004) == 8 and not cpu.get_eflags() & CF


def test_bsf_bsr_and_zero_source():
    # bsf eax, ebx ; bsr ecx, ebx
    cpu = run32(b"\x0f\xbc\xc3\x0f\xbd\xcb", ebx=0x00F0_0100)
    assert cpu.reg[0] == 8 and cpu.reg[1] == 23 and not cpu.get_eflags() & ZF
    cpu = run32(b"\x0f\xbc\xc3", ebx=0, eax=77)
    assert cpu.reg[0] == 77 and cpu.get_eflags() & ZF


def test_movzx_movsx_cbw_cwde_cdq():
    # movsx eax, bl ; movzx ecx, bx ; cdq
    cpu = run32(b"\x0f\xbe\xc3\x0f\xb7\xcb\x99", ebx=0x1280)
    assert cpu.reg[0] == 0xFFFFFF80 and cpu.reg[1] == 0x1280 and cpu.reg[2] == 0xFFFFFFFF
    # cwde (98) with ax = 0x8000
    assert run32(b"\x98", eax=0x8000).reg[0] == 0xFFFF8000


def test_cmpxchg_xadd_bswap():
    # cmpxchg ebx, ecx (0F B1 CB): eax == ebx -> ebx = ecx, ZF=1
    cpu = run32(b"\x0f\xb1\xcb", eax=5, ebx=5, ecx=9)
    assert cpu.reg[3] == 9 and cpu.get_eflags() & ZF
    # mismatch: eax <- ebx, ZF=0
    cpu = run32(b"\x0f\xb1\xcb", eax=4, ebx=5, ecx=9)
    assert cpu.reg[0] == 5 and not cpu.get_eflags() & ZF
    # xadd eax, ebx (0F C1 D8)
    cpu = run32(b"\x0f\xc1\xd8", eax=1, ebx=2)
    assert cpu.reg[0] == 3 and cpu.reg[3] == 1
    # bswap eax (0F C8)
    assert run32(b"\x0f\xc8", eax=0x11223344).reg[0] == 0x44332211


def test_cmpxchg8b_success_and_failure():
    # cmpxchg8b [esi] (0F C7 0E)
    cpu = flat32_cpu(b"\x0f\xc7\x0e" + HLT)
    cpu.memory.ram[0x3000:0x3008] = (0x1111111122222222).to_bytes(8, "little")
    cpu.reg[6] = 0x3000
    cpu.reg[2], cpu.reg[0] = 0x11111111, 0x22222222
    cpu.reg[1], cpu.reg[3] = 0xAAAAAAAA, 0xBBBBBBBB
    run_until_hlt(cpu)
    assert cpu.read32(0x3000) == 0xBBBBBBBB and cpu.read32(0x3004) == 0xAAAAAAAA
    assert cpu.get_eflags() & ZF


def test_cmov_moves_only_when_condition_holds():
    # cmp eax, eax ; cmove ebx, ecx ; cmovne edx, ecx
    cpu = run32(b"\x39\xc0\x0f\x44\xd9\x0f\x45\xd1", ecx=7, ebx=1, edx=2)
    assert cpu.reg[3] == 7 and cpu.reg[2] == 2


def test_lahf_sahf_round_trip():
    # stc ; lahf ; clc ; sahf -> CF restored
    cpu = run32(b"\xf9\x9f\xf8\x9e")
    assert cpu.get_eflags() & CF


def test_undefined_opcode_raises_ud():
    # ud2 in real mode goes through IVT vector 6
    cpu = real_mode_cpu(b"\x0f\x0b" + HLT)
    cpu.memory.ram[24:28] = (0x3000).to_bytes(2, "little") + b"\x00\x00"
    cpu.memory.ram[0x3000] = 0xF4
    run_until_hlt(cpu)
    assert cpu.eip == 0x3001


def test_lock_on_a_register_destination_is_ud():
    # lock add eax, ebx (F0 01 D8): #UD on a 386-class CPU
    cpu = real_mode_cpu(b"\xf0\x66\x01\xd8" + HLT)
    cpu.memory.ram[24:28] = (0x3000).to_bytes(2, "little") + b"\x00\x00"
    cpu.memory.ram[0x3000] = 0xF4
    run_until_hlt(cpu)
    assert cpu.eip == 0x3001

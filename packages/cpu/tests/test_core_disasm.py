"""The disassembler and the instruction tracer used to debug guest boots."""

import io

import pytest

from pyv86.cpu.disasm import Tracer, disassemble, main
from pyv86.cpu.testing import flat32_cpu, run_until_hlt


@pytest.mark.parametrize("code,code32,text", [
    ("01d8", True, "add eax, ebx"),
    ("6601d8", True, "add ax, bx"),
    ("8b442408", True, "mov eax, dword [esp+0x8]"),
    ("66678b448b08", False, "mov eax, dword [ebx+ecx*4+0x8]"),
    ("268b00", False, "mov ax, word [es:bx+si]"),
    ("f3a5", True, "rep movsd"),
    ("0fb6c3", True, "movzx eax, bl"),
    ("c1e004", True, "shl eax, 0x4"),
    ("d1e8", True, "shr eax, 1"),
    ("f7f3", True, "div ebx"),
    ("0f22c0", True, "mov cr0, eax"),
    ("0f011500000000", True, "lgdt [0x0]"),
    ("ea10000002", False, "jmp far 0x0200:0x10"),
    ("0fc8", True, "bswap eax"),
    ("0f0b", True, "ud2"),
])
def test_disassembles_common_forms(code, code32, text):
    data = bytes.fromhex(code)
    got, n = disassemble(data, code32)
    assert got == text
    assert n == len(data)


def test_relative_branches_show_the_target():
    assert disassemble(bytes.fromhex("75f8"), True, 0x100B) == ("jne 0x1005", 2)
    assert disassemble(bytes.fromhex("e800000000"), True, 0x101E) == ("call 0x1023", 5)


def test_unknown_and_truncated_input_never_raise():
    assert disassemble(b"\x0f\xff", True)[0] == "(bad)"
    assert disassemble(b"\x8b", True)[0] == "(truncated)"
    assert disassemble(b"", True)[1] >= 1


def test_cli_prints_one_line_per_instruction(capsys):
    assert main(["--32", "--org", "0x1000", "b90a00000049"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["00001000  b90a000000           mov ecx, 0xa",
                   "00001005  49                   dec ecx"]
    assert main(["zz"]) == 2


def test_tracer_prints_each_executed_instruction_with_registers():
    out = io.StringIO()
    # mov ecx, 2 ; l: dec ecx ; jnz l ; hlt
    cpu = flat32_cpu(bytes.fromhex("b902000000" "49" "75fd" "f4"))
    cpu.trace = Tracer(out)
    run_until_hlt(cpu)
    lines = out.getvalue().splitlines()
    assert len(lines) == 6 == cpu.instruction_count
    assert lines[0].startswith("0008:00001000  b902000000") and "mov ecx, 0x2" in lines[0]
    assert "ecx=00000001" in lines[3] and lines[-1].split()[2] == "hlt"

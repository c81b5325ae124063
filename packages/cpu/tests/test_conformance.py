"""The hardware-captured 80286 real-mode vectors (SingleStepTests/80286 subset) must all pass.

The data lives outside the package in the monorepo's shared folder; CI has it, so a missing
folder is a failure, not a skip.  See pyv86/cpu/conformance.py for the vector classes that do
not apply to a 386-class CPU.
"""

import gzip
import io
import json
import pathlib

from pyv86.cpu import conformance


def _vector_dir() -> pathlib.Path:
    here = pathlib.Path(__file__).resolve()
    for parent in here.parents:
        for candidate in (parent / "shared" / "data" / "cpu-vectors" / "80286-real",
                          parent.parent / "shared" / "data" / "cpu-vectors" / "80286-real"):
            if (candidate / "metadata.json").is_file():
                return candidate
    raise AssertionError("the 80286-real vector folder (shared/data/cpu-vectors/80286-real) is missing")


VECTORS = _vector_dir()


def test_every_applicable_80286_real_mode_vector_passes():
    out = io.StringIO()
    passed, total, skipped = conformance.run_folder(VECTORS, out=out)
    report = out.getvalue()
    assert total > 18000, report
    assert passed == total, "\n".join(
        line for line in report.splitlines() if "100.00%" not in line)
    # only the documented classes are not applicable: 3 whole files plus listed tests
    assert skipped < 600
    assert report.splitlines()[-1].startswith(f"passed {passed} of {total}")


def test_every_applicable_vector_also_passes_through_the_block_compiler():
    # the instruction under test runs as a compiled block wherever the compiler supports it
    out = io.StringIO()
    passed, total, _ = conformance.run_folder(VECTORS, out=out, blocks=True)
    assert passed == total, "\n".join(
        line for line in out.getvalue().splitlines() if "100.00%" not in line)


def test_runner_reports_a_broken_instruction_as_failing():
    # ADD r/m8, r8 (opcode 00) with its flags recorded as SUB must fail vectors
    from pyv86.cpu import _ops
    original = _ops.OPS[0x00]

    def broken(cpu):
        original(cpu)
        cpu.lz_op = _ops.L_SUB

    _ops.OPS[0x00] = broken
    try:
        out = io.StringIO()
        passed, total, _ = conformance.run_folder(VECTORS, only=["00"], out=out)
    finally:
        _ops.OPS[0x00] = original
    assert total == 60 and passed < total


def test_cli_exit_status_and_last_line(capsys):
    assert conformance.main([str(VECTORS), "--only", "F6.6", "27"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith("passed ") and "of" in lines[-1]


def test_cli_rejects_a_missing_folder(tmp_path, capsys):
    assert conformance.main([str(tmp_path / "nope")]) == 2


def test_string_fault_is_compared_with_386_restart_semantics():
    # movsw with SI=FFFFh: the 286 steps SI to 0001h before int 13; a 386 leaves SI at FFFFh
    data = json.loads(gzip.decompress((VECTORS / "A5.json.gz").read_bytes()))
    test = next(t for t in data["tests"] if t["idx"] == 1008)
    assert test["final"]["regs"]["si"] == 1
    adapted = conformance.adapt_for_386(test)
    assert "si" not in adapted["regs"]  # unchanged from the initial FFFFh
    assert adapted["regs"]["ip"] == test["final"]["regs"]["ip"]

"""`pyv86 run`: flags, serial to files, limits and documented exit codes."""

import pytest
from _images import bzimage

from pyv86.machine.cli import main


@pytest.fixture
def kernel(tmp_path):
    p = tmp_path / "bzImage"
    p.write_bytes(bzimage())
    return p


def run(*args):
    return main(["run", "--network-relay-url", "none", "--clock", "deterministic", "-q", *args])


def test_guest_power_off_exits_0_and_console_goes_to_the_file(kernel, tmp_path):
    out = tmp_path / "console.txt"
    assert run("--bzimage", str(kernel), "--cmdline", "hi", "--serial", str(out)) == 0
    assert out.read_bytes() == b"OK:hi"


def test_instruction_limit_exits_4(tmp_path):
    k = tmp_path / "loop"
    k.write_bytes(bzimage(bytes.fromhex("ebfe")))
    assert run("--bzimage", str(k), "--max-instructions", "1000",
               "--serial", str(tmp_path / "c")) == 4


def test_time_limit_exits_5(tmp_path):
    k = tmp_path / "loop"
    k.write_bytes(bzimage(bytes.fromhex("ebfe")))
    assert run("--bzimage", str(k), "--time-limit", "0.2", "--serial", str(tmp_path / "c")) == 5


def test_stop_on_console_text_exits_7(kernel, tmp_path):
    k = tmp_path / "k"
    k.write_bytes(bzimage(bytes.fromhex("66baf803b04fee" "ebfe")))  # print O, loop
    assert run("--bzimage", str(k), "--stop-on", "O", "--serial", str(tmp_path / "c")) == 7


@pytest.mark.parametrize("args", [
    ["--memory-size", "lots"],
    ["--max-instructions", "-5"],
    ["--time-limit", "0"],
    ["--clock", "sundial"],
    ["--bogus-flag"],
])
def test_bad_arguments_exit_2(args, capsys):
    assert run(*args) == 2
    assert "error" in capsys.readouterr().err


def test_unreadable_kernel_exits_2_with_a_clear_message(tmp_path, capsys):
    assert run("--bzimage", str(tmp_path / "missing"), "--serial", str(tmp_path / "c")) == 2
    assert "cannot read" in capsys.readouterr().err


def test_not_a_kernel_exits_2(tmp_path, capsys):
    k = tmp_path / "junk"
    k.write_bytes(b"junk" * 1000)
    assert run("--bzimage", str(k), "--serial", str(tmp_path / "c")) == 2
    assert "bzImage" in capsys.readouterr().err


def test_initrd_without_kernel_exits_2(tmp_path, capsys):
    assert run("--initrd", str(tmp_path / "x")) == 2

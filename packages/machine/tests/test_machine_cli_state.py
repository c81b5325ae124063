"""`pyv86 run --initial-state/--save-state/--save-on/--save-at-exit`, SIGUSR1 saves and
`pyv86 inspect-state`: state images from the command line, with their error messages."""

import signal
import subprocess
import sys
import time

import pytest
from _images import bzimage
from test_machine_state import CLOCK_PRINTER, CUT

from pyv86.machine import Machine
from pyv86.machine.cli import main
from pyv86.machine.stateimage import read_image

MiB = 1 << 20


def run(*args):
    return main(["run", "--network-relay-url", "none", "--clock", "deterministic", "-q",
                 "--memory-size", "16M", *args]) if "--initial-state" not in args else main(
        ["run", "--network-relay-url", "none", "--clock", "deterministic", "-q", *args])


@pytest.fixture
def kernel(tmp_path):
    p = tmp_path / "bzImage"
    p.write_bytes(bzimage(CLOCK_PRINTER))
    return p


@pytest.fixture
def image(kernel, tmp_path):
    path = tmp_path / "saved.pyv86"
    assert run("--bzimage", str(kernel), "--max-instructions", str(CUT), "--save-state",
               str(path), "--save-at-exit", "--serial", str(tmp_path / "first.txt")) == 4
    return path


def test_save_at_exit_then_initial_state_continues_like_the_original(image, tmp_path):
    reference = Machine(bzimage=bzimage(CLOCK_PRINTER), network_relay_url="none",
                        memory_size=16 * MiB)
    reference.run(max_instructions=CUT)
    cut = len(reference.console)
    reference.save_state()  # what the CLI's save did to the original
    reference.run()
    out = tmp_path / "second.txt"
    assert run("--initial-state", str(image), "--serial", str(out)) == 0
    assert (tmp_path / "first.txt").read_bytes() == bytes(reference.console[:cut])
    assert out.read_bytes() == bytes(reference.console[cut:])
    assert read_image(image).metadata["trigger"] == "at exit: instruction-limit"


def test_save_on_a_console_pattern_saves_once_and_carries_on(kernel, tmp_path):
    probe = Machine(bzimage=bzimage(CLOCK_PRINTER), network_relay_url="none",
                    memory_size=16 * MiB)
    probe.run()
    pattern = bytes(probe.console).split(b"\n")[40].decode()  # a line half-way through
    path = tmp_path / "at-pattern.pyv86"
    console = tmp_path / "full.txt"
    assert run("--bzimage", str(kernel), "--save-state", str(path), "--save-on", pattern,
               "--serial", str(console)) == 0  # ran on to the guest's power off
    meta = read_image(path).metadata
    assert meta["trigger"] == f"console printed {pattern!r}"
    rest = tmp_path / "rest.txt"
    assert run("--initial-state", str(path), "--serial", str(rest)) == 0
    full, tail = console.read_bytes(), rest.read_bytes()
    assert tail and full.endswith(tail)
    assert pattern.encode() in full[:len(full) - len(tail)]


def test_sigusr1_saves_the_state_and_the_run_goes_on(tmp_path):
    loop = tmp_path / "loop"
    loop.write_bytes(bzimage(bytes.fromhex("ebfe")))
    path = tmp_path / "usr1.pyv86"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyv86.machine.cli", "run", "--bzimage", str(loop),
         "--network-relay-url", "none", "--memory-size", "16M", "--time-limit", "100",
         "--save-state", str(path), "--serial", str(tmp_path / "c")],
        stderr=subprocess.PIPE)
    try:
        assert proc.stderr is not None
        assert b"network: none" in proc.stderr.readline()  # the handler is installed
        proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 60
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.exists()
        assert proc.poll() is None  # still running after the save
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 130
        err = proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
    assert "saved the state to" in err and "SIGUSR1" in err
    assert read_image(path).metadata["trigger"] == "SIGUSR1"


def test_inspect_state_prints_a_sound_image_and_rejects_a_damaged_one(image, tmp_path,
                                                                      capsys):
    assert main(["inspect-state", str(image)]) == 0
    out = capsys.readouterr().out
    assert "sound" in out and "memory_size=16 MiB" in out and "cpu, machine" in out
    bad = tmp_path / "bad.pyv86"
    bad.write_bytes(image.read_bytes()[:1000])
    assert main(["inspect-state", str(bad)]) == 1
    assert "truncated" in capsys.readouterr().out


def _flip(data: bytes) -> bytes:
    return data[:40] + bytes([data[40] ^ 1]) + data[41:]


@pytest.mark.parametrize("damage, says", [
    (lambda d: d[:len(d) // 3], "truncated"),
    (_flip, "corrupt"),
    (lambda d: b"PK\x03\x04" + d[4:], "not a pyv86 state image"),
])
def test_a_damaged_initial_state_exits_2_naming_the_problem(image, tmp_path, capsys,
                                                             damage, says):
    bad = tmp_path / "bad.pyv86"
    bad.write_bytes(damage(image.read_bytes()))
    assert run("--initial-state", str(bad), "--serial", str(tmp_path / "c")) == 2
    err = capsys.readouterr().err
    assert "--initial-state" in err and says in err


def test_a_configuration_mismatch_exits_2_naming_the_difference(image, tmp_path, capsys):
    assert run("--initial-state", str(image), "--memory-size", "32M",
               "--serial", str(tmp_path / "c")) == 2
    assert "memory_size: the image has 16 MiB, this machine has 32 MiB" in (
        capsys.readouterr().err)


@pytest.mark.parametrize("args, says", [
    (["--save-on", "login:"], "need --save-state"),
    (["--save-at-exit"], "need --save-state"),
    (["--initial-state", "x", "--cmdline", "y"], "no --initrd or --cmdline"),
    (["--initial-state", "x", "--bzimage", "y"], "not allowed with"),
])
def test_inconsistent_state_options_exit_2(args, says, capsys, tmp_path):
    assert run(*args, "--serial", str(tmp_path / "c")) == 2
    assert says in capsys.readouterr().err


def test_a_missing_initial_state_exits_2(tmp_path, capsys):
    assert run("--initial-state", str(tmp_path / "none.pyv86"),
               "--serial", str(tmp_path / "c")) == 2
    assert "cannot read the state image" in capsys.readouterr().err


def test_a_save_that_fails_is_reported_as_an_error(kernel, tmp_path, capsys):
    target = tmp_path / "a-directory"
    target.mkdir()  # the image cannot replace a directory
    assert run("--bzimage", str(kernel), "--save-state", str(target), "--save-at-exit",
               "--serial", str(tmp_path / "c")) == 1
    assert "cannot save the state" in capsys.readouterr().err

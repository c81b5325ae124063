"""Whole-machine save and restore: Machine.save_state/restore_state, save_image and
Machine(initial_state=...), with the deterministic clock reproducing the original exactly."""

import os
import struct
import subprocess
import sys
import zlib

import pytest
from _images import bzimage

from pyv86.machine import Machine, MachineConfigError
from pyv86.machine.stateimage import (
    FORMAT_VERSION,
    ConfigMismatchError,
    CorruptImageError,
    ForeignFileError,
    StateImageError,
    TruncatedImageError,
    UnsupportedVersionError,
    read_image,
)

MiB = 1 << 20
HERE = os.path.dirname(os.path.abspath(__file__))

# A guest whose console output depends on everything a restore must bring back. 32-bit:
# PIT channel 0 in mode 2 at 100 Hz, all IRQs masked at the PIC, then 150 times: a busy
# loop of 2000 LOOPs; latch and read PIT channel 0's count; read the master PIC's IRR
# (OCW3; IRQ0 is raised there by the scheduler's PIT events even while masked); read the
# RTC's seconds; RDTSC; print (count << 16 | seconds << 8 | IRR) XOR TSC as 8 hex digits
# and a newline on COM1; finally cli; hlt (power off). Assembled by hand from:
#   mov al,0x34/out 0x43,al/mov al,0x9c/out 0x40,al/mov al,0x2e/out 0x40,al
#   mov al,0xff/out 0x21,al/mov dx,0x3f8/mov esi,150
#   L: mov ecx,2000/B: loop B/mov al,0/out 0x43,al/in al,0x40/mov bl,al/in al,0x40/mov bh,al
#   shl ebx,16/mov al,0x0a/out 0x20,al/in al,0x20/mov bl,al/mov al,0/out 0x70,al
#   in al,0x71/mov bh,al/rdtsc/mov dx,0x3f8/xor ebx,eax/mov ecx,8
#   H: rol ebx,4/mov al,bl/and al,0x0f/add al,0x30/cmp al,0x3a/jb D/add al,7/D: out dx,al
#   loop H/mov al,10/out dx,al/dec esi/jnz L/cli/hlt
CLOCK_PRINTER = bytes.fromhex(
    "b034e643b09ce640b02ee640b0ffe62166baf803be96000000"
    "b9d0070000e2feb000e643e44088c3e44088c7c1e310b00ae620e42088c3b000e670e47188c7"
    "0f3166baf80331c3b908000000c1c30488d8240f04303c3a72020407eee2ee"
    "b00aee4e75b5faf4")
CUT = 150_000  # instructions before the save: mid-run, between two PIT interrupts


def machine(**kw):
    kw.setdefault("network_relay_url", "null:")
    kw.setdefault("clock", "deterministic")
    kw.setdefault("memory_size", 16 * MiB)
    if "initial_state" not in kw:
        kw.setdefault("bzimage", bzimage(CLOCK_PRINTER))
    return Machine(**kw)


def saved(tmp_path, **kw):
    """(original stopped at CUT and saved, image path)."""
    m = machine(**kw)
    assert m.run(max_instructions=CUT).reason == "instruction-limit"
    path = tmp_path / "guest.pyv86"
    m.save_image(path)
    return m, path


def test_restored_machine_prints_exactly_what_the_original_prints_from_that_point(tmp_path):
    original, path = saved(tmp_path)
    cut = len(original.console)
    restored = machine(initial_state=path)
    assert restored.cpu.instruction_count == CUT
    assert restored.clock.now_ns() == original.clock.now_ns()
    a, b = original.run(), restored.run()
    assert a.reason == b.reason == "poweroff"
    tail = bytes(original.console[cut:])
    assert tail.count(b"\n") > 50  # the comparison covers most of the program's output
    assert bytes(restored.console) == tail
    assert restored.cpu.instruction_count == original.cpu.instruction_count
    assert restored.clock.now_ns() == original.clock.now_ns()
    sa, sb = original.save_state(), restored.save_state()
    assert {k for k in sa if sa[k] != sb[k]} == {"nic"}  # the card got a fresh MAC (default)


def test_output_depends_on_the_restored_clock_so_the_comparison_can_fail(tmp_path):
    # the same image restored and then nudged by one skipped cycle prints something else
    original, path = saved(tmp_path)
    cut = len(original.console)
    original.run()
    nudged = machine(initial_state=path)
    nudged.clock.idle_cycles += 1000
    nudged.run()
    assert bytes(nudged.console) != bytes(original.console[cut:])


def test_a_fresh_process_restores_the_image_and_continues_identically(tmp_path):
    original, path = saved(tmp_path)
    cut = len(original.console)
    original.run()
    code = ("import sys; from pyv86.machine import Machine; "
            "m = Machine(initial_state=sys.argv[1], network_relay_url='null:'); r = m.run(); "
            "sys.stdout.buffer.write(bytes(m.console)); sys.exit(r.exit_code)")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == bytes(original.console[cut:])


def test_memory_size_comes_from_the_image_when_not_given(tmp_path):
    _, path = saved(tmp_path, memory_size=24 * MiB)
    assert machine(initial_state=path, memory_size=None).memory.size == 24 * MiB


def test_save_image_records_config_versions_and_metadata(tmp_path):
    original, path = saved(tmp_path)
    image = read_image(path)
    assert image.config == {"memory_size": 16 * MiB, "clock": "deterministic",
                            "clock_hz": original.clock.hz,
                            "nic": {"model": "rtl8029", "slot": 5}}
    assert image.metadata["instructions"] == CUT
    assert set(image.components) == {"cpu", "machine"}
    assert "pyv86-machine" in image.versions
    assert bytes(image.memory) == bytes(original.memory.ram)


def test_mac_modes_randomise_preserve_and_translate(tmp_path):
    # pyv86-ne2k's restore modes, chosen by the Machine options of v86's names
    original, path = saved(tmp_path)
    old = original.nic.mac
    fresh = machine(initial_state=path)
    assert fresh.nic.mac != old and fresh.nic.guest_mac == fresh.nic.mac
    kept = machine(initial_state=path, preserve_mac_from_state_image=True)
    assert kept.nic.mac == old and kept.nic.guest_mac == old
    moved = machine(initial_state=path, mac_address_translation=True)
    assert moved.nic.guest_mac == old and moved.nic.mac != old
    # the note `pyv86 run` prints after a restore names both MACs and what happens
    old_text = ":".join(f"{b:02x}" for b in old)
    assert original.mac_note() == f"card MAC {old_text}"
    assert fresh.image_mac == old and old_text in fresh.mac_note()
    assert "stops until the driver is bound again" in fresh.mac_note()
    assert kept.mac_note() == f"card MAC {old_text}, the image's (preserve_mac_from_state_image)"
    assert "translation" in moved.mac_note() and old_text in moved.mac_note()


def test_both_mac_options_at_once_are_a_config_error():
    with pytest.raises(MachineConfigError, match="not both"):
        machine(preserve_mac_from_state_image=True, mac_address_translation=True)


def test_initial_state_with_a_kernel_is_a_config_error(tmp_path):
    _, path = saved(tmp_path)
    with pytest.raises(MachineConfigError, match="without bzimage"):
        Machine(initial_state=path, bzimage=bzimage(CLOCK_PRINTER))


def _newer(data: bytes) -> bytes:
    head = bytearray(data[:12])
    struct.pack_into("<H", head, 8, FORMAT_VERSION + 1)
    return bytes(head) + struct.pack("<I", zlib.crc32(head)) + data[16:]


@pytest.mark.parametrize("damage, error, says", [
    (lambda d: d[:len(d) // 2], TruncatedImageError, "ends|truncated"),
    (lambda d: d[:40] + bytes([d[40] ^ 0xFF]) + d[41:], CorruptImageError, "corrupt"),
    (lambda d: b"\x7fELF" + d[4:], ForeignFileError, "ELF"),
    (_newer, UnsupportedVersionError, "newer"),
])
def test_damaged_images_raise_a_state_image_error_naming_the_problem(tmp_path, damage,
                                                                     error, says):
    _, path = saved(tmp_path)
    bad = tmp_path / "bad.pyv86"
    bad.write_bytes(damage(path.read_bytes()))
    with pytest.raises(error, match=says):
        machine(initial_state=bad)


def test_a_missing_image_is_a_state_image_error_naming_the_file(tmp_path):
    with pytest.raises(StateImageError, match=r"cannot read the state image.*nothing"):
        machine(initial_state=tmp_path / "nothing.pyv86")


@pytest.mark.parametrize("kw, says", [
    ({"memory_size": 32 * MiB}, "memory_size: the image has 16 MiB"),
    ({"clock": "realtime"}, "clock: the image has 'deterministic'"),
    ({"network_relay_url": "none"}, "nic"),
])
def test_a_machine_configured_differently_is_refused_naming_each_difference(tmp_path, kw,
                                                                            says):
    _, path = saved(tmp_path)
    with pytest.raises(ConfigMismatchError, match=says):
        machine(initial_state=path, **kw)


def test_an_image_without_machine_components_is_refused(tmp_path):
    from pyv86.machine.stateimage import StateImage, write_image

    m = machine()
    path = tmp_path / "other.pyv86"
    write_image(path, StateImage(config=m.image_config(), versions={},
                                 components={"cpu": {}}, memory=bytes(16 * MiB)))
    with pytest.raises(StateImageError, match="lacks the 'cpu' or 'machine'"):
        machine(initial_state=path)


def test_a_bad_component_state_leaves_the_machine_as_it_was():
    m = machine()
    m.run(max_instructions=CUT)
    before = m.save_state()
    ram = bytes(m.memory.ram)
    bad = dict(before)
    bad["uart"] = dict(before["uart"], lcr=999)  # UART comes after cpu, clock, PIC, PIT, RTC
    bad["cpu"] = dict(before["cpu"], eip=0x1234)
    with pytest.raises(StateImageError, match=r"uart: .*lcr"):
        m.restore_state(bad, bytes(len(ram)))
    after = m.save_state()
    assert after == before
    assert bytes(m.memory.ram) == ram


@pytest.mark.parametrize("mutate, says", [
    (lambda s: s.pop("pit"), "missing .*pit"),
    (lambda s: s.update(version=2), "version 2"),
    (lambda s: s.update(vga={}), "unknown component.*vga"),
])
def test_malformed_machine_states_are_refused_before_anything_changes(mutate, says):
    m = machine()
    state = m.save_state()
    mutate(state)
    with pytest.raises(StateImageError, match=says):
        m.restore_state(state)


def test_memory_of_the_wrong_size_is_refused():
    m = machine()
    with pytest.raises(StateImageError, match="memory holds 10 bytes"):
        m.restore_state(m.save_state(), b"x" * 10)


def test_serial_input_typed_before_a_save_is_kept_in_the_state():
    m = machine()
    m.send_serial(b"typed")
    state = m.save_state()
    assert b"typed" in bytes(state["uart"]["rx"]) + bytes(state["uart"]["host_queue"])


def test_a_stop_asked_for_between_runs_applies_to_the_next_run():
    # a signal handler (the CLI's SIGUSR1 save) may fire before run() starts: not lost
    m = machine()
    m.run(max_instructions=1000)
    m.stop("stopped", "asked between runs")
    r = m.run(max_instructions=1000)
    assert (r.reason, r.detail, r.instructions) == ("stopped", "asked between runs", 0)
    assert m.run(max_instructions=1000).instructions == 1000  # then runs go on as before

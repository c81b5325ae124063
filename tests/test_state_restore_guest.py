"""Issue 8: a state image of the real Linux guest, saved mid-boot and restored in a fresh
process, carries on exactly like the original under the deterministic clock.

The guest (cached under ~/.cache/pyv86/guest; built when missing) is booted for 15 million
instructions, which ends inside the kernel's early boot with timers, the UART and the card
in use; the image is saved, the original runs 10 million instructions more, and a fresh
Python process restores the image and runs the same 10 million. Both must print the same
console bytes and end in the same CPU and device state. The card has no cable (``null:``):
the network transport is not part of the image.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.needs_guest, pytest.mark.slow]

CUT = 15_000_000
MORE = 10_000_000

RESTORE = """
import json, sys
from pyv86.machine import Machine
m = Machine(initial_state=sys.argv[1], network_relay_url="null:",
            preserve_mac_from_state_image=True)
r = m.run(max_instructions=int(sys.argv[2]))
s = m.save_state()
json.dump({"reason": r.reason, "console": m.console.decode("latin-1"),
           "instructions": m.cpu.instruction_count, "ns": m.clock.now_ns(),
           "eip": s["cpu"]["eip"], "regs": s["cpu"]["reg"],
           "pit": repr(s["pit"]), "pic": repr(s["pic"]), "uart": repr(s["uart"]),
           "nic": repr(s["nic"])}, sys.stdout)
"""


@pytest.fixture(scope="module")
def guest():
    guest_mod = pytest.importorskip("pyv86.machine.guest")
    try:
        return guest_mod.build_guest()
    except guest_mod.GuestBuildError as exc:
        pytest.fail(f"cannot build the default guest: {exc}")


def test_guest_restored_in_a_fresh_process_prints_what_the_original_prints(guest, tmp_path):
    from pyv86.machine import Machine

    m = Machine(bzimage=str(guest.bzimage), initrd=str(guest.initrd), cmdline=guest.cmdline,
                network_relay_url="null:")
    assert m.run(max_instructions=CUT).reason == "instruction-limit"
    image = tmp_path / "guest.pyv86"
    m.save_image(image)
    cut = len(m.console)
    assert m.run(max_instructions=MORE).reason == "instruction-limit"
    proc = subprocess.run([sys.executable, "-c", RESTORE, str(image), str(MORE)],
                          capture_output=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    got = json.loads(proc.stdout)
    tail = bytes(m.console[cut:]).decode("latin-1")
    assert tail.count("\n") > 10  # the kernel printed during the compared stretch
    assert got["console"] == tail
    s = m.save_state()
    assert got["reason"] == "instruction-limit"
    assert (got["instructions"], got["ns"]) == (m.cpu.instruction_count, m.clock.now_ns())
    assert (got["eip"], got["regs"]) == (s["cpu"]["eip"], s["cpu"]["reg"])
    assert (got["pit"], got["pic"], got["uart"], got["nic"]) == (
        repr(s["pit"]), repr(s["pic"]), repr(s["uart"]), repr(s["nic"]))

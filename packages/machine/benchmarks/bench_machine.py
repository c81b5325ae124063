"""Boot the default guest and print instructions executed, wall seconds and MIPS.

    python bench_machine.py                      # the whole boot, to power-off
    python bench_machine.py --max-instructions 20000000

Deterministic clock, network "null:" (a card without cable, so CPython and PyPy run the very
same instructions: the guest's DHCP gives up after its retries and it powers off). Prints
milestones (instructions when /init starts and when the card is up) and BENCH lines for
`nox -s bench`. Then saves the booted guest (as it stands after the run) into a state
image and restores it into a fresh Machine: save time, restore time and image size. Never
asserts anything about speed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

from pyv86.machine import Machine
from pyv86.machine.guest import GuestBuildError, build_guest

MILESTONES = [
    (b"Run /init as init process", "/init started"),
    (b"ne2k-pci 0000:00:05.0 eth0", "ne2k-pci probed"),
    (b"pyv86-guest: init started", "init script running"),
    (b"reboot:", "power-off requested"),
]


def bench(name: str, value: float, unit: str) -> None:
    print("BENCH " + json.dumps({"name": name, "value": value, "unit": unit}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-instructions", type=int, default=None)
    ap.add_argument("--time-limit", type=float, default=3600.0)
    args = ap.parse_args()
    impl = f"{platform.python_implementation()} {platform.python_version()}"
    try:
        guest = build_guest(progress=lambda s: print(s, file=sys.stderr))
    except GuestBuildError as exc:
        print(f"machine bench: no default guest ({exc}); nothing measured")
        return 0
    seen = {}
    tail = bytearray()
    m = Machine(bzimage=guest.bzimage, initrd=guest.initrd, cmdline=guest.cmdline,
                clock="deterministic", network_relay_url="null:")
    start = time.perf_counter()

    def watch(data: bytes) -> None:
        tail.extend(data)
        for pattern, label in MILESTONES:
            if label not in seen and pattern in tail:
                seen[label] = (m.cpu.instruction_count, time.perf_counter() - start)
        del tail[:-64]

    m.serial_listeners.append(watch)
    r = m.run(max_instructions=args.max_instructions, time_limit=args.time_limit)
    print(f"machine bench on {impl}: default guest boot, deterministic clock, null: network")
    for _, label in MILESTONES:
        if label in seen:
            n, t = seen[label]
            print(f"  {label:22} at {n / 1e6:8.2f} M instructions, {t:8.1f} s")
    print(f"  stopped: {r.reason} ({r.detail}); {r.instructions} instructions, "
          f"{r.wall_seconds:.1f} s wall, {r.mips:.3f} MIPS, guest time {r.guest_seconds:.2f} s")
    bench("guest boot instructions", r.instructions, "instructions")
    bench("guest boot wall time", round(r.wall_seconds, 2), "s")
    bench("guest boot speed", round(r.mips, 4), "MIPS")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "guest.pyv86")
        t0 = time.perf_counter()
        size = m.save_image(path)
        t1 = time.perf_counter()
        clone = Machine(initial_state=path, network_relay_url="null:")
        t2 = time.perf_counter()
    assert clone.cpu.instruction_count == m.cpu.instruction_count  # restored, not rebooted
    print(f"  state image of the booted guest ({m.memory.size >> 20} MiB RAM): "
          f"{size / 2**20:.2f} MiB, save {t1 - t0:.2f} s, restore {t2 - t1:.2f} s")
    bench("booted guest state image size", round(size / 2**20, 3), "MiB")
    bench("booted guest state image save", round(t1 - t0, 3), "s")
    bench("booted guest state image restore", round(t2 - t1, 3), "s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""End-to-end acceptance of issue 7: the default guest boots on pyv86 and gets on the network.

Builds the default guest (cached under ~/.cache/pyv86/guest), boots it with `pyv86 run` in
deterministic mode on the passt network, and reads the console: Linux's own ne2k-pci driver
probes the RTL8029 at 0000:00:05.0 with the card's MAC, udhcpc gets a lease, the gateway
answers pings, the guest powers off and pyv86 exits with 0.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.needs_guest, pytest.mark.needs_passt, pytest.mark.slow]

MAC = "52:54:00:12:34:56"


def _unprivileged_ping_allowed() -> bool:
    """passt answers pings through ICMP "ping" sockets, which the kernel allows only to
    the groups in net.ipv4.ping_group_range (passt runs as nobody, gid 65534, under root)."""
    try:
        with open("/proc/sys/net/ipv4/ping_group_range") as f:
            lo, hi = map(int, f.read().split())
    except (OSError, ValueError):
        return True
    return lo <= 65534 <= hi
WALL_LIMIT = 3600  # seconds; the boot takes a few minutes on CPython


@pytest.fixture(scope="module")
def guest():
    guest_mod = pytest.importorskip("pyv86.machine.guest")
    try:
        return guest_mod.build_guest()
    except guest_mod.GuestBuildError as exc:
        pytest.fail(f"cannot build the default guest: {exc}")


@pytest.fixture(scope="module")
def boot(guest, tmp_path_factory):
    if shutil.which("passt") is None:
        pytest.fail("passt is not installed (scripts/setup-debian installs it)")
    console = tmp_path_factory.mktemp("boot") / "console.txt"
    cmd = [sys.executable, "-m", "pyv86.machine.cli", "run",
           "--bzimage", str(guest.bzimage), "--initrd", str(guest.initrd),
           "--cmdline", guest.cmdline, "--clock", "deterministic",
           "--network-relay-url", "passt:", "--mac-address", MAC,
           "--time-limit", str(WALL_LIMIT), "--serial", str(console)]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=WALL_LIMIT + 120, check=False)
    text = console.read_text(errors="replace") if console.exists() else ""
    return proc, text


def test_ne2k_pci_probes_the_card_at_00_05_0_with_its_mac(boot):
    _, text = boot
    assert re.search(r"ne2k-pci 0000:00:05\.0 eth0: RealTek RTL-8029\(AS\) found at "
                     rf"0x[0-9a-f]+, IRQ \d+, {MAC}\.", text), text[-3000:]
    assert f"pyv86-guest: eth0 {MAC}" in text


def test_udhcpc_gets_a_lease(boot):
    _, text = boot
    assert re.search(r"udhcpc: lease of [\d.]+ obtained", text), text[-3000:]
    assert re.search(r"pyv86-guest: dhcp lease [\d.]+ router [\d.]+", text), text[-3000:]


@pytest.mark.xfail(not _unprivileged_ping_allowed(), strict=True,
                   reason="this host forbids unprivileged ICMP sockets "
                   "(net.ipv4.ping_group_range excludes passt's group), so passt cannot "
                   "forward the guest's pings; the same happens with QEMU + passt")
def test_the_gateway_replies_to_ping(boot):
    _, text = boot
    assert re.search(r"\d+ bytes from [\d.]+: seq=\d", text), text[-3000:]
    assert "pyv86-guest: gateway replied" in text


def test_clean_power_off_and_exit_code_0(boot):
    proc, text = boot
    assert "pyv86-guest: powering off" in text
    assert re.search(r"reboot: (System halted|Power down)", text), text[-3000:]
    assert proc.returncode == 0, proc.stderr[-3000:]

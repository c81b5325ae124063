"""Issue 8: the MAC scenarios of the seed document with the real guest and its ne2k-pci.

The default guest boots on passt with ``pyv86.shell=1`` (its init offers a shell on the
console after DHCP instead of powering off) and a known MAC; once the shell answers, the
machine is saved. Each test restores that image and types on the console as a user would,
with pcap captures (``relay_options={"capture": ...}``) or a switch that records the wire:

1. default: a fresh MAC; the guest's networking stops (udhcpc fails: passt answers the
   image's MAC, the card filters it) until the driver is unbound and bound again;
2. ``preserve_mac_from_state_image``: the image's MAC on the wire, DHCP works as is;
3. ``mac_address_translation``: ``ip link`` still shows the image's MAC, only a fresh one
   reaches the wire, DHCP renewal and ping work as is;
4. two clones of one image, each a ``pyv86 run`` process, on one switch
   (``tests/_switch.py``): with translation they reach each other at once, by default after
   the rebind, with different MACs;

and a guest saved with its driver unbound binds after the restore.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
import threading
import time

import pytest

pytestmark = [pytest.mark.needs_guest, pytest.mark.needs_passt, pytest.mark.slow]

OLD = "52:54:00:12:34:56"
WALL = 1800  # seconds per run; the boot takes a few minutes on CPython


def _unprivileged_ping_allowed() -> bool:
    """passt forwards pings through ICMP "ping" sockets (see tests/test_boot_guest.py)."""
    try:
        with open("/proc/sys/net/ipv4/ping_group_range") as f:
            lo, hi = map(int, f.read().split())
    except (OSError, ValueError):
        return True
    return lo <= 65534 <= hi


def _pcap_frames(path):
    data = path.read_bytes()
    assert len(data) >= 24 and data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1")
    at, frames = 24, []
    while at + 16 <= len(data):
        incl = struct.unpack_from("<I", data, at + 8)[0]
        frames.append(data[at + 16:at + 16 + incl])
        at += 16 + incl
    return frames


def _run_until(m, text: str) -> None:
    """Run until the console shows ``text`` (after what it holds now)."""
    start = len(m.console)
    pattern = text.encode()

    def watch(_data: bytes) -> None:
        if pattern in m.console[start:]:
            m.stop("stopped", "seen")

    m.serial_listeners.append(watch)
    try:
        r = m.run(time_limit=WALL)
    finally:
        m.serial_listeners.remove(watch)
    assert r.reason == "stopped", (r, m.console_text()[-3000:])


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    if shutil.which("passt") is None:
        pytest.fail("passt is not installed (scripts/setup-debian installs it)")
    guest_mod = pytest.importorskip("pyv86.machine.guest")
    from pyv86.machine import Machine

    guest = guest_mod.build_guest()
    m = Machine(bzimage=str(guest.bzimage), initrd=str(guest.initrd),
                cmdline=guest.cmdline + " pyv86.shell=1", network_relay_url="passt:",
                mac_address=OLD)
    _run_until(m, "pyv86-guest: shell")
    m.send_serial(b"echo READY-$((2+2))\n")  # the echoed command line lacks "READY-4"
    _run_until(m, "READY-4")
    assert re.search(r"pyv86-guest: dhcp lease [\d.]+ router [\d.]+", m.console_text())
    path = tmp_path_factory.mktemp("mac") / "shell.pyv86"
    m.save_image(path)
    router = re.search(r"dhcp lease [\d.]+ router ([\d.]+)", m.console_text()).group(1)
    return path, router


def test_translation_keeps_the_guest_mac_and_puts_only_a_fresh_one_on_the_wire(image,
                                                                              tmp_path):
    from pyv86.machine import Machine

    path, router = image
    pcap = tmp_path / "wire.pcap"
    m = Machine(initial_state=path, network_relay_url="passt:", seed=7,
                mac_address_translation=True, relay_options={"capture": str(pcap)})
    new = ":".join(f"{b:02x}" for b in m.nic.mac)
    assert new != OLD and m.nic.guest_mac == bytes.fromhex(OLD.replace(":", ""))
    m.send_serial(b"ip link show eth0; udhcpc -i eth0 -n -q -f -t 5 -T 3 "
                  b"-s /etc/udhcpc.script && echo RENEW-$((1+1)); "
                  b"ping -c 2 -W 3 " + router.encode() + b" && echo PING-$((3+3)); "
                  b"echo DONE-$((4+4))\n")
    _run_until(m, "DONE-8")
    text = m.console_text()
    assert f"link/ether {OLD}" in text  # the guest still sees the image's MAC
    assert "RENEW-2" in text, text[-3000:]  # a new lease through translated DHCP
    if _unprivileged_ping_allowed():
        assert "PING-6" in text, text[-3000:]
    frames = _pcap_frames(pcap)
    old_b, new_b = bytes.fromhex(OLD.replace(":", "")), m.nic.mac
    sent = [f for f in frames if f[6:12] == new_b]
    assert sent, "the guest sent nothing on the wire"
    assert not any(old_b in f for f in frames)  # not in Ethernet, ARP, DHCP chaddr...
    assert all(f[6:12] == new_b or f[0:6] in (new_b, b"\xff" * 6) or f[0] & 1
               for f in frames)


def test_preserve_keeps_the_image_mac_on_the_wire_and_networking_works(image, tmp_path):
    # scenario 2: preserve_mac_from_state_image; no guest action needed
    from pyv86.machine import Machine

    path, _router = image
    pcap = tmp_path / "wire.pcap"
    m = Machine(initial_state=path, network_relay_url="passt:", seed=8,
                preserve_mac_from_state_image=True, relay_options={"capture": str(pcap)})
    old_b = bytes.fromhex(OLD.replace(":", ""))
    assert m.nic.mac == old_b == m.nic.guest_mac
    m.send_serial(b"udhcpc -i eth0 -n -q -f -t 5 -T 3 -s /etc/udhcpc.script "
                  b"&& echo RENEW-$((1+1)); echo DONE-$((4+4))\n")
    _run_until(m, "DONE-8")
    assert "RENEW-2" in m.console_text(), m.console_text()[-3000:]
    sent = [f for f in _pcap_frames(pcap) if f[6:12] == old_b]
    assert sent  # the image's MAC is the one on the wire


def test_default_gives_a_fresh_mac_and_a_driver_rebind_plus_dhcp_uses_it(image, tmp_path):
    # scenario 1: the card's PROM holds a fresh random MAC; re-probing the driver (the
    # seed document's workaround) makes the guest take it, then DHCP works again
    from pyv86.machine import Machine

    path, _router = image
    pcap = tmp_path / "wire.pcap"
    m = Machine(initial_state=path, network_relay_url="passt:", seed=9,
                relay_options={"capture": str(pcap)})
    new = ":".join(f"{b:02x}" for b in m.nic.mac)
    assert new != OLD
    # first the breakage the seed document describes: the driver still sends with the
    # image's MAC, passt answers that MAC, and the card (now the fresh MAC) filters it out
    m.send_serial(b"udhcpc -i eth0 -n -q -f -t 3 -T 2 -s /etc/udhcpc.script "
                  b"&& echo LEASE-$((1+6)) || echo NOLEASE-$((2+6)); echo TRIED-$((3+6))\n")
    _run_until(m, "TRIED-9")
    text = m.console_text()
    assert "NOLEASE-8" in text and "LEASE-7" not in text, text[-3000:]
    old_b = bytes.fromhex(OLD.replace(":", ""))
    before = _pcap_frames(pcap)
    assert any(f[6:12] == old_b for f in before)          # the guest asked, with its old MAC
    assert any(f[0:6] == old_b for f in before)           # passt answered that MAC
    assert m.nic.statistics()["rx_dropped_filtered"] > 0  # and the card filtered the answers
    # then the workaround: re-probe the card and run DHCP again
    m.send_serial(b"echo 0000:00:05.0 > /sys/bus/pci/drivers/ne2k-pci/unbind; "
                  b"echo 0000:00:05.0 > /sys/bus/pci/drivers/ne2k-pci/bind; "
                  b"ip link set eth0 up; ip link show eth0; "
                  b"udhcpc -i eth0 -n -q -f -t 5 -T 3 -s /etc/udhcpc.script "
                  b"&& echo RENEW-$((1+1)); echo DONE-$((4+4))\n")
    _run_until(m, "DONE-8")
    text = m.console_text()
    assert f"link/ether {new}" in text, text[-3000:]
    assert "RENEW-2" in text, text[-3000:]
    new_b = m.nic.mac
    frames = _pcap_frames(pcap)
    assert any(f[6:12] == new_b for f in frames)


def test_a_guest_saved_with_its_driver_unbound_binds_after_restore(image, tmp_path):
    # the seed document's first workaround: unbind before saving, bind after restoring
    from pyv86.machine import Machine

    path, _router = image
    first = Machine(initial_state=path, network_relay_url="passt:", seed=10,
                    preserve_mac_from_state_image=True)
    first.send_serial(b"echo 0000:00:05.0 > /sys/bus/pci/drivers/ne2k-pci/unbind; "
                      b"ls /sys/class/net; echo UNBOUND-$((5+5))\n")
    _run_until(first, "UNBOUND-10")
    assert "eth0" not in first.console_text().rsplit("ls /sys/class/net", 1)[-1]
    unbound = tmp_path / "unbound.pyv86"
    first.save_image(unbound)
    pcap = tmp_path / "wire.pcap"
    m = Machine(initial_state=unbound, network_relay_url="passt:", seed=11,
                relay_options={"capture": str(pcap)})
    new = ":".join(f"{b:02x}" for b in m.nic.mac)
    assert new != OLD
    m.send_serial(b"echo 0000:00:05.0 > /sys/bus/pci/drivers/ne2k-pci/bind; "
                  b"ip link set eth0 up; ip link show eth0; "
                  b"udhcpc -i eth0 -n -q -f -t 5 -T 3 -s /etc/udhcpc.script "
                  b"&& echo RENEW-$((1+1)); echo DONE-$((4+4))\n")
    _run_until(m, "DONE-8")
    text = m.console_text()
    assert f"link/ether {new}" in text, text[-3000:]
    assert "RENEW-2" in text, text[-3000:]
    assert any(f[6:12] == m.nic.mac for f in _pcap_frames(pcap))


# ---------------------------------------------------------------------------------------
# Scenario 4: two machines restored from the same image on one switch. Each is a `pyv86 run`
# process (as a user starts them) driven through its console on stdin/stdout; the switch is
# websockproxy-like (tests/_switch.py) with a DHCP server that leases by hardware address.

class _Guest:
    """A ``pyv86 run`` process whose console is its stdin/stdout."""

    def __init__(self, *args: str) -> None:
        exe = os.path.join(os.path.dirname(sys.executable), "pyv86")
        cmd = [exe] if os.path.exists(exe) else [
            sys.executable, "-c", "import sys; from pyv86.machine.cli import main; "
            "sys.exit(main())"]
        self.out = bytearray()
        self.err = bytearray()
        self.proc = subprocess.Popen([*cmd, "run", *args, "--time-limit", str(WALL)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        for stream, into in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._pump, args=(stream, into), daemon=True).start()

    @staticmethod
    def _pump(stream, into: bytearray) -> None:
        for chunk in iter(lambda: stream.read1(4096), b""):
            into.extend(chunk)

    def type(self, text: str) -> None:
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def text(self) -> str:
        return self.out.decode("utf-8", "replace")

    def wait_for(self, marker: str, timeout: float = WALL) -> str:
        deadline = time.monotonic() + timeout
        while marker.encode() not in self.out:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                time.sleep(0.5)  # let the pumps catch up with the last words
                pytest.fail(f"no {marker!r} on the console (exit {self.proc.poll()}):\n"
                            f"{self.text()[-3000:]}\nstderr:\n"
                            f"{self.err.decode(errors='replace')[-2000:]}")
            time.sleep(0.1)
        return self.text()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(20)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass


DHCP = ("udhcpc -i eth0 -n -q -f -t 5 -T 3 -s /etc/udhcpc.script && . /tmp/lease "
        "&& echo LEASE-$ip-END; echo DHCP-$((1+1))\n")
REBIND = ("echo 0000:00:05.0 > /sys/bus/pci/drivers/ne2k-pci/unbind; "
          "echo 0000:00:05.0 > /sys/bus/pci/drivers/ne2k-pci/bind; "
          "ip link set eth0 up; ip link show eth0; ")


def _two_clones(image, *options: str):
    from _switch import Switch

    path, _router = image
    switch = Switch()
    guests = []
    try:
        for seed in (21, 22):
            guests.append(_Guest("--initial-state", str(path), "--network-relay-url",
                                 switch.url, "--seed", str(seed), *options))
    except BaseException:
        for g in guests:
            g.close()
        switch.close()
        raise
    return switch, guests


def _lease(guest: _Guest) -> str:
    found = re.findall(r"LEASE-([\d.]+)-END", guest.wait_for("DHCP-2"))
    assert found, guest.text()[-3000:]
    return found[-1]


def _ping_each_other(a: _Guest, b: _Guest, ip_a: str, ip_b: str) -> None:
    # one after the other: each machine answers while the other waits
    for n, (src, dst) in enumerate(((a, ip_b), (b, ip_a))):
        src.type(f"ping -c 2 -W 5 {dst} && echo PINGOK-$((10+{n})); echo PINGED-$((20+{n}))\n")
        text = src.wait_for(f"PINGED-{20 + n}")
        assert f"PINGOK-{10 + n}" in text, text[-3000:]


def _note_mac(g: _Guest, pattern: str) -> str:
    """The MAC in the note ``pyv86 run`` prints on stderr after the restore."""
    deadline = time.monotonic() + 120
    while True:
        found = re.search(pattern, g.err.decode(errors="replace"))
        if found:
            return found.group(1)
        if g.proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"no {pattern!r} on stderr: {g.err.decode(errors='replace')[-2000:]}")
        time.sleep(0.1)


def _wire_macs(switch) -> list:
    """The source MACs the switch learned, one set per connection."""
    return sorted(sorted(":".join(f"{x:02x}" for x in m) for m in macs)
                  for macs in switch.sources.values())


def test_two_clones_with_translation_reach_each_other_at_once(image):
    switch, (a, b) = _two_clones(image, "--mac-address-translation")
    old_b = bytes.fromhex(OLD.replace(":", ""))
    try:
        wire = [_note_mac(g, r"card MAC ([0-9a-f:]{17}) on the wire") for g in (a, b)]
        assert wire[0] != wire[1] and OLD not in wire
        for g in (a, b):
            g.type("ip link show eth0; " + DHCP)  # no driver action: DHCP only (new network)
        ip_a, ip_b = _lease(a), _lease(b)
        assert ip_a != ip_b  # the DHCP server saw two different (translated) chaddrs
        for g in (a, b):
            assert f"link/ether {OLD}" in g.text()  # both guests still see the image's MAC
        _ping_each_other(a, b, ip_a, ip_b)
        assert _wire_macs(switch) == sorted([m] for m in wire)
        assert not any(old_b in f for _n, f in switch.frames)  # never on the wire, any layer
        assert sorted(map(str, switch.leases.values())) == sorted((ip_a, ip_b))
    finally:
        for g in (a, b):
            g.close()
        switch.close()


def test_two_clones_by_default_work_after_the_rebind_with_different_macs(image):
    switch, (a, b) = _two_clones(image)
    try:
        macs = [_note_mac(g, r"card MAC ([0-9a-f:]{17}), fresh after the restore")
                for g in (a, b)]
        assert macs[0] != macs[1] and OLD not in macs
        for g in (a, b):
            g.type(REBIND + DHCP)
        ip_a, ip_b = _lease(a), _lease(b)
        assert ip_a != ip_b
        for g, mac in zip((a, b), macs):
            assert f"link/ether {mac}" in g.text(), g.text()[-3000:]
        _ping_each_other(a, b, ip_a, ip_b)
        assert _wire_macs(switch) == sorted([m] for m in macs)
    finally:
        for g in (a, b):
            g.close()
        switch.close()

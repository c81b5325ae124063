"""Issue 8, MAC scenario 3 with the real guest: restore with ``mac_address_translation``.

The default guest boots on passt with ``pyv86.shell=1`` (its init offers a shell on the
console after DHCP instead of powering off) and a known MAC; once the shell answers, the
machine is saved. A fresh Machine restores the image with ``mac_address_translation`` on a
new passt with a pcap capture. Typed on the console as a user would: ``ip link`` still shows
the image's MAC (the driver's view, from the card's PROM and PAR), udhcpc renews a lease
through the translated frames, and the gateway answers a ping (where the host lets passt
forward pings). The capture holds only the fresh MAC: the image's MAC never reaches the wire.
"""

from __future__ import annotations

import re
import shutil
import struct

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

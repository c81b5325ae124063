"""passt: Debian's passt started as a child process on a private UNIX socket, speaking QEMU
stream framing. A real DHCPDISCOVER (RFC 2131) gets a real DHCPOFFER back, as a guest's
udhcpc would; passt is stopped when the relay closes."""

from __future__ import annotations

import os
import shutil

import dpkt
import pytest
import trio
from relay_testlib import mac

from pyv86.relay_client import PASST_MTU, open_relay

pytestmark = [
    pytest.mark.needs_passt,
    pytest.mark.skipif(shutil.which("passt") is None,
                       reason="Debian's passt is not installed (apt install passt); CI installs it"),
]

CLIENT_MAC = mac(0x56)
XID = 0x5079_7686


def dhcp_discover() -> bytes:
    dhcp = dpkt.dhcp.DHCP(
        op=dpkt.dhcp.DHCP_OP_REQUEST, chaddr=CLIENT_MAC, xid=XID, flags=0x8000,
        opts=((dpkt.dhcp.DHCP_OPT_MSGTYPE, bytes([dpkt.dhcp.DHCPDISCOVER])),
              (dpkt.dhcp.DHCP_OPT_PARAM_REQ, bytes([1, 3, 6, 26]))))  # mask, router, DNS, MTU
    udp = dpkt.udp.UDP(sport=68, dport=67, data=bytes(dhcp))
    udp.ulen = len(udp)
    ip = dpkt.ip.IP(src=b"\0\0\0\0", dst=b"\xff\xff\xff\xff", p=dpkt.ip.IP_PROTO_UDP, ttl=64, data=udp)
    ip.len = len(ip)
    eth = dpkt.ethernet.Ethernet(dst=b"\xff" * 6, src=CLIENT_MAC, type=dpkt.ethernet.ETH_TYPE_IP, data=ip)
    return bytes(eth)


def as_dhcp(f: bytes) -> dpkt.dhcp.DHCP | None:
    eth = dpkt.ethernet.Ethernet(f)
    if not isinstance(eth.data, dpkt.ip.IP) or not isinstance(eth.data.data, dpkt.udp.UDP):
        return None
    udp = eth.data.data
    if udp.sport != 67 or udp.dport != 68:
        return None
    return dpkt.dhcp.DHCP(udp.data)


def passt_processes_using(socket_path: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    if socket_path.encode() in fh.read():
                        pids.append(int(entry))
            except OSError:
                pass
    return pids


@pytest.mark.trio
async def test_dhcpdiscover_through_passt_gets_a_dhcpoffer():
    with trio.fail_after(20):
        async with open_relay("passt:") as relay:
            command = relay._transport.command  # type: ignore[attr-defined]
            assert command[command.index("--mtu") + 1] == str(PASST_MTU) == "1500"
            socket_path = command[command.index("--socket") + 1]
            assert passt_processes_using(socket_path), "passt should be running"
            offer = await first_offer(relay)
            opts = dict(offer.opts)
            assert opts[dpkt.dhcp.DHCP_OPT_MSGTYPE] == bytes([dpkt.dhcp.DHCPOFFER])
            assert offer.op == dpkt.dhcp.DHCP_OP_REPLY
            assert offer.chaddr[:6] == CLIENT_MAC
            assert offer.yiaddr != 0
            # option 26, interface MTU: the 1500 we start passt with (fits the NE2000)
            assert int.from_bytes(opts[dpkt.dhcp.DHCP_OPT_MTUSIZE], "big") == 1500
            assert relay.statistics().dropped.get("runt", 0) == 0
        # closing the relay stops passt and removes its private directory
        with trio.fail_after(5):
            while passt_processes_using(socket_path):
                await trio.sleep(0.02)
        assert not os.path.exists(os.path.dirname(socket_path))


@pytest.mark.trio
async def test_passt_answers_arp_for_its_gateway_with_an_unpadded_frame():
    """passt sends 42-byte ARP replies as they are; the relay must not drop them (only
    frames under 14 bytes are junk)."""
    with trio.fail_after(20):
        async with open_relay("passt:") as relay:
            # Learn the gateway from a DHCP offer first.
            await relay.send(dhcp_discover())
            gateway = None
            with trio.move_on_after(5):
                async for f in relay:
                    dhcp = as_dhcp(f)
                    if dhcp is not None and dhcp.xid == XID:
                        gateway = dict(dhcp.opts)[dpkt.dhcp.DHCP_OPT_ROUTER][:4]
                        yiaddr = dhcp.yiaddr.to_bytes(4, "big")
                        break
            assert gateway is not None
            arp = dpkt.arp.ARP(op=dpkt.arp.ARP_OP_REQUEST, sha=CLIENT_MAC, spa=yiaddr,
                               tha=b"\0" * 6, tpa=gateway)
            eth = dpkt.ethernet.Ethernet(dst=b"\xff" * 6, src=CLIENT_MAC,
                                         type=dpkt.ethernet.ETH_TYPE_ARP, data=arp)
            await relay.send(bytes(eth))
            reply = None
            with trio.move_on_after(5):
                async for f in relay:
                    e = dpkt.ethernet.Ethernet(f)
                    if isinstance(e.data, dpkt.arp.ARP) and e.data.op == dpkt.arp.ARP_OP_REPLY:
                        reply = f
                        break
            assert reply is not None, "passt did not answer ARP for its gateway"
            assert len(reply) == 42
            assert dpkt.ethernet.Ethernet(reply).data.spa == gateway


async def first_offer(relay) -> dpkt.dhcp.DHCP:
    for _attempt in range(5):
        await relay.send(dhcp_discover())
        with trio.move_on_after(2):
            async for f in relay:
                dhcp = as_dhcp(f)
                if dhcp is not None and dhcp.xid == XID:
                    return dhcp
    raise AssertionError("no DHCP answer from passt")


@pytest.mark.trio
async def test_a_passt_that_dies_is_restarted_by_the_reconnect_logic():
    import signal

    with trio.fail_after(30):
        async with open_relay("passt:", reconnect_initial_delay=0.05) as relay:
            transport = relay._transport  # type: ignore[attr-defined]
            first_socket = transport.command[transport.command.index("--socket") + 1]
            await first_offer(relay)
            for pid in passt_processes_using(first_socket):
                os.kill(pid, signal.SIGKILL)
            while relay.statistics().reconnects < 1:
                await trio.sleep(0.02)
            second_socket = transport.command[transport.command.index("--socket") + 1]
            assert second_socket != first_socket
            offer = await first_offer(relay)  # the new passt answers DHCP too
            assert offer.chaddr[:6] == CLIENT_MAC
            assert "connection lost" in (relay.statistics().last_error or "")
        while passt_processes_using(second_socket):
            await trio.sleep(0.02)


@pytest.mark.trio
async def test_a_passt_that_fails_to_start_is_a_clear_connect_error():
    from pyv86.relay_client import RelayConnectError
    with trio.fail_after(20):
        with pytest.raises(RelayConnectError, match="passt exited with status") as info:
            async with open_relay("passt:", passt_args=["--no-such-option"]):
                pass
    assert info.value.url == "passt:"
    assert "no-such-option" in str(info.value)  # passt's own complaint is quoted




@pytest.mark.trio
@pytest.mark.skipif(os.geteuid() != 0, reason="passt only changes to 'nobody' when run as root")
async def test_as_root_passt_works_even_when_the_temp_dir_is_private(monkeypatch, tmp_path):
    """Run as root, passt becomes "nobody", which cannot enter a 0700 TMPDIR: the socket
    directory then goes to /tmp instead."""
    import tempfile
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    with trio.fail_after(20):
        async with open_relay("passt:") as relay:
            command = relay._transport.command  # type: ignore[attr-defined]
            assert not command[command.index("--socket") + 1].startswith(str(private))
            await first_offer(relay)

"""End to end without a CPU: an RTL8029 from pyv86.ne2k, driven by the register traffic of
Linux's ne2k-pci + lib8390, on the real `passt:` transport from pyv86.relay_client.

The "driver" below probes the card (reset port, PROM read in word mode), runs
__NS8390_init, transmits with ne2k_pci_block_output (remote DMA write with outsl, RDC
polling) and NS8390_trigger_send (TBCR, TPSR, TXP), and receives as ei_interrupt/ei_receive
do when the card raises its interrupt line: CURR from page 1, the 4-byte header with one
inl (ne2k_pci_get_8390_hdr), the frame by remote DMA read across the ring wrap
(ne2k_pci_block_input), then BNRY = next - 1. Frames the card sends go to relay.send,
frames from relay.receive go to card.receive.

Over that, a DHCP client (RFC 2131, built and parsed with dpkt) gets an address from passt's
DHCP server, ARPs for the gateway and pings it. passt answers a ping to its gateway
address with its own ICMP forwarding (an unprivileged ping socket towards the host, which
needs `net.ipv4.ping_group_range` to include passt's group); the ping is its own test,
skipped with that reason when the host forbids those sockets (checked when it runs).

The last test does DHCP and ARP with a card restored from a saved state in
mac_address_translation mode: the driver keeps the MAC it read before the save, the wire
(the relay's pcap capture, read back with dpkt) carries only the card's fresh MAC.
"""

from __future__ import annotations

import os
import shutil

import pytest

dpkt = pytest.importorskip("dpkt", reason="dpkt (test-only) is not installed")
trio = pytest.importorskip("trio", reason="trio is not installed")
ne2k = pytest.importorskip("pyv86.ne2k", reason="pyv86-ne2k is not installed")
relay_client = pytest.importorskip("pyv86.relay_client",
                                   reason="pyv86-relay-client is not installed")

pytestmark = [
    pytest.mark.needs_passt,
    pytest.mark.skipif(shutil.which("passt") is None,
                       reason="Debian's passt is not installed (apt install passt)"),
]

# lib8390 register offsets and command bits (8390.h)
CMD, STARTPG, STOPPG, BOUNDARY, TPSR, TCNTLO, TCNTHI, ISR = 0, 1, 2, 3, 4, 5, 6, 7
RSARLO, RSARHI, RCNTLO, RCNTHI, RXCR, TXCR, DCFG, IMR = 8, 9, 10, 11, 12, 13, 14, 15
CURPAG, DATA, RESET = 7, 0x10, 0x1F
NODMA, PAGE0, PAGE1, STOP, START, TRANS, RREAD, RWRITE = 0x20, 0, 0x40, 1, 2, 4, 8, 0x10
ENISR_RX, ENISR_TX, ENISR_RX_ERR, ENISR_TX_ERR, ENISR_OVER = 1, 2, 4, 8, 0x10
ENISR_COUNTERS, ENISR_RDC, ENISR_RESET, ENISR_ALL = 0x20, 0x40, 0x80, 0x3F

IMAGE_MAC = bytes.fromhex("525400123456")
XID = 0x7079_3836
BROADCAST = b"\xff" * 6


class LinuxNe2kPciDriver:
    """Port traffic of ne2k-pci.c + lib8390.c for a 16 KiB ring (TX at 0x40, RX 0x4c-0x80)."""

    TX_START, RX_START, STOP_PG = 0x40, 0x4C, 0x80

    def __init__(self, card) -> None:
        self.card = card
        self.received: list[bytes] = []
        self.tx_done = 0
        self.rx_errors = 0
        self.irq_line = 0

    def attach(self, card) -> None:
        self.card = card
        card.irq = self.on_irq

    def out(self, off: int, val: int) -> None:
        self.card.io_write(off, val, 1)

    def inb(self, off: int) -> int:
        return self.card.io_read(off, 1)

    def on_irq(self, level: int) -> None:
        self.irq_line = level       # a CPU takes the interrupt between instructions

    def service(self) -> None:
        """What the interrupt controller and CPU do: run ei_interrupt while INTA is high."""
        for _ in range(4):
            if not self.irq_line:
                return
            self.interrupt()
        raise AssertionError("INTA stays asserted after ei_interrupt")

    def probe(self) -> bytes:                        # ne2k_pci_init_one
        self.out(RESET, self.inb(RESET))
        for _ in range(100):
            if self.inb(ISR) & ENISR_RESET:
                break
        else:
            raise AssertionError("Card failure (no reset ack)")
        self.out(ISR, 0xFF)
        for val, off in [(NODMA + PAGE0 + STOP, CMD), (0x49, DCFG), (0, RCNTLO), (0, RCNTHI),
                         (0, IMR), (0xFF, ISR), (0x20, RXCR), (0x02, TXCR), (32, RCNTLO),
                         (0, RCNTHI), (0, RSARLO), (0, RSARHI), (RREAD + START, CMD)]:
            self.out(off, val)
        # 32 byte reads in word mode: each consumes a word of the doubled PROM, so the
        # 16 PROM bytes come out once each, then the data port floats (RBCR reached 0)
        prom = bytes(self.inb(DATA) for _ in range(32))
        self.out(DCFG, 0x49)
        assert prom[14:16] == b"WW" and prom[16:] == b"\xff" * 16
        return prom[:6]

    def init(self, mac: bytes) -> None:               # __NS8390_init(dev, 1)
        for off, val in [(CMD, NODMA + PAGE0 + STOP), (DCFG, 0x49), (RCNTLO, 0), (RCNTHI, 0),
                         (RXCR, 0x20), (TXCR, 0x02), (TPSR, self.TX_START),
                         (STARTPG, self.RX_START), (BOUNDARY, self.STOP_PG - 1),
                         (STOPPG, self.STOP_PG), (ISR, 0xFF), (IMR, 0),
                         (CMD, NODMA + PAGE1 + STOP)]:
            self.out(off, val)
        for i in range(6):
            self.out(1 + i, mac[i])
        for i in range(8):
            self.out(8 + i, 0xFF)                    # MAR: accept all multicast hashes
        self.out(CURPAG, self.RX_START)
        self.card.irq = self.on_irq
        for off, val in [(CMD, NODMA + PAGE0 + STOP), (ISR, 0xFF), (IMR, ENISR_ALL),
                         (CMD, NODMA + PAGE0 + START), (TXCR, 0), (RXCR, 0x04)]:  # AB
            self.out(off, val)

    def transmit(self, frame: bytes) -> None:       # block_output + trigger_send
        length = max(len(frame), 60)
        data = frame.ljust(length, b"\0")
        count = (length + 3) & ~3                    # ne2k-pci rounds for outsl
        data = data.ljust(count, b"\0")
        for off, val in [(CMD, PAGE0 + START + NODMA), (RCNTLO, count & 0xFF),
                         (RCNTHI, count >> 8), (RSARLO, 0), (RSARHI, self.TX_START),
                         (CMD, RWRITE + START)]:
            self.out(off, val)
        for i in range(0, count, 4):
            self.card.io_write(DATA, int.from_bytes(data[i:i + 4], "little"), 4)
        for _ in range(100):
            if self.inb(ISR) & ENISR_RDC:
                break
        else:
            raise AssertionError("timeout waiting for Tx RDC")
        self.out(ISR, ENISR_RDC)
        self.out(CMD, NODMA + PAGE0)
        assert not self.inb(CMD) & TRANS, "trigger_send() called with the transmitter busy"
        for off, val in [(TCNTLO, length & 0xFF), (TCNTHI, length >> 8), (TPSR, self.TX_START),
                         (CMD, NODMA + TRANS + START)]:
            self.out(off, val)

    def _remote_read(self, addr: int, count: int) -> bytes:
        for off, val in [(CMD, NODMA + PAGE0 + START), (RCNTLO, count & 0xFF),
                         (RCNTHI, count >> 8), (RSARLO, addr & 0xFF), (RSARHI, addr >> 8),
                         (CMD, RREAD + START)]:
            self.out(off, val)
        out = bytearray()
        for _ in range(count >> 2):
            out += self.card.io_read(DATA, 4).to_bytes(4, "little")
        if count & 2:
            out += self.card.io_read(DATA, 2).to_bytes(2, "little")
        if count & 1:
            out.append(self.card.io_read(DATA, 1))
        self.out(ISR, ENISR_RDC)
        return bytes(out)

    def receive(self) -> None:                       # ei_receive
        for _ in range(10):
            self.out(CMD, NODMA + PAGE1)
            rxing_page = self.inb(CURPAG)
            self.out(CMD, NODMA + PAGE0)
            this_frame = self.inb(BOUNDARY) + 1
            if this_frame >= self.STOP_PG:
                this_frame = self.RX_START
            if this_frame == rxing_page:
                break
            status, nxt, count = self._header(this_frame)
            pkt_len = count - 4
            if status & 0x0F == 0x01 and 60 <= pkt_len <= 1518:
                self.received.append(self._remote_read((this_frame << 8) + 4, pkt_len))
            else:
                self.rx_errors += 1
            if not self.RX_START <= nxt < self.STOP_PG:
                raise AssertionError(f"bogus next-frame page {nxt:#x}")
            self.out(BOUNDARY, nxt - 1 if nxt > self.RX_START else self.STOP_PG - 1)
        self.out(ISR, ENISR_RX + ENISR_RX_ERR)

    def _header(self, page: int) -> tuple[int, int, int]:   # ne2k_pci_get_8390_hdr: one inl
        h = int.from_bytes(self._remote_read(page << 8, 4), "little")
        return h & 0xFF, (h >> 8) & 0xFF, h >> 16

    def interrupt(self) -> None:                     # ei_interrupt
        self.out(CMD, NODMA + PAGE0)
        for _ in range(12):
            isr = self.inb(ISR)
            if not isr:
                break
            if isr & ENISR_OVER:
                raise AssertionError("unexpected ring overrun")
            if isr & (ENISR_RX + ENISR_RX_ERR):
                self.receive()
            if isr & (ENISR_TX + ENISR_TX_ERR):
                self.tx_done += bool(isr & ENISR_TX)
                self.out(ISR, isr & (ENISR_TX + ENISR_TX_ERR))
            if isr & ENISR_COUNTERS:
                for off in (13, 14, 15):
                    self.inb(off)
                self.out(ISR, ENISR_COUNTERS)
            if isr & ENISR_RDC:
                self.out(ISR, ENISR_RDC)
        self.out(CMD, NODMA + PAGE0 + START)


# --- a small IPv4 stack over the driver, packets built and parsed with dpkt -------------

def eth(dst: bytes, src: bytes, etype: int, payload) -> bytes:
    return bytes(dpkt.ethernet.Ethernet(dst=dst, src=src, type=etype, data=payload))


def udp_ip(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes):
    udp = dpkt.udp.UDP(sport=sport, dport=dport, data=payload)
    udp.ulen = len(udp)
    ip = dpkt.ip.IP(src=src, dst=dst, p=dpkt.ip.IP_PROTO_UDP, ttl=64, data=udp)
    ip.len = len(ip)
    return ip


def dhcp_frame(mac: bytes, msgtype: int, extra=()) -> bytes:
    msg = dpkt.dhcp.DHCP(op=dpkt.dhcp.DHCP_OP_REQUEST, chaddr=mac, xid=XID,
                         opts=((dpkt.dhcp.DHCP_OPT_MSGTYPE, bytes([msgtype])), *extra,
                               (dpkt.dhcp.DHCP_OPT_PARAM_REQ, bytes([1, 3, 6]))))
    ip = udp_ip(b"\0" * 4, b"\xff" * 4, 68, 67, bytes(msg))
    return eth(BROADCAST, mac, dpkt.ethernet.ETH_TYPE_IP, ip)


def dhcp_reply(frame: bytes):
    e = dpkt.ethernet.Ethernet(frame)
    if (isinstance(e.data, dpkt.ip.IP) and isinstance(e.data.data, dpkt.udp.UDP)
            and e.data.data.sport == 67):
        msg = dpkt.dhcp.DHCP(e.data.data.data)
        if msg.xid == XID:
            return e, msg
    return None


def arp_reply(frame: bytes, ip: bytes):
    e = dpkt.ethernet.Ethernet(frame)
    if (isinstance(e.data, dpkt.arp.ARP) and e.data.op == dpkt.arp.ARP_OP_REPLY
            and e.data.spa == ip):
        return e.data
    return None


def echo_reply(frame: bytes, src: bytes, ident: int):
    e = dpkt.ethernet.Ethernet(frame)
    if isinstance(e.data, dpkt.ip.IP) and isinstance(e.data.data, dpkt.icmp.ICMP):
        icmp = e.data.data
        if (e.data.src == src and icmp.type == dpkt.icmp.ICMP_ECHOREPLY
                and icmp.data.id == ident):
            return e, icmp
    return None


async def exchange(driver, frame: bytes, match, *, attempts: int = 4, wait: float = 2.0):
    """Transmit `frame` through the card and wait for a received frame `match` accepts,
    retransmitting like a client would; bounded by attempts * wait seconds."""
    for _ in range(attempts):
        driver.transmit(frame)
        with trio.move_on_after(wait):
            while True:
                driver.service()
                while driver.received:
                    found = match(driver.received.pop(0))
                    if found is not None:
                        return found
                await trio.sleep(0.005)
    raise AssertionError("no answer from passt")


async def wire_to_card(relay, driver) -> None:
    async for frame in relay:
        driver.card.receive(frame)


async def dhcp_arp_ping(driver, mac: bytes, *, ping: bool) -> dict:
    """DISCOVER, OFFER, REQUEST, ACK, ARP for the gateway, then (with `ping`) an ICMP echo
    to it."""
    _, offer = await exchange(driver, dhcp_frame(mac, dpkt.dhcp.DHCPDISCOVER), dhcp_reply)
    opts = dict(offer.opts)
    assert opts[dpkt.dhcp.DHCP_OPT_MSGTYPE] == bytes([dpkt.dhcp.DHCPOFFER])
    assert offer.chaddr[:6] == mac
    yiaddr = offer.yiaddr.to_bytes(4, "big")
    server_id = opts[dpkt.dhcp.DHCP_OPT_SERVER_ID]
    request = dhcp_frame(mac, dpkt.dhcp.DHCPREQUEST,
                         ((dpkt.dhcp.DHCP_OPT_REQ_IP, yiaddr),
                          (dpkt.dhcp.DHCP_OPT_SERVER_ID, server_id)))
    ack_eth, ack = await exchange(driver, request, dhcp_reply)
    ack_opts = dict(ack.opts)
    assert ack_opts[dpkt.dhcp.DHCP_OPT_MSGTYPE] == bytes([dpkt.dhcp.DHCPACK])
    assert ack.yiaddr.to_bytes(4, "big") == yiaddr
    assert ack.chaddr[:6] == mac
    gateway = ack_opts[dpkt.dhcp.DHCP_OPT_ROUTER][:4]

    arp = dpkt.arp.ARP(op=dpkt.arp.ARP_OP_REQUEST, sha=mac, spa=yiaddr, tha=b"\0" * 6,
                       tpa=gateway)
    reply = await exchange(driver, eth(BROADCAST, mac, dpkt.ethernet.ETH_TYPE_ARP, arp),
                           lambda f: arp_reply(f, gateway))
    assert reply.tha == mac and reply.tpa == yiaddr
    gateway_mac = reply.sha

    result = {"yiaddr": yiaddr, "gateway": gateway, "gateway_mac": gateway_mac,
              "server_mac": ack_eth.src, "ping": None}
    if not ping:
        return result
    ident = 0x3836
    icmp = dpkt.icmp.ICMP(type=dpkt.icmp.ICMP_ECHO,
                          data=dpkt.icmp.ICMP.Echo(id=ident, seq=1, data=b"pyv86-e2e" * 4))
    ip = dpkt.ip.IP(src=yiaddr, dst=gateway, p=dpkt.ip.IP_PROTO_ICMP, ttl=64, id=1, data=icmp)
    ip.len = len(ip)
    ping = eth(gateway_mac, mac, dpkt.ethernet.ETH_TYPE_IP, ip)
    pong_eth, pong = await exchange(driver, ping, lambda f: echo_reply(f, gateway, ident))
    assert pong_eth.dst == mac
    assert pong.data.data == b"pyv86-e2e" * 4
    result["ping"] = pong
    return result


def _ping_sockets_allowed() -> bool:
    """passt forwards ICMP with unprivileged ping sockets (SOCK_DGRAM, IPPROTO_ICMP)."""
    try:
        with open("/proc/sys/net/ipv4/ping_group_range") as fh:
            low, high = (int(x) for x in fh.read().split())
    except (OSError, ValueError):
        return True
    if os.geteuid() == 0:
        groups = {65534}    # started as root, passt drops to nobody/nogroup
    else:
        groups = {os.getgid(), *os.getgroups()}
    return any(low <= g <= high for g in groups)


def passt_pids(socket_path: str) -> list[int]:
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


async def run_linux_driver_on_passt(*, ping: bool) -> dict:
    card = ne2k.NE2000(model="rtl8029", mac=IMAGE_MAC)
    driver = LinuxNe2kPciDriver(card)
    mac = driver.probe()
    assert mac == IMAGE_MAC
    with trio.fail_after(40):
        async with relay_client.open_relay("passt:") as relay:
            command = relay._transport.command
            socket_path = command[command.index("--socket") + 1]
            assert passt_pids(socket_path)
            card.send = relay.send_nowait
            driver.init(mac)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(wire_to_card, relay, driver)
                result = await dhcp_arp_ping(driver, mac, ping=ping)
                nursery.cancel_scope.cancel()
            sends = 3 + ping                          # DISCOVER, REQUEST, ARP (+ echo)
            stats = card.statistics()
            assert stats["tx_frames"] >= sends and stats["rx_frames"] >= sends
            assert driver.tx_done >= sends            # PTX seen by ei_interrupt for each
            assert driver.rx_errors == 0
            assert relay.statistics().dropped_total == 0
    with trio.fail_after(5):                          # closing the relay stopped passt
        while passt_pids(socket_path):
            await trio.sleep(0.02)
    return result


def test_linux_driver_on_an_rtl8029_gets_a_dhcp_lease_from_passt_and_arps_its_gateway():
    result = trio.run(lambda: run_linux_driver_on_passt(ping=False))
    # passt hands out the host's own address and its gateway (RFC 2131 OFFER/ACK)
    assert result["yiaddr"] != b"\0" * 4 and result["gateway"] != result["yiaddr"]


_NO_PING = ("the host forbids unprivileged ICMP sockets for passt's group "
            "(net.ipv4.ping_group_range), so passt cannot answer pings")


def test_linux_driver_pings_the_passt_gateway_through_the_card():
    # Checked when the test runs (not at collection): the sysctl is host state that may
    # change while a long session runs, and passt reads it for each ping.
    if not _ping_sockets_allowed():
        pytest.skip(_NO_PING)
    try:
        result = trio.run(lambda: run_linux_driver_on_passt(ping=True))
    except BaseException:
        if not _ping_sockets_allowed():
            pytest.skip(_NO_PING + " (changed while the test ran)")
        raise
    assert result["ping"] is not None


def test_mac_translation_after_restore_driver_keeps_old_mac_wire_sees_only_the_new(tmp_path):
    capture = tmp_path / "wire.pcap"

    async def main():
        # The "image": a card the driver brought up with IMAGE_MAC, saved while running.
        first = ne2k.NE2000(model="rtl8029", mac=IMAGE_MAC)
        driver = LinuxNe2kPciDriver(first)
        old = driver.probe()
        driver.init(old)
        state = first.save_state()

        clone = ne2k.NE2000(model="rtl8029")
        clone.restore_state(state, mac_mode="mac_address_translation")
        new = clone.mac
        assert clone.guest_mac == old and new != old and clone.translating
        driver.attach(clone)                          # the guest driver never re-probes
        with trio.fail_after(40):
            async with relay_client.open_relay("passt:", capture=str(capture)) as relay:
                clone.send = relay.send_nowait
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(wire_to_card, relay, driver)
                    # the guest's view: the old MAC (no ping: it carries no MAC beyond
                    # Ethernet, and passt's answer depends on host state)
                    result = await dhcp_arp_ping(driver, old, ping=False)
                    nursery.cancel_scope.cancel()
        stats = clone.statistics()
        assert stats["tx_translated"] >= 3 and stats["rx_translated"] >= 3
        return new, result

    new, result = trio.run(main)

    with open(capture, "rb") as fh:
        frames = [bytes(buf) for _ts, buf in dpkt.pcap.Reader(fh)]
    assert frames, "the capture is empty"
    assert not [f for f in frames if IMAGE_MAC in f], "the image's MAC leaked onto the wire"
    sent = [dpkt.ethernet.Ethernet(f) for f in frames if f[6:12] == new]
    received = [dpkt.ethernet.Ethernet(f) for f in frames if f[:6] == new]
    assert len(sent) >= 3 and len(received) >= 3
    requests = [f for f, e in zip(frames, map(dpkt.ethernet.Ethernet, frames))
                if f[6:12] == new and isinstance(e.data, dpkt.ip.IP)
                and isinstance(e.data.data, dpkt.udp.UDP) and e.data.data.dport == 67]
    assert len(requests) >= 2                           # DISCOVER and REQUEST
    for f in requests:                                  # chaddr rewritten, checksum valid
        ip = dpkt.ethernet.Ethernet(f).data
        assert dpkt.dhcp.DHCP(ip.data.data).chaddr[:6] == new
        assert _udp_checksum_ok(f[14:14 + ip.len])
    arps = [e.data for e in sent if isinstance(e.data, dpkt.arp.ARP)]
    assert arps and all(a.sha == new for a in arps)
    replies = [e.data for e in received if isinstance(e.data, dpkt.arp.ARP)]
    assert replies and all(a.tha == new for a in replies)
    assert result["gateway_mac"] != new


def _udp_checksum_ok(raw: bytes) -> bool:
    """RFC 768 over the IPv4 packet's bytes as captured (not re-serialised by dpkt)."""
    udp = raw[(raw[0] & 0x0F) * 4:]
    assert udp[6:8] != b"\0\0", "the driver's DHCP frames carry a checksum"
    pseudo = raw[12:20] + bytes([0, 17]) + len(udp).to_bytes(2, "big")
    data = pseudo + udp + (b"\0" if len(udp) & 1 else b"")
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF

"""A websockproxy-style Ethernet switch on loopback for the two-clone tests.

Each WebSocket client is a switch port; every binary message is one Ethernet frame. The
switch learns source MACs per port, forwards unicast frames to the learned port and floods
the rest, like websockproxy's switch. A DHCP server sits on the switch as one more port: it
leases 10.0.2.15, .16, ... one address per client hardware address (``chaddr``), so two
guests that present the same MAC get the same address, and two with different MACs get
different ones. Its replies are broadcast (the guest has no address yet).

Runs trio in a helper thread; ``close()`` stops it. Everything is bounded: the server only
serves 127.0.0.1, and the test that uses it stops it in a ``finally``.
"""

from __future__ import annotations

import ipaddress
import struct
import threading
from collections import defaultdict
from typing import Any, Dict, List, Optional

import dpkt
import trio
import trio_websocket

BROADCAST = b"\xff" * 6
SERVER_MAC = bytes.fromhex("02005e000001")
SERVER_IP = ipaddress.IPv4Address("10.0.2.2")
FIRST_LEASE = ipaddress.IPv4Address("10.0.2.15")


class Switch:
    def __init__(self) -> None:
        self.port = 0
        self.table: Dict[bytes, Any] = {}              # MAC -> connection (learned)
        self.sources: Dict[int, set] = defaultdict(set)  # connection number -> its MACs
        self.leases: Dict[bytes, ipaddress.IPv4Address] = {}
        self.frames: List[tuple] = []                  # (connection number, frame)
        self.errors: List[str] = []
        self._conns: List[Any] = []
        self._token: Optional[trio.lowlevel.TrioToken] = None
        self._cancel: Optional[trio.CancelScope] = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True,
                                        name="test-switch")
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the test switch did not start")

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def close(self) -> None:
        if self._token is not None and self._cancel is not None:
            try:
                trio.from_thread.run_sync(self._cancel.cancel, trio_token=self._token)
            except trio.RunFinishedError:
                pass
        self._thread.join(10)

    # ----------------------------------------------------------------- trio side
    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as scope:
            self._cancel = scope
            async with trio.open_nursery() as nursery:
                server = await nursery.start(trio_websocket.serve_websocket, self._serve,
                                             "127.0.0.1", 0, None)
                self.port = server.port
                self._ready.set()

    async def _serve(self, request: Any) -> None:
        ws = await request.accept()
        number = len(self._conns)
        self._conns.append(ws)
        try:
            while True:
                message = await ws.get_message()
                if isinstance(message, str) or len(message) < 14:
                    continue
                await self._forward(number, ws, bytes(message))
        except trio_websocket.ConnectionClosed:
            pass
        finally:
            for mac in [m for m, c in self.table.items() if c is ws]:
                del self.table[mac]

    async def _forward(self, number: int, ws: Any, frame: bytes) -> None:
        self.frames.append((number, frame))
        src, dst = frame[6:12], frame[0:6]
        if not src[0] & 1:
            self.table[src] = ws
            self.sources[number].add(src)
        reply = self._dhcp(frame)
        if reply is not None:
            await self._send_all(reply, None)
        if dst[0] & 1 or dst not in self.table:
            await self._send_all(frame, ws)
        elif self.table[dst] is not ws:
            await self._send(self.table[dst], frame)

    async def _send_all(self, frame: bytes, but: Any) -> None:
        for other in list(self._conns):
            if other is not but:
                await self._send(other, frame)

    async def _send(self, ws: Any, frame: bytes) -> None:
        try:
            await ws.send_message(frame)
        except trio_websocket.ConnectionClosed:
            pass

    # ----------------------------------------------------------------- DHCP server
    def _dhcp(self, frame: bytes) -> Optional[bytes]:
        try:
            eth = dpkt.ethernet.Ethernet(frame)
            ip = eth.data
            if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, dpkt.udp.UDP):
                return None
            if ip.data.dport != 67:
                return None
            req = dpkt.dhcp.DHCP(ip.data.data)
        except (dpkt.UnpackError, struct.error, ValueError) as exc:
            self.errors.append(f"DHCP parse: {exc!r}")
            return None
        opts = dict(req.opts)
        kind = opts.get(dpkt.dhcp.DHCP_OPT_MSGTYPE, b"\x00")[0]
        answer = {dpkt.dhcp.DHCPDISCOVER: dpkt.dhcp.DHCPOFFER,
                  dpkt.dhcp.DHCPREQUEST: dpkt.dhcp.DHCPACK}.get(kind)
        if answer is None:
            return None
        chaddr = bytes(req.chaddr[:6])
        lease = self.leases.setdefault(chaddr, FIRST_LEASE + len(self.leases))
        reply = dpkt.dhcp.DHCP(
            op=dpkt.dhcp.DHCP_OP_REPLY, xid=req.xid, flags=req.flags, chaddr=req.chaddr,
            yiaddr=int(lease), siaddr=int(SERVER_IP),
            opts=[(dpkt.dhcp.DHCP_OPT_MSGTYPE, bytes([answer])),
                  (dpkt.dhcp.DHCP_OPT_SERVER_ID, SERVER_IP.packed),
                  (dpkt.dhcp.DHCP_OPT_LEASE_SEC, struct.pack(">I", 3600)),
                  (dpkt.dhcp.DHCP_OPT_NETMASK, bytes([255, 255, 255, 0]))])
        udp = dpkt.udp.UDP(sport=67, dport=68, data=bytes(reply))
        udp.ulen = len(udp)
        out = dpkt.ip.IP(src=SERVER_IP.packed, dst=b"\xff" * 4, p=dpkt.ip.IP_PROTO_UDP,
                         ttl=64, data=udp)
        out.len = len(out)
        return bytes(dpkt.ethernet.Ethernet(dst=BROADCAST, src=SERVER_MAC,
                                            type=dpkt.ethernet.ETH_TYPE_IP, data=out))

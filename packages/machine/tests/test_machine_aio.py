"""The trio-native run loop pumps frames between the card and a relay (QEMU stream framing
over a UNIX socket, served by the test on loopback)."""

import socket
import struct

import pytest
from _images import bzimage
from test_machine_machine import ne2k_driver_send

from pyv86.machine import Machine

trio = pytest.importorskip("trio")
pytest.importorskip("pyv86.relay_client")

MiB = 1 << 20
GUEST_FRAME = bytes.fromhex("ffffffffffff525400123456" "0806") + bytes(46)
REPLY = bytes.fromhex("ffffffffffff020000000001" "0806") + bytes(46)


def test_run_async_carries_frames_both_ways_over_a_stream_relay(tmp_path):
    path = str(tmp_path / "relay.sock")
    got = []

    async def main():
        listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        await listener.bind(path)
        listener.listen(1)
        m = Machine(bzimage=bzimage(bytes.fromhex("ebfe")), network_relay_url=f"unix://{path}",
                    clock="deterministic", memory_size=16 * MiB,
                    mac_address="52:54:00:12:34:56")

        async def serve():
            conn, _ = await listener.accept()
            with conn:
                buf = b""
                while len(buf) < 4 or len(buf) < 4 + struct.unpack(">I", buf[:4])[0]:
                    buf += await conn.recv(4096)
                n = struct.unpack(">I", buf[:4])[0]
                got.append(buf[4:4 + n])
                await conn.send(struct.pack(">I", len(REPLY)) + REPLY)
                await trio.sleep(5)

        async def drive():
            while m._transport_send is None:
                await trio.sleep(0.01)
            ne2k_driver_send(m, GUEST_FRAME)
            while m.frames_received == 0:
                await trio.sleep(0.01)
            m.stop("stopped", "test done")

        try:
            with trio.fail_after(30):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(serve)
                    nursery.start_soon(drive)
                    result = await m.run_async(time_limit=20)
                    nursery.cancel_scope.cancel()
        finally:
            listener.close()
        return m, result

    m, result = trio.run(main)
    assert got == [GUEST_FRAME]
    assert m.frames_received == 1
    assert result.reason == "stopped"

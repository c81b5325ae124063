"""Shared helpers for the relay-client tests (imported as ``relay_testlib``; conftest.py puts
this folder on sys.path because pytest runs in importlib mode): frames and loopback peers.

Every peer listens on 127.0.0.1 with a port the kernel picks (or a UNIX socket under
tmp_path); every wait is bounded by ``trio.fail_after``.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Awaitable, Callable

import trio
import trio_websocket

BROADCAST = b"\xff" * 6


def mac(n: int) -> bytes:
    """A locally administered unicast MAC ending in ``n``."""
    return bytes([0x02, 0, 0, 0, 0, n & 0xFF])


def frame(size: int = 60, *, seq: int = 0, dst: bytes = BROADCAST, src: bytes = mac(1),
          ethertype: int = 0x88B5) -> bytes:
    """An Ethernet frame (no FCS) of ``size`` bytes whose payload starts with ``seq``
    (ethertype 0x88B5 is IEEE's "local experimental" type)."""
    assert size >= 14
    header = dst + src + struct.pack(">H", ethertype)
    body = struct.pack(">I", seq)[: size - 14]
    body += bytes((seq + i) & 0xFF for i in range(size - 14 - len(body)))
    return header + body


def seq_of(f: bytes) -> int:
    return struct.unpack(">I", f[14:18])[0]


def stream_frame(payload: bytes) -> bytes:
    """QEMU stream framing written by hand (independent of the package's encoder)."""
    return struct.pack(">I", len(payload)) + payload


async def read_stream_frames(stream: trio.abc.Stream, count: int) -> list[bytes]:
    """Read ``count`` length-prefixed frames from a stream (test-side decoder)."""
    buf = b""
    frames: list[bytes] = []
    while len(frames) < count:
        while len(buf) >= 4 and len(buf) >= 4 + struct.unpack(">I", buf[:4])[0]:
            n = struct.unpack(">I", buf[:4])[0]
            frames.append(buf[4:4 + n])
            buf = buf[4 + n:]
        if len(frames) >= count:
            break
        data = await stream.receive_some(65536)
        if not data:
            raise EOFError(f"peer closed after {len(frames)} of {count} frames")
        buf += data
    return frames


async def echo_stream(stream: trio.abc.Stream) -> None:
    """Echo bytes back: with stream framing this echoes every frame."""
    try:
        async for data in stream:
            await stream.send_all(data)
    except trio.BrokenResourceError:
        pass


async def start_tcp_server(nursery: trio.Nursery, handler: Callable[[trio.SocketStream], Awaitable[None]]) -> int:
    listeners = await nursery.start(functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    return listeners[0].socket.getsockname()[1]


async def start_unix_server(nursery: trio.Nursery, path: str,
                            handler: Callable[[trio.SocketStream], Awaitable[None]]) -> trio.SocketListener:
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(path)
    sock.listen(16)
    listener = trio.SocketListener(sock)
    await nursery.start(trio.serve_listeners, handler, [listener])
    return listener


async def ws_echo_handler(request: trio_websocket.WebSocketRequest) -> None:
    ws = await request.accept()
    try:
        while True:
            await ws.send_message(await ws.get_message())
    except trio_websocket.ConnectionClosed:
        pass


async def start_ws_server(nursery: trio.Nursery, handler: Callable[[trio_websocket.WebSocketRequest], Awaitable[None]],
                          ssl_context: object = None) -> int:
    server = await nursery.start(trio_websocket.serve_websocket, handler, "127.0.0.1", 0, ssl_context)
    return server.port


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll a condition on the trio loop (a tiny sleep between checks), bounded."""
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.002)

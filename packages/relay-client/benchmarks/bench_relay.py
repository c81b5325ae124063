"""Frames per second and round-trip latency through pyv86.relay_client over loopback.

For ws://, tcp:// and unix:// and for 64- and 1514-byte frames:

- echo throughput: one task sends frames with ``await relay.send()`` while another receives
  the echoes with ``await relay.receive()``; frames/s = echoed frames / elapsed time;
- CPU time per echoed frame (process time, both ends and the trio loop): steadier than the
  wall-clock rate on a busy machine;
- round-trip latency: one frame out, wait for its echo, repeat; median and 99th percentile.

The echo peer runs in the same process and trio loop (a trio-websocket server, or a raw
stream echo), so the figures include the peer's cost too: they are for comparing transports
and releases, not absolute capacity. Each measurement runs for a fixed time budget, so the
whole script takes about 10 seconds. Prints human-readable lines and one ``BENCH {json}``
line per figure (see noxfile.py). Nothing is asserted.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

import trio
import trio_websocket

from pyv86.relay_client import open_relay

THROUGHPUT_SECONDS = 0.6
LATENCY_SECONDS = 0.3
SIZES = (64, 1514)


def make_frame(size: int, seq: int) -> bytes:
    return (b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x88\xb5" + seq.to_bytes(4, "big")
            + bytes(size - 18))


async def stream_echo(stream: trio.abc.Stream) -> None:
    try:
        async for data in stream:
            await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def ws_echo(request: trio_websocket.WebSocketRequest) -> None:
    ws = await request.accept()
    try:
        while True:
            await ws.send_message(await ws.get_message())
    except trio_websocket.ConnectionClosed:
        pass


async def throughput(url: str, size: int) -> tuple[float, float]:
    async with open_relay(url) as relay:
        frames = [make_frame(size, i) for i in range(256)]
        for f in frames[:8]:  # warm up
            await relay.send(f)
        for _ in range(8):
            await relay.receive()
        sent = received = 0
        stop = False

        async def producer() -> None:
            nonlocal sent
            while not stop:
                await relay.send(frames[sent & 255])
                sent += 1

        start = time.perf_counter()
        cpu_start = time.process_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(producer)
            deadline = start + THROUGHPUT_SECONDS
            while time.perf_counter() < deadline:
                await relay.receive()
                received += 1
            stop = True
            elapsed = time.perf_counter() - start
            cpu = time.process_time() - cpu_start
            nursery.cancel_scope.cancel()
        return received / elapsed, cpu / max(received, 1) * 1e6


async def latency(url: str, size: int) -> tuple[float, float, int]:
    async with open_relay(url) as relay:
        f = make_frame(size, 0)
        samples: list[float] = []
        end = time.perf_counter() + LATENCY_SECONDS
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            await relay.send(f)
            await relay.receive()
            samples.append(time.perf_counter() - t0)
        samples = samples[5:] or samples
        samples.sort()
        p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
        return statistics.median(samples) * 1e6, p99 * 1e6, len(samples)


def emit(name: str, value: float, unit: str) -> None:
    print("BENCH " + json.dumps({"name": name, "value": round(value, 3), "unit": unit}))


async def main() -> None:
    tmp = tempfile.mkdtemp(prefix="bench-relay-")
    try:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(functools.partial(trio.serve_tcp, stream_echo, 0,
                                                              host="127.0.0.1"))
            tcp_port = listeners[0].socket.getsockname()[1]
            sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
            path = os.path.join(tmp, "echo.sock")
            await sock.bind(path)
            sock.listen(8)
            await nursery.start(trio.serve_listeners, stream_echo, [trio.SocketListener(sock)])
            server = await nursery.start(trio_websocket.serve_websocket, ws_echo, "127.0.0.1", 0, None)
            urls = {
                "ws": f"ws://127.0.0.1:{server.port}/",
                "tcp": f"tcp://127.0.0.1:{tcp_port}",
                "unix": f"unix://{path}",
            }
            print(f"pyv86.relay_client over loopback on {platform.python_implementation()} "
                  f"{platform.python_version()} (echo peer in the same process)")
            print(f"{'transport':<10}{'frame':>7}{'echo frames/s':>16}{'MB/s':>9}{'CPU µs/frame':>14}"
                  f"{'RTT median µs':>16}{'RTT p99 µs':>13}{'samples':>9}")
            for name, url in urls.items():
                for size in SIZES:
                    fps, cpu_us = await throughput(url, size)
                    med, p99, n = await latency(url, size)
                    print(f"{name:<10}{size:>7}{fps:>16,.0f}{fps * size / 1e6:>9.1f}{cpu_us:>14.1f}"
                          f"{med:>16.1f}{p99:>13.1f}{n:>9}")
                    emit(f"{name} echo {size}B", fps, "frames/s")
                    emit(f"{name} echo cpu per frame {size}B", cpu_us, "us")
                    emit(f"{name} rtt median {size}B", med, "us")
            nursery.cancel_scope.cancel()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if platform.python_implementation() != "CPython" or sys.version_info < (3, 11):
        print("bench_relay: pyv86-relay-client needs CPython 3.11+; skipped")
        sys.exit(0)
    start = time.perf_counter()
    trio.run(main)
    print(f"(took {time.perf_counter() - start:.1f} s)")

"""Reconnection: exponential backoff with jitter while open, queued frames delivered in order
after the link comes back, and no reconnection at all after close (v86 PR#1198)."""

from __future__ import annotations

import itertools
import os
import random

import pytest
import trio
import trio.testing
import trio_websocket
from relay_testlib import (
    frame,
    read_stream_frames,
    seq_of,
    start_tcp_server,
    start_ws_server,
    wait_for,
)

from pyv86.relay_client import RelayClosed, open_relay

pytestmark = pytest.mark.trio


async def test_ws_relay_drops_us_and_queued_frames_arrive_in_order_after_reconnect():
    gate = trio.Event()
    first_frames: list[bytes] = []
    second_frames: list[bytes] = []
    handlers = 0

    async def relay_server(request):
        nonlocal handlers
        handlers += 1
        if handlers == 1:
            ws = await request.accept()
            first_frames.append(await ws.get_message())
            await ws.aclose()  # the relay goes away
            return
        await gate.wait()  # the relay is "down" until the test opens the gate
        ws = await request.accept()
        try:
            while True:
                second_frames.append(await ws.get_message())
        except trio_websocket.ConnectionClosed:
            pass

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await start_ws_server(nursery, relay_server)
            async with open_relay(f"ws://127.0.0.1:{port}/", reconnect_initial_delay=0.01,
                                  reconnect_max_delay=0.05) as relay:
                await relay.send(frame(60, seq=0))
                await wait_for(lambda: relay.state != "connected")
                for i in range(1, 11):
                    relay.send_nowait(frame(60, seq=i))
                assert relay.statistics().queue_depth == 10
                gate.set()
                await wait_for(lambda: len(second_frames) == 10)
                stats = relay.statistics()
                assert stats.state == "connected"
                assert stats.reconnects == 1 and stats.connects == 2
                assert "closed" in (stats.last_error or "")
            nursery.cancel_scope.cancel()
    assert [seq_of(f) for f in first_frames] == [0]
    assert [seq_of(f) for f in second_frames] == list(range(1, 11))


async def test_tcp_peer_restarts_and_the_relay_comes_back():
    connections: list[int] = []

    async def peer(stream):
        connections.append(1)
        if len(connections) == 1:
            await stream.aclose()
            return
        frames = await read_stream_frames(stream, 1)
        await stream.send_all(len(frames[0]).to_bytes(4, "big") + frames[0])
        await trio.sleep_forever()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await start_tcp_server(nursery, peer)
            async with open_relay(f"tcp://127.0.0.1:{port}", reconnect_initial_delay=0.01) as relay:
                await wait_for(lambda: len(connections) == 2 and relay.state == "connected")
                await relay.send(frame(60, seq=9))
                assert seq_of(await relay.receive()) == 9
            nursery.cancel_scope.cancel()


async def test_nothing_reconnects_after_close():
    connections = 0

    async def hang_up(stream):
        nonlocal connections
        connections += 1
        await stream.aclose()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await start_tcp_server(nursery, hang_up)
            async with open_relay(f"tcp://127.0.0.1:{port}", reconnect_initial_delay=0.005,
                                  reconnect_max_delay=0.01) as relay:
                await wait_for(lambda: connections >= 3)
            assert relay.state == "closed"
            seen = connections
            await trio.sleep(0.2)  # ~20 backoff periods: a live relay would reconnect again
            assert connections == seen
            with pytest.raises(RelayClosed, match="closed"):
                relay.send_nowait(frame(60))
            with pytest.raises(RelayClosed):
                await relay.send(frame(60))
            with pytest.raises(RelayClosed):
                await relay.receive()
            nursery.cancel_scope.cancel()


async def test_close_during_backoff_returns_promptly(short_tmp):
    path = os.path.join(short_tmp, "absent.sock")
    with trio.fail_after(5):
        async with open_relay(f"unix://{path}", wait_connected=False,
                              reconnect_initial_delay=60, reconnect_max_delay=60) as relay:
            await wait_for(lambda: relay.state == "reconnecting")
            start = trio.current_time()
        assert trio.current_time() - start < 1
        assert relay.statistics().state == "closed"


async def test_without_reconnect_a_lost_link_closes_the_relay():
    async def hang_up(stream):
        await stream.aclose()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await start_tcp_server(nursery, hang_up)
            async with open_relay(f"tcp://127.0.0.1:{port}", reconnect=False) as relay:
                with pytest.raises(RelayClosed, match="connection lost"):
                    await relay.receive()
                assert relay.state == "closed"
            nursery.cancel_scope.cancel()


async def test_receivers_blocked_in_receive_are_woken_by_close():
    with trio.fail_after(5):
        async with open_relay("null:") as relay:
            results: list[str] = []

            async def waiter():
                try:
                    await relay.receive()
                except RelayClosed:
                    results.append("closed")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(waiter)
                await trio.testing.wait_all_tasks_blocked()
                await relay.aclose()
            assert results == ["closed"]


class RecordingRandom(random.Random):
    """Records each jitter draw with the (virtual) time it was made."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.draws: list[tuple[float, float, float]] = []  # (time, upper bound, value)

    def uniform(self, a: float, b: float) -> float:
        value = super().uniform(a, b)
        self.draws.append((trio.current_time(), b, value))
        return value


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_backoff_doubles_with_jitter_up_to_the_maximum(short_tmp, seed, autojump_clock):
    """A relay that is never there (a missing UNIX socket fails at once, no I/O wait): on the
    virtual clock, the n-th retry waits d/2 + jitter, jitter in [0, d/2], d = min(max,
    initial * 2**n)."""
    path = os.path.join(short_tmp, "never.sock")
    rng = RecordingRandom(seed)
    async with open_relay(f"unix://{path}", wait_connected=False, reconnect_initial_delay=0.5,
                          reconnect_max_delay=8.0, rng=rng) as relay:
        await trio.sleep(100)
        failures = relay.statistics().connect_failures
    draws = rng.draws
    assert len(draws) == failures >= 10
    for n, ((t0, bound, jitter), (t1, _, _)) in enumerate(itertools.pairwise(draws)):
        d = min(8.0, 0.5 * 2 ** n)
        assert bound == pytest.approx(d / 2)
        assert 0 <= jitter <= d / 2
        assert t1 - t0 == pytest.approx(d / 2 + jitter)
    assert len({round(j, 6) for _, _, j in draws}) == len(draws)  # jitter: no two alike


async def test_a_relay_that_accepts_and_drops_us_at_once_gets_growing_backoff(short_tmp, autojump_clock):
    """A successful connection that carries nothing and dies at once (a relay that rejects
    us after accepting, or speaks garbage) must not reset the backoff: otherwise the client
    reconnects every `reconnect_initial_delay` forever. The delay grows as for failures."""
    path = os.path.join(short_tmp, "drop.sock")
    accepted = 0

    async def drop(stream):
        nonlocal accepted
        accepted += 1
        await stream.aclose()

    rng = RecordingRandom(7)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_listeners, drop,
                                        [trio.SocketListener(_unix_listen(path))])
        async with open_relay(f"unix://{path}", reconnect_initial_delay=0.5,
                              reconnect_max_delay=8.0, rng=rng):
            await trio.sleep(60)
        for listener in listeners:
            await listener.aclose()
        nursery.cancel_scope.cancel()
    bounds = [bound for _, bound, _ in rng.draws]
    assert accepted >= 6 and len(bounds) >= 6
    assert bounds[:5] == pytest.approx([0.25, 0.5, 1.0, 2.0, 4.0])   # d/2, d doubling
    assert max(bounds) == pytest.approx(4.0)                            # capped at max/2


async def test_a_link_that_carried_a_frame_resets_the_backoff(short_tmp, autojump_clock):
    """After a healthy link (the peer sent a frame), the first retry is quick again."""
    path = os.path.join(short_tmp, "one.sock")
    accepted = 0

    async def one_frame_then_drop(stream):
        nonlocal accepted
        accepted += 1
        await stream.send_all(len(frame(60)).to_bytes(4, "big") + frame(60))
        await stream.aclose()

    rng = RecordingRandom(8)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_listeners, one_frame_then_drop,
                                        [trio.SocketListener(_unix_listen(path))])
        async with open_relay(f"unix://{path}", reconnect_initial_delay=0.5,
                              reconnect_max_delay=8.0, rng=rng):
            await trio.sleep(10)
        for listener in listeners:
            await listener.aclose()
        nursery.cancel_scope.cancel()
    bounds = [bound for _, bound, _ in rng.draws]
    assert len(bounds) >= 5 and set(bounds) == {0.25}


def _unix_listen(path: str) -> trio.socket.SocketType:
    import socket as _socket
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(16)
    return trio.socket.from_stdlib_socket(sock)

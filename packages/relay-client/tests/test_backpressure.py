"""Bounded queues: a slow receiver pushes back on the peer instead of losing frames; a slow
or absent peer fills the send queue, where ``send()`` waits and ``send_nowait()`` applies the
documented overflow policy (drop-oldest by default, like v86) and counts every drop."""

from __future__ import annotations

import os

import pytest
import trio
from relay_testlib import (
    echo_stream,
    frame,
    read_stream_frames,
    seq_of,
    start_tcp_server,
    start_unix_server,
    stream_frame,
    wait_for,
)

from pyv86.relay_client import QUEUE_SIZE, open_relay

pytestmark = pytest.mark.trio

TOTAL = 12000  # 12000 x 1518 bytes: ~18 MB, more than loopback socket buffers hold


async def test_slow_receiver_pushes_back_on_the_peer_and_loses_nothing():
    sent = 0
    finished = trio.Event()

    async def fast_peer(stream):
        nonlocal sent
        for i in range(TOTAL):
            await stream.send_all(stream_frame(frame(1514, seq=i)))
            sent += 1
        finished.set()
        await trio.sleep_forever()

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            port = await start_tcp_server(nursery, fast_peer)
            async with open_relay(f"tcp://127.0.0.1:{port}", receive_queue_size=8) as relay:
                await trio.sleep(0.3)  # the card is busy: nothing is received for a while
                stats = relay.statistics()
                assert stats.receive_queue_depth <= 8
                assert sent < TOTAL, "the peer should be blocked by TCP flow control"
                assert not finished.is_set()
                expected = 0
                deepest = 0
                async for f in relay:
                    assert seq_of(f) == expected
                    expected += 1
                    deepest = max(deepest, relay.statistics().receive_queue_depth)
                    if expected == TOTAL:
                        break
                assert deepest <= 8
                assert relay.statistics().dropped == {}
                assert relay.statistics().frames_in == TOTAL
            nursery.cancel_scope.cancel()


async def test_send_waits_while_a_slow_peer_does_not_read():
    reading = trio.Event()
    got: list[bytes] = []

    async def slow_peer(stream):
        await reading.wait()
        got.extend(await read_stream_frames(stream, queued_total))

    queued_total = 0
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            port = await start_tcp_server(nursery, slow_peer)
            async with open_relay(f"tcp://127.0.0.1:{port}", queue_size=16) as relay:
                with trio.move_on_after(0.5) as scope:
                    for i in range(1_000_000):
                        await relay.send(frame(1514, seq=i))
                        queued_total += 1
                assert scope.cancelled_caught, "send() should block once queue and socket are full"
                stats = relay.statistics()
                assert stats.queue_depth == 16
                assert stats.dropped == {}
                reading.set()
                await wait_for(lambda: len(got) == queued_total, timeout=20)
            nursery.cancel_scope.cancel()
    assert [seq_of(f) for f in got] == list(range(queued_total))


@pytest.mark.parametrize(("policy", "kept"), [
    ("drop-oldest", list(range(6, 10))),
    ("drop-newest", list(range(0, 4))),
])
async def test_overflow_policy_while_disconnected(short_tmp, policy, kept):
    path = os.path.join(short_tmp, "later.sock")
    with trio.fail_after(10):
        async with open_relay(f"unix://{path}", wait_connected=False, queue_size=4,
                              overflow=policy, reconnect_initial_delay=0.01,
                              reconnect_max_delay=0.02) as relay:
            for i in range(10):
                relay.send_nowait(frame(60, seq=i))
            stats = relay.statistics()
            assert stats.queue_depth == 4
            assert stats.dropped == {"queue_full": 6}
            got: list[bytes] = []

            async def peer(stream):
                got.extend(await read_stream_frames(stream, 4))
                await trio.sleep_forever()

            async with trio.open_nursery() as nursery:
                await start_unix_server(nursery, path, peer)
                await wait_for(lambda: len(got) == 4)
                nursery.cancel_scope.cancel()
    assert [seq_of(f) for f in got] == kept


async def test_overflow_raise_makes_send_nowait_raise_would_block(short_tmp):
    path = os.path.join(short_tmp, "nobody.sock")
    async with open_relay(f"unix://{path}", wait_connected=False, queue_size=2,
                          overflow="raise") as relay:
        relay.send_nowait(frame(60, seq=1))
        relay.send_nowait(frame(60, seq=2))
        with pytest.raises(trio.WouldBlock):
            relay.send_nowait(frame(60, seq=3))
        assert relay.statistics().queue_depth == 2
        assert relay.statistics().dropped == {}


async def test_frames_still_queued_at_close_are_counted_as_unsent(short_tmp):
    path = os.path.join(short_tmp, "gone.sock")
    async with open_relay(f"unix://{path}", wait_connected=False) as relay:
        for i in range(5):
            relay.send_nowait(frame(60, seq=i))
    assert relay.statistics().dropped == {"unsent_at_close": 5}
    assert relay.statistics().queue_depth == 0


async def test_default_queue_holds_128_frames_like_v86(short_tmp):
    path = os.path.join(short_tmp, "x.sock")
    async with open_relay(f"unix://{path}", wait_connected=False) as relay:
        for i in range(200):
            relay.send_nowait(frame(60, seq=i))
        assert QUEUE_SIZE == 128
        assert relay.statistics().queue_depth == 128
        assert relay.statistics().dropped["queue_full"] == 72


async def test_echo_round_trip_under_load_keeps_order():
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            port = await start_tcp_server(nursery, echo_stream)
            async with open_relay(f"tcp://127.0.0.1:{port}", receive_queue_size=4) as relay:

                async def producer():
                    for i in range(3000):
                        await relay.send(frame(64 + i % 1450, seq=i))

                nursery.start_soon(producer)
                for i in range(3000):
                    f = await relay.receive()
                    assert seq_of(f) == i and len(f) == 64 + i % 1450
            nursery.cancel_scope.cancel()


async def test_closing_while_frames_stream_in_is_clean():
    async def flood(stream):
        try:
            for i in range(100000):
                await stream.send_all(stream_frame(frame(64, seq=i)))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await start_tcp_server(nursery, flood)
            for _ in range(3):
                async with open_relay(f"tcp://127.0.0.1:{port}", receive_queue_size=2) as relay:
                    for _ in range(10):
                        await relay.receive()
                assert relay.state == "closed"
            nursery.cancel_scope.cancel()

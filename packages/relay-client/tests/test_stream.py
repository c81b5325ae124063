"""tcp:// and unix://: QEMU's stream framing (-netdev stream: a 4-byte big-endian length, then
the frame, no FCS), against raw TCP and UNIX socket peers written in the test."""

from __future__ import annotations

import os
import struct

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

from pyv86.relay_client import MAX_STREAM_LENGTH, open_relay

pytestmark = pytest.mark.trio

SIZES = [14, 42, 60, 64, 1514, 1518]


async def test_tcp_stream_echo_peer_returns_frames_in_order():
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await start_tcp_server(nursery, echo_stream)
            async with open_relay(f"tcp://127.0.0.1:{port}") as relay:
                for i, size in enumerate(SIZES):
                    relay.send_nowait(frame(size, seq=i))
                got = [await relay.receive() for _ in SIZES]
                assert got == [frame(s, seq=i) for i, s in enumerate(SIZES)]
                stats = relay.statistics()
                assert stats.bytes_out == stats.bytes_in == sum(SIZES)
            nursery.cancel_scope.cancel()


async def test_unix_stream_peer_sees_length_prefixed_frames(short_tmp):
    path = os.path.join(short_tmp, "peer.sock")
    received: list[bytes] = []
    done = trio.Event()

    async def peer(stream):
        received.extend(await read_stream_frames(stream, 3))
        # reply with hand-made framing, two frames in one write
        await stream.send_all(stream_frame(frame(42, seq=100)) + stream_frame(frame(1514, seq=101)))
        done.set()
        await trio.sleep_forever()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await start_unix_server(nursery, path, peer)
            async with open_relay(f"unix://{path}") as relay:
                for i in range(3):
                    await relay.send(frame(60, seq=i))
                assert seq_of(await relay.receive()) == 100
                assert len(await relay.receive()) == 1514
                await done.wait()
            nursery.cancel_scope.cancel()
    assert received == [frame(60, seq=i) for i in range(3)]


async def test_runts_and_oversize_frames_from_the_peer_are_dropped_and_counted():
    async def peer(stream):
        await stream.send_all(
            stream_frame(b"") + stream_frame(b"\x01" * 13) + stream_frame(b"\x02" * 1600)
            + stream_frame(frame(60, seq=5)) + stream_frame(b"\x03" * 9000)
            + stream_frame(frame(42, seq=6)))
        await trio.sleep_forever()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await start_tcp_server(nursery, peer)
            async with open_relay(f"tcp://127.0.0.1:{port}") as relay:
                assert [seq_of(await relay.receive()) for _ in range(2)] == [5, 6]
                stats = relay.statistics()
                assert stats.dropped == {"runt": 2, "oversize": 2}
                assert stats.frames_in == 2
            nursery.cancel_scope.cancel()


async def test_max_frame_size_admits_jumbo_frames_when_configured():
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await start_tcp_server(nursery, echo_stream)
            async with open_relay(f"tcp://127.0.0.1:{port}", max_frame_size=9014) as relay:
                await relay.send(frame(9014, seq=1))
                assert len(await relay.receive()) == 9014
            nursery.cancel_scope.cancel()


async def test_a_peer_that_breaks_the_framing_is_disconnected_and_reconnected():
    connections = 0

    async def peer(stream):
        nonlocal connections
        connections += 1
        if connections == 1:
            await stream.send_all(struct.pack(">I", MAX_STREAM_LENGTH + 1) + b"junk")
        else:
            await stream.send_all(stream_frame(frame(60, seq=77)))
        await trio.sleep_forever()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await start_tcp_server(nursery, peer)
            async with open_relay(f"tcp://127.0.0.1:{port}", reconnect_initial_delay=0.01) as relay:
                assert seq_of(await relay.receive()) == 77
                stats = relay.statistics()
                assert stats.reconnects == 1
                assert "framing lost" in (stats.last_error or "")
            nursery.cancel_scope.cancel()


async def test_outgoing_frames_are_copied_when_queued():
    # v86 once queued views of card memory: the frame changed before it was sent.
    async def peer(stream):
        frames = await read_stream_frames(stream, 2)
        await stream.send_all(b"".join(stream_frame(f) for f in frames))
        await trio.sleep_forever()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await start_tcp_server(nursery, peer)
            async with open_relay(f"tcp://127.0.0.1:{port}", wait_connected=False) as relay:
                card_memory = bytearray(frame(60, seq=1))
                relay.send_nowait(card_memory)
                relay.send_nowait(memoryview(card_memory))
                card_memory[14:18] = b"\xee" * 4  # the card reuses its buffer at once
                got = [await relay.receive() for _ in range(2)]
                assert got == [frame(60, seq=1)] * 2
            nursery.cancel_scope.cancel()


async def test_outgoing_runts_and_oversize_frames_are_dropped_and_counted():
    async def peer(stream):
        frames = await read_stream_frames(stream, 1)
        await stream.send_all(stream_frame(frames[0]))
        await trio.sleep_forever()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await start_tcp_server(nursery, peer)
            async with open_relay(f"tcp://127.0.0.1:{port}") as relay:
                relay.send_nowait(b"\x00" * 13)
                await relay.send(b"\x00" * 1523)
                relay.send_nowait(frame(60, seq=3))
                assert seq_of(await relay.receive()) == 3  # the only frame the peer saw
                stats = relay.statistics()
                assert stats.dropped == {"outgoing_runt": 1, "outgoing_oversize": 1}
                assert stats.frames_out == 1
            nursery.cancel_scope.cancel()


async def test_closing_sends_what_is_still_queued():
    got: list[bytes] = []
    done = trio.Event()

    async def peer(stream):
        got.extend(await read_stream_frames(stream, 50))
        done.set()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await start_tcp_server(nursery, peer)
            async with open_relay(f"tcp://127.0.0.1:{port}") as relay:
                for i in range(50):
                    relay.send_nowait(frame(1514, seq=i))
            await done.wait()
            assert relay.statistics().dropped == {}
            nursery.cancel_scope.cancel()
    assert [seq_of(f) for f in got] == list(range(50))


async def test_unreachable_tcp_and_unix_relays_raise_connect_errors_naming_the_url(short_tmp):
    from pyv86.relay_client import RelayConnectError

    async def nothing(stream):
        await stream.aclose()

    with trio.fail_after(10):
        # find a free port by opening and closing a listener
        async with trio.open_nursery() as nursery:
            port = await start_tcp_server(nursery, nothing)
            nursery.cancel_scope.cancel()
        url = f"tcp://127.0.0.1:{port}"
        with pytest.raises(RelayConnectError) as info:
            async with open_relay(url):
                pass
        assert url in str(info.value) and info.value.url == url
        missing = f"unix://{short_tmp}/missing.sock"
        with pytest.raises(RelayConnectError, match="No such file") as info:
            async with open_relay(missing):
                pass
        assert missing in str(info.value)


async def test_wait_connected_false_returns_at_once_and_connects_in_the_background(short_tmp):
    path = os.path.join(short_tmp, "late.sock")
    with trio.fail_after(10):
        async with open_relay(f"unix://{path}", wait_connected=False,
                              reconnect_initial_delay=0.01, reconnect_max_delay=0.05) as relay:
            await wait_for(lambda: relay.statistics().connect_failures >= 2)
            assert relay.state == "reconnecting"
            relay.send_nowait(frame(60, seq=1))
            async with trio.open_nursery() as nursery:
                await start_unix_server(nursery, path, echo_stream)
                await relay.wait_connected()
                assert seq_of(await relay.receive()) == 1
                nursery.cancel_scope.cancel()

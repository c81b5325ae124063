"""The trio adapter for QEMU stream framing on in-memory streams (trio.testing): no sockets,
byte-at-a-time delivery, batching on send, end of stream."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from relay_testlib import frame, stream_frame

from pyv86.relay_client._transports import LinkLost, StreamLink

pytestmark = pytest.mark.trio


async def test_frames_arriving_one_byte_at_a_time_are_reassembled():
    client, server = trio.testing.memory_stream_pair()
    dropped: dict[str, int] = {}
    link = StreamLink(client, 1522, dropped)
    data = stream_frame(b"\x00" * 5) + stream_frame(frame(42, seq=1))

    async def trickle():
        for i in range(len(data)):
            await server.send_all(data[i:i + 1])

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trickle)
            assert await link.receive_frames() == [frame(42, seq=1)]
    assert dropped == {"runt": 1}


async def test_a_batch_goes_out_as_back_to_back_length_prefixed_frames():
    client, server = trio.testing.memory_stream_pair()
    link = StreamLink(client, 1522, {})
    frames = [frame(60, seq=i) for i in range(3)]
    with trio.fail_after(5):
        await link.send_frames(frames)
        got = b""
        expected = b"".join(stream_frame(f) for f in frames)
        while len(got) < len(expected):
            got += await server.receive_some()
    assert got == expected


async def test_end_of_stream_is_a_lost_link():
    client, server = trio.testing.memory_stream_pair()
    link = StreamLink(client, 1522, {})
    await server.send_all(stream_frame(frame(60))[:10])  # half a frame, then EOF
    await server.aclose()
    with trio.fail_after(5), pytest.raises(LinkLost, match="closed"):
        await link.receive_frames()

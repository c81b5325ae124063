"""The sans-IO core: QEMU stream framing (4-byte big-endian length + frame, as in QEMU's
net/stream.c and passt), websockproxy message rules, frame validation and copying."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from relay_testlib import frame, stream_frame

from pyv86.relay_client import (
    ETHERNET_HEADER_SIZE,
    MAX_FRAME_SIZE,
    MAX_STREAM_LENGTH,
    FramingError,
    StreamDecoder,
    check_frame,
    copy_frame,
    encode_stream,
    frame_from_message,
)


def test_encode_stream_prefixes_a_big_endian_length():
    f = frame(60)
    assert encode_stream(f) == b"\x00\x00\x00\x3c" + f
    assert encode_stream(frame(1514))[:4] == struct.pack(">I", 1514)


def test_decoder_splits_back_to_back_frames():
    frames = [frame(n, seq=n) for n in (14, 42, 60, 1514)]
    dec = StreamDecoder()
    assert dec.feed(b"".join(stream_frame(f) for f in frames)) == frames
    assert dec.buffered == 0
    assert dec.dropped == {}


def test_decoder_keeps_a_partial_frame_until_the_rest_arrives():
    f = frame(100)
    data = stream_frame(f)
    dec = StreamDecoder()
    assert dec.feed(data[:3]) == []
    assert dec.feed(data[3:50]) == []
    assert dec.buffered == 50
    assert dec.feed(data[50:]) == [f]


@given(st.lists(st.integers(min_value=14, max_value=MAX_FRAME_SIZE), min_size=1, max_size=12),
       st.lists(st.integers(min_value=1, max_value=700), max_size=40))
def test_decoder_output_does_not_depend_on_how_the_stream_is_chunked(sizes, cuts):
    frames = [frame(n, seq=i) for i, n in enumerate(sizes)]
    data = b"".join(stream_frame(f) for f in frames)
    dec = StreamDecoder()
    out: list[bytes] = []
    pos = 0
    for cut in cuts:
        out += dec.feed(data[pos:pos + cut])
        pos += cut
    out += dec.feed(data[pos:])
    assert out == frames


def test_decoder_drops_runts_and_counts_them():
    # A length below 14 cannot hold dst, src and ethertype: junk, dropped, stream stays in sync.
    good = frame(60, seq=7)
    data = stream_frame(b"") + stream_frame(b"\x01" * 13) + stream_frame(good)
    dec = StreamDecoder()
    assert dec.feed(data) == [good]
    assert dec.dropped == {"runt": 2}


def test_decoder_skips_oversize_frames_even_across_chunks():
    big = b"\xaa" * 4000
    good = frame(64, seq=1)
    data = stream_frame(big) + stream_frame(good)
    dec = StreamDecoder(max_size=1522)
    out = []
    for i in range(0, len(data), 333):
        out += dec.feed(data[i:i + 333])
    assert out == [good]
    assert dec.dropped == {"oversize": 1}


def test_decoder_honours_a_configured_maximum():
    dec = StreamDecoder(max_size=100)
    f100, f101 = frame(100), frame(101)
    assert dec.feed(stream_frame(f100) + stream_frame(f101)) == [f100]
    assert dec.dropped == {"oversize": 1}


def test_decoder_rejects_a_length_that_means_the_stream_lost_sync():
    dec = StreamDecoder()
    with pytest.raises(FramingError, match="framing lost"):
        dec.feed(struct.pack(">I", MAX_STREAM_LENGTH + 1))


def test_decoder_can_share_its_drop_counters():
    counters: dict[str, int] = {"runt": 5}
    dec = StreamDecoder(dropped=counters)
    dec.feed(stream_frame(b"x"))
    assert counters == {"runt": 6}


def test_decoder_refuses_a_maximum_below_the_header_size():
    with pytest.raises(ValueError):
        StreamDecoder(max_size=13)


@pytest.mark.parametrize(("size", "reason"), [
    (0, "runt"), (13, "runt"), (14, None), (42, None), (60, None), (1514, None),
    (1518, None), (MAX_FRAME_SIZE, None), (MAX_FRAME_SIZE + 1, "oversize"),
])
def test_check_frame_sizes(size, reason):
    # 42-byte ARP replies arrive unpadded from passt/TAP; only < 14 bytes is junk.
    assert check_frame(b"\0" * size) == reason


def test_default_maximum_is_a_tagged_frame_plus_allowance():
    assert ETHERNET_HEADER_SIZE == 14
    assert MAX_FRAME_SIZE == 1514 + 4 + 4


def test_websocket_binary_message_is_one_frame_and_text_is_ignored():
    f = frame(60)
    assert frame_from_message(f) == (f, None)
    assert frame_from_message(bytearray(f)) == (f, None)
    assert frame_from_message("hello") == (None, "text")
    assert frame_from_message(b"\x00" * 10) == (None, "runt")
    assert frame_from_message(b"\x00" * 2000) == (None, "oversize")
    assert frame_from_message(b"\x00" * 2000, max_size=9000) == (b"\x00" * 2000, None)


def test_copy_frame_takes_a_snapshot_of_mutable_buffers():
    # v86 once queued views of card memory, so queued frames changed before being sent.
    buf = bytearray(frame(60))
    copied = copy_frame(buf)
    view_copy = copy_frame(memoryview(buf)[:30])
    buf[0:6] = b"\x00" * 6
    assert copied[:6] == b"\xff" * 6
    assert view_copy[:6] == b"\xff" * 6
    assert isinstance(copied, bytes) and isinstance(view_copy, bytes)


@pytest.mark.parametrize("bad", ["a str", 42, None, [1, 2, 3]])
def test_copy_frame_refuses_what_is_not_bytes_like(bad):
    with pytest.raises(TypeError, match="bytes-like"):
        copy_frame(bad)

"""Smoke test: runs against the installed wheel alone (nox -s isolation) and in place.
Uses only the package, its runtime dependencies (trio) and pytest."""

import functools
import re
import struct

import trio

import pyv86.relay_client as rc


def test_version_is_pep440():
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+|a\d+|b\d+|rc\d+)?", rc.__version__)


def test_stream_framing_round_trip_drops_runts():
    arp = b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06" + b"\x00" * 28  # 42 bytes, unpadded
    data = rc.encode_stream(arp) + struct.pack(">I", 3) + b"abc" + rc.encode_stream(arp)
    dec = rc.StreamDecoder()
    assert dec.feed(data[:7]) + dec.feed(data[7:]) == [arp, arp]
    assert dec.dropped == {"runt": 1}


def test_frames_cross_a_tcp_relay_and_come_back():
    frame = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x88\xb5" + bytes(range(46))

    async def main():
        async def echo(stream):
            async for data in stream:
                await stream.send_all(data)

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                listeners = await nursery.start(functools.partial(trio.serve_tcp, echo, 0, host="127.0.0.1"))
                port = listeners[0].socket.getsockname()[1]
                async with rc.open_relay(f"tcp://127.0.0.1:{port}") as relay:
                    await relay.send(bytearray(frame))
                    assert await relay.receive() == frame
                    stats = relay.statistics()
                    assert (stats.frames_out, stats.frames_in) == (1, 1)
                nursery.cancel_scope.cancel()

    trio.run(main)


def test_bad_url_is_a_clear_error():
    try:
        rc.parse_relay_url("http://relay.example/")
    except rc.InvalidRelayURL as exc:
        assert "http://relay.example/" in str(exc)
    else:
        raise AssertionError("expected InvalidRelayURL")

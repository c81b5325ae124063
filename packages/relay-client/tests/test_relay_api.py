"""The public surface: curated exports, keyword-only options with module-constant defaults,
clear errors for bad options, the null: transport, statistics and pcap capture."""

from __future__ import annotations

import dataclasses
import os

import dpkt
import pytest
import trio
import trio.testing
from relay_testlib import echo_stream, frame, start_tcp_server

import pyv86.relay_client as rc
from pyv86.relay_client import (
    PasstUnavailable,
    RelayClosed,
    RelayConnectError,
    RelayError,
    RelayStatistics,
    open_relay,
)


def test_exports_are_exactly_the_documented_names():
    assert sorted(rc.__all__) == sorted(set(rc.__all__))
    for name in rc.__all__:
        assert hasattr(rc, name), name
    public = {n for n in dir(rc) if not n.startswith("_")}
    assert public == set(rc.__all__) - {"__version__"}


def test_defaults_are_module_constants():
    assert rc.MAX_FRAME_SIZE == 1522
    assert rc.QUEUE_SIZE == 128
    assert rc.OVERFLOW == "drop-oldest"
    assert rc.CONNECT_TIMEOUT > 0 and rc.RECONNECT_MAX_DELAY >= rc.RECONNECT_INITIAL_DELAY
    assert rc.PASST_MTU == 1500


@pytest.mark.trio
async def test_options_are_keyword_only():
    with pytest.raises(TypeError):
        rc.Relay("null:", 1522)  # type: ignore[misc]
    with pytest.raises(TypeError, match="unexpected keyword"):
        async with open_relay("null:", no_such_option=1):
            pass


@pytest.mark.parametrize(("options", "error", "match"), [
    ({"max_frame_size": 10}, ValueError, "max_frame_size"),
    ({"max_frame_size": 10**6}, ValueError, "max_frame_size"),
    ({"max_frame_size": 1500.5}, TypeError, "max_frame_size"),
    ({"queue_size": 0}, ValueError, "queue_size"),
    ({"receive_queue_size": -1}, ValueError, "receive_queue_size"),
    ({"overflow": "drop-random"}, ValueError, "overflow"),
    ({"connect_timeout": 0}, ValueError, "connect_timeout"),
    ({"connect_timeout": float("inf")}, ValueError, "finite"),
    ({"connect_timeout": float("nan")}, ValueError, "connect_timeout"),
    ({"connect_timeout": "5"}, TypeError, "connect_timeout"),
    ({"reconnect_initial_delay": -1}, ValueError, "reconnect_initial_delay"),
    ({"reconnect_initial_delay": 5, "reconnect_max_delay": 1}, ValueError, "reconnect_max_delay"),
    ({"passt_path": "/nonexistent/passt"}, PasstUnavailable, "not an executable"),
])
@pytest.mark.trio
async def test_bad_options_raise_before_any_io(options, error, match):
    url = "passt:" if "passt_path" in options else "null:"
    with pytest.raises(error, match=match):
        async with open_relay(url, **options):
            pass


@pytest.mark.trio
async def test_missing_passt_gives_an_install_hint(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(PasstUnavailable, match="apt install passt") as info:
        async with open_relay("passt:"):
            pass
    assert isinstance(info.value, RelayError) and info.value.url == "passt:"


@pytest.mark.trio
async def test_null_transport_swallows_frames_and_receives_nothing():
    async with open_relay("null:") as relay:
        for i in range(5):
            await relay.send(frame(60, seq=i))
        await trio.testing.wait_all_tasks_blocked()
        with trio.move_on_after(0.05) as scope:
            await relay.receive()
        assert scope.cancelled_caught
        stats = relay.statistics()
        assert isinstance(stats, RelayStatistics)
        assert (stats.state, stats.frames_out, stats.frames_in, stats.queue_depth) == ("connected", 5, 0, 0)


@pytest.mark.trio
async def test_statistics_fields():
    async with open_relay("null:") as relay:
        fields = {f.name for f in dataclasses.fields(relay.statistics())}
    assert fields == {"url", "state", "frames_in", "bytes_in", "frames_out", "bytes_out",
                      "dropped", "connects", "reconnects", "connect_failures", "queue_depth",
                      "queue_size", "receive_queue_depth", "last_error"}
    assert relay.statistics().state == "closed"


@pytest.mark.trio
async def test_send_rejects_non_bytes_frames():
    async with open_relay("null:") as relay:
        with pytest.raises(TypeError, match="bytes-like"):
            relay.send_nowait("not a frame")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="bytes-like"):
            await relay.send(12345)  # type: ignore[arg-type]


@pytest.mark.trio
async def test_aclose_is_idempotent_and_errors_name_the_url():
    async with open_relay("null:") as relay:
        await relay.aclose()
        await relay.aclose()
        with pytest.raises(RelayClosed, match="'null:' is closed") as info:
            relay.send_nowait(frame(60))
        assert info.value.url == "null:"
        assert isinstance(info.value, trio.ClosedResourceError)


@pytest.mark.trio
async def test_errors_in_the_body_propagate_unwrapped():
    with pytest.raises(KeyError):
        async with open_relay("null:"):
            raise KeyError("from user code")


@pytest.mark.trio
async def test_capture_writes_both_directions_to_a_pcap_wireshark_opens(tmp_path):
    path = tmp_path / "relay.pcap"
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await start_tcp_server(nursery, echo_stream)
            async with open_relay(f"tcp://127.0.0.1:{port}", capture=str(path)) as relay:
                for i, size in enumerate((42, 60, 1514)):
                    await relay.send(frame(size, seq=i))
                    await relay.receive()
            nursery.cancel_scope.cancel()
    with open(path, "rb") as fh:
        reader = dpkt.pcap.Reader(fh)
        assert reader.datalink() == dpkt.pcap.DLT_EN10MB == 1
        records = [bytes(buf) for _, buf in reader]
    # out, in, out, in, ...: each echo is captured after the frame that caused it
    assert records == [f for i, size in enumerate((42, 60, 1514)) for f in [frame(size, seq=i)] * 2]


@pytest.mark.trio
async def test_a_passt_that_never_opens_its_socket_times_out_and_is_stopped(tmp_path):
    """A stand-in program that ignores its arguments and just sleeps: the relay gives up
    after connect_timeout with a clear error and stops the process."""
    pidfile = tmp_path / "pid"
    fake = tmp_path / "fake-passt"
    fake.write_text(f"#!/bin/sh\necho $$ > {pidfile}\nexec sleep 30\n")
    fake.chmod(0o755)
    with trio.fail_after(10):
        with pytest.raises(RelayConnectError, match=r"did not open its socket within 0.5 s"):
            async with open_relay("passt:", passt_path=str(fake), connect_timeout=0.5):
                pass
    pid = int(pidfile.read_text())
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"

"""ThreadedRelay: the relay for emulators that do not run trio (a daemon thread runs the trio
loop; send() never blocks; frames come back through poll() or an on_frame callback)."""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from relay_testlib import frame, seq_of

from pyv86.relay_client import InvalidRelayURL, RelayClosed, RelayConnectError, ThreadedRelay


def recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.server.behaviour(self.request)  # type: ignore[attr-defined]


def echo_frames(sock: socket.socket) -> None:
    sock.settimeout(10)
    try:
        while True:
            (n,) = struct.unpack(">I", recv_exact(sock, 4))
            sock.sendall(struct.pack(">I", n) + recv_exact(sock, n))
    except (EOFError, OSError):
        pass


@pytest.fixture
def stream_peer() -> Iterator[Callable[[Callable[[socket.socket], None]], str]]:
    """Start a plain-socket (non-trio) TCP peer in a thread; returns its tcp:// URL."""
    servers: list[socketserver.ThreadingTCPServer] = []

    def start(behaviour: Callable[[socket.socket], None]) -> str:
        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.behaviour = behaviour  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        servers.append(server)
        return f"tcp://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def poll_until(relay: ThreadedRelay, count: int, timeout: float = 10.0) -> list[bytes]:
    frames: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(frames) < count:
        assert time.monotonic() < deadline, f"only {len(frames)} of {count} frames arrived"
        frames += relay.poll()
        time.sleep(0.001)
    return frames


def test_send_and_poll_through_an_echo_peer(stream_peer):
    url = stream_peer(echo_frames)
    with ThreadedRelay(url) as relay:
        buf = bytearray(frame(60, seq=1))
        relay.send(buf)
        buf[14:18] = b"\0\0\0\0"  # the copy was taken at send()
        relay.send(memoryview(frame(1514, seq=2)))
        got = poll_until(relay, 2)
        assert [seq_of(f) for f in got] == [1, 2]
        assert relay.poll() == []
        stats = relay.statistics()
        assert (stats.frames_out, stats.frames_in, stats.state) == (2, 2, "connected")
    assert relay.closed
    with pytest.raises(RelayClosed):
        relay.send(frame(60))


def test_on_frame_callback_runs_in_the_relay_thread(stream_peer):
    url = stream_peer(echo_frames)
    seen: list[tuple[int, str]] = []
    arrived = threading.Event()

    def on_frame(f: bytes) -> None:
        seen.append((seq_of(f), threading.current_thread().name))
        if len(seen) == 3:
            arrived.set()

    with ThreadedRelay(url, on_frame=on_frame) as relay:
        for i in range(3):
            relay.send(frame(60, seq=i))
        assert arrived.wait(10)
        assert relay.poll() == []
    assert [s for s, _ in seen] == [0, 1, 2]
    assert all(name.startswith("pyv86-relay") for _, name in seen)


def test_a_failing_callback_is_counted_and_does_not_kill_the_relay(stream_peer, caplog):
    url = stream_peer(echo_frames)
    calls: list[int] = []

    def on_frame(f: bytes) -> None:
        calls.append(seq_of(f))
        if seq_of(f) == 0:
            raise RuntimeError("card exploded")

    with ThreadedRelay(url, on_frame=on_frame) as relay:
        relay.send(frame(60, seq=0))
        relay.send(frame(60, seq=1))
        deadline = time.monotonic() + 10
        while len(calls) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        assert relay.callback_errors == 1
    assert "card exploded" in caplog.text


def test_poll_queue_is_bounded_and_loses_nothing(stream_peer):
    def burst(sock: socket.socket) -> None:
        sock.sendall(b"".join(struct.pack(">I", 60) + frame(60, seq=i) for i in range(500)))
        echo_frames(sock)

    url = stream_peer(burst)
    with ThreadedRelay(url, receive_queue_size=4) as relay:
        time.sleep(0.2)  # nobody polls: at most 4 frames wait in the adapter
        first = relay.poll()
        assert 1 <= len(first) <= 4
        rest = poll_until(relay, 500 - len(first))
        assert [seq_of(f) for f in first + rest] == list(range(500))
        assert relay.statistics().dropped == {}


def test_poll_honours_max_frames(stream_peer):
    url = stream_peer(echo_frames)
    with ThreadedRelay(url) as relay:
        for i in range(5):
            relay.send(frame(60, seq=i))
        deadline = time.monotonic() + 10
        while relay.statistics().frames_in < 5:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        time.sleep(0.05)  # let the relay thread hand the last frame over
        first = relay.poll(max_frames=2)
        rest = relay.poll()
        assert [seq_of(f) for f in first] == [0, 1]
        assert [seq_of(f) for f in rest] == [2, 3, 4]


def test_bad_url_and_unreachable_relay_raise_in_the_constructor():
    with pytest.raises(InvalidRelayURL, match="http"):
        ThreadedRelay("http://relay.example/")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    start = time.monotonic()
    with pytest.raises(RelayConnectError, match=f"tcp://127.0.0.1:{port}"):
        ThreadedRelay(f"tcp://127.0.0.1:{port}", connect_timeout=2)
    assert time.monotonic() - start < 5


def test_close_is_idempotent_and_joins_the_thread(stream_peer):
    url = stream_peer(echo_frames)
    relay = ThreadedRelay(url)
    relay.close()
    relay.close()
    assert not any(t.name == f"pyv86-relay {url}" for t in threading.enumerate())
    assert relay.statistics().state == "closed"


def test_null_relay_in_a_thread():
    with ThreadedRelay("null:") as relay:
        relay.send(frame(60))
        time.sleep(0.05)
        assert relay.poll() == []
        assert relay.statistics().frames_out == 1


def test_on_frame_must_be_callable():
    with pytest.raises(TypeError, match="callable"):
        ThreadedRelay("null:", on_frame=42)  # type: ignore[arg-type]

"""Thin trio adapters: each transport opens *links* (one connection each) that move frames
between a socket and the sans-IO core in ``_framing``.

A transport's ``connect()`` is an async context manager yielding a link. Entering it raises
:class:`RelayConnectError` when the relay cannot be reached within the connect timeout; a link
raises :class:`LinkLost` (or an ``OSError``/trio error) when an established connection ends.
"""

from __future__ import annotations

import contextlib
import math
import os
import pwd
import shutil
import signal
import ssl
import subprocess
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Protocol

import trio
import trio_websocket

from ._errors import PasstUnavailable, RelayConnectError
from ._framing import MAX_STREAM_LENGTH, StreamDecoder, encode_stream, frame_from_message
from ._url import RelayURL

__all__ = [
    "PASST_MTU",
    "LinkLost",
    "Transport",
    "make_transport",
]

#: The MTU passt announces over DHCP/NDP: an NE2000 carries 1500-byte payloads at most.
PASST_MTU = 1500

_RECEIVE_CHUNK = 65536
_WS_MAX_MESSAGE = MAX_STREAM_LENGTH
_WS_CLOSE_TIMEOUT = 1.0
_PASST_STOP_TIMEOUT = 2.0


class LinkLost(Exception):
    """An established connection ended (peer closed it, or broke the protocol)."""


class Link(Protocol):
    #: most frames handed to one send_frames() call (a batch broken by a lost connection is
    #: queued again, so message-per-frame links use 1 to avoid sending duplicates)
    max_batch: int

    async def send_frames(self, frames: Sequence[bytes]) -> None: ...
    async def receive_frames(self) -> list[bytes]: ...


class Transport(Protocol):
    url: RelayURL

    def connect(self) -> contextlib.AbstractAsyncContextManager[Link]: ...


def _count(dropped: dict[str, int], reason: str) -> None:
    dropped[reason] = dropped.get(reason, 0) + 1


# --------------------------------------------------------------------------- streams

class StreamLink:
    """QEMU stream framing over a trio stream (TCP or UNIX socket)."""

    max_batch = 64  # one send_all() for many small frames

    def __init__(self, stream: trio.abc.Stream, max_size: int, dropped: dict[str, int]) -> None:
        self._stream = stream
        self._decoder = StreamDecoder(max_size, dropped)

    async def send_frames(self, frames: Sequence[bytes]) -> None:
        if len(frames) == 1:
            await self._stream.send_all(encode_stream(frames[0]))
        else:
            await self._stream.send_all(b"".join(encode_stream(f) for f in frames))

    async def receive_frames(self) -> list[bytes]:
        while True:
            data = await self._stream.receive_some(_RECEIVE_CHUNK)
            if not data:
                raise LinkLost("the peer closed the connection")
            frames = self._decoder.feed(data)
            if frames:
                return frames


def _connect_error(url: RelayURL, what: str, exc: BaseException | None = None) -> RelayConnectError:
    detail = f": {exc}" if exc is not None and str(exc) else (
        f": {type(exc).__name__}" if exc is not None else "")
    return RelayConnectError(f"cannot connect to relay {url.text!r}: {what}{detail}", url=url.text)


class _StreamTransport:
    def __init__(self, url: RelayURL, *, max_size: int, connect_timeout: float,
                 dropped: dict[str, int]) -> None:
        self.url = url
        self._max_size = max_size
        self._timeout = connect_timeout
        self._dropped = dropped

    async def _open(self) -> trio.abc.Stream:
        raise NotImplementedError

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[Link]:
        try:
            with trio.fail_after(self._timeout):
                stream = await self._open()
        except trio.TooSlowError:
            raise _connect_error(self.url, f"no answer within {self._timeout:g} s") from None
        except OSError as exc:
            raise _connect_error(self.url, "connection failed", exc) from exc
        async with stream:
            yield StreamLink(stream, self._max_size, self._dropped)


class TcpTransport(_StreamTransport):
    async def _open(self) -> trio.abc.Stream:
        return await trio.open_tcp_stream(self.url.host, self.url.port)


class UnixTransport(_StreamTransport):
    async def _open(self) -> trio.abc.Stream:
        return await trio.open_unix_socket(self.url.path)


# --------------------------------------------------------------------------- WebSocket

class WebSocketLink:
    """The websockproxy protocol: one binary message is one frame; text is ignored."""

    max_batch = 1

    def __init__(self, ws: trio_websocket.WebSocketConnection, max_size: int,
                 dropped: dict[str, int]) -> None:
        self._ws = ws
        self._max_size = max_size
        self._dropped = dropped

    async def send_frames(self, frames: Sequence[bytes]) -> None:
        try:
            for frame in frames:
                await self._ws.send_message(frame)
        except trio_websocket.ConnectionClosed as exc:
            raise LinkLost(f"the relay closed the WebSocket ({exc.reason})") from None

    async def receive_frames(self) -> list[bytes]:
        while True:
            try:
                message = await self._ws.get_message()
            except trio_websocket.ConnectionClosed as exc:
                raise LinkLost(f"the relay closed the WebSocket ({exc.reason})") from None
            frame, reason = frame_from_message(message, self._max_size)
            if frame is not None:
                return [frame]
            assert reason is not None
            _count(self._dropped, reason)


#: Sentinel: derive the Origin header from the relay URL.
DEFAULT_ORIGIN = "<derived from the URL>"


class WebSocketTransport:
    def __init__(self, url: RelayURL, *, max_size: int, connect_timeout: float,
                 dropped: dict[str, int], ssl_context: ssl.SSLContext | None,
                 origin: str | None, headers: Mapping[str, str] | Sequence[tuple[str, str]],
                 auth_token: str | None) -> None:
        self.url = url
        self._max_size = max_size
        self._timeout = connect_timeout
        self._dropped = dropped
        if url.scheme == "wss":
            self._ssl: ssl.SSLContext | bool = (ssl_context if ssl_context is not None
                                                 else ssl.create_default_context())
        else:
            if ssl_context is not None:
                raise ValueError(f"ssl_context given for {url.text!r}, which is not wss://")
            self._ssl = False
        pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
        names = {str(k).lower() for k, _ in pairs}
        if origin == DEFAULT_ORIGIN:
            # Same-origin as the relay: accepted by relays that demand an Origin header and by
            # those (tornado's default check_origin) that reject foreign origins.
            default_port = 443 if url.scheme == "wss" else 80
            host = url.netloc if url.port != default_port else url.netloc.rsplit(":", 1)[0]
            origin = ("https://" if url.scheme == "wss" else "http://") + host
        if origin is not None and "origin" not in names:
            pairs.append(("Origin", origin))
        if auth_token is not None and "authorization" not in names:
            pairs.append(("Authorization", f"Bearer {auth_token}"))
        self._headers: list[tuple[bytes, bytes]] = []
        for k, v in pairs:
            k, v = str(k), str(v)
            if any(c in k + v for c in "\r\n\x00"):
                raise ValueError(f"header {k!r} contains a line break or NUL")
            self._headers.append((k.encode("latin-1"), v.encode("latin-1")))

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        """The extra handshake headers sent to the relay."""
        return list(self._headers)

    async def _handshake(self, nursery: trio.Nursery) -> tuple[
            trio_websocket.WebSocketConnection, trio.SocketStream | trio.SSLStream[trio.SocketStream]]:
        """TCP, TLS and WebSocket handshakes. The reader task trio-websocket starts lives in
        ``nursery``, which the caller cancels if this fails (trio-websocket's own
        ``open_websocket`` leaves that task running after a handshake timeout, and hangs)."""
        url = self.url
        try:
            with trio.fail_after(self._timeout):
                tcp = await trio.open_tcp_stream(url.host, url.port)
                stream: trio.SocketStream | trio.SSLStream[trio.SocketStream] = tcp
                if self._ssl is not False:
                    assert isinstance(self._ssl, ssl.SSLContext)
                    tls = trio.SSLStream(tcp, self._ssl, server_hostname=url.host,
                                         https_compatible=True)
                    try:
                        await tls.do_handshake()
                    except BaseException:
                        await trio.aclose_forcefully(tcp)
                        raise
                    stream = tls
                try:
                    host = url.netloc if url.port != (443 if url.scheme == "wss" else 80) else (
                        f"[{url.host}]" if ":" in url.host else url.host)
                    ws = await trio_websocket.wrap_client_stream(
                        nursery, stream, host, url.path, extra_headers=self._headers,
                        message_queue_size=1, max_message_size=_WS_MAX_MESSAGE)
                    return ws, stream
                except BaseException:
                    await trio.aclose_forcefully(stream)
                    raise
        except Exception as exc:
            converted = self._handshake_error(exc)
            if converted is exc:
                raise
            raise converted from exc

    def _handshake_error(self, exc: BaseException) -> BaseException:
        """The RelayConnectError for an error seen while connecting (others pass through)."""
        url = self.url
        if isinstance(exc, RelayConnectError):
            return exc
        if isinstance(exc, trio.TooSlowError):
            return _connect_error(url, f"no answer within {self._timeout:g} s")
        if isinstance(exc, trio_websocket.ConnectionRejected):
            return _connect_error(url, "the relay refused the WebSocket handshake with HTTP "
                                  f"status {exc.status_code}")
        if isinstance(exc, trio_websocket.HandshakeError):
            return _connect_error(url, "WebSocket handshake failed", exc.__cause__ or exc)
        if isinstance(exc, trio_websocket.ConnectionClosed):
            return _connect_error(url, f"the relay closed the connection during the handshake ({exc.reason})")
        if isinstance(exc, (OSError, trio.BrokenResourceError)):
            cause = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) and exc.__cause__ else exc
            return _connect_error(url, "connection failed", cause)
        return exc

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[Link]:
        failure: BaseException | None = None
        connected = False
        try:
            async with trio.open_nursery() as nursery:
                try:
                    ws, stream = await self._handshake(nursery)
                except RelayConnectError as exc:
                    failure = exc
                    nursery.cancel_scope.cancel()
                else:
                    connected = True
                    try:
                        yield WebSocketLink(ws, self._max_size, self._dropped)
                    finally:
                        with trio.move_on_after(_WS_CLOSE_TIMEOUT) as scope:
                            scope.shield = True
                            await ws.aclose()
                        # After a close the relay started, trio-websocket leaves the socket
                        # open until its reader sees EOF; we are not waiting for that.
                        await trio.aclose_forcefully(stream)
                        nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # trio-websocket's reader task reports some handshake failures (a rejection)
            # itself, in this nursery; the body's errors come here too.
            errors = [e for e in group.exceptions if not isinstance(e, trio.Cancelled)] or list(group.exceptions)
            if len(errors) != 1:
                raise
            error = errors[0]
            if not connected and isinstance(error, Exception):
                error = self._handshake_error(error)
            raise error from None
        if failure is not None:
            raise failure


# --------------------------------------------------------------------------- passt

def find_passt(passt_path: str | os.PathLike[str] | None) -> str:
    """Locate the passt program, or raise :class:`PasstUnavailable`."""
    candidate = os.fspath(passt_path) if passt_path is not None else shutil.which("passt")
    if candidate is None:
        raise PasstUnavailable(
            "relay 'passt:' needs Debian's passt program, which is not on PATH "
            "(install it with: apt install passt)", url="passt:")
    if not (os.path.isfile(candidate) and os.access(candidate, os.X_OK)):
        raise PasstUnavailable(f"relay 'passt:': {candidate!r} is not an executable program",
                               url="passt:")
    return candidate


class PasstTransport:
    """Starts ``passt`` (foreground, one client, MTU 1500) on a private UNIX socket for each
    connection, and stops it when the connection ends."""

    def __init__(self, url: RelayURL, *, max_size: int, connect_timeout: float,
                 dropped: dict[str, int], passt_path: str | os.PathLike[str] | None,
                 passt_args: Sequence[str]) -> None:
        self.url = url
        self._max_size = max_size
        self._timeout = connect_timeout
        self._dropped = dropped
        self._program = find_passt(passt_path)
        self._extra = [str(a) for a in passt_args]
        #: the command line of the running passt, for diagnostics
        self.command: list[str] = []

    def _private_dir(self) -> str:
        base = None
        if os.geteuid() == 0 and not _reachable_by_others(tempfile.gettempdir()):
            base = "/tmp"  # passt, turned into "nobody", must reach its socket directory
        path = tempfile.mkdtemp(prefix="pyv86-passt-", dir=base)
        if os.geteuid() == 0:
            # Run as root, passt drops to "nobody" before binding its socket.
            try:
                nobody = pwd.getpwnam("nobody")
            except KeyError:
                pass
            else:
                os.chown(path, nobody.pw_uid, nobody.pw_gid)
        return path

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[Link]:
        directory = self._private_dir()
        sock = os.path.join(directory, "passt.socket")
        log_path = os.path.join(directory, "passt.log")
        self.command = [self._program, "--foreground", "--one-off", "--quiet",
                        "--mtu", str(PASST_MTU), "--socket", sock, *self._extra]
        proc: trio.Process | None = None
        try:
            with open(log_path, "wb") as log:
                try:
                    proc = await trio.lowlevel.open_process(
                        self.command, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                        start_new_session=True)
                except OSError as exc:
                    raise RelayConnectError(f"relay 'passt:': cannot start {self._program!r}: {exc}",
                                            url=self.url.text) from exc
            stream = await self._wait_for_socket(proc, sock, log_path)
            async with stream:
                yield StreamLink(stream, self._max_size, self._dropped)
        finally:
            if proc is not None:
                with trio.CancelScope(shield=True):
                    await _stop(proc)
            shutil.rmtree(directory, ignore_errors=True)

    async def _wait_for_socket(self, proc: trio.Process, sock: str, log_path: str) -> trio.abc.Stream:
        delay = 0.005
        try:
            with trio.fail_after(self._timeout):
                while True:
                    if proc.returncode is not None or proc.poll() is not None:
                        raise RelayConnectError(
                            f"relay 'passt:': passt exited with status {proc.returncode} before "
                            f"opening its socket; its log says: {_log_excerpt(log_path)!r}", url=self.url.text)
                    try:
                        return await trio.open_unix_socket(sock)
                    except (FileNotFoundError, ConnectionRefusedError):
                        await trio.sleep(delay)
                        delay = min(delay * 2, 0.1)
        except RelayConnectError:
            raise
        except trio.TooSlowError:
            raise RelayConnectError(
                f"relay 'passt:': passt did not open its socket within {self._timeout:g} s; "
                f"its log says: {_log_excerpt(log_path)!r}", url=self.url.text) from None
        except OSError as exc:
            raise RelayConnectError(f"relay 'passt:': cannot connect to passt's socket: {exc}",
                                    url=self.url.text) from exc


def _reachable_by_others(directory: str) -> bool:
    """Whether every directory from / down to ``directory`` lets other users through."""
    path = os.path.abspath(directory)
    while True:
        try:
            if not os.stat(path).st_mode & 0o001:
                return False
        except OSError:
            return False
        parent = os.path.dirname(path)
        if parent == path:
            return True
        path = parent


def _log_excerpt(path: str, limit: int = 400) -> str:
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and "syslog" not in ln]
    joined = " | ".join(lines)  # passt states the problem first, then (maybe) its usage
    return joined if len(joined) <= limit else joined[:limit] + " ..."


async def _stop(proc: trio.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with trio.move_on_after(_PASST_STOP_TIMEOUT):
            await proc.wait()
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


# --------------------------------------------------------------------------- null

class NullLink:
    """A card with no cable: sent frames vanish, nothing ever arrives."""

    max_batch = 64

    async def send_frames(self, frames: Sequence[bytes]) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_frames(self) -> list[bytes]:
        await trio.sleep(math.inf)
        raise AssertionError("unreachable")  # pragma: no cover


class NullTransport:
    def __init__(self, url: RelayURL) -> None:
        self.url = url

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[Link]:
        await trio.lowlevel.checkpoint()
        yield NullLink()


def make_transport(url: RelayURL, *, max_size: int, connect_timeout: float,
                   dropped: dict[str, int], ssl_context: ssl.SSLContext | None,
                   origin: str | None, headers: Mapping[str, str] | Sequence[tuple[str, str]],
                   auth_token: str | None, passt_path: str | os.PathLike[str] | None,
                   passt_args: Sequence[str]) -> Transport:
    """Build the transport for a parsed URL. Raises ``ValueError``/``PasstUnavailable`` for
    options that cannot work with it."""
    common = {"max_size": max_size, "connect_timeout": connect_timeout, "dropped": dropped}
    if url.scheme in ("ws", "wss"):
        return WebSocketTransport(url, ssl_context=ssl_context, origin=origin, headers=headers,
                                  auth_token=auth_token, **common)  # type: ignore[arg-type]
    if url.scheme == "tcp":
        return TcpTransport(url, **common)  # type: ignore[arg-type]
    if url.scheme == "unix":
        return UnixTransport(url, **common)  # type: ignore[arg-type]
    if url.scheme == "passt":
        return PasstTransport(url, passt_path=passt_path, passt_args=passt_args,
                              **common)  # type: ignore[arg-type]
    assert url.scheme == "null"
    return NullTransport(url)

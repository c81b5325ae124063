"""The relay object: a supervised connection with a bounded send queue, reconnection with
backoff, validation of incoming frames, statistics and an optional pcap capture."""

from __future__ import annotations

import contextlib
import math
import os
import random
import ssl
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio
import trio_websocket

from ._errors import RelayClosed, RelayConnectError
from ._framing import (
    ETHERNET_HEADER_SIZE,
    MAX_FRAME_SIZE,
    MAX_STREAM_LENGTH,
    FramingError,
    check_frame,
    copy_frame,
)
from ._pcap import PcapWriter
from ._transports import DEFAULT_ORIGIN, Link, LinkLost, Transport, make_transport
from ._url import RelayURL, parse_relay_url

__all__ = [
    "CLOSE_TIMEOUT",
    "CONNECT_TIMEOUT",
    "OVERFLOW",
    "OVERFLOW_POLICIES",
    "QUEUE_SIZE",
    "RECEIVE_QUEUE_SIZE",
    "RECONNECT_INITIAL_DELAY",
    "RECONNECT_MAX_DELAY",
    "Relay",
    "RelayStatistics",
    "open_relay",
]

#: Outgoing frames that may wait while the link is down or slow (v86 keeps at most 128).
QUEUE_SIZE = 128
#: What ``send_nowait`` does with a full queue: discard the oldest queued frame (like v86:
#: the newest frames are the most useful ones, and TCP in the guest retransmits).
OVERFLOW = "drop-oldest"
OVERFLOW_POLICIES = ("drop-oldest", "drop-newest", "raise")
#: Received frames buffered for ``receive()``; when full the relay stops reading the socket,
#: so a slow receiver pushes back on the peer instead of losing frames.
RECEIVE_QUEUE_SIZE = 128
#: Seconds allowed for one connection attempt (TCP, TLS and WebSocket handshakes, or passt's
#: start-up).
CONNECT_TIMEOUT = 10.0
#: Reconnection backoff: the n-th consecutive retry waits ``min(max, initial * 2**n)`` seconds,
#: of which a random half is jitter.
RECONNECT_INITIAL_DELAY = 0.5
RECONNECT_MAX_DELAY = 10.0
#: Seconds ``aclose()`` spends sending frames still queued, when connected.
CLOSE_TIMEOUT = 1.0

_BATCH_BYTES = 65536
_GRACE = 2.0  # seconds a link may take to close politely after aclose()

# Drop reasons counted in RelayStatistics.dropped (besides "runt", "oversize", "text").
OUTGOING_RUNT = "outgoing_runt"
OUTGOING_OVERSIZE = "outgoing_oversize"
QUEUE_FULL = "queue_full"
UNSENT_AT_CLOSE = "unsent_at_close"

# Errors that end one connection (and lead to a reconnect), never the relay.
_LINK_ERRORS: tuple[type[BaseException], ...] = (
    LinkLost, FramingError, OSError, trio.BrokenResourceError,
    trio_websocket.HandshakeError, trio_websocket.ConnectionClosed,
)


@dataclass(frozen=True)
class RelayStatistics:
    """A snapshot returned by :meth:`Relay.statistics`.

    ``state`` is ``"connecting"`` (first attempt), ``"connected"``, ``"reconnecting"``
    (waiting out the backoff or retrying) or ``"closed"``. ``frames_in``/``bytes_in`` count
    valid frames received, ``frames_out``/``bytes_out`` frames written to the link.
    ``dropped`` maps a reason to a count: ``runt``, ``oversize``, ``text`` (incoming),
    ``outgoing_runt``, ``outgoing_oversize``, ``queue_full``, ``unsent_at_close``.
    """

    url: str
    state: str
    frames_in: int
    bytes_in: int
    frames_out: int
    bytes_out: int
    dropped: Mapping[str, int] = field(default_factory=dict)
    connects: int = 0
    reconnects: int = 0
    connect_failures: int = 0
    queue_depth: int = 0
    queue_size: int = QUEUE_SIZE
    receive_queue_depth: int = 0
    last_error: str | None = None

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


def _positive(name: str, value: object, *, integer: bool = False, minimum: float = 0.0,
              inclusive: bool = False) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float) if not integer else int):
        raise TypeError(f"{name} must be {'an int' if integer else 'a number'}, got {value!r}")
    if math.isnan(value) or value < minimum or (value == minimum and not inclusive):
        raise ValueError(f"{name} must be {'>=' if inclusive else '>'} {minimum:g}, got {value!r}")
    return value


class Relay:
    """One Ethernet cable to a relay. Create it with :func:`open_relay`.

    Send with :meth:`send` / :meth:`send_nowait`, receive with :meth:`receive` or
    ``async for frame in relay``. Frames are ``bytes``, one Ethernet frame each, no FCS.
    """

    def __init__(self, url: str, *, max_frame_size: int = MAX_FRAME_SIZE,
                 queue_size: int = QUEUE_SIZE, overflow: str = OVERFLOW,
                 receive_queue_size: int = RECEIVE_QUEUE_SIZE,
                 connect_timeout: float = CONNECT_TIMEOUT, wait_connected: bool = True,
                 reconnect: bool = True,
                 reconnect_initial_delay: float = RECONNECT_INITIAL_DELAY,
                 reconnect_max_delay: float = RECONNECT_MAX_DELAY,
                 close_timeout: float = CLOSE_TIMEOUT,
                 capture: str | os.PathLike[str] | None = None,
                 ssl_context: ssl.SSLContext | None = None, origin: str | None = DEFAULT_ORIGIN,
                 headers: Mapping[str, str] | Sequence[tuple[str, str]] = (),
                 auth_token: str | None = None,
                 passt_path: str | os.PathLike[str] | None = None,
                 passt_args: Sequence[str] = (),
                 rng: random.Random | None = None) -> None:
        self._url: RelayURL = parse_relay_url(url)
        self.url = url
        _positive("max_frame_size", max_frame_size, integer=True)
        if not ETHERNET_HEADER_SIZE <= max_frame_size <= MAX_STREAM_LENGTH:
            raise ValueError(f"max_frame_size must be in {ETHERNET_HEADER_SIZE}..{MAX_STREAM_LENGTH}, "
                             f"got {max_frame_size}")
        self._max = max_frame_size
        self._queue_size = _positive("queue_size", queue_size, integer=True)
        self._receive_queue_size = _positive("receive_queue_size", receive_queue_size, integer=True)
        if overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"overflow must be one of {OVERFLOW_POLICIES}, got {overflow!r}")
        self._overflow = overflow
        self._connect_timeout = _positive("connect_timeout", connect_timeout)
        self._initial_delay = _positive("reconnect_initial_delay", reconnect_initial_delay, inclusive=True)
        self._max_delay = _positive("reconnect_max_delay", reconnect_max_delay, inclusive=True)
        if self._max_delay < self._initial_delay:
            raise ValueError("reconnect_max_delay must be >= reconnect_initial_delay")
        self._close_timeout = _positive("close_timeout", close_timeout, inclusive=True)
        if math.isinf(self._connect_timeout):
            raise ValueError("connect_timeout must be finite: an unreachable relay must not hang the caller")
        self._wait_connected = bool(wait_connected)
        self._reconnect = bool(reconnect)
        self._rng = rng if rng is not None else random.Random()
        self._dropped: dict[str, int] = {}
        self._transport: Transport = make_transport(
            self._url, max_size=max_frame_size, connect_timeout=connect_timeout,
            dropped=self._dropped, ssl_context=ssl_context, origin=origin, headers=headers,
            auth_token=auth_token, passt_path=passt_path, passt_args=passt_args)
        self._capture = PcapWriter(capture) if capture is not None else None

        self._queue: deque[bytes] = deque()
        self._inflight: list[bytes] = []
        self._items = trio.lowlevel.ParkingLot()    # the send pump waits here for frames
        self._changed = trio.lowlevel.ParkingLot()  # senders wait here for room / flushes
        self._recv_send, self._recv_recv = trio.open_memory_channel[bytes](receive_queue_size)
        self._state = "connecting"
        self._closed = False
        self._scope: trio.CancelScope | None = None        # the supervisor
        self._serve_scope: trio.CancelScope | None = None  # the pumps of the current link
        self._frames_in = self._bytes_in = self._frames_out = self._bytes_out = 0
        self._connects = self._connect_failures = 0
        self._last_error: str | None = None

    # ------------------------------------------------------------------ public API

    @property
    def state(self) -> str:
        return self._state

    @property
    def closed(self) -> bool:
        return self._closed

    def statistics(self) -> RelayStatistics:
        return RelayStatistics(
            url=self.url, state=self._state, frames_in=self._frames_in, bytes_in=self._bytes_in,
            frames_out=self._frames_out, bytes_out=self._bytes_out, dropped=dict(self._dropped),
            connects=self._connects, reconnects=max(0, self._connects - 1),
            connect_failures=self._connect_failures,
            queue_depth=len(self._queue) + len(self._inflight), queue_size=self._queue_size,
            receive_queue_depth=self._recv_recv.statistics().current_buffer_used
            if not self._closed else 0,
            last_error=self._last_error)

    def send_nowait(self, frame: bytes | bytearray | memoryview) -> None:
        """Queue a copy of ``frame`` without waiting.

        Frames shorter than 14 bytes or longer than ``max_frame_size`` are dropped and
        counted. With a full queue the ``overflow`` policy applies: ``"drop-oldest"``
        (default) discards the oldest queued frame, ``"drop-newest"`` discards this one (both
        count ``queue_full``), ``"raise"`` raises :class:`trio.WouldBlock`.
        Raises :class:`RelayClosed` after close, ``TypeError`` for non-bytes-like frames.
        """
        self._check_open()
        data = copy_frame(frame)
        reason = check_frame(data, self._max)
        if reason is not None:
            self._count("outgoing_" + reason)
            return
        if len(self._queue) + len(self._inflight) >= self._queue_size:
            if self._overflow == "raise":
                raise trio.WouldBlock
            self._count(QUEUE_FULL)
            if self._overflow == "drop-newest" or not self._queue:
                return
            self._queue.popleft()
        self._queue.append(data)
        self._items.unpark_all()

    async def send(self, frame: bytes | bytearray | memoryview) -> None:
        """Queue a copy of ``frame``, waiting while the queue is full (backpressure: the
        queue drains as the link accepts frames). Invalid frames are dropped and counted as
        in :meth:`send_nowait`. Raises :class:`RelayClosed` after close."""
        await trio.lowlevel.checkpoint_if_cancelled()
        self._check_open()
        data = copy_frame(frame)
        while len(self._queue) + len(self._inflight) >= self._queue_size:
            await self._changed.park()
            self._check_open()
        self.send_nowait(data)
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def receive(self) -> bytes:
        """The next frame from the network (a valid Ethernet frame, no FCS). Waits for one;
        raises :class:`RelayClosed` once the relay is closed."""
        try:
            return await self._recv_recv.receive()
        except (trio.ClosedResourceError, trio.EndOfChannel):
            raise self._closed_error() from None

    def receive_nowait(self) -> bytes:
        """A frame already received, or :class:`trio.WouldBlock`."""
        try:
            return self._recv_recv.receive_nowait()
        except (trio.ClosedResourceError, trio.EndOfChannel):
            raise self._closed_error() from None

    def __aiter__(self) -> Relay:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.receive()
        except RelayClosed:
            raise StopAsyncIteration from None

    async def wait_connected(self) -> None:
        """Wait until a connection is up (returns at once if it is)."""
        while self._state != "connected":
            self._check_open()
            await self._changed.park()
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        """Close the relay: send what is queued (up to ``close_timeout`` seconds, if
        connected), stop the connection, never reconnect. Idempotent."""
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        if self._state == "connected" and self._close_timeout > 0:
            with trio.move_on_after(self._close_timeout):
                while (self._queue or self._inflight) and self._state == "connected":
                    await self._changed.park()
        self._shutdown()
        await trio.lowlevel.checkpoint()

    # ------------------------------------------------------------------ internals

    def _check_open(self) -> None:
        if self._closed:
            raise self._closed_error()

    def _closed_error(self) -> RelayClosed:
        why = f" (last error: {self._last_error})" if self._last_error else ""
        return RelayClosed(f"relay {self.url!r} is closed{why}", url=self.url)

    def _count(self, reason: str, n: int = 1) -> None:
        self._dropped[reason] = self._dropped.get(reason, 0) + n

    def _set_state(self, state: str) -> None:
        self._state = state
        self._changed.unpark_all()

    def _shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        unsent = len(self._queue) + len(self._inflight)
        if unsent:
            self._count(UNSENT_AT_CLOSE, unsent)
        self._queue.clear()
        self._inflight = []
        self._set_state("closed")
        if self._serve_scope is not None and self._scope is not None:
            # Stop the pumps but let the link close politely (a WebSocket close handshake
            # needs trio-websocket's reader task alive); the deadline bounds a silent peer.
            self._serve_scope.cancel()
            self._scope.deadline = min(self._scope.deadline, trio.current_time() + _GRACE)
        elif self._scope is not None:
            self._scope.cancel()
        self._recv_send.close()
        self._recv_recv.close()
        self._items.unpark_all()

    def _capture_frame(self, frame: bytes) -> None:
        """Write one frame to the capture. A failing capture (disk full, file closed) is
        stopped and reported in ``last_error``; it never counts as a lost link."""
        capture = self._capture
        if capture is None:
            return
        try:
            capture.write(frame)
        except (OSError, ValueError) as exc:
            self._capture = None
            self._last_error = f"capture stopped: {exc}"
            with contextlib.suppress(OSError, ValueError):
                capture.close()

    def _close_capture(self) -> None:
        if self._capture is not None:
            self._capture.close()

    def _backoff(self, attempt: int) -> float:
        delay = min(self._max_delay, self._initial_delay * 2.0 ** min(attempt, 60))
        return delay / 2 + self._rng.uniform(0, delay / 2)

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as scope:
            self._scope = scope
            if self._closed:
                scope.cancel()
            started = False
            if not self._wait_connected:
                task_status.started()
                started = True
            attempt = 0
            while not self._closed:
                try:
                    async with self._transport.connect() as link:
                        self._connects += 1
                        self._set_state("connected")
                        if not started:
                            task_status.started()
                            started = True
                        up_since = trio.current_time()
                        frames_in = self._frames_in
                        try:
                            await self._serve(link)
                        finally:
                            # Only a link that proved healthy resets the backoff: one that
                            # carried a frame from the peer or stayed up for the longest
                            # backoff. A relay that accepts and drops us at once (or sends
                            # garbage) is retried with growing delays, not hammered.
                            if (self._frames_in > frames_in
                                    or trio.current_time() - up_since >= self._max_delay):
                                attempt = 0
                except RelayConnectError as exc:
                    self._connect_failures += 1
                    self._last_error = str(exc)
                    if not started:
                        self._shutdown()
                        raise
                except _LINK_ERRORS as exc:
                    if not started:  # a failure while connecting that slipped through
                        self._connect_failures += 1
                        self._last_error = f"cannot connect: {exc or type(exc).__name__}"
                        self._shutdown()
                        raise RelayConnectError(f"cannot connect to relay {self.url!r}: "
                                                f"{exc or type(exc).__name__}", url=self.url) from exc
                    self._last_error = f"connection lost: {exc or type(exc).__name__}"
                    self._requeue_inflight()
                if self._closed:
                    break
                if not self._reconnect:
                    self._shutdown()
                    break
                self._set_state("reconnecting")
                await trio.sleep(self._backoff(attempt))
                attempt += 1

    def _requeue_inflight(self) -> None:
        if self._inflight:
            self._queue.extendleft(reversed(self._inflight))
            self._inflight = []
        excess = len(self._queue) - self._queue_size
        if excess > 0:
            for _ in range(excess):
                self._queue.popleft()
            self._count(QUEUE_FULL, excess)

    async def _serve(self, link: Link) -> None:
        failure: BaseException | None = None

        async def guard(pump: Any, nursery: trio.Nursery) -> None:
            nonlocal failure
            try:
                await pump(link)
            except _LINK_ERRORS as exc:
                if failure is None:
                    failure = exc
            nursery.cancel_scope.cancel()

        try:
            async with trio.open_nursery() as nursery:
                self._serve_scope = nursery.cancel_scope
                if self._closed:
                    nursery.cancel_scope.cancel()
                nursery.start_soon(guard, self._pump_out, nursery)
                nursery.start_soon(guard, self._pump_in, nursery)
        finally:
            self._serve_scope = None
        if failure is not None:
            raise failure

    async def _pump_out(self, link: Link) -> None:
        max_batch = link.max_batch
        queue = self._queue
        while True:
            while not queue:
                await self._items.park()
            batch = [queue.popleft()]
            size = len(batch[0])
            while queue and len(batch) < max_batch and size < _BATCH_BYTES:
                frame = queue.popleft()
                batch.append(frame)
                size += len(frame)
            self._inflight = batch
            await link.send_frames(batch)
            self._inflight = []
            self._frames_out += len(batch)
            self._bytes_out += size
            if self._capture is not None:
                for frame in batch:
                    self._capture_frame(frame)
            self._changed.unpark_all()

    async def _pump_in(self, link: Link) -> None:
        send = self._recv_send
        while True:
            frames = await link.receive_frames()
            for frame in frames:
                if self._closed:  # closed while the link winds down: nobody will receive
                    return
                self._frames_in += 1
                self._bytes_in += len(frame)
                if self._capture is not None:
                    self._capture_frame(frame)
                try:
                    send.send_nowait(frame)  # no trip through the scheduler per frame
                except trio.WouldBlock:
                    await send.send(frame)  # full: stop reading until the card catches up


@contextlib.asynccontextmanager
async def open_relay(url: str, **options: Any) -> AsyncIterator[Relay]:
    """Open a relay for ``url`` and close it on exit. See :class:`Relay` for the options.

    ``url`` is ``ws://``/``wss://`` (websockproxy), ``tcp://host:port`` or ``unix:///path``
    (QEMU stream framing), ``passt:`` or ``null:``. Invalid URLs and options raise at once
    (:class:`InvalidRelayURL`, ``ValueError``, ``TypeError``); with ``wait_connected=True``
    (the default) an unreachable relay raises :class:`RelayConnectError` within
    ``connect_timeout``; later disconnections are retried in the background.
    """
    relay = Relay(url, **options)
    try:
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(relay._run)
                try:
                    yield relay
                finally:
                    await relay.aclose()
        except BaseExceptionGroup as group:
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
    finally:
        relay._shutdown()
        relay._close_capture()


"""A thread-backed adapter for emulators that do not run trio."""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from typing import Any

import trio

from ._errors import RelayClosed, RelayError
from ._framing import copy_frame
from ._relay import CONNECT_TIMEOUT, RECEIVE_QUEUE_SIZE, Relay, RelayStatistics, open_relay

__all__ = ["THREAD_START_TIMEOUT", "ThreadedRelay"]

log = logging.getLogger(__name__)

#: Extra seconds the constructor waits beyond ``connect_timeout`` for the relay thread.
THREAD_START_TIMEOUT = 5.0


class ThreadedRelay:
    """A relay running its own trio loop in a daemon thread.

    ``ThreadedRelay(url, on_frame=None, **options)`` takes :func:`open_relay`'s options and
    blocks until the relay is open (connected, when ``wait_connected`` is true), raising the
    same errors. Then:

    - :meth:`send` queues a copy of a frame and returns at once (the relay thread applies the
      ``overflow`` policy; with ``"raise"`` a full queue drops the frame and counts
      ``queue_full``, since the caller has already returned);
    - received frames go to ``on_frame(frame)``, called **in the relay thread**, or, when no
      callback is given, wait for :meth:`poll` (at most ``receive_queue_size`` of them; then
      the relay stops reading from the network until you poll);
    - :meth:`close` (or leaving the ``with`` block) closes the relay and joins the thread.
    """

    def __init__(self, url: str, *, on_frame: Callable[[bytes], object] | None = None,
                 **options: Any) -> None:
        if on_frame is not None and not callable(on_frame):
            raise TypeError(f"on_frame must be callable, got {on_frame!r}")
        self.url = url
        self._on_frame = on_frame
        self._limit = int(options.get("receive_queue_size", RECEIVE_QUEUE_SIZE))
        self._frames: collections.deque[bytes] = collections.deque()
        self._token: trio.lowlevel.TrioToken | None = None
        self._relay: Relay | None = None
        self._stop: trio.Event | None = None
        self._room: trio.Event | None = None
        self._waiting = False  # the relay thread waits for poll() to make room
        self._error: BaseException | None = None
        self._ready = threading.Event()
        self._closed = False
        self._last_stats: RelayStatistics | None = None
        self.callback_errors = 0
        # Validate everything that can be validated without I/O in the caller's thread.
        Relay(url, **options)._close_capture()
        self._thread = threading.Thread(target=self._main, args=(options,),
                                        name=f"pyv86-relay {url}", daemon=True)
        self._thread.start()
        timeout = float(options.get("connect_timeout", CONNECT_TIMEOUT)) + THREAD_START_TIMEOUT
        if not self._ready.wait(timeout):
            self.close()
            raise RelayError(f"relay {url!r}: the relay thread did not start within {timeout:g} s",
                             url=url)
        if self._error is not None:
            self._thread.join(THREAD_START_TIMEOUT)
            self._closed = True
            raise self._error

    # ------------------------------------------------------------------ caller's thread

    def send(self, frame: bytes | bytearray | memoryview) -> None:
        """Queue a copy of ``frame`` for sending; never blocks. Raises :class:`RelayClosed`
        after close, ``TypeError`` for a non-bytes-like frame."""
        data = copy_frame(frame)
        token = self._token
        if self._closed or token is None:
            raise RelayClosed(f"relay {self.url!r} is closed", url=self.url)
        try:
            token.run_sync_soon(self._send_in_loop, data)
        except trio.RunFinishedError:
            self._closed = True
            raise RelayClosed(f"relay {self.url!r} is closed", url=self.url) from None

    def poll(self, max_frames: int | None = None) -> list[bytes]:
        """Return the frames received since the last call (oldest first), at most
        ``max_frames``. Always empty when an ``on_frame`` callback is used."""
        out: list[bytes] = []
        frames = self._frames
        while frames and (max_frames is None or len(out) < max_frames):
            out.append(frames.popleft())
        if self._waiting:
            self._wake_receiver()
        return out

    def statistics(self) -> RelayStatistics:
        """The relay's statistics (see :class:`RelayStatistics`)."""
        token, relay = self._token, self._relay
        if token is not None and relay is not None and not self._closed:
            try:
                self._last_stats = trio.from_thread.run_sync(relay.statistics, trio_token=token)
            except (trio.RunFinishedError, RuntimeError):
                pass
        if self._last_stats is None:
            raise RelayClosed(f"relay {self.url!r} never opened", url=self.url)
        return self._last_stats

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, timeout: float = THREAD_START_TIMEOUT) -> None:
        """Close the relay and wait (up to ``timeout`` seconds) for its thread. Idempotent."""
        if not self._closed:
            self._closed = True
            token, stop = self._token, self._stop
            if token is not None and stop is not None:
                try:
                    token.run_sync_soon(stop.set)
                except trio.RunFinishedError:
                    pass
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def __enter__(self) -> ThreadedRelay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ relay thread

    def _wake_receiver(self) -> None:
        token = self._token
        if token is not None:
            try:
                token.run_sync_soon(self._wake_in_loop)
            except trio.RunFinishedError:
                pass

    def _wake_in_loop(self) -> None:
        if self._room is not None:
            self._room.set()

    def _send_in_loop(self, frame: bytes) -> None:
        relay = self._relay
        if relay is None or relay.closed:
            return
        try:
            relay.send_nowait(frame)
        except trio.WouldBlock:
            relay._count("queue_full")
        except RelayClosed:
            pass

    def _main(self, options: dict[str, Any]) -> None:
        try:
            trio.run(self._amain, options)
        except BaseException as exc:  # reported to the constructor, or logged
            if not self._ready.is_set():
                self._error = exc
                self._ready.set()
            else:
                log.exception("relay thread for %r failed", self.url)
        finally:
            self._closed = True

    async def _amain(self, options: dict[str, Any]) -> None:
        self._stop = trio.Event()
        self._room = trio.Event()
        async with open_relay(self.url, **options) as relay:
            self._relay = relay
            self._token = trio.lowlevel.current_trio_token()
            self._last_stats = relay.statistics()
            self._ready.set()
            if self._closed:  # the constructor gave up waiting, or close() came early
                return
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._deliver, relay)
                await self._stop.wait()
                nursery.cancel_scope.cancel()
            self._last_stats = relay.statistics()
        self._last_stats = relay.statistics()

    async def _deliver(self, relay: Relay) -> None:
        async for frame in relay:
            if self._on_frame is not None:
                try:
                    self._on_frame(frame)
                except Exception:
                    self.callback_errors += 1
                    log.exception("on_frame callback of relay %r raised", self.url)
                continue
            while len(self._frames) >= self._limit:
                self._room = trio.Event()
                self._waiting = True
                if len(self._frames) >= self._limit:  # poll() may have run meanwhile
                    await self._room.wait()
                self._waiting = False
            self._frames.append(frame)
        await trio.lowlevel.checkpoint()

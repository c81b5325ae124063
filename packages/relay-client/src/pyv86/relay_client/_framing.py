"""The sans-IO core: frame validation, QEMU stream framing, WebSocket message rules.

Nothing here does I/O. Bytes go in, frames (and drop reasons) come out; the trio adapters in
``_transports`` only move bytes between these functions and sockets.
"""

from __future__ import annotations

import struct

__all__ = [
    "ETHERNET_HEADER_SIZE",
    "MAX_FRAME_SIZE",
    "MAX_STREAM_LENGTH",
    "FramingError",
    "StreamDecoder",
    "check_frame",
    "copy_frame",
    "encode_stream",
    "frame_from_message",
]

#: Frames shorter than an Ethernet header (dst, src, ethertype) are junk: "runt".
ETHERNET_HEADER_SIZE = 14

#: The default largest frame accepted in either direction, without FCS: 1514 (header plus a
#: 1500-byte payload) + 4 for one 802.1Q tag = 1518, + 4 bytes of allowance for a second tag
#: (802.1ad) or a relay that leaves the FCS on. Larger frames are dropped as "oversize".
MAX_FRAME_SIZE = 1522

#: The largest length prefix the stream decoder skips over (QEMU's NET_BUFSIZE: 4096 + 65536).
#: A larger prefix means the byte stream lost sync: :class:`FramingError`.
MAX_STREAM_LENGTH = 69632

_LENGTH = struct.Struct(">I")

# Drop reasons (keys of RelayStatistics.dropped).
RUNT = "runt"
OVERSIZE = "oversize"
TEXT = "text"


class FramingError(Exception):
    """The peer broke the framing (a stream length prefix past :data:`MAX_STREAM_LENGTH`).
    The connection cannot be resynchronised and must be dropped."""


def copy_frame(frame: object) -> bytes:
    """Return an immutable copy of a bytes-like frame (bytes, bytearray, memoryview, ...).

    A frame handed to a transport may be a view of card memory that changes later; queued
    frames must be copies. Raises ``TypeError`` for anything that is not bytes-like (``str``
    included)."""
    if isinstance(frame, bytes):
        return frame  # immutable already
    if isinstance(frame, str):
        raise TypeError("a frame must be bytes-like, not str")
    try:
        view = memoryview(frame)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"a frame must be bytes-like, not {type(frame).__name__}") from None
    with view:
        return view.tobytes()


def check_frame(frame: bytes, max_size: int = MAX_FRAME_SIZE) -> str | None:
    """Return ``None`` if ``frame`` has an Ethernet frame's size, else the drop reason
    (``"runt"`` below 14 bytes, ``"oversize"`` above ``max_size``).

    Short frames of 14..59 bytes are fine: virtual networks send them unpadded (passt's
    42-byte ARP replies); padding to 60 bytes is the card's job."""
    n = len(frame)
    if n < ETHERNET_HEADER_SIZE:
        return RUNT
    if n > max_size:
        return OVERSIZE
    return None


def encode_stream(frame: bytes) -> bytes:
    """One frame in QEMU stream framing: a 4-byte big-endian length, then the frame."""
    return _LENGTH.pack(len(frame)) + frame


def frame_from_message(message: bytes | str, max_size: int = MAX_FRAME_SIZE) -> tuple[bytes | None, str | None]:
    """Apply the websockproxy rules to one WebSocket message.

    A binary message is exactly one Ethernet frame (no length prefix, no FCS). Text messages
    carry no frames and are ignored. Returns ``(frame, None)`` or ``(None, reason)``."""
    if isinstance(message, str):
        return None, TEXT
    frame = bytes(message)
    reason = check_frame(frame, max_size)
    return (None, reason) if reason else (frame, None)


class StreamDecoder:
    """Splits a QEMU stream (length-prefixed frames) into frames.

    Feed it whatever the socket returned, in any chunking; iterate the frames it completed.
    Frames of a wrong size are skipped and counted in :attr:`dropped` (a dict reason ->
    count); a length prefix over :data:`MAX_STREAM_LENGTH` raises :class:`FramingError`.
    """

    def __init__(self, max_size: int = MAX_FRAME_SIZE, dropped: dict[str, int] | None = None) -> None:
        if max_size < ETHERNET_HEADER_SIZE:
            raise ValueError(f"max_size must be at least {ETHERNET_HEADER_SIZE}")
        self.max_size = max_size
        #: drop reason -> count; pass a dict to share counters with the caller
        self.dropped: dict[str, int] = {} if dropped is None else dropped
        self._buf = bytearray()
        self._skip = 0  # bytes of an oversize frame still to discard

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Add received bytes; return the frames they complete, in order."""
        buf = self._buf
        buf += data
        frames: list[bytes] = []
        pos = 0
        end = len(buf)
        try:
            while True:
                if self._skip:
                    n = min(self._skip, end - pos)
                    pos += n
                    self._skip -= n
                    if self._skip:
                        return frames
                if end - pos < 4:
                    return frames
                (length,) = _LENGTH.unpack_from(buf, pos)
                if length > MAX_STREAM_LENGTH:
                    raise FramingError(
                        f"stream length prefix {length} exceeds {MAX_STREAM_LENGTH}: framing lost")
                if length < ETHERNET_HEADER_SIZE or length > self.max_size:
                    reason = RUNT if length < ETHERNET_HEADER_SIZE else OVERSIZE
                    self.dropped[reason] = self.dropped.get(reason, 0) + 1
                    pos += 4
                    self._skip = length
                    continue
                if end - pos - 4 < length:
                    return frames
                frames.append(bytes(buf[pos + 4:pos + 4 + length]))
                pos += 4 + length
        finally:
            del buf[:pos]

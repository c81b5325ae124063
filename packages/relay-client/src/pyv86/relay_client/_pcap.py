"""A classic pcap writer (the libpcap format Wireshark and tcpdump open), link type Ethernet."""

from __future__ import annotations

import os
import struct
import time
from typing import BinaryIO

__all__ = ["LINKTYPE_ETHERNET", "PcapWriter"]

LINKTYPE_ETHERNET = 1
_MAGIC = 0xA1B2C3D4  # microsecond timestamps
_SNAPLEN = 65535
_GLOBAL = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")


class PcapWriter:
    """Write Ethernet frames to a pcap file (little-endian, version 2.4, microseconds).

    ``PcapWriter(path_or_binary_file)``; :meth:`write` adds one frame with the current time
    (or ``timestamp``, seconds since the epoch); :meth:`close` closes a file it opened itself.
    Each record is flushed so a capture can be read while the relay runs. A context manager.
    """

    def __init__(self, target: str | os.PathLike[str] | BinaryIO) -> None:
        if isinstance(target, (str, bytes, os.PathLike)):
            self._file: BinaryIO = open(target, "wb")
            self._owned = True
        elif callable(getattr(target, "write", None)):
            self._file = target
            self._owned = False
        else:
            raise TypeError(f"capture must be a path or a binary file opened for writing, "
                            f"got {type(target).__name__}")
        self.frames = 0
        self._file.write(_GLOBAL.pack(_MAGIC, 2, 4, 0, 0, _SNAPLEN, LINKTYPE_ETHERNET))
        self._file.flush()

    def write(self, frame: bytes, timestamp: float | None = None) -> None:
        if self._file.closed:
            raise ValueError("pcap writer is closed")
        if timestamp is None:
            timestamp = time.time()
        usec_total = int(timestamp * 1_000_000)
        sec, usec = divmod(usec_total, 1_000_000)
        data = frame[:_SNAPLEN]
        self._file.write(_RECORD.pack(sec & 0xFFFFFFFF, usec, len(data), len(frame)) + data)
        self._file.flush()
        self.frames += 1

    def close(self) -> None:
        if self._owned:
            self._file.close()
        elif not self._file.closed:
            self._file.flush()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

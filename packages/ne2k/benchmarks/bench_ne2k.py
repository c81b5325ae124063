"""Frames per second through the public API of pyv86.ne2k.

receive-and-drain: the host calls card.receive(frame), then the guest drains the ring the
way Linux's ne2k-pci + lib8390 do (page-1 CURR read, 32-bit ring-header inl, insl of the
frame, BNRY update, ISR acks), all through io_read/io_write.

transmit: the guest copies the frame with outsl, polls RDC, sets TBCR/TPSR and issues
TXP; the card calls send(). Also with MAC translation on (an ARP frame both ways).

Prints human-readable lines and one `BENCH {json}` line per figure (see noxfile.py).
Figures are measured, never asserted.
"""

from __future__ import annotations

import json
import platform
import struct
import sys
import time

from pyv86.ne2k import NE2000

MAC = bytes.fromhex("525400123456")
PEER = bytes.fromhex("020000000001")


def linux_up(card: NE2000) -> None:
    w = card.io_write
    for off, val in [(0, 0x21), (14, 0x49), (10, 0), (11, 0), (12, 0x20), (13, 2), (4, 0x40),
                     (1, 0x4C), (3, 0x7F), (2, 0x80), (7, 0xFF), (15, 0), (0, 0x61)]:
        w(off, val, 1)
    for i in range(6):
        w(1 + i, card.guest_mac[i], 1)
    for off, val in [(7, 0x4C), (0, 0x21), (7, 0xFF), (15, 0x3F), (0, 0x22), (13, 0),
                     (12, 0x04)]:
        w(off, val, 1)


def drain(card: NE2000, sink: list) -> None:
    io_w = card.io_write
    io_r = card.io_read
    while True:
        io_w(0, 0x62, 1)
        curr = io_r(7, 1)
        io_w(0, 0x22, 1)
        this = io_r(3, 1) + 1
        if this >= 0x80:
            this = 0x4C
        if this == curr:
            break
        io_w(10, 4, 1)
        io_w(11, 0, 1)
        io_w(8, 0, 1)
        io_w(9, this, 1)
        io_w(0, 0x0A, 1)
        h = io_r(0x10, 4)
        io_w(7, 0x40, 1)
        nxt = (h >> 8) & 0xFF
        n = (h >> 16) - 4
        addr = (this << 8) + 4
        io_w(10, n & 0xFF, 1)
        io_w(11, n >> 8, 1)
        io_w(8, addr & 0xFF, 1)
        io_w(9, addr >> 8, 1)
        io_w(0, 0x0A, 1)
        words = [io_r(0x10, 4) for _ in range(n >> 2)]
        if n & 2:
            words.append(io_r(0x10, 2))
        if n & 1:
            words.append(io_r(0x10, 1))
        io_w(7, 0x40, 1)
        sink.append(words)
        io_w(3, (nxt if nxt < 0x80 else 0x4C) - 1, 1)
    io_w(7, 0x05, 1)


def transmit(card: NE2000, words: list, length: int) -> None:
    io_w = card.io_write
    io_r = card.io_read
    count = len(words) * 4
    io_w(0, 0x22, 1)
    io_w(10, count & 0xFF, 1)
    io_w(11, count >> 8, 1)
    io_w(8, 0, 1)
    io_w(9, 0x40, 1)
    io_w(0, 0x12, 1)
    for w in words:
        io_w(0x10, w, 4)
    while not io_r(7, 1) & 0x40:
        pass
    io_w(7, 0x40, 1)
    io_w(0, 0x20, 1)
    io_r(0, 1)
    io_w(5, length & 0xFF, 1)
    io_w(6, length >> 8, 1)
    io_w(4, 0x40, 1)
    io_w(0, 0x26, 1)
    io_w(7, 0x02, 1)


def frame_of(n: int) -> bytes:
    return MAC + PEER + b"\x08\x00" + bytes(i & 0xFF for i in range(n - 14))


def bench_rx(size: int, seconds: float) -> float:
    card = NE2000(model="rtl8029", mac=MAC)
    linux_up(card)
    f = frame_of(size)
    sink: list = []
    frames = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while True:
        for _ in range(8):
            if not card.receive(f):
                raise SystemExit("ring unexpectedly full")
        drain(card, sink)
        frames += 8
        sink.clear()
        now = time.perf_counter()
        if now >= deadline:
            return frames / (now - t0)


def bench_tx(size: int, seconds: float, translate: bool = False) -> float:
    sent: list = []
    card = NE2000(model="rtl8029", mac=MAC, send=sent.append)
    if translate:
        state = card.save_state()
        card.restore_state(state, mac_mode="mac_address_translation")
        f = (b"\xff" * 6 + MAC + b"\x08\x06" + struct.pack(">HHBBH", 1, 0x0800, 6, 4, 1) + MAC
             + b"\x0a\x00\x02\x0f" + bytes(6) + b"\x0a\x00\x02\x02")
        f += bytes(size - len(f))
    else:
        f = frame_of(size)
    linux_up(card)
    padded = f + bytes(-len(f) % 4)
    words = [int.from_bytes(padded[i:i + 4], "little") for i in range(0, len(padded), 4)]
    frames = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while True:
        for _ in range(8):
            transmit(card, words, len(f))
        frames += 8
        sent.clear()
        now = time.perf_counter()
        if now >= deadline:
            return frames / (now - t0)


def report(name: str, value: float, unit: str = "frames/s") -> None:
    print(f"  {name:34} {value:12,.0f} {unit}")
    print("BENCH " + json.dumps({"name": name, "value": round(value, 1), "unit": unit}))


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1.5
    impl = platform.python_implementation()
    print(f"pyv86.ne2k benchmark on {impl} {platform.python_version()} ({seconds:g} s per figure)")
    # warm-up (lets PyPy's JIT compile the paths before measuring)
    bench_rx(1514, seconds / 3)
    bench_tx(1514, seconds / 3)
    report("receive-and-drain 60 B", bench_rx(60, seconds))
    report("receive-and-drain 1514 B", bench_rx(1514, seconds))
    report("transmit 60 B", bench_tx(60, seconds))
    report("transmit 1514 B", bench_tx(1514, seconds))
    report("transmit 1514 B translated ARP", bench_tx(1514, seconds, translate=True))


if __name__ == "__main__":
    main()

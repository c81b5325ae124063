"""Smoke test: runs against the installed wheel alone (nox -s isolation) and in place.

Uses only pyv86.ne2k and pytest: a Linux-style bring-up, one frame each way.
"""

import re

import pyv86.ne2k
from pyv86.ne2k import NE2000


def test_version_is_pep440():
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+|a\d+|b\d+|rc\d+)?", pyv86.ne2k.__version__)


def _bring_up(card):
    # lib8390 NS8390_init(dev, 1) with the ne2k-pci ring 0x4c..0x80
    for off, val in [(0, 0x21), (0x0E, 0x49), (0x0A, 0), (0x0B, 0), (0x0C, 0x20),
                     (0x0D, 0x02), (0x04, 0x40), (0x01, 0x4C), (0x03, 0x7F), (0x02, 0x80),
                     (0x07, 0xFF), (0x0F, 0x00), (0, 0x61)]:
        card.io_write(off, val, 1)
    for i, b in enumerate(card.guest_mac):
        card.io_write(1 + i, b, 1)
    for off, val in [(0x07, 0x4C), (0, 0x21), (0x07, 0xFF), (0x0F, 0x3F), (0, 0x22),
                     (0x0D, 0x00), (0x0C, 0x04)]:
        card.io_write(off, val, 1)


def test_frame_in_and_out_through_the_public_api():
    sent, levels = [], []
    card = NE2000(model="rtl8029", mac="52:54:00:12:34:56", send=sent.append, irq=levels.append)
    _bring_up(card)
    frame = bytes.fromhex("525400123456" "020000000001" "0800") + bytes(range(50))
    assert card.receive(frame) is True
    assert levels == [1] and card.io_read(0x07, 1) & 0x01  # ISR.PRX raised the line
    # read the 4-byte ring header at page 0x4c with one 32-bit access
    for off, val in [(0x0A, 4), (0x0B, 0), (0x08, 0), (0x09, 0x4C), (0, 0x0A)]:
        card.io_write(off, val, 1)
    status, nxt, count = (lambda h: (h & 0xFF, (h >> 8) & 0xFF, h >> 16))(card.io_read(0x10, 4))
    assert (status, nxt, count) == (0x01, 0x4D, 64 + 4)
    # transmit 60 bytes from page 0x40
    for off, val in [(0x0A, 60), (0x0B, 0), (0x08, 0), (0x09, 0x40), (0, 0x12)]:
        card.io_write(off, val, 1)
    for i in range(0, 60, 4):
        card.io_write(0x10, int.from_bytes(frame[i:i + 4], "little"), 4)
    assert card.io_read(0x07, 1) & 0x40  # RDC
    card.io_write(0x05, 60, 1)
    card.io_write(0x06, 0, 1)
    card.io_write(0x04, 0x40, 1)
    card.io_write(0x00, 0x26, 1)
    assert sent == [frame[:60]]
    assert card.io_read(0x00, 1) & 0x04 == 0  # TXP cleared when done


def test_public_names_are_exported():
    for name in pyv86.ne2k.__all__:
        assert hasattr(pyv86.ne2k, name), name
    assert {"NE2000", "translate", "parse_mac", "format_mac", "random_mac"} <= set(pyv86.ne2k.__all__)


def test_receive_accepts_any_bytes_like_frame():
    card = NE2000(model="ne2000", mac="52:54:00:12:34:56")
    _bring_up(card)
    frame = bytes.fromhex("525400123456" "020000000001" "0800") + bytes(50)
    assert card.receive(memoryview(frame)) and card.receive(bytearray(frame))

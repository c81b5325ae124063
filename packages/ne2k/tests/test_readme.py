"""The README's embedding example runs as written, wired to a fake PIC and backend, and a
Linux-style guest brings the card up through the example's port handlers."""

from __future__ import annotations

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _example() -> str:
    text = README.read_text()
    section = text.split("## Embedding the card in your emulator", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


class FakePic:
    def __init__(self):
        self.lines = {}

    def set_line(self, n, level):
        self.lines[n] = level


class FakeBackend:
    def __init__(self):
        self.sent = []
        self.on_frame = None

    def transmit(self, frame):
        self.sent.append(frame)


def test_readme_embedding_example_is_about_twenty_lines_and_works():
    code = _example()
    assert len(code.strip().splitlines()) <= 25
    ns: dict = {}
    exec(compile(code, str(README), "exec"), ns)
    pic, backend = FakePic(), FakeBackend()
    m = ns["MyMachine"](pic, backend)
    base = 0x300
    assert m.port_in(0x3FF, 1) == 0xFF                          # not the card's port
    for off, val in [(0, 0x21), (14, 0x49), (12, 0x20), (13, 2), (4, 0x40), (1, 0x4C),
                     (3, 0x7F), (2, 0x80), (7, 0xFF), (0, 0x61), (7, 0x4C)]:
        m.port_out(base + off, val, 1)
    for i, b in enumerate(bytes.fromhex("525400123456")):
        m.port_out(base + 1 + i, b, 1)
    for off, val in [(0, 0x22), (15, 0x3F), (13, 0), (12, 0x04)]:
        m.port_out(base + off, val, 1)
    assert backend.on_frame(bytes.fromhex("525400123456") + bytes(54)) is True
    assert pic.lines == {9: 1}
    state = m.save()
    m.load(state)
    assert m.nic.translating and m.nic.guest_mac == bytes.fromhex("525400123456")

"""Smoke test: runs against the installed wheel alone (nox -s isolation) and in place.

Boots a 512-byte "kernel" through the Linux boot protocol: it prints on COM1 and halts."""

import re
import struct

import pyv86.machine
from pyv86.machine import EXIT_CODES, Machine


def tiny_bzimage() -> bytes:
    setup = bytearray(1024)
    setup[0x1F1] = 1
    setup[0x1FE:0x200] = b"\x55\xaa"
    setup[0x201] = 0x66
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", setup, 0x206, 0x020F)
    setup[0x211] = 0x01
    struct.pack_into("<I", setup, 0x214, 0x100000)
    # mov dx,0x3f8; mov al,'h'; out dx,al; mov al,'i'; out dx,al; cli; hlt
    return bytes(setup) + bytes.fromhex("66baf803b068eeb069eefaf4")


def test_version_is_pep440():
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+|a\d+|b\d+|rc\d+)?", pyv86.machine.__version__)


def test_a_tiny_kernel_boots_prints_and_powers_off():
    m = Machine(bzimage=tiny_bzimage(), network_relay_url="none", clock="deterministic",
                memory_size=16 << 20)
    result = m.run(max_instructions=1000)
    assert bytes(m.console) == b"hi"
    assert result.reason == "poweroff" and result.exit_code == EXIT_CODES["poweroff"] == 0

"""pyv86-pci benchmark: configuration-space accesses per second.

Figures (each printed for humans and as a `BENCH {...}` JSON line for `nox -s bench`):
- enumeration: a SeaBIOS/Linux-style scan of bus 0 (32 slots, functions 1-7 where the
  header says multi-function, then class/header/BAR reads of each found function); one
  access = a dword write to 0xCF8 plus an access to 0xCFC.
- bar-sizing: save, write all ones, read, restore every BAR of the NIC (SeaBIOS
  pci_bios_get_bar), the write-heavy path with decoding checks.
- remap: moving a decoding I/O BAR (each move is an unmap and a map callback).
- irq: INTx level changes routed through PIRQ to an ISA line.

Run: python packages/pci/benchmarks/bench_pci.py [--seconds S]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

from pyv86.pci import Bar, DataFunction, PCIBus, config_header


def _bus():
    calls = [0]

    def count(*args):
        calls[0] += 1

    bus = PCIBus(on_map=count, on_unmap=count, on_pam=count, irq_line=count)
    mask = bytearray(256)
    mask[4] = 0x07
    nic = DataFunction(config_header(0x10EC, 0x8029, 0x020000, interrupt_pin=1), mask,
                       [Bar(0, "io", 32)])
    bus.add_device(nic, slot=5)
    bus.add_device(DataFunction(config_header(0x1234, 0x1111, 0x030000), bytes(256),
                                [Bar(0, "mem", 1 << 24, True), Bar(2, "mem", 4096)]), slot=2)
    bus.config_write(1, 0, 0x61, 10, 1)
    return bus, nic


def _scan(bus):
    """One pass of a pci_scan_bus-like enumeration; returns the number of accesses."""
    w, r = bus.io_write, bus.io_read
    n = 0
    for slot in range(32):
        w(0xCF8, 0x80000000 | slot << 11, 4)
        ids = r(0xCFC, 4)
        n += 1
        if ids == 0xFFFFFFFF:
            continue
        w(0xCF8, 0x80000000 | slot << 11 | 0x0C, 4)
        multi = r(0xCFE, 1) & 0x80
        n += 1
        functions = range(8) if multi else range(1)
        for fn in functions:
            base = 0x80000000 | slot << 11 | fn << 8
            if fn:
                w(0xCF8, base, 4)
                n += 1
                if r(0xCFC, 4) == 0xFFFFFFFF:
                    continue
            for reg in (0x08, 0x0C, 0x10, 0x14, 0x18, 0x1C, 0x20, 0x24, 0x2C, 0x3C):
                w(0xCF8, base | reg, 4)
                r(0xCFC, 4)
                n += 1
    return n


def _size_bars(bus):
    w, r = bus.io_write, bus.io_read
    n = 0
    for reg in (0x10, 0x14, 0x18, 0x1C, 0x20, 0x24, 0x30):
        addr = 0x80000000 | 5 << 11 | reg
        w(0xCF8, addr, 4)
        old = r(0xCFC, 4)
        w(0xCFC, 0xFFFFFFFF, 4)
        r(0xCFC, 4)
        w(0xCFC, old, 4)
        n += 4
    return n


def _remap(bus):
    w = bus.io_write
    w(0xCF8, 0x80000000 | 5 << 11 | 0x10, 4)
    for base in range(0xC000, 0xC400, 0x20):
        w(0xCFC, base, 4)
    return 0x400 // 0x20


def _irq(nic):
    s = nic.set_irq
    for _ in range(100):
        s(1)
        s(0)
    return 200


def _measure(fn, seconds):
    fn()  # warm-up (PyPy's JIT)
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        done += fn()
        now = time.perf_counter()
        if now >= deadline:
            return done / (now - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="per figure (default 1)")
    args = parser.parse_args(argv)
    bus, nic = _bus()
    bus.config_write(5, 0, 0x10, 0xC000, 4)
    bus.config_write(5, 0, 0x04, 0x0001, 2)
    impl = f"{platform.python_implementation()} {platform.python_version()}"
    figures = [
        ("pci enumeration config accesses", _measure(lambda: _scan(bus), args.seconds),
         "accesses/s"),
        ("pci BAR sizing config accesses", _measure(lambda: _size_bars(bus), args.seconds),
         "accesses/s"),
        ("pci decoding BAR moves", _measure(lambda: _remap(bus), args.seconds), "moves/s"),
        ("pci INTx level changes", _measure(lambda: _irq(nic), args.seconds), "changes/s"),
    ]
    print(f"pyv86-pci on {impl}")
    for name, value, unit in figures:
        print(f"  {name:36} {value:14,.0f} {unit}")
    for name, value, unit in figures:
        print("BENCH " + json.dumps({"name": name, "value": round(value), "unit": unit}))


if __name__ == "__main__":
    main()

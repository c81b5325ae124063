"""Property tests: random guest traffic on ports 0xCF8-0xCFF never raises, read-only bits stay
put, and the bus's callbacks always agree with an independent model computed from the
configuration bytes (decoding regions, PAM segments, ISA line levels)."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from pyv86.pci import Bar, PCIBus, patch_rom_ids, rom_images

SLOTS = (0, 1, 5, 6, 9)
VALID_IRQS = {3, 4, 5, 6, 7, 9, 10, 11, 12, 14, 15}


INTERESTING_REGS = (0x04, 0x05, 0x06, 0x10, 0x14, 0x18, 0x1C, 0x20, 0x24, 0x30, 0x3C, 0x40,
                    0x58, 0x59, 0x5A, 0x5C, 0x5F, 0x60, 0x61, 0x62, 0x63)
_reg = st.one_of(st.integers(0, 255), st.sampled_from(INTERESTING_REGS))


def _address():
    return st.one_of(
        st.integers(0, 0xFFFFFFFF),
        st.builds(lambda slot, fn, reg, bus: 0x80000000 | bus << 16 | slot << 11 | fn << 8 | reg,
                  st.sampled_from(SLOTS), st.sampled_from((0, 0, 0, 1, 7)),
                  _reg, st.sampled_from((0, 0, 0, 0, 1))),
    )


_value = st.one_of(st.integers(0, 0xFFFFFFFF),
                   st.sampled_from((0, 0xFFFFFFFF, 0xFFFFF000, 0xC000, 0xFFFC, 0xFEB00000,
                                    0xFEBC0001, 0x0403, 0x0007, 0x0400, 0x33, 3, 9, 11)))
_op = st.one_of(
    st.tuples(st.just("addr"), _address()),
    st.tuples(st.just("read"), st.integers(0xCF6, 0xD01), st.sampled_from((1, 2, 4))),
    st.tuples(st.just("write"), st.integers(0xCF6, 0xD01), st.sampled_from((1, 2, 4)), _value),
    st.tuples(st.just("data"), st.integers(0, 3), st.sampled_from((1, 2, 4)), _value),
    # A whole guest config write: latch the address, then write through the data window.
    st.tuples(st.just("cfg"), st.sampled_from(SLOTS), _reg, st.sampled_from((1, 2, 4)), _value),
    st.tuples(st.just("irq"), st.integers(0, 2), st.integers(0, 1)),
    st.tuples(st.just("pirq"), st.integers(0, 3), st.integers(0, 255)),
    st.tuples(st.just("save-restore")),
    st.tuples(st.just("reset")),
)


class World:
    def __init__(self, make_device, make_rom):
        self.mapped = []
        self.pam = {}
        self.lines = {}
        self.bus = PCIBus(on_map=self._map, on_unmap=self._unmap, on_pam=self._pam,
                          irq_line=self._irq)
        self.devices = [
            make_device(),
            make_device(pin=2, bars=[Bar(0, "io", 4), Bar(2, "mem", 4096, True),
                                     Bar(4, "mem", 16)], rom=make_rom(0, 0)),
            make_device(pin=4, mask=b"\xff" * 256, bars=[Bar(5, "mem", 1 << 16)]),
        ]
        for device, slot in zip(self.devices, (5, 6, 9)):
            self.bus.add_device(device, slot=slot)
        self.power_on = {slot: bytes(self.cfg(slot)) for slot in SLOTS}

    def _map(self, region):
        assert all(r is not region for r in self.mapped)
        self.mapped.append(region)

    def _unmap(self, region):
        assert any(r is region for r in self.mapped)
        self.mapped = [r for r in self.mapped if r is not region]

    def _pam(self, start, length, read_ram, write_ram):
        self.pam[start] = (read_ram, write_ram)

    def _irq(self, irq, level):
        assert level in (0, 1)
        self.lines[irq] = level

    def cfg(self, slot):
        return bytes(self.bus.config_read(slot, 0, o, 1) for o in range(256))

    def run(self, op):
        kind = op[0]
        if kind == "addr":
            self.bus.io_write(0xCF8, op[1], 4)
        elif kind == "read":
            value = self.bus.io_read(op[1], op[2])
            assert 0 <= value < 1 << (8 * op[2])
        elif kind == "write":
            self.bus.io_write(op[1], op[3] & ((1 << 8 * op[2]) - 1), op[2])
        elif kind == "data":
            self.bus.io_write(0xCFC + op[1], op[3] & ((1 << 8 * op[2]) - 1), op[2])
        elif kind == "cfg":
            _, slot, reg, size, value = op
            reg = min(reg, 256 - size)
            self.bus.io_write(0xCF8, 0x80000000 | slot << 11 | (reg & 0xFC), 4)
            port = 0xCFC + (reg & 3)
            self.bus.io_write(port, value & ((1 << 8 * size) - 1), size)
        elif kind == "irq":
            self.devices[op[1]].set_irq(op[2])
        elif kind == "pirq":
            self.bus.config_write(1, 0, 0x60 + op[1], op[2], 1)
        elif kind == "save-restore":
            self.bus.restore_state(self.bus.save_state())
        elif kind == "reset":
            self.bus.reset()

    def check(self):
        bars = {5: {0: ("io", 32)},
                6: {0: ("io", 4), 2: ("mem", 4096), 4: ("mem", 16)},
                9: {5: ("mem", 1 << 16)}}
        roms = {6: 2048}
        expected_regions = set()
        for slot in SLOTS:
            now, first = self.cfg(slot), self.power_on[slot]
            # Identity, class, header type, subsystem, pin never change.
            for lo, hi in ((0x00, 0x04), (0x08, 0x0C), (0x0E, 0x10), (0x2C, 0x30), (0x3D, 0x40)):
                assert now[lo:hi] == first[lo:hi], (slot, hex(lo))
            command = now[4] | now[5] << 8
            assert command & 0xF800 == 0
            for index in range(6):
                value = int.from_bytes(now[0x10 + 4 * index:0x14 + 4 * index], "little")
                kind, size = bars.get(slot, {}).get(index, (None, 0))
                if kind is None:
                    assert value == 0
                    continue
                if kind == "io":
                    assert value & 0x3 == 0x1
                    base = value & ~0x3
                    on = command & 1 and base and base + size <= 0x10000
                else:
                    assert value & 0x7 == 0
                    base = value & ~0xF
                    on = command & 2 and base and base + size <= 0xFFFFFFFF
                assert base % size == 0
                if on:
                    expected_regions.add((slot, index, kind, base, size))
            rom_bar = int.from_bytes(now[0x30:0x34], "little")
            if slot in roms:
                base = rom_bar & 0xFFFFF800
                assert base % roms[slot] == 0 and rom_bar & 0x7FE == 0
                if command & 2 and rom_bar & 1 and base and base + roms[slot] <= 0xFFFFFFFF:
                    expected_regions.add((slot, 6, "rom", base, roms[slot]))
            else:
                assert rom_bar == 0
        got = {(r.slot, r.bar, r.kind, r.base, r.size) for r in self.mapped}
        assert got == expected_regions
        assert len(self.mapped) == len(expected_regions)
        assert got == {(r.slot, r.bar, r.kind, r.base, r.size) for r in self.bus.regions()}
        # PAM segments as reported equal those the host bridge bytes describe.
        host = self.cfg(0)
        for reg, shift, start in [(0x5A + i // 2, 4 * (i % 2), 0xC0000 + 0x4000 * i)
                                  for i in range(12)] + [(0x59, 4, 0xF0000)]:
            nibble = host[reg] >> shift & 3
            assert self.pam.get(start, (False, False)) == (bool(nibble & 1), bool(nibble & 2))
        # Each ISA line is high exactly while a routed, unmasked pin asserts.
        isa = self.cfg(1)
        model = {}
        for slot in (5, 6, 9):
            space = self.bus._spaces[slot << 3]
            cfg = self.cfg(slot)
            masked = cfg[5] & 0x04 and space.intx_disable
            if not space.raw_level or masked:
                continue
            route = isa[0x60 + (slot + cfg[0x3D] - 1) % 4]
            if not route & 0x80 and route & 0x0F in VALID_IRQS:
                model[route & 0x0F] = 1
        for irq in VALID_IRQS:
            assert self.lines.get(irq, 0) == model.get(irq, 0), irq


@settings(max_examples=150, deadline=None)
@given(st.lists(_op, max_size=60))
def test_random_config_traffic_keeps_every_invariant(make_device, make_rom, ops):
    world = World(make_device, make_rom)
    for op in ops:
        world.run(op)
        world.check()


_BAR_VALUES = (0, 1, 0xFFFFFFFF, 0xFFFFF000, 0xFFFF0000, 0xFFFC, 0xFFE0, 0x10000, 0xC000,
               0xFEB00000, 0xFEB00001)
_decode_op = st.one_of(
    # (slot, register) of declared BARs and ROM BARs, plus an unimplemented BAR.
    st.builds(lambda where, value: ("cfg", where[0], where[1], 4, value),
              st.sampled_from([(5, 0x10), (6, 0x10), (6, 0x18), (6, 0x20), (6, 0x30),
                               (9, 0x24), (9, 0x30), (5, 0x14)]),
              st.sampled_from(_BAR_VALUES)),
    st.builds(lambda slot, value: ("cfg", slot, 0x04, 2, value),
              st.sampled_from((5, 6, 9)), st.sampled_from((0, 1, 2, 3, 0x0403))),
    st.tuples(st.just("save-restore")),
    st.tuples(st.just("reset")),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_decode_op, min_size=3, max_size=25))
# Edges a uniform draw rarely combines: a region ending at the top of 4 GiB or of the port
# space, sizing (all ones) with decoding on, the ROM at the top.
@example([("cfg", 6, 0x18, 4, 0xFFFFF000), ("cfg", 6, 0x04, 2, 2)])
@example([("cfg", 6, 0x04, 2, 3), ("cfg", 6, 0x10, 4, 0xFFFC), ("cfg", 6, 0x10, 4, 0x10000),
          ("cfg", 5, 0x10, 4, 0xFFE0), ("cfg", 5, 0x04, 2, 1)])
@example([("cfg", 9, 0x24, 4, 0xFEB00000), ("cfg", 9, 0x04, 2, 2),
          ("cfg", 9, 0x24, 4, 0xFFFFFFFF), ("save-restore",), ("cfg", 9, 0x24, 4, 0xC000)])
@example([("cfg", 6, 0x30, 4, 0xFFFFF801), ("cfg", 6, 0x04, 2, 2),
          ("cfg", 6, 0x30, 4, 0xFEB00001), ("reset",)])
def test_bar_and_rom_decoding_callbacks_match_the_config_bytes(make_device, make_rom, ops):
    world = World(make_device, make_rom)
    for op in ops:
        world.run(op)
        world.check()


_irq_op = st.one_of(
    st.tuples(st.just("irq"), st.integers(0, 2), st.sampled_from((0, 1, 1))),
    st.tuples(st.just("pirq"), st.integers(0, 3),
              st.one_of(st.sampled_from((0x80, 0x8B, 5, 9, 10, 11, 11)), st.integers(0, 255))),
    st.tuples(st.just("cfg"), st.sampled_from((5, 6, 9)), st.just(0x04), st.just(2),
              st.sampled_from((0, 0x0400, 0x0403, 0xFFFF))),
    st.tuples(st.just("save-restore")),
    st.tuples(st.just("reset")),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_irq_op, min_size=3, max_size=25))
@example([("irq", 0, 1), ("pirq", 1, 11), ("cfg", 5, 0x04, 2, 0x0400), ("save-restore",),
          ("cfg", 5, 0x04, 2, 0), ("pirq", 1, 0x8B), ("pirq", 1, 10)])
@example([("irq", 0, 1), ("irq", 2, 1), ("pirq", 1, 11), ("pirq", 0, 11), ("irq", 0, 0),
          ("reset",)])
def test_isa_lines_follow_pins_routing_and_interrupt_disable(make_device, make_rom, ops):
    world = World(make_device, make_rom)
    for op in ops:
        world.run(op)
        world.check()


@settings(max_examples=60, deadline=None)
@given(st.lists(_op, max_size=40))
def test_state_round_trip_into_a_fresh_bus_after_random_traffic(make_device, make_rom, ops):
    first = World(make_device, make_rom)
    for op in ops:
        first.run(op)
    second = World(make_device, make_rom)
    second.bus.restore_state(first.bus.save_state())
    for slot in SLOTS:
        assert second.cfg(slot) == first.cfg(slot)
    assert second.bus.io_read(0xCF8, 4) == first.bus.io_read(0xCF8, 4)
    second.check()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))
def test_rom_patching_never_raises_and_keeps_length(rom, vendor, device):
    patched = patch_rom_ids(rom, vendor, device)
    assert len(patched) == len(rom)
    rom_images(patched)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 8), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF),
       st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))
def test_patching_a_valid_x86_rom_keeps_a_zero_sum(make_rom, blocks, v0, d0, v1, d1):
    rom = make_rom(v0, d0, size=512 * blocks)
    patched = patch_rom_ids(rom, v1, d1)
    (image,) = rom_images(patched)
    assert (image.vendor_id, image.device_id) == (v1, d1)
    assert sum(patched) & 0xFF == 0


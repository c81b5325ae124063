"""i440FX PAM registers, PIIX3 PIRQ routing with shared levels, and reset control 0xCF9.

82441FX datasheet 3.2.17 (PAM0-PAM6: per segment RE bit 0, WE bit 1); 82371SB datasheet
(PIRQRC[A:D] at 0x60-0x63: bit 7 IRQROUTEN disables, bits 3:0 IRQ; reset 0x80; RC at 0xCF9:
SRST bit 1, RCPU bit 2).
"""

from __future__ import annotations

import pytest

from pyv86.pci import RESET_HARD, RESET_SOFT, Bar, pam_segments


def test_chipset_identity_and_class(machine):
    assert machine.read(0, 0, 0x00) == 0x12378086
    assert machine.read(0, 0, 0x08) >> 8 == 0x060000  # host bridge
    assert machine.read(1, 0, 0x00) == 0x70008086
    assert machine.read(1, 0, 0x08) >> 8 == 0x060100  # PCI-to-ISA bridge


def test_pam_power_on_sends_everything_to_rom(machine):
    segments = pam_segments(bytes(machine.bus._host.cfg))
    assert len(segments) == 13
    assert all(not r and not w for _, _, r, w in segments)
    assert sum(length for _, length, _, _ in segments) == 0x40000  # 0xC0000-0xFFFFF


def test_seabios_shadowing_sequence_reports_each_segment(machine):
    # make_bios_writable: PAM0 = 0x30, PAM1-6 = 0x33 (read and write DRAM).
    machine.write(0, 0, 0x59, 0x30, 1)
    assert machine.events == [("pam", 0xF0000, 0x10000, True, True)]
    for reg in range(0x5A, 0x60):
        machine.write(0, 0, reg, 0x33, 1)
    expected = {start: (0x4000, True, True) for start in range(0xC0000, 0xF0000, 0x4000)}
    expected[0xF0000] = (0x10000, True, True)
    assert machine.pam == expected
    machine.events.clear()
    # make_bios_readonly: 0x10 / 0x11 leaves reads in DRAM, writes go to ROM (dropped).
    machine.write(0, 0, 0x59, 0x10, 1)
    machine.write(0, 0, 0x5A, 0x11, 1)
    assert machine.events == [("pam", 0xF0000, 0x10000, True, False),
                              ("pam", 0xC0000, 0x4000, True, False),
                              ("pam", 0xC4000, 0x4000, True, False)]


def test_pam_write_only_and_unchanged_segments(machine):
    machine.write(0, 0, 0x5B, 0x20, 1)  # 0xCC000 write-only, 0xC8000 unchanged
    assert machine.events == [("pam", 0xCC000, 0x4000, False, True)]
    machine.write(0, 0, 0x5B, 0x20, 1)
    assert len(machine.events) == 1  # no change, no report


def test_pam_reserved_bits_read_zero(machine):
    machine.write(0, 0, 0x58, 0xFFFFFFFF)  # DRAMT and PAM0-2 in one dword
    assert machine.read(0, 0, 0x59, 1) == 0x30
    assert machine.read(0, 0, 0x5A, 1) == 0x33


def test_pirq_registers_reset_to_disabled_and_keep_only_defined_bits(machine):
    assert [machine.read(1, 0, 0x60 + i, 1) for i in range(4)] == [0x80] * 4
    machine.write(1, 0, 0x60, 0xFFFFFFFF)
    assert machine.read(1, 0, 0x60) == 0x8F8F8F8F
    assert machine.bus.pirq_routes() == [None] * 4


def test_seabios_routing_and_standard_swizzle(machine, make_device):
    for slot in (2, 3, 4, 5):
        machine.bus.add_device(make_device(), slot=slot)
    machine.bus.add_device(make_device(pin=2), slot=6)
    for pirq, irq in enumerate((10, 10, 11, 11)):  # SeaBIOS piix_isa_bridge_setup
        machine.write(1, 0, 0x60 + pirq, irq, 1)
    # INTA of slot s goes to PIRQ[(s + 0) % 4]; INTB of slot 6 to PIRQ[(6 + 1) % 4] = D.
    assert [machine.bus.irq_of(s) for s in (2, 3, 4, 5, 6)] == [11, 11, 10, 10, 11]


def test_several_devices_share_one_line_with_level_semantics(machine, make_device):
    a, b = make_device(), make_device()
    machine.bus.add_device(a, slot=5)  # PIRQB
    machine.bus.add_device(b, slot=9)  # (9 + 0) % 4 = PIRQB as well
    machine.write(1, 0, 0x61, 11, 1)
    a.set_irq(1)
    b.set_irq(1)
    a.set_irq(0)
    assert machine.lines[11] == 1  # b still asserts
    b.set_irq(0)
    assert [e for e in machine.events if e[0] == "irq"] == [("irq", 11, 1), ("irq", 11, 0)]


def test_two_pirqs_routed_to_one_irq_share_it(machine, make_device):
    a, b = make_device(), make_device()
    machine.bus.add_device(a, slot=4)  # PIRQA
    machine.bus.add_device(b, slot=5)  # PIRQB
    machine.write(1, 0, 0x60, 0x0B0B, 2)
    a.set_irq(1)
    b.set_irq(1)
    a.set_irq(0)
    assert machine.lines == {11: 1}
    b.set_irq(0)
    assert machine.lines == {11: 0}


def test_repeated_levels_are_tolerated_and_not_re_reported(machine, nic):
    machine.write(1, 0, 0x61, 10, 1)
    for _ in range(3):
        nic.set_irq(1)
    nic.set_irq(True)
    assert machine.events == [("irq", 10, 1)]


def test_rerouting_an_asserted_pin_moves_the_level(machine, nic):
    machine.write(1, 0, 0x61, 10, 1)
    nic.set_irq(1)
    machine.write(1, 0, 0x61, 11, 1)
    assert machine.lines == {10: 0, 11: 1}
    machine.write(1, 0, 0x61, 0x80 | 11, 1)  # routing disabled
    assert machine.lines == {10: 0, 11: 0}
    machine.write(1, 0, 0x61, 11, 1)
    assert machine.lines[11] == 1


@pytest.mark.parametrize("value", [0, 1, 2, 8, 13])
def test_reserved_irq_values_route_nowhere(machine, nic, value):
    machine.write(1, 0, 0x61, value, 1)
    nic.set_irq(1)
    assert machine.lines == {} and machine.bus.irq_of(5) is None


def test_a_pin_asserted_before_routing_appears_when_routed(machine, nic):
    nic.set_irq(1)
    assert machine.lines == {}
    machine.write(1, 0, 0x61, 9, 1)
    assert machine.lines == {9: 1}


def test_interrupt_disable_masks_the_pin_and_status_bit_3_shows_it(machine, nic):
    # PCI 2.3: command bit 10 masks INTx, status bit 3 reflects the pin.
    machine.write(1, 0, 0x61, 10, 1)
    nic.set_irq(1)
    assert machine.read(5, 0, 0x06, 2) & 0x0008
    machine.write(5, 0, 0x04, 0x0400, 2)
    assert machine.lines == {10: 0}
    assert machine.read(5, 0, 0x06, 2) & 0x0008
    machine.write(5, 0, 0x04, 0x0000, 2)
    assert machine.lines == {10: 1}
    nic.set_irq(0)
    assert not machine.read(5, 0, 0x06, 2) & 0x0008


def test_without_interrupt_disable_support_status_bit_3_stays_clear(machine, make_device):
    mask = bytearray(256)
    device = make_device(mask=mask)
    machine.bus.add_device(device, slot=5)
    machine.write(5, 0, 0x04, 0x0400, 2)
    assert machine.read(5, 0, 0x04, 2) == 0
    device.set_irq(1)
    assert machine.read(5, 0, 0x06, 2) & 0x0008 == 0


def test_a_function_without_pin_has_a_harmless_set_irq(machine, make_device):
    device = make_device(pin=0, bars=[Bar(0, "io", 16)])
    machine.bus.add_device(device, slot=5)
    for pirq in range(4):
        machine.write(1, 0, 0x60 + pirq, 10, 1)
    device.set_irq(1)
    assert machine.lines == {}


def test_interrupt_line_register_is_plain_storage(machine, nic):
    machine.write(5, 0, 0x3C, 0x0B, 1)
    assert machine.read(5, 0, 0x3C, 2) == 0x010B  # line 11, pin INTA


@pytest.mark.parametrize("value, reason", [(0x06, RESET_HARD), (0x04, RESET_SOFT),
                                           (0x0E, RESET_HARD)])
def test_reset_control_reports_resets(machine, value, reason):
    # Linux reboot=pci: outb(0x02) then outb(0x06); SeaBIOS does the same.
    machine.bus.io_write(0xCF9, value & ~0x04, 1)
    assert machine.resets == []
    machine.bus.io_write(0xCF9, value, 1)
    assert machine.resets == [reason]
    assert machine.bus.io_read(0xCF9, 1) == value & 0x0A  # RCPU reads back 0


def test_only_byte_accesses_reach_reset_control(machine):
    machine.bus.io_write(0xCF9, 0xFFFF, 2)
    machine.bus.io_write(0xCF8, 0x00000600, 2)
    assert machine.resets == []
    assert machine.bus.io_read(0xCF9, 2) == 0xFFFF


def test_bus_reset_restores_power_on_values_and_reports_changes(machine, nic):
    machine.write(0, 0, 0x59, 0x30, 1)
    machine.write(1, 0, 0x61, 10, 1)
    machine.write(5, 0, 0x10, 0xC000)
    machine.write(5, 0, 0x04, 0x0001, 2)
    nic.set_irq(1)
    machine.events.clear()
    machine.bus.reset()
    assert ("unmap", "io", 0xC000, 32, 0) in machine.events
    assert ("pam", 0xF0000, 0x10000, False, False) in machine.events
    assert ("irq", 10, 0) in machine.events
    assert machine.read(5, 0, 0x10) == 0x1 and machine.read(1, 0, 0x61, 1) == 0x80
    assert machine.mapped == []


def test_a_function_hosted_while_asserting_its_pin_is_seen_through_irq_level(machine,
                                                                              make_device):
    machine.write(1, 0, 0x61, 10, 1)
    device = make_device()
    device.irq_level = 1  # optional attribute of the contract
    machine.bus.add_device(device, slot=5)
    assert machine.lines == {10: 1}
    device.set_irq(0)
    assert machine.lines == {10: 0}

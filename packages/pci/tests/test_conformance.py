"""The conformance checker: clean on the chipset and a well-described device, and each of its
checks catches the mistake it exists for (device descriptions and bus regressions alike)."""

from __future__ import annotations

import pytest

from pyv86.pci import I440FX, PIIX3, Bar, DataFunction, PCIBus, config_header
from pyv86.pci import _bus as bus_module
from pyv86.pci.conformance import (
    ERROR,
    WARNING,
    ConformanceError,
    assert_conformant,
    check_bus,
    check_function,
)


def _errors(findings):
    return [f for f in findings if f.severity == ERROR]


@pytest.mark.parametrize("function", [I440FX(), PIIX3()], ids=repr)
def test_chipset_functions_are_conformant(function):
    assert check_function(function) == []


def test_a_well_described_device_with_every_feature_is_conformant(make_device, make_rom):
    device = make_device(bars=[Bar(0, "io", 32), Bar(1, "mem", 4096, prefetchable=True),
                               Bar(4, "mem", 1 << 30), Bar(5, "mem", 1 << 20)],
                         rom=make_rom(0x10EC, 0x8029, size=4096))
    assert check_function(device) == []
    assert assert_conformant(device, allow_warnings=False) == []


def test_the_checker_puts_back_set_irq(make_device):
    device = make_device()
    marker = device.set_irq
    check_function(device)
    assert device.set_irq is marker


def test_the_whole_default_bus_is_conformant(machine, nic, make_device):
    machine.bus.add_device(make_device(device=0x0001), slot=7)
    machine.bus.add_device(make_device(device=0x0002), slot=7, fn=2)
    assert check_bus(machine.bus) == []


def test_a_hidden_function_is_reported_by_check_bus(machine, make_device):
    machine.bus.add_device(make_device(), slot=7)
    machine.bus.add_device(make_device(), slot=7, fn=1)
    machine.bus._spaces[7 << 3].cfg[0x0E] &= 0x7F  # as if function 0 forgot the bit
    assert any("hidden" in f.message for f in check_bus(machine.bus))


def test_zero_pcir_ids_are_a_warning_patched_and_an_error_unpatched(make_device, make_rom):
    device = make_device(rom=make_rom(0, 0))
    patched = check_function(device)
    assert _errors(patched) == []
    assert [f.check for f in patched] == ["description"] and "patches" in patched[0].message
    raw = _errors(check_function(device, patch_rom_ids=False))
    assert any("SeaBIOS skips it" in f.message for f in raw)


def test_a_rom_with_a_bad_checksum_or_no_pcir_is_an_error(make_device, make_rom):
    bad_sum = bytearray(make_rom(0x10EC, 0x8029))
    bad_sum[0x100] ^= 0x5A
    assert any("sum to zero" in f.message
               for f in _errors(check_function(make_device(rom=bytes(bad_sum)))))
    no_pcir = b"\x55\xaa\x01" + bytes(509)
    assert any("PCIR" in f.message for f in _errors(check_function(make_device(rom=no_pcir))))
    no_sig = bytes(512)
    assert any("55 AA" in f.message for f in _errors(check_function(make_device(rom=no_sig))))


def test_identity_mistakes_are_reported(make_device):
    assert any(f.check == "identity" for f in _errors(check_function(make_device(vendor=0))))
    warnings = check_function(make_device(class_code=0))
    assert [(f.check, f.severity) for f in warnings] == [("identity", WARNING)]


def test_a_write_mask_over_read_only_registers_is_a_warning(make_device):
    findings = check_function(make_device(mask=b"\xff" * 256))
    assert _errors(findings) == []
    names = " ".join(f.message for f in findings)
    for name in ("vendor ID", "class code", "interrupt pin", "subsystem ID"):
        assert name in names


def test_description_mismatches_are_warnings(make_device):
    device = make_device(bars=[Bar(0, "io", 32)])
    cfg = bytearray(device.config)
    cfg[0x10] = 0x08  # says prefetchable memory
    cfg[0x18] = 0x01  # an undescribed BAR with content
    cfg[0x04] = 0x01  # decoding on at power-on
    device.config = bytes(cfg)
    findings = check_function(device)
    assert _errors(findings) == []
    assert {f.offset for f in findings} == {0x10, 0x18, 0x04}


def test_a_broken_capability_list_is_an_error(make_device):
    device = make_device()
    cfg = bytearray(device.config)
    cfg[0x06] |= 0x10
    cfg[0x34] = 0x40
    cfg[0x41] = 0x40  # points at itself
    device.config = bytes(cfg)
    device.write_mask = bytes(256)
    assert any("loops" in f.message for f in _errors(check_function(device)))
    cfg[0x41] = 0x00
    cfg[0x34] = 0x3C  # inside the header
    device.config = bytes(cfg)
    assert any("0x40-0xFC" in f.message for f in _errors(check_function(device)))


def test_a_function_the_bus_cannot_host_is_a_finding_not_a_crash():
    class ReadOnlyIrq:
        config = bytes(config_header(0x1234, 0x5678, 0x020000))
        write_mask = bytes(256)
        bars = ()
        rom = None

        @property
        def set_irq(self):
            return None

        def bar_read(self, index, offset, size):
            return 0

        def bar_write(self, index, offset, value, size):
            pass

    device = ReadOnlyIrq()
    findings = check_function(device)
    assert [f.check for f in findings] == ["description"]
    assert "cannot assign set_irq" in findings[0].message
    bus = PCIBus()
    with pytest.raises(TypeError, match="set_irq"):
        bus.add_device(device)
    assert bus.config_read(5, 0, 0, 4) == 0xFFFFFFFF  # nothing half-hosted
    assert check_function(object())[0].check == "description"
    short = DataFunction.__new__(DataFunction)
    short.config, short.write_mask = b"\x00" * 8, bytes(256)
    assert "256 bytes" in check_function(short)[0].message


def test_assert_conformant_raises_a_readable_report(make_device):
    with pytest.raises(ConformanceError) as info:
        assert_conformant(make_device(vendor=0xFFFF))
    assert "is not a conformant PCI function" in str(info.value)
    assert "bus refuses" in str(info.value)


# The checker also guards the bus itself: break the bus, the checker notices.

def test_checker_catches_a_bus_that_lets_read_only_registers_change(monkeypatch, make_device):
    monkeypatch.setattr(bus_module, "READ_ONLY_OFFSETS", ())
    findings = _errors(check_function(make_device(mask=b"\xff" * 256)))
    assert any(f.check == "read-only" and "vendor ID" in f.message for f in findings)


def test_checker_catches_a_bus_that_forgets_to_announce_decoding(monkeypatch, make_device):
    monkeypatch.setattr(PCIBus, "_update_regions", lambda self, space: None)
    findings = _errors(check_function(make_device()))
    assert any(f.check == "bar" and "announced" in f.message for f in findings)


def test_checker_catches_a_bus_that_drops_interrupts(monkeypatch, make_device):
    monkeypatch.setattr(PCIBus, "_report_line", lambda self, irq, force=False: None)
    findings = _errors(check_function(make_device()))
    assert any(f.check == "interrupt" for f in findings)


def test_checker_turns_a_crashing_check_into_a_finding(monkeypatch, make_device):
    def boom(self, port, size):
        raise RuntimeError("bus exploded")
    monkeypatch.setattr(PCIBus, "io_read", boom)
    findings = check_function(make_device())
    assert findings and all("bus exploded" in f.message for f in findings)


def test_finding_renders_with_severity_check_and_offset():
    from pyv86.pci.conformance import Finding
    assert str(Finding("bar", "too small", 0x10)) == "error: [bar @0x10] too small"

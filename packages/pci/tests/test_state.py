"""Versioned save_state()/restore_state() of the bus and every config space."""

from __future__ import annotations

import copy

import pytest

from pyv86.pci import STATE_VERSION


def _program(machine, nic):
    machine.write(0, 0, 0x59, 0x10, 1)  # BIOS area read from DRAM
    machine.write(1, 0, 0x61, 11, 1)
    machine.write(5, 0, 0x10, 0xC000)
    machine.write(5, 0, 0x3C, 11, 1)
    machine.write(5, 0, 0x04, 0x0001, 2)
    nic.set_irq(1)
    machine.select(5, 0, 0x3C)


def test_round_trip_into_a_fresh_bus_reproduces_config_and_callbacks(new_machine, make_device):
    first = new_machine()
    nic = make_device()
    first.bus.add_device(nic, slot=5)
    _program(first, nic)
    state = first.bus.save_state()
    assert state["version"] == STATE_VERSION

    second = new_machine()
    second.bus.add_device(make_device(), slot=5)
    second.bus.restore_state(state)
    assert second.bus.io_read(0xCF8, 4) == 0x80000000 | 5 << 11 | 0x3C
    for slot in (0, 1, 5):
        for reg in range(0, 256, 4):
            assert second.read(slot, 0, reg) == first.read(slot, 0, reg)
    assert [(r.kind, r.base, r.size) for r in second.mapped] == [("io", 0xC000, 32)]
    assert second.pam[0xF0000] == (0x10000, True, False)
    assert len(second.pam) == 13  # every segment reported on restore
    assert second.lines == {11: 1}  # the saved pin level drives the routed line


def test_restore_unmaps_the_old_layout_before_mapping_the_new(machine, nic):
    _program(machine, nic)
    state = machine.bus.save_state()
    machine.write(5, 0, 0x10, 0xD000)
    machine.events.clear()
    machine.bus.restore_state(state)
    kinds = [e[0] for e in machine.events if e[0] in ("map", "unmap")]
    assert kinds == ["unmap", "map"]
    assert machine.events[0] == ("unmap", "io", 0xD000, 32, 0)
    assert [(r.base, r.size) for r in machine.mapped] == [(0xC000, 32)]


def test_restore_lowers_a_line_the_state_has_low(machine, nic):
    machine.write(1, 0, 0x61, 11, 1)
    state = machine.bus.save_state()
    nic.set_irq(1)
    machine.bus.restore_state(state)
    assert machine.lines[11] == 0


def test_state_is_plain_data(machine, nic):
    _program(machine, nic)
    state = machine.bus.save_state()
    assert copy.deepcopy(state) == state

    def plain(x):
        if isinstance(x, dict):
            return all(isinstance(k, str) and plain(v) for k, v in x.items())
        if isinstance(x, list):
            return all(plain(v) for v in x)
        return isinstance(x, (int, bytes))
    assert plain(state)


def test_restore_keeps_read_only_bits_of_the_hosted_function(machine, nic):
    state = machine.bus.save_state()
    entry = next(f for f in state["functions"] if f["slot"] == 5)
    config = bytearray(entry["config"])
    config[0x08] = 0x77  # revision
    config[0x10:0x14] = (0xC002).to_bytes(4, "little")  # I/O BAR with the type bit cleared
    config[0x3D] = 4  # pin
    entry["config"] = bytes(config)
    machine.bus.restore_state(state)
    assert machine.read(5, 0, 0x08, 1) == 0x00
    assert machine.read(5, 0, 0x10) == 0xC001
    assert machine.read(5, 0, 0x3D, 1) == 1


def _mutations():
    def set_(path, value):
        def apply(state):
            target = state
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
        return apply

    def delete(path):
        def apply(state):
            target = state
            for key in path[:-1]:
                target = target[key]
            del target[path[-1]]
        return apply

    return [
        (set_(["version"], STATE_VERSION + 1), "newer"),
        (set_(["version"], "1"), "version"),
        (set_(["version"], 0), "unknown version"),
        (delete(["version"]), "version"),
        (set_(["config_address"], -1), "config_address"),
        (set_(["config_address"], True), "config_address"),
        (delete(["reset_control"]), "reset_control"),
        (set_(["functions"], {}), "list"),
        (set_(["functions", 2, "config"], bytes(255)), "256 bytes"),
        (set_(["functions", 2, "config"], "x" * 256), "256 bytes"),
        (set_(["functions", 2, "slot"], 9), "no function is hosted"),
        (set_(["functions", 2, "slot"], 40), "0..31"),
        (set_(["functions", 2, "irq_level"], 2), "irq_level"),
        (set_(["functions", 2, "vendor_id"], 0x8086), "holds 10ec:8029"),
        (set_(["functions", 2], 7), "expected a dict"),
        (lambda s: s["functions"].pop(), "no config space"),
        (lambda s: s["functions"].append(dict(s["functions"][0])), "appears twice"),
    ]


@pytest.mark.parametrize("mutate, message", _mutations())
def test_malformed_state_is_refused_before_anything_changes(machine, nic, mutate, message):
    _program(machine, nic)
    state = machine.bus.save_state()
    before = [machine.read(5, 0, reg) for reg in range(0, 0x40, 4)]
    events = len(machine.events)
    mutate(state)
    with pytest.raises(ValueError, match=message):
        machine.bus.restore_state(state)
    assert [machine.read(5, 0, reg) for reg in range(0, 0x40, 4)] == before
    assert len(machine.events) == events


@pytest.mark.parametrize("junk", [None, [], "state", 3, {"version": 1}])
def test_non_dict_or_empty_state_is_refused(machine, junk):
    with pytest.raises(ValueError, match=r"pyv86\.pci bus state"):
        machine.bus.restore_state(junk)


def test_replay_reports_the_current_state_again(machine, nic):
    _program(machine, nic)
    machine.mapped.clear()
    machine.events.clear()
    machine.bus.replay()
    assert ("map", "io", 0xC000, 32, 0) in machine.events
    assert sum(1 for e in machine.events if e[0] == "pam") == 13
    assert ("irq", 11, 1) in machine.events

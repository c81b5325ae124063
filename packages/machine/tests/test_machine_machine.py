"""The assembled PC: boot entry, run loop, stop reasons, PCI wiring, the frame tap."""

import struct

import pytest
from _images import PRINT_CMDLINE, STI_HLT, bzimage, elf

from pyv86.machine import EXIT_CODES, Machine, MachineConfigError

MiB = 1 << 20


def machine(**kw):
    kw.setdefault("network_relay_url", "none")
    kw.setdefault("clock", "deterministic")
    kw.setdefault("memory_size", 16 * MiB)
    return Machine(**kw)


def test_bzimage_entry_state_follows_the_32bit_boot_protocol():
    m = machine(bzimage=bzimage())
    c = m.cpu
    assert c.eip == 0x100000
    assert c.get_register("esi") == 0x10000
    assert c.sreg[1] == 0x10 and all(c.sreg[i] == 0x18 for i in (0, 2, 3))
    assert c.sbase[1] == 0 and c.slimit[1] == 0xFFFFFFFF
    assert c.cr0 & 1 and not c.cr0 & 0x80000000
    assert not c.get_eflags() & 0x200  # interrupts off


def test_bzimage_runs_prints_cmdline_and_powers_off():
    m = machine(bzimage=bzimage(), cmdline="hello world")
    r = m.run(max_instructions=10_000)
    assert m.console == b"OK:hello world"
    assert r.reason == "poweroff" and r.exit_code == 0


def test_vmlinux_entry_through_the_same_boot_params():
    m = machine(vmlinux=elf(PRINT_CMDLINE), cmdline="via elf")
    r = m.run(max_instructions=10_000)
    assert m.console == b"OK:via elf"
    assert r.exit_code == 0


def test_instruction_limit_stops_with_its_exit_code():
    m = machine(bzimage=bzimage(bytes.fromhex("ebfe")))  # jmp $
    r = m.run(max_instructions=5000)
    assert r.reason == "instruction-limit" and r.exit_code == EXIT_CODES["instruction-limit"]
    assert r.instructions == 5000


def test_wall_time_limit_stops():
    m = machine(bzimage=bzimage(bytes.fromhex("ebfe")))
    r = m.run(time_limit=0.2)
    assert r.reason == "time-limit" and r.exit_code == 5
    assert 0.15 < r.wall_seconds < 5


def test_idle_guest_with_nothing_to_wake_it_stops_as_idle():
    m = machine(bzimage=bzimage(STI_HLT))
    r = m.run(max_instructions=10_000)
    assert r.reason == "idle" and r.exit_code == 6


def test_deterministic_hlt_skips_to_the_next_timer():
    # PIT channel 0 programmed, IRQ0 masked at the PIC: time jumps from event to event
    m = machine(bzimage=bzimage(STI_HLT))
    m.io.write(0x21, 0xFF, 1)
    m.io.write(0x43, 0x34, 1)
    m.io.write(0x40, 0x9C, 1)
    m.io.write(0x40, 0x2E, 1)  # 100 Hz
    r = m.run(time_limit=0.5)
    assert r.reason == "time-limit"
    assert m.guest_seconds() > 1.0  # far more guest time than instructions could explain
    assert m.cpu.instruction_count < 100
    assert m.pit.irq_count > 100


def test_keyboard_controller_reset_stops_the_machine_with_reset():
    # mov al,0xfe / out 0x64,al / jmp $
    m = machine(bzimage=bzimage(bytes.fromhex("b0fee664ebfe")))
    r = m.run(max_instructions=1000)
    assert r.reason == "reset" and r.exit_code == 3


def test_same_program_same_console_and_count_in_deterministic_mode():
    runs = []
    for _ in range(2):
        m = machine(bzimage=bzimage(), cmdline="x")
        r = m.run(max_instructions=10_000)
        runs.append((bytes(m.console), r.instructions, m.clock.now_ns()))
    assert runs[0] == runs[1]


@pytest.mark.parametrize("kw, message", [
    ({"clock": "fast"}, "clock"),
    ({"memory_size": 1 * MiB}, "memory_size"),
    ({"memory_size": "64M"}, "memory_size"),
    ({"bzimage": "/nonexistent/bzImage"}, "cannot read"),
    ({"bzimage": b"garbage" * 100}, "kernel"),
    ({"initrd": b"x"}, "needs a kernel"),
    ({"bzimage": bzimage(), "vmlinux": elf()}, "not both"),
    ({"network_relay_url": "null:", "mac_address": "zz:zz"}, "mac_address"),
])
def test_bad_options_raise_config_errors(kw, message):
    with pytest.raises(MachineConfigError, match=message):
        machine(**kw)


def test_network_card_is_at_00_05_0_with_io_bar_and_level_triggered_routed_irq():
    m = machine(network_relay_url="null:", mac_address="52:54:00:12:34:56")
    assert m.nic is not None
    assert m.pci.config_read(5, 0, 0x00, 4) == 0x802910EC
    bar0 = m.pci.config_read(5, 0, 0x10, 4)
    assert bar0 & ~0x1F == 0xC000 and bar0 & 1
    irq = m.pci.config_read(5, 0, 0x3C, 1)
    assert irq == m.pci.irq_of(5) and irq in (10, 11)
    assert m.io.read(0x4D0 + irq // 8, 1) & (1 << (irq % 8))  # ELCR: level
    # the PROM holds the MAC (the ne2k-pci probe reads it through remote DMA)
    assert m.io.lookup(0xC000) is not None


def ne2k_driver_send(m, frame):
    """What ne2k-pci does to start the card and transmit one frame (DP8390 datasheet)."""
    base = 0xC000
    out = lambda reg, v: m.io.write(base + reg, v, 1)  # noqa: E731
    out(0x00, 0x21)  # stop, page 0, abort DMA
    out(0x0E, 0x49)  # DCR: word transfers, normal, FIFO 8
    out(0x0A, 0)
    out(0x0B, 0)
    out(0x0C, 0x04)  # RCR: broadcast
    out(0x0D, 0x02)  # TCR: internal loopback while setting up
    out(0x01, 0x46)  # PSTART
    out(0x02, 0x80)  # PSTOP
    out(0x03, 0x46)  # BNRY
    out(0x07, 0xFF)  # ISR: clear
    out(0x0F, 0x3F)  # IMR: everything
    out(0x00, 0x61)  # page 1
    out(0x07, 0x47)  # CURR
    out(0x00, 0x22)  # page 0, start
    out(0x0D, 0x00)  # TCR normal
    # remote DMA write of the frame to page 0x40
    out(0x0A, len(frame) & 0xFF)
    out(0x0B, len(frame) >> 8)
    out(0x08, 0x00)
    out(0x09, 0x40)
    out(0x00, 0x12)
    data = frame + (b"\0" if len(frame) % 2 else b"")
    for i in range(0, len(data), 2):
        m.io.write(base + 0x10, data[i] | data[i + 1] << 8, 2)
    out(0x04, 0x40)  # TPSR
    out(0x05, len(frame) & 0xFF)
    out(0x06, len(frame) >> 8)
    out(0x00, 0x26)  # transmit


def test_frame_tap_sees_what_the_guest_sends_and_inject_reaches_the_card():
    m = machine(network_relay_url="null:", mac_address="52:54:00:12:34:56")
    seen = []
    remove = m.on_guest_frame(seen.append)
    frame = bytes.fromhex("ffffffffffff525400123456" "0806") + bytes(46)
    ne2k_driver_send(m, frame)
    assert seen == [frame]
    remove()
    ne2k_driver_send(m, frame)
    assert len(seen) == 1
    # a broadcast frame injected from Python lands in the receive ring and raises INTA
    m.inject_frame(bytes.fromhex("ffffffffffff020000000001" "0806") + bytes(28))
    m._deliver_frames()
    assert m.frames_received == 1
    irq = m.pci.irq_of(5)
    m.io.write(0x4D1, 0, 1)  # not needed for the check below, ELCR stays level
    assert m.pic.slave.irr & (1 << (irq - 8)) or m.pic.master.irr & (1 << irq)


def test_inject_rejects_non_bytes_and_needs_a_card():
    m = machine(network_relay_url="null:")
    with pytest.raises(TypeError):
        m.inject_frame("text")
    with pytest.raises(RuntimeError, match="no network card"):
        machine().inject_frame(b"x" * 60)


def test_runt_injected_frames_are_dropped_not_crashing():
    m = machine(network_relay_url="null:")
    m.inject_frame(b"short")
    m._deliver_frames()
    assert m.frames_dropped == 1


def test_deterministic_machines_get_the_same_random_mac_realtime_ones_differ():
    a = machine(network_relay_url="null:")
    b = machine(network_relay_url="null:")
    assert a.nic.mac == b.nic.mac
    c = machine(network_relay_url="null:", clock="realtime")
    d = machine(network_relay_url="null:", clock="realtime")
    assert c.nic.mac != d.nic.mac


def test_serial_input_reaches_the_uart():
    m = machine(bzimage=bzimage(STI_HLT))
    m.send_serial(b"ab")
    m.run_slice(0.01, max_instructions=10)
    assert m.io.read(0x3FD, 1) & 1
    assert m.io.read(0x3F8, 1) == ord("a")


def test_cmos_reports_the_memory_size():
    m = machine(memory_size=32 * MiB)
    m.io.write(0x70, 0x30, 1)
    lo = m.io.read(0x71, 1)
    m.io.write(0x70, 0x31, 1)
    assert lo | m.io.read(0x71, 1) << 8 == 31 * 1024


def test_save_state_holds_every_device():
    m = machine(network_relay_url="null:")
    s = m.save_state()
    assert {"pic", "pit", "rtc", "uart", "i8042", "pci", "nic", "memory", "clock"} <= set(s)
    assert struct.pack("<I", 1)  # states are plain data


def test_run_can_continue_after_an_instruction_limit():
    m = machine(bzimage=bzimage(), cmdline="again")
    first = m.run(max_instructions=3)
    assert first.reason == "instruction-limit"
    second = m.run(max_instructions=10_000)
    assert second.reason == "poweroff"
    assert m.console == b"OK:again"
    assert m.cpu.instruction_count == first.instructions + second.instructions


def test_realtime_hlt_sleeps_and_guest_time_follows_the_wall_clock():
    m = machine(bzimage=bzimage(STI_HLT), clock="realtime")
    m.io.write(0x21, 0xFF, 1)  # IRQ0 masked: the PIT ticks but the CPU stays in HLT
    m.io.write(0x43, 0x34, 1)
    m.io.write(0x40, 0x9C, 1)
    m.io.write(0x40, 0x2E, 1)  # 100 Hz
    r = m.run(time_limit=0.3)
    assert r.reason == "time-limit"
    assert 0.25 < m.guest_seconds() < 3.0
    assert m.cpu.instruction_count < 100  # it slept instead of spinning
    assert 20 <= m.pit.irq_count <= 300

"""The PC: CPU, memory, I/O bus, chipset, devices, network card and the run loop.

This module is the machine's core: it runs on PyPy 3.9 and never imports trio. The blocking
:meth:`Machine.run` reaches a network through :class:`pyv86.relay_client.ThreadedRelay`
(imported only when a network is configured); :mod:`pyv86.machine.aio` offers the
trio-native loop.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import random
import shutil
import threading
import time
from typing import Any, Callable, Deque, Dict, List, Optional, Union

from .clock import DEFAULT_HZ, NS, Clock, DeterministicClock, RealtimeClock, Scheduler
from .devices.misc import I8042, DebugConsole, Port92, PostPort
from .devices.pic import PICPair
from .devices.pit import PIT
from .devices.rtc import RTC
from .devices.uart import UART
from .iobus import IOBus
from .loader import BootState, KernelImageError, enter, load_kernel
from .memory import PhysicalMemory

__all__ = [
    "DEFAULT_CMDLINE",
    "DEFAULT_MEMORY",
    "EXIT_CODES",
    "Machine",
    "MachineConfigError",
    "RunResult",
    "default_network",
]

MiB = 1 << 20
DEFAULT_MEMORY = 64 * MiB
DEFAULT_CMDLINE = "console=ttyS0 panic=-1 tsc=reliable"
NE2K_SLOT = 5
NE2K_IO_BASE = 0xC000
PIRQ_IRQS = (10, 10, 11, 11)  # PIRQA-D as SeaBIOS routes them (00:05.0 INTA -> PIRQB -> 10)
DETERMINISTIC_START = 1_767_225_600  # 2026-01-01T00:00:00Z: the deterministic RTC epoch
PathOrBytes = Union[str, bytes, bytearray, "os.PathLike[str]", None]

#: Why a run stopped -> the process exit code ``pyv86 run`` uses.
EXIT_CODES: Dict[str, int] = {
    "poweroff": 0,  # the guest halted with interrupts off (Linux's poweroff/halt without ACPI)
    "error": 1,  # the emulator failed (a bug, or an unsupported instruction)
    "usage": 2,  # bad arguments
    "reset": 3,  # the guest rebooted or triple-faulted (Linux with panic=-1 after a panic)
    "instruction-limit": 4,
    "time-limit": 5,
    "idle": 6,  # halted with interrupts on and nothing left that could wake it
    "stopped": 7,  # stop() was called (a console pattern, a signal handler, ...)
    "interrupted": 130,  # Ctrl-C / SIGINT on the host
}


#: Stop reasons after which run() may be called again to continue.
RESUMABLE = ("instruction-limit", "time-limit", "stopped", "interrupted", "idle")


class MachineConfigError(ValueError):
    """A machine option is invalid; the message names it."""


@dataclasses.dataclass
class RunResult:
    reason: str
    instructions: int
    wall_seconds: float
    guest_seconds: float
    detail: str = ""

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.reason, 1)

    @property
    def mips(self) -> float:
        return self.instructions / self.wall_seconds / 1e6 if self.wall_seconds > 0 else 0.0


def default_network() -> tuple[Optional[str], str]:
    """(url, explanation): ``passt:`` when passt is installed, else no network."""
    if shutil.which("passt"):
        return "passt:", "network: passt (DHCP, DNS and NAT through the host)"
    return None, ("network: none (install Debian's passt for a network out of the box, or "
                  "give a relay URL)")


def _read_blob(value: PathOrBytes, what: str) -> Optional[bytes]:
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, (str, os.PathLike)):
        try:
            with open(value, "rb") as f:
                return f.read()
        except OSError as exc:
            raise MachineConfigError(f"{what}: cannot read {os.fspath(value)!r}: "
                                     f"{exc.strerror or exc}") from None
    raise MachineConfigError(f"{what} must be a path or bytes, got {type(value).__name__}")


class Machine:
    """A PC that boots Linux: see the package README for every option.

    Options follow v86's names where v86 has them (``bzimage``, ``initrd``, ``cmdline``,
    ``memory_size``, ``network_relay_url``, ``preserve_mac_from_state_image``,
    ``mac_address_translation``). ``network_relay_url``: ``None`` picks the default
    (``passt:`` if installed, else none), ``"none"`` means no network card, ``"null:"`` a
    card with no cable (frames reach only the Python taps), anything else a relay URL for
    :mod:`pyv86.relay_client`.
    """

    def __init__(
        self,
        *,
        bzimage: PathOrBytes = None,
        vmlinux: PathOrBytes = None,
        initrd: PathOrBytes = None,
        cmdline: Optional[str] = None,
        memory_size: Optional[int] = None,
        network_relay_url: Optional[str] = None,
        mac_address: Optional[str] = None,
        preserve_mac_from_state_image: bool = False,
        mac_address_translation: bool = False,
        clock: str = "deterministic",
        clock_hz: int = DEFAULT_HZ,
        rtc_time: Optional[int] = None,
        seed: int = 0,
        serial_output: Optional[Callable[[bytes], None]] = None,
        debug_output: Optional[Callable[[bytes], None]] = None,
        cpu_factory: Optional[Callable[..., Any]] = None,
        console_limit: int = 16 * MiB,
        initial_state: Any = None,
        relay_options: Optional[Dict[str, Any]] = None,
        state_progress: Optional[Callable[[int, int], Any]] = None,
    ) -> None:
        self.image_metadata: Dict[str, Any] = {}
        #: extra options for the relay client (e.g. ``capture=`` a pcap path)
        self.relay_options: Dict[str, Any] = dict(relay_options or {})
        if initial_state is not None:
            if bzimage is not None or vmlinux is not None or initrd is not None:
                raise MachineConfigError("initial_state restores a running machine: give it "
                                         "without bzimage, vmlinux or initrd")
            if memory_size is None:
                memory_size = _image_memory_size(initial_state)
        if memory_size is None:
            memory_size = DEFAULT_MEMORY
        if clock not in ("realtime", "deterministic"):
            raise MachineConfigError(f"clock must be 'realtime' or 'deterministic', got {clock!r}")
        if isinstance(memory_size, bool) or not isinstance(memory_size, int):
            raise MachineConfigError(f"memory_size must be an int (bytes), got {memory_size!r}")
        if memory_size < 16 * MiB or memory_size > 2048 * MiB:
            raise MachineConfigError(
                f"memory_size must be between 16 MiB and 2048 MiB, got {memory_size // MiB} MiB")
        if bzimage is not None and vmlinux is not None:
            raise MachineConfigError("give bzimage or vmlinux, not both")
        if preserve_mac_from_state_image and mac_address_translation:
            raise MachineConfigError("choose preserve_mac_from_state_image or "
                                     "mac_address_translation, not both")
        self.options = {
            "memory_size": memory_size, "cmdline": cmdline, "clock": clock,
            "clock_hz": clock_hz, "network_relay_url": network_relay_url,
            "mac_address": mac_address,
            "preserve_mac_from_state_image": bool(preserve_mac_from_state_image),
            "mac_address_translation": bool(mac_address_translation),
        }
        self.deterministic = clock == "deterministic"
        self._stop_reason: Optional[str] = None
        # True once a run returned with _stop_reason: the next run clears a resumable one;
        # a stop() asked for while no run is going applies to the next run instead
        self._stop_reported = False
        self._stop_detail = ""
        self._lock = threading.Lock()
        self.console = bytearray()
        self._console_limit = console_limit
        self._serial_output = serial_output
        self._debug_output = debug_output
        self.serial_listeners: List[Callable[[bytes], None]] = []
        self._serial_in: Deque[bytes] = collections.deque()

        # -- memory, ports, clock ------------------------------------------------------
        try:
            self.memory = PhysicalMemory(memory_size)
        except ValueError as exc:
            raise MachineConfigError(str(exc)) from None
        self.io = IOBus()
        self.clock: Clock
        if self.deterministic:
            self.clock = DeterministicClock(self._instruction_count, clock_hz)
        else:
            self.clock = RealtimeClock(clock_hz)
        self.scheduler = Scheduler(self.clock)

        # -- interrupt controller and legacy devices -----------------------------------
        self.pic = PICPair()
        self.pic.map(self.io)
        self.pit = PIT(self.scheduler, self.pic.irq_line(0))
        self.pit.map(self.io)
        if rtc_time is None and self.deterministic:
            rtc_time = DETERMINISTIC_START
        self.rtc = RTC(self.scheduler, self.pic.irq_line(8), start_time=rtc_time,
                       memory_size=memory_size)
        self.rtc.map(self.io)
        self.uart = UART(self.pic.irq_line(4), self._on_serial)
        self.uart.map(self.io)
        self.i8042 = I8042(reset=self._on_reset, set_a20=self._set_a20,
                           irq1=self.pic.irq_line(1), irq12=self.pic.irq_line(12))
        self.i8042.map(self.io)
        self.port92 = Port92(reset=self._on_reset, set_a20=self._set_a20)
        self.port92.map(self.io)
        self.post = PostPort()
        self.post.map(self.io)
        self.debugcon = DebugConsole(self._on_debug)
        self.debugcon.map(self.io)

        # -- CPU -------------------------------------------------------------------------
        if cpu_factory is None:
            from pyv86.cpu import CPU
            cpu_factory = CPU
        self.cpu = cpu_factory(self.memory, self.io, intc=self.pic, tsc_source=self.clock.tsc,
                               on_reset=self._on_reset)
        self.memory.cpu = self.cpu

        # -- PCI and the network card ----------------------------------------------------
        self._pci_ranges: Dict[int, Any] = {}
        self.pci_map_errors: List[str] = []
        self.pci: Any = None
        self.nic: Any = None
        self.frame_listeners: List[Callable[[bytes], None]] = []
        self._incoming: Deque[bytes] = collections.deque()
        self._frame_event = threading.Event()
        self.frames_sent = 0
        self.frames_received = 0
        self.frames_dropped = 0
        self._last_send_wall = 0.0
        self._last_recv_wall = 0.0
        #: deterministic mode: wall seconds to wait for a reply after the guest sent a frame
        self.reply_wait = 0.5
        #: deterministic mode: most instructions per cpu.run() call (fewer when a timer is
        #: due sooner). pyv86-cpu adds the instructions of compiled blocks to
        #: instruction_count when a run ends, so the time the guest reads (PIT, TSC) moves
        #: in steps of up to this many cycles; Linux's quick PIT calibration succeeds with
        #: 200000 (it fails with 2000 and Linux marks the TSC unstable).
        self.budget = 200_000
        self.network_url: Optional[str] = None
        self.network_note = ""
        self._transport_send: Optional[Callable[[bytes], None]] = None
        self._setup_pci(seed)
        self._setup_network(network_relay_url, mac_address, seed)

        # -- the kernel ------------------------------------------------------------------
        self.boot: Optional[BootState] = None
        kernel = _read_blob(bzimage if bzimage is not None else vmlinux,
                            "bzimage" if bzimage is not None else "vmlinux")
        rd = _read_blob(initrd, "initrd")
        if rd is not None and kernel is None:
            raise MachineConfigError("an initrd needs a kernel (bzimage or vmlinux)")
        if kernel is not None:
            if vmlinux is not None and kernel[:4] != b"\x7fELF":
                raise MachineConfigError("vmlinux must be an ELF file")
            try:
                self.boot = load_kernel(self.memory, kernel,
                                        cmdline=DEFAULT_CMDLINE if cmdline is None else cmdline,
                                        initrd=rd)
            except KernelImageError as exc:
                raise MachineConfigError(f"kernel: {exc}") from None
            enter(self.cpu, self.boot)
        if initial_state is not None:
            self._restore_image(initial_state, state_progress)

    # ------------------------------------------------------------------ wiring helpers
    def _instruction_count(self) -> int:
        cpu = getattr(self, "cpu", None)
        return cpu.instruction_count if cpu is not None else 0

    def _set_a20(self, enabled: bool) -> None:
        self.cpu.set_a20(bool(enabled))

    def _on_reset(self, reason: str) -> None:
        self.stop("reset", reason)

    def _on_serial(self, data: bytes) -> None:
        if len(self.console) < self._console_limit:
            self.console += data
        if self._serial_output is not None:
            self._serial_output(data)
        for fn in self.serial_listeners:
            fn(data)

    def _on_debug(self, data: bytes) -> None:
        if self._debug_output is not None:
            self._debug_output(data)

    def _setup_pci(self, seed: int) -> None:
        from pyv86.pci import PCIBus

        self.pci = PCIBus(on_map=self._pci_map, on_unmap=self._pci_unmap,
                          on_pam=self.memory.set_pam, irq_line=self._pci_irq,
                          on_reset=self._on_reset)
        self.io.map_device(0xCF8, 8, self.pci.port_device(), name="pci")

    def _pci_irq(self, irq: int, level: int) -> None:
        if 0 <= irq < 16:
            self.pic.set_irq(irq, level)

    def _pci_map(self, region: Any) -> None:
        rng: Any
        try:
            if region.kind == "io":
                if region.base + region.size > 0x10000:
                    return
                rng = self.io.map(region.base, region.size, region.read, region.write,
                                  name=repr(region))
            else:
                rng = self.memory.map_mmio(region.base, region.size, region.read,
                                           region.write, repr(region))
        except ValueError as exc:
            # the guest put a BAR over something else: it decodes nothing (as on a real
            # board, where the result would be undefined); remember it for diagnosis
            self.pci_map_errors.append(str(exc))
            return
        self._pci_ranges[id(region)] = rng

    def _pci_unmap(self, region: Any) -> None:
        rng = self._pci_ranges.pop(id(region), None)
        if rng is None:
            return
        if region.kind == "io":
            self.io.unmap(rng)
        else:
            self.memory.unmap_mmio(rng)

    def _setup_network(self, url: Optional[str], mac: Optional[str], seed: int) -> None:
        if url is None:
            url, self.network_note = default_network()
        elif url == "none":
            url, self.network_note = None, "network: none (as asked)"
        else:
            self.network_note = f"network: {url}"
        if url is None:
            return
        from pyv86.ne2k import NE2000

        rng = random.Random(seed) if self.deterministic else None
        randbytes = rng.randbytes if rng is not None else None
        try:
            self.nic = NE2000(model="rtl8029", mac=mac, send=self._guest_frame,
                              randbytes=randbytes)
        except ValueError as exc:
            raise MachineConfigError(f"mac_address: {exc}") from None
        self.network_url = url
        self.pci.add_device(self.nic.pci_function(), slot=NE2K_SLOT)
        self._firmware_pci_setup()

    def _firmware_pci_setup(self) -> None:
        """What a BIOS would do: route PIRQs, make their IRQs level, give the card a BAR."""
        pci = self.pci
        for q, irq in enumerate(PIRQ_IRQS):
            pci.config_write(1, 0, 0x60 + q, irq, 1)
        elcr = 0
        for irq in set(PIRQ_IRQS):
            elcr |= 1 << irq
        self.io.write(0x4D0, elcr & 0xFF, 1)
        self.io.write(0x4D1, elcr >> 8, 1)
        irq = pci.irq_of(NE2K_SLOT)
        pci.config_write(NE2K_SLOT, 0, 0x10, NE2K_IO_BASE | 1, 4)
        pci.config_write(NE2K_SLOT, 0, 0x3C, irq if irq is not None else 0xFF, 1)
        pci.config_write(NE2K_SLOT, 0, 0x04, 0x0001, 2)  # I/O space decoding on

    # ------------------------------------------------------------------ network API
    def _guest_frame(self, frame: bytes) -> None:
        """The card put a frame on the wire."""
        self.frames_sent += 1
        self._last_send_wall = time.monotonic()
        for fn in self.frame_listeners:
            fn(frame)
        send = self._transport_send
        if send is not None:
            send(frame)

    def on_guest_frame(self, callback: Callable[[bytes], None]) -> Callable[[], None]:
        """Call ``callback(frame)`` for every frame the guest sends (as it appears on the
        wire, after MAC translation). Returns a function that removes the callback."""
        self.frame_listeners.append(callback)

        def remove() -> None:
            if callback in self.frame_listeners:
                self.frame_listeners.remove(callback)

        return remove

    def inject_frame(self, frame: bytes) -> None:
        """Queue a frame for the guest as if it came from the wire; thread-safe. It reaches
        the card between two slices of execution (immediately when the machine is idle)."""
        if not isinstance(frame, (bytes, bytearray, memoryview)):
            raise TypeError(f"a frame must be bytes, got {type(frame).__name__}")
        if self.nic is None:
            raise RuntimeError("this machine has no network card (network_relay_url='none')")
        with self._lock:
            self._incoming.append(bytes(frame))
        self._frame_event.set()

    def _deliver_frames(self) -> None:
        if not self._incoming:
            return
        with self._lock:
            frames = list(self._incoming)
            self._incoming.clear()
            self._frame_event.clear()
        self._last_recv_wall = time.monotonic()
        for frame in frames:
            if len(frame) < 14:
                self.frames_dropped += 1
                continue
            if self.nic.receive(frame):
                self.frames_received += 1
            else:
                self.frames_dropped += 1

    # ------------------------------------------------------------------ console API
    def send_serial(self, data: bytes) -> None:
        """Type ``data`` on COM1 (the guest's console); thread-safe, delivered between
        slices of execution."""
        with self._lock:
            self._serial_in.append(bytes(data))
        self._frame_event.set()

    def _deliver_serial(self) -> None:
        with self._lock:
            chunks = list(self._serial_in)
            self._serial_in.clear()
        for chunk in chunks:
            self.uart.receive(chunk)

    def console_text(self) -> str:
        return self.console.decode("utf-8", "replace")

    # ------------------------------------------------------------------ running
    def stop(self, reason: str = "stopped", detail: str = "") -> None:
        """Ask the run loop to stop (thread-safe)."""
        if self._stop_reason is None or (self._stop_reported
                                         and self._stop_reason in RESUMABLE):
            self._stop_reason = reason
            self._stop_detail = detail
            self._stop_reported = False
        try:
            self.cpu.request_stop()
        except AttributeError:
            pass
        self._frame_event.set()

    @property
    def stop_reason(self) -> Optional[str]:
        return self._stop_reason

    def guest_seconds(self) -> float:
        return self.clock.now_ns() / NS

    def run_slice(self, max_wall: float = 0.05, max_instructions: Optional[int] = None
                  ) -> tuple[Optional[str], float]:
        """Run for about ``max_wall`` seconds. Returns (stop reason or None, idle seconds):
        idle > 0 means the guest waits in HLT and nothing is due for that long (realtime),
        or waits for a network reply (deterministic): the caller may sleep or wait for a
        frame that long before calling again."""
        cpu = self.cpu
        clock = self.clock
        sched = self.scheduler
        pic = self.pic
        deadline = time.perf_counter() + max_wall
        deterministic = self.deterministic
        while True:
            if self._stop_reason is not None:
                return self._stop_reason, 0.0
            if self._incoming:
                self._deliver_frames()
            if self._serial_in:
                self._deliver_serial()
            now = clock.now_ns()
            sched.run_due(now)
            if max_instructions is not None and cpu.instruction_count >= max_instructions:
                self.stop("instruction-limit", f"{max_instructions} instructions")
                continue
            if cpu.halted:
                if_on = cpu.get_eflags() & 0x200
                if not if_on:
                    self.stop("poweroff", "the CPU halted with interrupts disabled")
                    continue
                if not pic.has_interrupt():
                    nxt = sched.next_time()
                    if deterministic:
                        if self._awaiting_reply() or self._serial_in:
                            return None, 0.2
                        if nxt is None:
                            if self._transport_send is not None:
                                return None, 0.2
                            self.stop("idle", "halted with nothing left to wake the CPU")
                            continue
                        clock.skip_to(nxt)  # type: ignore[attr-defined]
                        if time.perf_counter() >= deadline:
                            return None, 0.0
                        continue
                    if nxt is None:
                        return None, 0.1
                    wait = (nxt - now) / NS
                    if wait > 0:
                        return None, min(wait, 0.1)
                    if time.perf_counter() >= deadline:
                        return None, 0.0
                    continue
            # how far to run: up to the next event
            nxt = sched.next_time()
            if deterministic:
                budget = self.budget
                if nxt is not None:
                    ahead = clock.ns_to_cycles(nxt) - clock.cycles()  # type: ignore[attr-defined]
                    budget = max(1, min(budget, ahead))
            else:
                budget = 20_000
            if max_instructions is not None:
                budget = max(1, min(budget, max_instructions - cpu.instruction_count))
            cpu.run(budget)
            if time.perf_counter() >= deadline:
                return self._stop_reason, 0.0

    def _awaiting_reply(self) -> bool:
        """Deterministic mode with a live transport: the guest sent a frame a moment ago
        (wall clock) and nothing came back yet, so wait for the reply before skipping."""
        if self._transport_send is None:
            return False
        if self._incoming or self._last_recv_wall >= self._last_send_wall:
            return False
        return time.monotonic() - self._last_send_wall < self.reply_wait

    def run(self, *, max_instructions: Optional[int] = None,
            time_limit: Optional[float] = None,
            on_status: Optional[Callable[[Machine, float], None]] = None,
            status_interval: float = 1.0) -> RunResult:
        """Run until the guest powers off, resets, or a limit is reached (blocking).

        With a network URL other than ``"null:"``, the relay runs in a helper thread
        (:class:`pyv86.relay_client.ThreadedRelay`)."""
        if self._stop_reason in RESUMABLE and self._stop_reported:
            self._stop_reason = None  # a limit or a stop() ended the last run: carry on
            self._stop_detail = ""
        relay = None
        if self.network_url is not None and self.network_url != "null:":
            relay = self._open_threaded_relay(self.network_url)
        try:
            return self._run_loop(max_instructions, time_limit, on_status, status_interval)
        finally:
            self._transport_send = None
            if relay is not None:
                relay.close()

    def _open_threaded_relay(self, url: str) -> Any:
        try:
            from pyv86.relay_client import ThreadedRelay
        except ImportError as exc:  # PyPy 3.9: the relay client needs Python 3.11
            raise MachineConfigError(
                f"network {url!r} needs pyv86-relay-client (Python 3.11+): {exc}") from None
        relay = ThreadedRelay(url, on_frame=self._relay_frame, **self.relay_options)
        self._transport_send = relay.send
        return relay

    def _relay_frame(self, frame: bytes) -> None:
        with self._lock:
            if len(self._incoming) < 4096:
                self._incoming.append(frame)
            else:
                self.frames_dropped += 1
        self._frame_event.set()

    def _run_loop(self, max_instructions: Optional[int], time_limit: Optional[float],
                  on_status: Optional[Callable[[Machine, float], None]],
                  status_interval: float) -> RunResult:
        start_wall = time.perf_counter()
        start_count = self.cpu.instruction_count
        next_status = start_wall + status_interval
        limit = None if max_instructions is None else start_count + max_instructions
        try:
            while True:
                reason, idle = self.run_slice(0.05, limit)
                if reason is not None:
                    break
                now = time.perf_counter()
                if time_limit is not None and now - start_wall >= time_limit:
                    self.stop("time-limit", f"{time_limit:g} s of wall time")
                    continue
                if on_status is not None and now >= next_status:
                    next_status = now + status_interval
                    on_status(self, now - start_wall)
                if idle > 0:
                    if time_limit is not None:
                        idle = min(idle, max(0.0, start_wall + time_limit - now))
                    self._frame_event.wait(idle)
        except KeyboardInterrupt:
            self.stop("interrupted", "Ctrl-C")
        except Exception as exc:  # an emulator bug: report, never hang
            self.stop("error", f"{type(exc).__name__}: {exc}")
            self.error = exc
        wall = time.perf_counter() - start_wall
        self._stop_reported = True
        return RunResult(self._stop_reason or "stopped", self.cpu.instruction_count - start_count,
                         wall, self.guest_seconds(), self._stop_detail)

    error: Optional[BaseException] = None

    async def run_async(self, **options: Any) -> RunResult:
        """The trio-native run loop (:func:`pyv86.machine.aio.run_async`): frames go
        between the card and ``open_relay(network_relay_url)`` inside the caller's trio
        run. Same options and stop reasons as :meth:`run`."""
        from .aio import run_async

        return await run_async(self, **options)

    # ------------------------------------------------------------------ state
    #: Components of :meth:`save_state` in the order :meth:`restore_state` applies them:
    #: the CPU first (its instruction count drives the deterministic clock), then the
    #: clock, then the devices whose timers are re-posted from the clock's time.
    COMPONENTS = ("cpu", "memory", "clock", "pic", "pit", "rtc", "uart", "i8042", "port92",
                  "pci", "nic")

    def _flush_host_input(self) -> None:
        # What the next slice would do first, at this very instruction count: deliver the
        # bytes and frames queued by the host and run the timed events already due (a
        # slice that ran long, or was stopped, can leave some overdue). The devices
        # re-post their future events from their state on restore, but an overdue one
        # would be lost, so it must have happened before the state is taken.
        if self._serial_in:
            self._deliver_serial()
        if self._incoming and self.nic is not None:
            self._deliver_frames()
        self.scheduler.run_due(self.clock.now_ns())

    def save_state(self) -> Dict[str, Any]:
        """Every component's state as plain data: the CPU (with its FPU), the memory
        controller (PAM; the RAM itself goes into a state image, see :meth:`save_image`),
        the clock, PICs, PIT, RTC, UART, i8042, port 0x92, the PCI bus and the card (with
        its RAM and ring). Pending timed events are re-posted from these states on restore.
        Call it between runs, never from inside ``cpu.run``.

        Saving also drops the CPU's translation caches: under the deterministic clock the
        time a guest reads inside one ``cpu.run`` slice depends on which code is compiled
        (compiled blocks add their instructions when the slice ends), so the original and
        any machine restored from this state continue identically only when both start
        from cold caches."""
        self._flush_host_input()
        self.cpu.flush_caches()
        state: Dict[str, Any] = {
            "version": 1,
            "cpu": self.cpu.save_state(),
            "memory": self.memory.save_state(),
            "clock": self.clock.save_state(),
            "pic": self.pic.save_state(),
            "pit": self.pit.save_state(),
            "rtc": self.rtc.save_state(),
            "uart": self.uart.save_state(),
            "i8042": self.i8042.save_state(),
            "port92": self.port92.save_state(),
            "pci": self.pci.save_state(),
        }
        if self.nic is not None:
            state["nic"] = self.nic.save_state()
        return state

    def mac_mode(self) -> str:
        """The card's restore mode from the options: ``randomise`` (the default),
        ``preserve_mac_from_state_image`` or ``mac_address_translation``."""
        if self.options["mac_address_translation"]:
            return "mac_address_translation"
        if self.options["preserve_mac_from_state_image"]:
            return "preserve_mac_from_state_image"
        return "randomise"

    def restore_state(self, state: Dict[str, Any], memory: Any = None) -> None:
        """Restore :meth:`save_state` output (and, when given, all of RAM from ``memory``,
        a bytes-like of exactly the memory size). The card restores its MAC per
        :meth:`mac_mode`. Everything is checked before the machine is left changed: on any
        problem the previous state is put back and :class:`StateImageError` names it."""
        from .stateimage import StateImageError

        def bad(msg: str) -> StateImageError:
            return StateImageError(f"machine state: {msg}")

        if not isinstance(state, dict):
            raise bad(f"expected a dict, got {type(state).__name__}")
        if state.get("version") != 1:
            raise bad(f"unsupported version {state.get('version')!r} (this machine reads 1)")
        wanted = [c for c in self.COMPONENTS if c != "nic" or self.nic is not None]
        missing = [c for c in wanted if not isinstance(state.get(c), dict)]
        if missing:
            raise bad(f"missing or malformed component(s): {', '.join(missing)}")
        if "nic" in state and self.nic is None:
            raise bad("the state holds a network card but this machine has none "
                      "(network_relay_url='none')")
        unknown = sorted(set(state) - set(self.COMPONENTS) - {"version"})
        if unknown:
            raise bad(f"unknown component(s): {', '.join(map(str, unknown))}")
        if memory is not None and len(memory) != self.memory.size:
            raise bad(f"memory holds {len(memory)} bytes, this machine has "
                      f"{self.memory.size}")
        previous = self.save_state()
        try:
            self._apply_state(state, self.mac_mode())
        except Exception as exc:
            failed = getattr(exc, "component", "?")
            try:
                self._apply_state(previous, "preserve_mac_from_state_image")
            finally:
                self.cpu.flush_caches()
            raise bad(f"{failed}: {exc}") from None
        if memory is not None:
            self.memory.ram[:] = memory
        self.cpu.flush_caches()  # RAM and paging changed behind the CPU
        self._stop_reason = None
        self._stop_detail = ""

    def _apply_state(self, state: Dict[str, Any], mac_mode: str) -> None:
        for name in self.COMPONENTS:
            if name not in state:
                continue
            try:
                if name == "nic":
                    self.nic.restore_state(state[name], mac_mode=mac_mode)
                else:
                    getattr(self, name).restore_state(state[name])
            except Exception as exc:
                exc.component = name  # type: ignore[attr-defined]
                raise

    def image_config(self) -> Dict[str, Any]:
        """What must match between a state image and the machine restoring it (paths,
        URLs, the MAC options and console wiring stay out)."""
        return {"memory_size": self.memory.size, "clock": self.options["clock"],
                "clock_hz": self.options["clock_hz"],
                "nic": None if self.nic is None else {"model": "rtl8029", "slot": NE2K_SLOT}}

    def save_image(self, path: Any, progress: Optional[Callable[[int, int], Any]] = None,
                   *, metadata: Optional[Dict[str, Any]] = None) -> int:
        """Write the whole machine (every component and all of RAM) into a state image
        file (``docs/state-images.md``); returns its size in bytes. Between runs only."""
        from .stateimage import StateImage, package_versions, write_image

        state = self.save_state()
        cpu = state.pop("cpu")
        meta: Dict[str, Any] = {
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "instructions": self.cpu.instruction_count,
            "guest_ns": self.clock.now_ns(),
        }
        if metadata:
            meta.update(metadata)
        return write_image(path, StateImage(
            config=self.image_config(), versions=package_versions(),
            components={"cpu": cpu, "machine": state}, memory=self.memory.ram,
            metadata=meta), progress=progress)

    def _restore_image(self, source: Any, progress: Optional[Callable[[int, int], Any]]
                       ) -> None:
        from .stateimage import StateImageError, read_image

        try:
            image = read_image(source, expected_config=self.image_config(),
                               memory_limit=self.memory.size, progress=progress)
        except OSError as exc:
            raise StateImageError(f"cannot read the state image {_name(source)}: "
                                  f"{exc.strerror or exc}") from None
        comps = image.components
        machine_state = comps.get("machine")
        if not isinstance(machine_state, dict) or not isinstance(comps.get("cpu"), dict):
            raise StateImageError(f"state image {_name(source)}: it lacks the 'cpu' or "
                                  "'machine' component (not saved by a pyv86 Machine)")
        full = dict(machine_state)
        full["cpu"] = comps["cpu"]
        self.restore_state(full, image.memory)
        self.image_metadata = dict(image.metadata)
        nic = full.get("nic")
        if self.nic is not None and isinstance(nic, dict):
            self.image_mac = bytes(nic["guest_mac"])  # checked by the card's restore

    #: after a restore from an image with a card: the MAC the guest's driver had (bytes)
    image_mac: Optional[bytes] = None

    def mac_note(self) -> str:
        """One line for people: the card's MAC, and after a restore what the guest sees
        under the MAC mode in force (``docs/networking.md``); "" without a card."""
        if self.nic is None:
            return ""
        from pyv86.ne2k import format_mac

        wire = format_mac(self.nic.mac)
        old = self.image_mac
        if old is None:
            return f"card MAC {wire}"
        mode = self.mac_mode()
        if mode == "preserve_mac_from_state_image":
            return f"card MAC {wire}, the image's (preserve_mac_from_state_image)"
        if mode == "mac_address_translation":
            return (f"card MAC {wire} on the wire; the guest keeps the image's "
                    f"{format_mac(self.nic.guest_mac)} (mac_address_translation)")
        return (f"card MAC {wire}, fresh after the restore; a driver bound when the image "
                f"was saved still uses the image's {format_mac(old)}, so the guest's "
                "networking stops until the driver is bound again (unbind/bind, then DHCP) "
                "- or restore with preserve_mac_from_state_image or mac_address_translation")


def _image_memory_size(source: Any) -> int:
    """The memory size recorded in an image, for a Machine given no memory_size."""
    from .stateimage import StateImageError, read_image_info

    try:
        return read_image_info(source).memory_size
    except OSError as exc:
        raise StateImageError(f"cannot read the state image {_name(source)}: "
                              f"{exc.strerror or exc}") from None


def _name(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return repr(os.fspath(source))
    return "(in memory)"

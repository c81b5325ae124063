"""The ``pyv86`` command: ``pyv86 run`` boots a PC, ``pyv86 build-guest`` builds the default
guest. Exit codes of ``pyv86 run`` are :data:`pyv86.machine.EXIT_CODES` (0: the guest
powered off; 2: bad arguments; see the README)."""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import threading
import time
from typing import Any, BinaryIO, List, Optional

from .machine import DEFAULT_MEMORY, EXIT_CODES, Machine, MachineConfigError
from .stateimage import StateImageError

__all__ = ["main"]

MiB = 1 << 20
ESCAPE = 0x01  # Ctrl-A, then x quits (as QEMU's -serial mon:stdio)


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", ""), 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _memory(text: str) -> int:
    m = re.fullmatch(r"(\d+)\s*([KMG]?)i?B?", text.strip(), re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"memory size like 64M or 128MiB expected, got {text!r}")
    n = int(m.group(1))
    unit = m.group(2).upper()
    return n * {"": MiB, "K": 1024, "M": MiB, "G": 1024 * MiB}[unit]


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="pyv86", description="A PC emulator in Python.")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    r = sub.add_parser("run", help="boot a PC (the default guest unless a kernel is given)",
                       description="Boot a PC. Without --bzimage/--vmlinux the default guest "
                       "is used (built and cached on first use).")
    k = r.add_mutually_exclusive_group()
    k.add_argument("--bzimage", metavar="PATH", help="Linux bzImage to boot")
    k.add_argument("--vmlinux", metavar="PATH", help="uncompressed ELF vmlinux to boot")
    k.add_argument("--initial-state", metavar="IMAGE",
                   help="restore a state image (saved with --save-state) and carry on")
    r.add_argument("--initrd", metavar="PATH", help="initial ramdisk")
    r.add_argument("--cmdline", help="kernel command line")
    r.add_argument("--memory-size", type=_memory, default=None, metavar="SIZE",
                   help=f"RAM, e.g. 64M (default {DEFAULT_MEMORY // MiB}M, or the image's "
                   "with --initial-state)")
    r.add_argument("--network-relay-url", metavar="URL", default=None,
                   help="passt:, ws://..., wss://..., tcp://host:port, unix:///path, null: or "
                   "none (default: passt: when passt is installed, else none)")
    r.add_argument("--mac-address", metavar="MAC", help="the card's MAC (default random)")
    r.add_argument("--preserve-mac-from-state-image", action="store_true",
                   help="with --initial-state: keep the image's MAC (default: a fresh one)")
    r.add_argument("--mac-address-translation", action="store_true",
                   help="with --initial-state: the guest keeps the image's MAC, the wire "
                   "sees a fresh one, frames are translated")
    r.add_argument("--save-state", metavar="PATH",
                   help="where to save a state image: on SIGUSR1, on --save-on and with "
                   "--save-at-exit (each save replaces the file)")
    r.add_argument("--save-on", action="append", default=[], metavar="TEXT",
                   help="save the state when the console prints TEXT, then carry on "
                   "(repeatable, once per TEXT)")
    r.add_argument("--save-at-exit", action="store_true",
                   help="save the state when the run ends (not after an emulator error)")
    r.add_argument("--clock", choices=("realtime", "deterministic"), default="deterministic",
                   help="deterministic (default): guest time from instructions, idle time "
                   "skipped, reproducible; realtime: guest time follows the wall clock")
    r.add_argument("--seed", type=int, default=0,
                   help="deterministic mode: seed of the card's random MAC (default 0; give "
                   "machines on one network different seeds or MACs)")
    r.add_argument("--max-instructions", type=_positive_int, metavar="N")
    r.add_argument("--time-limit", type=_positive_float, metavar="SECONDS",
                   help="stop after this much wall time")
    r.add_argument("--serial", default="stdio", metavar="stdio|FILE",
                   help="where the guest console goes: the terminal/pipes (stdio) or a file")
    r.add_argument("--serial-input", metavar="FILE", help="feed the console from a file")
    r.add_argument("--stop-on", action="append", default=[], metavar="TEXT",
                   help="stop (exit code 7) when the console prints TEXT (repeatable)")
    r.add_argument("-q", "--quiet", action="store_true", help="no status line and messages")
    i = sub.add_parser("inspect-state", help="verify state images and print their headers")
    i.add_argument("images", nargs="+", metavar="IMAGE")
    b = sub.add_parser("build-guest", help="build the default Linux guest (cached)")
    b.add_argument("--cache-dir", metavar="DIR")
    b.add_argument("--force", action="store_true", help="rebuild even if cached")
    b.add_argument("-j", "--jobs", type=_positive_int, default=2)
    return ap


class _Terminal:
    """Raw keys from a terminal; restores the settings on close."""

    def __init__(self, fd: int):
        import termios
        import tty

        self.fd = fd
        self._termios = termios
        self.saved = termios.tcgetattr(fd)
        tty.setraw(fd)

    def close(self) -> None:
        self._termios.tcsetattr(self.fd, self._termios.TCSADRAIN, self.saved)


def _say(quiet: bool, raw: bool, text: str) -> None:
    if not quiet:
        end = "\r\n" if raw else "\n"
        sys.stderr.write(f"pyv86: {text}{end}")
        sys.stderr.flush()


def _input_thread(machine: Machine, stream: BinaryIO, raw: bool) -> None:
    escape = False
    fd = stream.fileno()
    while machine.stop_reason is None:
        try:
            data = os.read(fd, 256)
        except OSError:
            return
        if not data:
            return
        if raw:
            out = bytearray()
            for b in data:
                if escape:
                    escape = False
                    if b in (ord("x"), ord("X")):
                        machine.stop("interrupted", "Ctrl-A x")
                        return
                    out.append(b)
                elif b == ESCAPE:
                    escape = True
                else:
                    out.append(b)
            data = bytes(out)
        if data:
            machine.send_serial(data)


def _run(args: argparse.Namespace) -> int:
    quiet = args.quiet
    bzimage, vmlinux, initrd, cmdline = args.bzimage, args.vmlinux, args.initrd, args.cmdline
    if (args.save_on or args.save_at_exit) and args.save_state is None:
        print("pyv86 run: --save-on and --save-at-exit need --save-state PATH", file=sys.stderr)
        return EXIT_CODES["usage"]
    if args.initial_state is not None:
        if initrd is not None or cmdline is not None:
            print("pyv86 run: --initial-state restores a running machine: no --initrd or "
                  "--cmdline", file=sys.stderr)
            return EXIT_CODES["usage"]
    elif bzimage is None and vmlinux is None:
        if initrd is not None:
            print("pyv86 run: --initrd needs --bzimage or --vmlinux", file=sys.stderr)
            return EXIT_CODES["usage"]
        from .guest import GuestBuildError, build_guest

        try:
            img = build_guest(progress=None if not quiet else (lambda s: None))
        except GuestBuildError as exc:
            print(f"pyv86 run: no kernel given and the default guest cannot be built: {exc}",
                  file=sys.stderr)
            return EXIT_CODES["error"]
        bzimage, initrd = str(img.bzimage), str(img.initrd)
        if cmdline is None:
            cmdline = img.cmdline
    out_file: Optional[BinaryIO] = None
    stdout = sys.stdout.buffer
    raw = False
    if args.serial == "stdio":
        def write(data: bytes) -> None:
            stdout.write(data)
            stdout.flush()
    else:
        try:
            out_file = open(args.serial, "wb")
        except OSError as exc:
            print(f"pyv86 run: --serial {args.serial!r}: {exc.strerror}", file=sys.stderr)
            return EXIT_CODES["usage"]
        f = out_file

        def write(data: bytes) -> None:
            f.write(data)
            f.flush()

    patterns = [p.encode() for p in args.stop_on]
    try:
        machine = Machine(bzimage=bzimage, vmlinux=vmlinux, initrd=initrd, cmdline=cmdline,
                          memory_size=args.memory_size,
                          network_relay_url=args.network_relay_url,
                          mac_address=args.mac_address,
                          preserve_mac_from_state_image=args.preserve_mac_from_state_image,
                          mac_address_translation=args.mac_address_translation,
                          clock=args.clock, seed=args.seed, serial_output=write,
                          initial_state=args.initial_state)
    except (MachineConfigError, StateImageError) as exc:
        where = (f"--initial-state {args.initial_state}: "
                 if isinstance(exc, StateImageError) else "")
        print(f"pyv86 run: {where}{exc}", file=sys.stderr)
        if out_file is not None:
            out_file.close()
        return EXIT_CODES["usage"]
    saves: List[str] = []  # why a save was asked for (the run loop acts between slices)

    def ask_save(why: str) -> None:
        saves.append(why)
        machine.stop("stopped", "save")

    save_patterns = [p.encode() for p in args.save_on]
    if save_patterns:
        save_tail = bytearray()

        def watch_save(data: bytes) -> None:
            save_tail.extend(data)
            for p in list(save_patterns):
                if p in save_tail:
                    save_patterns.remove(p)
                    ask_save(f"console printed {p.decode(errors='replace')!r}")
            if save_patterns:
                del save_tail[:-max(len(p) for p in save_patterns) * 2]

        machine.serial_listeners.append(watch_save)
    if patterns:
        tail = bytearray()

        def watch(data: bytes) -> None:
            tail.extend(data)
            for p in patterns:
                if p in tail:
                    machine.stop("stopped", f"console printed {p.decode(errors='replace')!r}")
            del tail[:-max(len(p) for p in patterns) * 2]

        machine.serial_listeners.append(watch)
    term = None
    stdin = sys.stdin
    if args.serial_input is not None:
        try:
            machine.send_serial(open(args.serial_input, "rb").read())
        except OSError as exc:
            print(f"pyv86 run: --serial-input: {exc.strerror}", file=sys.stderr)
            return EXIT_CODES["usage"]
    elif args.serial == "stdio" and stdin is not None and not stdin.closed:
        try:
            if os.isatty(stdin.fileno()):
                term = _Terminal(stdin.fileno())
                raw = True
            threading.Thread(target=_input_thread, args=(machine, stdin.buffer, raw),
                             daemon=True, name="pyv86-console-in").start()
        except (OSError, ValueError, AttributeError):
            pass
    def on_signal(signum: int, frame: Any) -> None:
        machine.stop("interrupted", f"signal {signum}")

    def on_usr1(signum: int, frame: Any) -> None:
        ask_save("SIGUSR1")

    # before the first message, so whoever waits for it may signal at once
    old_term = signal.signal(signal.SIGTERM, on_signal)
    usr1 = getattr(signal, "SIGUSR1", None)
    old_usr1 = None
    if usr1 is not None and args.save_state is not None:
        old_usr1 = signal.signal(usr1, on_usr1)
        if hasattr(signal, "pthread_sigmask"):  # a parent may have left it blocked
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {usr1})
    _say(quiet, raw, machine.network_note)
    if machine.nic is not None:
        _say(quiet, raw, machine.mac_note())
    if raw:
        _say(quiet, raw, "console attached; Ctrl-A x quits")

    def status(m: Machine, elapsed: float) -> None:
        n = m.cpu.instruction_count
        _say(quiet, raw, f"[{elapsed:7.1f} s] {n / 1e6:9.1f} M instructions, "
             f"{n / elapsed / 1e6 if elapsed else 0:5.2f} MIPS, guest time "
             f"{m.guest_seconds():.3f} s")

    def save(why: str) -> bool:
        start = time.perf_counter()
        try:
            size = machine.save_image(args.save_state, metadata={"trigger": why})
        except (OSError, StateImageError) as exc:
            _say(False, raw, f"cannot save the state to {args.save_state}: {exc}")
            return False
        _say(quiet, raw, f"saved the state to {args.save_state} ({why}): {size / MiB:.1f} MiB "
             f"in {time.perf_counter() - start:.1f} s at {machine.cpu.instruction_count} "
             "instructions")
        return True

    try:
        start_count = machine.cpu.instruction_count
        start_wall = time.perf_counter()
        while True:
            left_n = (None if args.max_instructions is None else
                      max(1, args.max_instructions - (machine.cpu.instruction_count
                                                      - start_count)))
            left_t = (None if args.time_limit is None else
                      max(1e-3, args.time_limit - (time.perf_counter() - start_wall)))
            result = machine.run(max_instructions=left_n, time_limit=left_t,
                                 on_status=None if quiet else status, status_interval=10.0)
            if not (saves and result.reason == "stopped" and result.detail == "save"):
                break
            why = saves[0]
            del saves[:]
            if not save(why):
                result.reason, result.detail = "error", "the state could not be saved"
                break
        result.instructions = machine.cpu.instruction_count - start_count
        result.wall_seconds = time.perf_counter() - start_wall
        if args.save_at_exit and result.reason != "error":
            if not save(f"at exit: {result.reason}"):
                result.reason, result.detail = "error", "the state could not be saved"
    except MachineConfigError as exc:
        if term is not None:
            term.close()
            term = None
        print(f"pyv86 run: {exc}", file=sys.stderr)
        return EXIT_CODES["usage"]
    except Exception as exc:  # e.g. the relay could not be opened
        if term is not None:
            term.close()
            term = None
        print(f"pyv86 run: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_CODES["error"]
    finally:
        signal.signal(signal.SIGTERM, old_term)
        if usr1 is not None and old_usr1 is not None:
            signal.signal(usr1, old_usr1)
        if term is not None:
            term.close()
        if out_file is not None:
            out_file.close()
    if (not quiet and args.serial == "stdio" and machine.console
            and not machine.console.endswith(b"\n")):
        sys.stderr.write("\n")  # the status line starts on a line of its own
    words = {"poweroff": "the guest powered off", "reset": "the guest reset",
             "instruction-limit": "instruction limit reached", "time-limit": "time limit reached",
             "idle": "the guest is idle for ever", "stopped": "stopped",
             "interrupted": "interrupted", "error": "emulator error"}
    _say(quiet, False, f"{words.get(result.reason, result.reason)}"
         f"{': ' + result.detail if result.detail else ''} after {result.instructions} "
         f"instructions, {result.wall_seconds:.1f} s, {result.mips:.2f} MIPS, guest time "
         f"{result.guest_seconds:.3f} s (exit code {result.exit_code})")
    if result.reason == "error" and machine.error is not None and not quiet:
        import traceback

        traceback.print_exception(type(machine.error), machine.error,
                                  machine.error.__traceback__, file=sys.stderr)
    return result.exit_code


def main(argv: Optional[List[str]] = None) -> int:
    ap = _parser()
    try:
        args = ap.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.command == "inspect-state":
        from .stateimage import main as inspect

        return inspect(list(args.images))
    if args.command == "build-guest":
        from .guest import GuestBuildError, build_guest

        try:
            import pathlib

            img = build_guest(pathlib.Path(args.cache_dir) if args.cache_dir else None,
                              jobs=args.jobs, force=args.force)
        except GuestBuildError as exc:
            print(f"pyv86 build-guest: {exc}", file=sys.stderr)
            return EXIT_CODES["error"]
        print(img.bzimage)
        print(img.initrd)
        return 0
    return _run(args)


if __name__ == "__main__":  # pragma: no cover
    start = time.perf_counter()
    sys.exit(main())

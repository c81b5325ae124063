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
    r.add_argument("--initrd", metavar="PATH", help="initial ramdisk")
    r.add_argument("--cmdline", help="kernel command line")
    r.add_argument("--memory-size", type=_memory, default=DEFAULT_MEMORY, metavar="SIZE",
                   help="RAM, e.g. 64M (default 64M)")
    r.add_argument("--network-relay-url", metavar="URL", default=None,
                   help="passt:, ws://..., wss://..., tcp://host:port, unix:///path, null: or "
                   "none (default: passt: when passt is installed, else none)")
    r.add_argument("--mac-address", metavar="MAC", help="the card's MAC (default random)")
    r.add_argument("--preserve-mac-from-state-image", action="store_true")
    r.add_argument("--mac-address-translation", action="store_true")
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
    if bzimage is None and vmlinux is None:
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
                          clock=args.clock, seed=args.seed, serial_output=write)
    except MachineConfigError as exc:
        print(f"pyv86 run: {exc}", file=sys.stderr)
        if out_file is not None:
            out_file.close()
        return EXIT_CODES["usage"]
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
    _say(quiet, raw, machine.network_note)
    if raw:
        _say(quiet, raw, "console attached; Ctrl-A x quits")

    def status(m: Machine, elapsed: float) -> None:
        n = m.cpu.instruction_count
        _say(quiet, raw, f"[{elapsed:7.1f} s] {n / 1e6:9.1f} M instructions, "
             f"{n / elapsed / 1e6 if elapsed else 0:5.2f} MIPS, guest time "
             f"{m.guest_seconds():.3f} s")

    def on_signal(signum: int, frame: Any) -> None:
        machine.stop("interrupted", f"signal {signum}")

    old_term = signal.signal(signal.SIGTERM, on_signal)
    try:
        result = machine.run(max_instructions=args.max_instructions,
                             time_limit=args.time_limit,
                             on_status=None if quiet else status, status_interval=10.0)
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

"""The trio-native run loop: the machine runs in short slices between trio checkpoints, and
frames flow between the card and :func:`pyv86.relay_client.open_relay` in the same thread.

Needs Python 3.11 and trio (the core machine modules never import this one)::

    import trio
    from pyv86.machine import Machine

    async def main():
        m = Machine(bzimage="bzImage", initrd="initrd.cpio", network_relay_url="passt:")
        result = await m.run_async(time_limit=60)
        print(result.reason, result.exit_code)

    trio.run(main)
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Optional

import trio

if TYPE_CHECKING:  # pragma: no cover
    from .machine import Machine, RunResult

__all__ = ["run_async"]

SLICE = 0.02  # seconds of emulation between checkpoints


async def run_async(machine: Machine, *, max_instructions: Optional[int] = None,
                    time_limit: Optional[float] = None,
                    on_status: Optional[Callable[[Machine, float], Any]] = None,
                    status_interval: float = 1.0, **relay_options: Any) -> RunResult:
    """Run ``machine`` until it stops; see :meth:`Machine.run` for the stop reasons."""
    from .machine import RESUMABLE, RunResult

    if machine.stop_reason in RESUMABLE and machine._stop_reported:
        machine._stop_reason = None
        machine._stop_detail = ""
    url = machine.network_url
    wake = [trio.Event()]

    def on_frame() -> None:
        wake[0].set()

    async def loop() -> None:
        start_wall = time.perf_counter()
        next_status = start_wall + status_interval
        start = machine.cpu.instruction_count
        limit = None if max_instructions is None else start + max_instructions
        while True:
            reason, idle = machine.run_slice(SLICE, limit)
            if reason is not None:
                return
            now = time.perf_counter()
            if time_limit is not None and now - start_wall >= time_limit:
                machine.stop("time-limit", f"{time_limit:g} s of wall time")
                continue
            if on_status is not None and now >= next_status:
                next_status = now + status_interval
                on_status(machine, now - start_wall)
            if idle > 0 and not machine._incoming:
                with trio.move_on_after(idle):
                    await wake[0].wait()
                wake[0] = trio.Event()
            else:
                await trio.sleep(0)

    start_wall = time.perf_counter()
    start_count = machine.cpu.instruction_count
    try:
        if url is None or url == "null:":
            await loop()
        else:
            from pyv86.relay_client import RelayError, open_relay

            async with open_relay(url, **{**machine.relay_options, **relay_options}) as relay:
                def send(frame: bytes) -> None:
                    try:
                        relay.send_nowait(frame)
                    except (RelayError, trio.WouldBlock):
                        machine.frames_dropped += 1

                async def pump_in() -> None:
                    async for frame in relay:
                        machine._relay_frame(frame)
                        on_frame()

                machine._transport_send = send
                try:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(pump_in)
                        await loop()
                        nursery.cancel_scope.cancel()
                finally:
                    machine._transport_send = None
    except KeyboardInterrupt:
        machine.stop("interrupted", "Ctrl-C")
    except Exception as exc:
        if machine.stop_reason is None:
            machine.stop("error", f"{type(exc).__name__}: {exc}")
            machine.error = exc
        else:
            raise
    wall = time.perf_counter() - start_wall
    machine._stop_reported = True
    return RunResult(machine.stop_reason or "stopped",
                     machine.cpu.instruction_count - start_count, wall,
                     machine.guest_seconds(), machine._stop_detail)

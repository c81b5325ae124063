"""Guest time: a realtime or deterministic clock, the TSC, and the event scheduler.

Both clocks count guest time in nanoseconds from machine start and derive the TSC from it, so
the TSC, the PIT and the RTC always agree (Linux calibrates its TSC against the PIT).

- :class:`DeterministicClock`: time is ``cycles / hz`` where ``cycles`` is the number of
  instructions executed plus the cycles skipped while the CPU sat in HLT. One instruction is
  one cycle. The same program with the same input gives the same output, always.
- :class:`RealtimeClock`: time follows the host's monotonic clock; the TSC ticks at ``hz``.

The :class:`Scheduler` keeps timed events (a heap); devices post them with
:meth:`Scheduler.call_at` and cancel them with :meth:`Timer.cancel`.
"""

from __future__ import annotations

import heapq
import time
from typing import Callable, List, Optional, Tuple

__all__ = ["Clock", "DeterministicClock", "RealtimeClock", "Scheduler", "Timer"]

NS = 1_000_000_000
DEFAULT_HZ = 50_000_000  # deterministic: 50 "MHz", one instruction per cycle


class Clock:
    """Base: ``now_ns()``, ``tsc()``, ``hz``; ``deterministic`` tells which kind it is."""

    deterministic = False
    hz = DEFAULT_HZ

    def now_ns(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def tsc(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def save_state(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def restore_state(self, state: dict) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class DeterministicClock(Clock):
    """Time derived from executed instructions (``count()``) plus skipped idle cycles."""

    deterministic = True

    def __init__(self, count: Callable[[], int], hz: int = DEFAULT_HZ):
        if not isinstance(hz, int) or hz < 1_000_000:
            raise ValueError(f"clock rate must be an int of at least 1 MHz, got {hz!r}")
        self.hz = hz
        self._count = count
        self.idle_cycles = 0
        self._base = 0  # cycles at restore (instruction counts restart in a new CPU)

    def cycles(self) -> int:
        return self._count() + self.idle_cycles + self._base

    def tsc(self) -> int:
        return self.cycles()

    def now_ns(self) -> int:
        return self.cycles() * NS // self.hz

    def ns_to_cycles(self, ns: int) -> int:
        return -(-ns * self.hz // NS)  # ceiling: the event is due once we get there

    def skip_to(self, ns: int) -> None:
        """HLT: jump ahead to guest time ``ns`` (no-op if already past it)."""
        target = self.ns_to_cycles(ns)
        now = self.cycles()
        if target > now:
            self.idle_cycles += target - now

    def save_state(self) -> dict:
        return {"version": 1, "kind": "deterministic", "hz": self.hz, "cycles": self.cycles()}

    def restore_state(self, state: dict) -> None:
        _check(state, "deterministic")
        self.hz = int(state["hz"])
        self.idle_cycles = 0
        self._base = int(state["cycles"]) - self._count()


class RealtimeClock(Clock):
    """Guest time follows the host's monotonic clock."""

    def __init__(self, hz: int = DEFAULT_HZ, *, monotonic_ns: Callable[[], int] = time.monotonic_ns):
        if not isinstance(hz, int) or hz < 1_000_000:
            raise ValueError(f"clock rate must be an int of at least 1 MHz, got {hz!r}")
        self.hz = hz
        self._mono = monotonic_ns
        self._start = monotonic_ns()

    def now_ns(self) -> int:
        return self._mono() - self._start

    def tsc(self) -> int:
        return self.now_ns() * self.hz // NS

    def skip_to(self, ns: int) -> None:
        """Realtime cannot skip: the run loop sleeps instead."""

    def save_state(self) -> dict:
        return {"version": 1, "kind": "realtime", "hz": self.hz, "ns": self.now_ns()}

    def restore_state(self, state: dict) -> None:
        _check(state, "realtime")
        self.hz = int(state["hz"])
        self._start = self._mono() - int(state["ns"])


def _check(state: dict, kind: str) -> None:
    if not isinstance(state, dict) or state.get("version") != 1:
        raise ValueError("clock state: unsupported or missing version")
    if state.get("kind") != kind:
        raise ValueError(f"clock state is for a {state.get('kind')!r} clock, this one is {kind!r}")


class Timer:
    """A scheduled event; :meth:`cancel` it to drop it."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: int, callback: Callable[[], None]):
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Scheduler:
    """Timed events in guest nanoseconds, run in time order (ties: in posting order)."""

    def __init__(self, clock: Clock):
        self.clock = clock
        self._heap: List[Tuple[int, int, Timer]] = []
        self._seq = 0

    def now(self) -> int:
        return self.clock.now_ns()

    def call_at(self, when_ns: int, callback: Callable[[], None]) -> Timer:
        t = Timer(int(when_ns), callback)
        self._seq += 1
        heapq.heappush(self._heap, (t.when, self._seq, t))
        return t

    def call_later(self, delay_ns: int, callback: Callable[[], None]) -> Timer:
        return self.call_at(self.clock.now_ns() + max(0, int(delay_ns)), callback)

    def next_time(self) -> Optional[int]:
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def run_due(self, now_ns: Optional[int] = None, limit: int = 10000) -> int:
        """Run every event due at ``now_ns`` (default: the clock's now). Returns how many ran."""
        now = self.clock.now_ns() if now_ns is None else now_ns
        heap = self._heap
        ran = 0
        while heap and ran < limit:
            when, _, t = heap[0]
            if t.cancelled:
                heapq.heappop(heap)
                continue
            if when > now:
                break
            heapq.heappop(heap)
            t.cancelled = True
            t.callback()
            ran += 1
        return ran

    def pending(self) -> int:
        return sum(1 for _, _, t in self._heap if not t.cancelled)

"""Long differential fuzzing runs, outside pytest.

    python packages/cpu/tests/diffharness/fuzz.py --seed 1000 --count 5000
    python packages/cpu/tests/diffharness/fuzz.py --oracle host --group string,mixed
    python packages/cpu/tests/diffharness/fuzz.py --mode 16 --engine blocks --length 20 40

Seeds ``seed .. seed+count-1`` of every chosen group run on the oracle and on pyv86; each
difference is shrunk and printed as a reproducer.  Exit status 1 when anything differed.
The pytest files use seeds from 0, so start long runs elsewhere (e.g. --seed 100000).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Callable, List

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from diffharness import compare, grammar, layout, run_pyv86


def main(argv: Any = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=100000, help="first seed (default 100000)")
    ap.add_argument("--count", type=int, default=1000, help="snippets per group and engine")
    ap.add_argument("--group", default="all",
                    help=f"comma list of {sorted(grammar.GROUPS)}, 'faults' (host only) or 'all'")
    ap.add_argument("--oracle", choices=("unicorn", "host"), default="unicorn")
    ap.add_argument("--mode", choices=("32", "16"), default="32", help="16 = real mode (unicorn only)")
    ap.add_argument("--engine", default="interp,blocks", help="comma list of interp, blocks, step")
    ap.add_argument("--length", type=int, nargs=2, default=(4, 12), metavar=("MIN", "MAX"),
                    help="instructions (units) per snippet")
    ap.add_argument("--max-reports", type=int, default=5, help="reproducers printed per group")
    args = ap.parse_args(argv)
    if args.count < 1:
        ap.error("--count must be at least 1")
    if args.length[0] < 1 or args.length[1] < args.length[0]:
        ap.error("--length needs 1 <= MIN <= MAX")
    groups = sorted(grammar.GROUPS) if args.group == "all" else args.group.split(",")
    for g in groups:
        if g not in grammar.GROUPS and g != "faults" and \
                g[6:] not in grammar.Gen.FAULT_KINDS:
            ap.error(f"unknown group {g!r} (also: faults, fault-<kind> for the host oracle)")
    engines = args.engine.split(",")
    for e in engines:
        if e not in run_pyv86.ENGINES:
            ap.error(f"unknown engine {e!r}")
    code32 = args.mode == "32"
    if args.oracle == "host":
        if not code32:
            ap.error("the host oracle runs 32-bit code only")
        from diffharness.oracle_host import HostOracle
        oracle: Any = HostOracle()
        base, a16 = layout.HOST_BASE, False
    else:
        from diffharness.oracle_unicorn import UnicornOracle
        oracle = UnicornOracle(code32)
        base, a16 = 0, True
    ref_run: Callable[[Any], Any] = oracle.run
    bad_total = 0
    for group in groups:
        for engine in engines:
            t0 = time.time()
            bad: List[str] = []
            for seed in range(args.seed, args.seed + args.count):
                s = grammar.generate(seed, group, code32=code32, base=base,
                                     length=tuple(args.length), a16_ok=a16)
                try:
                    rep = compare.check(s, ref_run, lambda x, e=engine: run_pyv86.run(x, e),
                                        args.oracle)
                except AssertionError as exc:  # the oracle faulted: a harness bug
                    rep = f"HARNESS: {exc}"
                if rep:
                    bad.append(rep)
                    if len(bad) <= args.max_reports:
                        print(rep, "\n", flush=True)
            bad_total += len(bad)
            print(f"{group:8} {engine:6} {len(bad)}/{args.count} differ "
                  f"({time.time() - t0:.1f}s)", flush=True)
    return 1 if bad_total else 0


if __name__ == "__main__":
    sys.exit(main())

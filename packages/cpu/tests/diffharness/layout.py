"""Where a snippet's code, data and stack live, as offsets from a layout base.

The emulated oracles (Unicorn, pyv86) use base 0; the host oracle uses ``HOST_BASE`` because
Linux does not map the first 64 KiB (pyv86 then runs with every segment base at ``-base`` so
the same offsets reach the same physical bytes, see ``run_pyv86``).
"""

from __future__ import annotations

HOST_BASE = 0x10000000

CODE = 0x1000          # snippet code: [CODE, DATA)
DATA = 0x4000          # random data the snippet reads and writes: [DATA, DATA_END)
DATA_END = 0xC000
STACK_LO = 0xC000      # stack region: [STACK_LO, STACK_HI); ESP starts at STACK_TOP
STACK_TOP = 0xE000
STACK_HI = 0xF000
SAVE = 0xF000          # host oracle only: saved registers and the trampoline's scratch
REGION = 0x10000       # size of the region the host oracle maps

# Compared memory: everything the snippet may write (data and stack) and, for base 0, where
# 16-bit string addresses wrap around 64 KiB.
COMPARED = ((DATA, DATA_END), (STACK_LO, STACK_HI))
WRAP = ((0, 0x400), (0xF000, 0x10000))

# pyv86 only: descriptor tables and one HLT per exception vector, so a fault shows up as
# "halted at FAULT_STUBS + vector + 1" instead of running off into the weeds.
GDT = 0x500
IDT = 0x600            # 32 gates (protected) or the IVT at 0 (real mode)
FAULT_STUBS = 0x900

MEM_SIZE = 0x100000    # pyv86 RAM and Unicorn mapping (base 0)

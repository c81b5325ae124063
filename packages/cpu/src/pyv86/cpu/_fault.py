"""The one exception type every part of the CPU raises for an architectural fault."""

from __future__ import annotations

from typing import Optional


class CPUFault(Exception):
    """An x86 exception raised while executing an instruction.

    ``vector`` is the exception number (0-31), ``error_code`` the error code pushed by
    exceptions that have one (#DF 8, #TS 10, #NP 11, #SS 12, #GP 13, #PF 14, #AC 17) or None.
    The run loop catches it, rolls the instruction back (EIP and every register it changed)
    and delivers it through ``_system.deliver_exception``.
    """

    def __init__(self, vector: int, error_code: Optional[int] = None) -> None:
        super().__init__(vector, error_code)
        self.vector = vector
        self.error_code = error_code

    def __repr__(self) -> str:
        if self.error_code is None:
            return f"CPUFault({self.vector})"
        return f"CPUFault({self.vector}, {self.error_code:#x})"


# Exception vectors by mnemonic.
DE, DB, NMI, BP, OF, BR, UD, NM, DF, TS, NP, SS, GP, PF, MF, AC, MC = (
    0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 16, 17, 18)

"""Versioned save/restore of the complete CPU state (plain ints, lists, dicts)."""

from __future__ import annotations

from typing import Any, Dict

STATE_VERSION = 1

_INT_FIELDS = ("eip", "instruction_count", "cpl", "cr0", "cr2", "cr3", "cr4",
               "gdtr_base", "gdtr_limit", "idtr_base", "idtr_limit",
               "ldtr_sel", "ldtr_base", "ldtr_limit", "tr_sel", "tr_base", "tr_limit",
               "tr_attr", "a20_mask")
_LIST_FIELDS = (("reg", 8), ("sreg", 6), ("sbase", 6), ("slimit", 6), ("sattr", 6), ("dr", 8))
_BOOL_FIELDS = ("halted", "shadow")


def save_state(cpu: Any) -> Dict[str, Any]:
    state: Dict[str, Any] = {"version": STATE_VERSION, "eflags": cpu.get_eflags()}
    for name in _INT_FIELDS:
        state[name] = int(getattr(cpu, name))
    for name, _n in _LIST_FIELDS:
        state[name] = [int(v) for v in getattr(cpu, name)]
    for name in _BOOL_FIELDS:
        state[name] = bool(getattr(cpu, name))
    state["msr"] = {int(k): int(v) for k, v in cpu.msr.items()}
    state["fpu"] = cpu.fpu.save_state() if cpu.fpu is not None else None
    return state


def _int(state: Dict[str, Any], name: str, bits: int = 32) -> int:
    v = state.get(name)
    if not isinstance(v, int) or isinstance(v, bool):
        raise ValueError(f"cpu state: {name!r} must be an int, got {v!r}")
    if not 0 <= v < (1 << bits):
        raise ValueError(f"cpu state: {name!r} = {v} out of range")
    return v


def restore_state(cpu: Any, state: Dict[str, Any]) -> None:
    if not isinstance(state, dict):
        raise ValueError("cpu state must be a dict")
    version = state.get("version")
    if version != STATE_VERSION:
        raise ValueError(f"cpu state version {version!r} is not supported (expected {STATE_VERSION})")
    values: Dict[str, Any] = {}
    for name in _INT_FIELDS:
        values[name] = _int(state, name, 64 if name == "instruction_count" else 32)
    if values["cpl"] > 3:
        raise ValueError("cpu state: cpl must be 0-3")
    if values["a20_mask"] not in (0xFFFFFFFF, 0xFFEFFFFF):
        raise ValueError("cpu state: a20_mask must be 0xFFFFFFFF or 0xFFEFFFFF")
    for name, n in _LIST_FIELDS:
        v = state.get(name)
        if not isinstance(v, list) or len(v) != n:
            raise ValueError(f"cpu state: {name!r} must be a list of {n} ints")
        bits = 16 if name in ("sreg", "sattr") else 32
        for x in v:
            if not isinstance(x, int) or isinstance(x, bool) or not 0 <= x < (1 << bits):
                raise ValueError(f"cpu state: {name!r} holds a bad value {x!r}")
        values[name] = list(v)
    for name in _BOOL_FIELDS:
        v = state.get(name)
        if not isinstance(v, bool):
            raise ValueError(f"cpu state: {name!r} must be a bool")
        values[name] = v
    eflags = _int(state, "eflags")
    msr = state.get("msr")
    if not isinstance(msr, dict):
        raise ValueError("cpu state: 'msr' must be a dict")
    msrs = {}
    for k, v in msr.items():
        try:
            key = int(k)  # JSON round trips turn keys into strings
        except (TypeError, ValueError):
            raise ValueError(f"cpu state: bad MSR number {k!r}") from None
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < (1 << 64) or not 0 <= key < (1 << 32):
            raise ValueError(f"cpu state: bad MSR {k!r} = {v!r}")
        msrs[key] = v
    fpu_state = state.get("fpu")
    if fpu_state is not None and cpu.fpu is None:
        raise ValueError("cpu state has FPU state but this CPU has no FPU")
    if fpu_state is not None:
        cpu.fpu.restore_state(fpu_state)
    for name, v in values.items():
        setattr(cpu, name, v)
    cpu.msr = msrs
    cpu.lz_op = 0
    cpu.flags = (eflags & 0x3F7FD5) | 2
    cpu.update_mode()
    cpu.flush_caches()

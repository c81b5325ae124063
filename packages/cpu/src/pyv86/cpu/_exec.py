"""The run loop: interrupts, the interrupt shadow, HLT, fault rollback and delivery."""

from __future__ import annotations

from typing import Any

from ._blocks import compile_block
from ._fault import CPUFault
from ._ops import execute_one, real_interrupt
from .cpu import IF, TF, system_hook

MAX_EXTERNAL_PER_CALL = 64


def deliver(cpu: Any, vector: int, kind: str, error_code: Any = None) -> None:
    """Deliver an interrupt or exception in the current mode."""
    if not cpu.protected:
        real_interrupt(cpu, vector)
        return
    if kind == "exception":
        hook = system_hook("deliver_exception")
        if hook is None:
            raise NotImplementedError("protected-mode exceptions need pyv86.cpu._system")
        hook(cpu, vector, error_code)
    else:
        hook = system_hook("interrupt")
        if hook is None:
            raise NotImplementedError("protected-mode interrupts need pyv86.cpu._system")
        hook(cpu, vector, kind, error_code)
    cpu.update_mode()


def run(cpu: Any, budget: int) -> int:
    """Execute up to ``budget`` instructions; stop early at HLT or on request_stop()."""
    executed = 0
    cpu._stop = False
    intc = cpu.intc
    reg = cpu.reg
    use_blocks = cpu.use_blocks and cpu.trace is None
    icache = cpu.icache
    tlb_r = cpu.tlb_r
    hot = cpu.hot
    while executed < budget:
        if cpu._stop:
            break
        if not cpu.shadow and intc is not None and (cpu.flags & IF) and intc.has_interrupt():
            vector = intc.acknowledge()
            cpu.halted = False
            try:
                deliver(cpu, vector & 0xFF, "external")
            except CPUFault as fault:
                _fault(cpu, fault, cpu.eip, reg[4])
            reg = cpu.reg
            continue
        if cpu.halted:
            break
        if use_blocks and not cpu.shadow and not cpu.flags & TF:
            # Run compiled blocks back to back.  Blocks never change the mode, CS, CPL,
            # IF, TF or the shadow, so only the budget, request_stop() and a new interrupt
            # request (polled every ~32 instructions) end this inner loop.
            # instruction_count is exact at every block boundary (and a block makes it
            # exact before an I/O access, RDTSC or an MMIO access inside it): the guest's
            # clock derives from it.  A block may set it mid-way, so it is assigned from
            # the local count, never incremented.
            ic = cpu.instruction_count
            base_cs = cpu.sbase[1]
            limit_cs = cpu.slimit[1]
            user = 0x100000 if cpu.cpl == 3 else 0
            mode = (1 if cpu.code32 else 0) | (2 if cpu.stack32 else 0)
            irq = intc if (intc is not None and cpu.flags & IF) else None
            ran = 0
            irq_next = 0
            while True:
                eip = cpu.eip
                lin = (base_cs + eip) & 0xFFFFFFFF
                t = tlb_r.get((lin >> 12) | user)
                if t is None:
                    break
                phys = t | (lin & 0xFFF)
                blk = icache.get(phys)
                if blk is None:
                    # compile only code that runs repeatedly: compiling costs about as
                    # much as interpreting a few hundred instructions
                    seen = hot.get(phys, 0) + 1
                    if seen < cpu.block_threshold:
                        if len(hot) > 0x40000:
                            hot.clear()  # bound the bookkeeping for run-once code
                        hot[phys] = seen
                        break
                    hot.pop(phys, None)
                    blk = compile_block(cpu, phys, eip)
                n = blk.n
                if not n or n > budget - executed or blk.eip != eip or blk.mode != mode or \
                        blk.end > limit_cs:
                    break
                try:
                    n = blk.fn(cpu)
                except CPUFault as fault:
                    # as in the interpreter below: the exception is delivered with the
                    # completed instructions counted, then the faulting one counts too
                    done = cpu._blk_done
                    executed += done + 1
                    cpu.instruction_count = ic + done
                    _fault(cpu, fault, cpu.eip, reg[4])
                    cpu.instruction_count += 1
                    ran = -1
                    break
                ic += n
                cpu.instruction_count = ic
                executed += n
                ran += n
                if executed >= budget or cpu._stop:
                    break
                if irq is not None and ran >= irq_next:
                    # ask the interrupt controller every 32 or so instructions, not per block
                    if irq.has_interrupt():
                        break
                    irq_next = ran + 32
            if ran:
                continue
        cpu.shadow = False
        eip0 = cpu.eip
        esp0 = reg[4]
        tf0 = cpu.flags & TF
        try:
            if cpu.trace is not None:
                cpu.trace(cpu)
            execute_one(cpu)
        except CPUFault as fault:
            _fault(cpu, fault, eip0, esp0)
        executed += 1
        cpu.instruction_count += 1
        if tf0 and cpu.flags & TF:
            # single step trap after the instruction (the TF that was set before it)
            try:
                deliver(cpu, 1, "exception")
            except CPUFault as fault:  # pragma: no cover - escalation handled by _system
                _fault(cpu, fault, cpu.eip, reg[4])
        reg = cpu.reg
    return executed


def _fault(cpu: Any, fault: CPUFault, eip0: int, esp0: int) -> None:
    """Roll the instruction back and deliver the exception (escalation lives in _system)."""
    cpu.eip = eip0
    cpu.reg[4] = esp0
    cpu.halted = False
    if not cpu.protected:
        try:
            real_interrupt(cpu, fault.vector)
        except CPUFault:
            # a fault while delivering in real mode (stack or IVT overrun): shutdown
            if cpu.on_reset is not None:
                cpu.on_reset("triple-fault")
            cpu.halted = True
        return
    deliver(cpu, fault.vector, "exception", fault.error_code)

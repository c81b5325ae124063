"""This machine's own CPU as an oracle (``cpu-testing.md`` section 2), no ptrace needed.

``gcc -m32`` builds a small driver once.  The driver maps the snippet region at
``layout.HOST_BASE`` (read/write/execute), and for each snippet read from stdin copies code,
data and stack there, then calls a trampoline that saves the host registers, loads the
initial EFLAGS and all eight registers and jumps to the code.  The code is followed by an
epilogue (``EPILOGUE``, appended here) that stores the eight registers, switches back to the
host stack, stores PUSHFD and returns.On a fault (a signal) the handler records the registers, EIP and
EFLAGS at the faulting instruction and the exception vector (the kernel's trap number) from
the signal frame.  Many snippets run in one process, so a batch costs one process start.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
from typing import Any, Dict, List, Optional

from . import layout
from .grammar import Snippet

M32 = 0xFFFFFFFF
H = layout.HOST_BASE
SAVE = H + layout.SAVE           # +0..31 final regs, +32 eflags, +36 host ESP
INIT = SAVE + 0x40               # +0..31 initial regs, +32 initial eflags, +36 code address
_DATA_N = layout.DATA_END - layout.DATA
_STACK_N = layout.STACK_HI - layout.STACK_LO


def _abs(v: int) -> bytes:
    return struct.pack("<I", v)


# mov [SAVE+4*i], reg for the 8 registers; mov esp, [SAVE+36]; pushfd; pop eax;
# mov [SAVE+32], eax; cld; popad; ret
EPILOGUE = (
    b"\xa3" + _abs(SAVE)
    + b"".join(b"\x89" + bytes([0x05 | (i << 3)]) + _abs(SAVE + 4 * i) for i in range(1, 8))
    + b"\x8b\x25" + _abs(SAVE + 36)
    + b"\x9c\x58\xa3" + _abs(SAVE + 32)
    + b"\xfc\x61\xc3"
)

_DRIVER = r"""
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>

#define REGION_BASE 0x%(H)xu
#define REGION_SIZE 0x%(REGION)xu
#define CODE_OFF 0x%(CODE)xu
#define DATA_OFF 0x%(DATA)xu
#define DATA_N 0x%(DATA_N)xu
#define STACK_OFF 0x%(STACK_LO)xu
#define STACK_N 0x%(STACK_N)xu
#define CODE_MAX (DATA_OFF - CODE_OFF)

extern void dh_enter(void);
__asm__(
    ".text\n.globl dh_enter\n.type dh_enter,@function\ndh_enter:\n"
    "  pushal\n"
    "  movl %%esp, 0x%(HOSTESP)x\n"
    "  pushl 0x%(INITFL)x\n"
    "  popfl\n"
    "  movl 0x%(I0)x, %%eax\n  movl 0x%(I1)x, %%ecx\n  movl 0x%(I2)x, %%edx\n"
    "  movl 0x%(I3)x, %%ebx\n  movl 0x%(I5)x, %%ebp\n  movl 0x%(I6)x, %%esi\n"
    "  movl 0x%(I7)x, %%edi\n  movl 0x%(I4)x, %%esp\n"
    "  jmp *0x%(IJMP)x\n");

static sigjmp_buf env;
static volatile sig_atomic_t got_signal;
static char altstack[65536];

/* A fault: record the registers at the faulting instruction (the kernel's signal frame)
   and the exception vector, then return to the loop. */
static void on_signal(int sig, siginfo_t *info, void *ctx) {
    ucontext_t *uc = (ucontext_t *)ctx;
    greg_t *g = uc->uc_mcontext.gregs;
    uint32_t *save = (uint32_t *)0x%(SAVE)xu;
    (void)info;
    save[0] = g[REG_EAX]; save[1] = g[REG_ECX]; save[2] = g[REG_EDX]; save[3] = g[REG_EBX];
    save[4] = g[REG_ESP]; save[5] = g[REG_EBP]; save[6] = g[REG_ESI]; save[7] = g[REG_EDI];
    save[8] = g[REG_EFL]; save[10] = g[REG_EIP]; save[11] = g[REG_TRAPNO];
    got_signal = sig;
    siglongjmp(env, 1);
}

static int read_all(void *p, size_t n) { return fread(p, 1, n, stdin) == n; }

int main(void) {
    unsigned char *region = mmap((void *)REGION_BASE, REGION_SIZE, PROT_READ | PROT_WRITE | PROT_EXEC,
                                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (region != (unsigned char *)REGION_BASE) { perror("mmap"); return 2; }
    stack_t ss = { .ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0 };
    sigaltstack(&ss, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_ONSTACK | SA_NODEFER | SA_SIGINFO;
    int sigs[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP };
    for (unsigned i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaction(sigs[i], &sa, 0);
    uint32_t *save = (uint32_t *)0x%(SAVE)xu, *init = (uint32_t *)0x%(INIT)xu;
    for (;;) {
        uint32_t n;
        if (!read_all(&n, 4) || n == 0) break;
        if (n > CODE_MAX) return 3;
        memset(region + CODE_OFF, 0xf4, CODE_MAX);
        if (!read_all(region + CODE_OFF, n) || !read_all(init, 36) ||
            !read_all(region + DATA_OFF, DATA_N) || !read_all(region + STACK_OFF, STACK_N)) return 4;
        init[9] = REGION_BASE + CODE_OFF;
        memset(save, 0, 48);
        got_signal = 0;
        if (sigsetjmp(env, 1) == 0) dh_enter();
        uint32_t status = (uint32_t)got_signal;
        fwrite(&status, 4, 1, stdout);
        fwrite(save, 4, 9, stdout);
        fwrite(save + 10, 4, 2, stdout);
        fwrite(region + DATA_OFF, 1, DATA_N, stdout);
        fwrite(region + STACK_OFF, 1, STACK_N, stdout);
    }
    fflush(stdout);
    return 0;
}
"""


def driver_source() -> str:
    v = {"H": H, "REGION": layout.REGION, "CODE": layout.CODE, "DATA": layout.DATA,
         "DATA_N": _DATA_N, "STACK_LO": layout.STACK_LO, "STACK_N": _STACK_N,
         "HOSTESP": SAVE + 36, "INITFL": INIT + 32, "IJMP": INIT + 36,
         "SAVE": SAVE, "INIT": INIT}
    for i in range(8):
        v[f"I{i}"] = INIT + 4 * i
    return _DRIVER % v


def unavailable() -> Optional[str]:
    """Why the host oracle cannot run here, or None."""
    import platform
    if platform.machine() not in ("x86_64", "i686", "i386", "AMD64"):
        return f"the host oracle needs an x86 host, this is {platform.machine()}"
    if shutil.which("gcc") is None:
        return "gcc is not installed (Debian: gcc-multilib; scripts/setup-debian installs it)"
    return None


class HostOracle:
    def __init__(self, workdir: Optional[str] = None) -> None:
        reason = unavailable()
        if reason:
            raise RuntimeError(reason)
        self.workdir = workdir or tempfile.mkdtemp(prefix="pyv86-host-oracle-")
        src = os.path.join(self.workdir, "driver.c")
        self.exe = os.path.join(self.workdir, "driver")
        with open(src, "w") as f:
            f.write(driver_source())
        proc = subprocess.run(["gcc", "-m32", "-O1", "-o", self.exe, src],
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError("gcc -m32 failed (is gcc-multilib installed?):\n" + proc.stderr)

    def run_batch(self, snippets: List[Snippet]) -> List[Dict[str, Any]]:
        chunks = []
        for s in snippets:
            if s.base != H or not s.code32:
                raise ValueError("the host oracle runs 32-bit snippets generated for HOST_BASE")
            code = s.code + EPILOGUE
            chunks.append(struct.pack("<I", len(code)) + code
                          + struct.pack("<9I", *s.regs, s.eflags) + s.data + s.stack)
        chunks.append(struct.pack("<I", 0))
        proc = subprocess.run([self.exe], input=b"".join(chunks), capture_output=True,
                              timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"host oracle driver failed ({proc.returncode}): {proc.stderr!r}")
        out = proc.stdout
        rec = 48 + _DATA_N + _STACK_N
        if len(out) != rec * len(snippets):
            raise RuntimeError(f"host oracle returned {len(out)} bytes for {len(snippets)} snippets")
        results = []
        for i, s in enumerate(snippets):
            r = out[i * rec:(i + 1) * rec]
            status, *vals = struct.unpack_from("<12I", r)
            results.append({
                "regs": vals[:8],
                "eip": vals[9] if status else (s.base + layout.CODE + len(s.code)) & M32,
                "eflags": vals[8],
                "data": r[48:48 + _DATA_N],
                "stack": r[48 + _DATA_N:],
                # the vector from the kernel's trap number (SIGFPE for #DE, SIGILL for #UD, ...)
                "fault": f"exception {vals[10]}" if status else None,
            })
        return results

    def run(self, snippet: Snippet) -> Dict[str, Any]:
        return self.run_batch([snippet])[0]

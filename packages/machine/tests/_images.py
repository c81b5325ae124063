"""Tiny bootable images for the loader and machine tests (built here, byte by byte)."""

import struct

# 32-bit code: print "OK:" then the command line (via ESI -> boot_params.cmd_line_ptr)
# on COM1, then cli; hlt.
#   mov dx,0x3f8 / mov al,'O' / out dx,al / mov al,'K' / out dx,al / mov al,':' / out dx,al
#   mov ebx,[esi+0x228]
# L: mov al,[ebx] / test al,al / jz done / out dx,al / inc ebx / jmp L
# done: cli / hlt
PRINT_CMDLINE = bytes.fromhex(
    "66baf803" "b04f" "ee" "b04b" "ee" "b03a" "ee"
    "8b9e28020000"
    "8a03" "84c0" "7404" "ee" "43" "ebf6"
    "fa" "f4"
)
# sti; hlt forever (waits for interrupts that never come)
STI_HLT = bytes.fromhex("fbf4ebfd")


def bzimage(code=PRINT_CMDLINE, *, version=0x020F, loadflags=0x01, setup_sects=1,
            init_size=0x10000, pm_size=None):
    setup = bytearray(512 * (setup_sects + 1))
    setup[0x1F1] = setup_sects
    setup[0x1FE:0x200] = b"\x55\xaa"
    setup[0x200] = 0xEB
    setup[0x201] = 0x66  # header ends at 0x268
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", setup, 0x206, version)
    setup[0x211] = loadflags
    struct.pack_into("<I", setup, 0x214, 0x100000)
    struct.pack_into("<I", setup, 0x22C, 0x7FFFFFFF)
    struct.pack_into("<I", setup, 0x238, 2047)
    struct.pack_into("<Q", setup, 0x258, 0x100000)
    struct.pack_into("<I", setup, 0x260, init_size)
    pm = bytearray(code)
    if pm_size is not None:
        pm += bytes(pm_size - len(pm))
    return bytes(setup) + bytes(pm)


def elf(code=PRINT_CMDLINE, *, paddr=0x200000, vaddr=0xC0200000, machine=3, cls=1, bss=0x100):
    ehdr_size, phdr_size = 52, 32
    off = ehdr_size + phdr_size
    e = bytearray(off)
    e[0:4] = b"\x7fELF"
    e[4], e[5], e[6] = cls, 1, 1
    struct.pack_into("<HHIIIIIHHHHHH", e, 16, 2, machine, 1, vaddr, ehdr_size, 0, 0,
                     ehdr_size, phdr_size, 1, 40, 0, 0)
    struct.pack_into("<IIIIIIII", e, ehdr_size, 1, off, vaddr, paddr, len(code),
                     len(code) + bss, 5, 0x1000)
    return bytes(e) + bytes(code)

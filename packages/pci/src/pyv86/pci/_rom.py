"""Expansion ROM images: walking the PCI data structures and patching their IDs.

An option ROM image starts with 0x55 0xAA, byte 2 gives its length in 512-byte units and the
16-bit word at 0x18 points to the PCI data structure ("PCIR"): vendor ID at +4, device ID at
+6, image length (512-byte units) at +0x10, code type at +0x14 (0 = x86 BIOS, 3 = EFI) and
the indicator at +0x15 (bit 7: last image). Several images may follow each other.

SeaBIOS only runs an x86 image (code type 0) whose PCIR IDs equal the device's IDs. Debian's
iPXE ROMs are built for several devices and carry zeros there, so the bus patches them (as
QEMU does) and keeps the image's byte sum by compensating in byte 6 of the image header, the
checksum byte of iPXE's header. Images of other code types (the EFI image of Debian's
efi-*.rom files carries FFF3:0000) are left exactly as built: SeaBIOS never runs them.
"""

from __future__ import annotations

from typing import List, NamedTuple

CODE_TYPE_X86 = 0x00
CODE_TYPE_EFI = 0x03


class RomImage(NamedTuple):
    """One image of an expansion ROM as found by :func:`rom_images`."""

    offset: int  # of the image in the ROM
    length: int  # bytes, from the PCIR image length (or header byte 2 if that is zero)
    pcir: int  # offset of the PCI data structure in the ROM, or -1 if there is none
    vendor_id: int
    device_id: int
    code_type: int
    last: bool


def rom_images(rom: bytes) -> List[RomImage]:
    """The images of ``rom`` that have a valid header, in order; never raises on bad input."""
    images: List[RomImage] = []
    offset = 0
    size = len(rom)
    while offset + 0x1A <= size and len(images) < 16:
        if rom[offset] != 0x55 or rom[offset + 1] != 0xAA:
            break
        header_len = rom[offset + 2] * 512
        pcir = offset + (rom[offset + 0x18] | rom[offset + 0x19] << 8)
        if pcir + 0x18 > size or rom[pcir:pcir + 4] != b"PCIR":
            images.append(RomImage(offset, min(header_len, size - offset), -1, 0, 0, -1, True))
            break
        vendor = rom[pcir + 4] | rom[pcir + 5] << 8
        device = rom[pcir + 6] | rom[pcir + 7] << 8
        image_len = (rom[pcir + 0x10] | rom[pcir + 0x11] << 8) * 512 or header_len
        code_type = rom[pcir + 0x14]
        last = bool(rom[pcir + 0x15] & 0x80)
        length = min(image_len, size - offset)
        images.append(RomImage(offset, length, pcir, vendor, device, code_type, last))
        if last or image_len == 0:
            break
        offset += image_len
    return images


def patch_rom_ids(rom: bytes, vendor_id: int, device_id: int) -> bytes:
    """Return ``rom`` with every x86 image's PCIR vendor/device IDs set to the given ones.

    Each patched image keeps its byte sum over its length: the difference is compensated in
    byte 6 of the image (iPXE's checksum byte; QEMU's ``pci_patch_ids`` does the same for
    the first image). Images of other code types, without a PCI data structure, or whose
    IDs already match are left alone.
    """
    out = bytearray(rom)
    for image in rom_images(rom):
        if image.pcir < 0 or image.code_type != CODE_TYPE_X86:
            continue
        if image.vendor_id == vendor_id and image.device_id == device_id:
            continue
        p = image.pcir
        old = sum(out[p + 4:p + 8])
        out[p + 4:p + 6] = (vendor_id & 0xFFFF).to_bytes(2, "little")
        out[p + 6:p + 8] = (device_id & 0xFFFF).to_bytes(2, "little")
        delta = sum(out[p + 4:p + 8]) - old
        patched_inside = p + 8 <= image.offset + image.length
        if patched_inside and image.length > 6:
            fix = image.offset + 6
            out[fix] = (out[fix] - delta) & 0xFF
    return bytes(out)


def image_checksum(rom: bytes, image: RomImage) -> int:
    """The byte sum (mod 256) of one image: 0 for a valid x86 option ROM."""
    return sum(rom[image.offset:image.offset + image.length]) & 0xFF

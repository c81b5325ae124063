"""pyv86.pci: a PCI bus (configuration mechanism #1) with the i440FX host bridge and the
PIIX3 ISA bridge, hosting any device described as data. See the package README."""

from ._bus import (
    PORT_BASE,
    PORT_COUNT,
    RESET_HARD,
    RESET_SOFT,
    STATE_VERSION,
    PCIBus,
    Region,
)
from ._chipset import I440FX, PIIX3, pam_segments
from ._protocol import Bar, BarDescription, DataFunction, PCIFunction, config_header
from ._rom import patch_rom_ids, rom_images
from ._version import __version__

__all__ = [
    "I440FX",
    "PIIX3",
    "PORT_BASE",
    "PORT_COUNT",
    "RESET_HARD",
    "RESET_SOFT",
    "STATE_VERSION",
    "Bar",
    "BarDescription",
    "DataFunction",
    "PCIBus",
    "PCIFunction",
    "Region",
    "__version__",
    "config_header",
    "pam_segments",
    "patch_rom_ids",
    "rom_images",
]

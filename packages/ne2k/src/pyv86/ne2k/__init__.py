"""pyv86.ne2k: an NE2000 / RTL8029AS network card that real drivers accept, with MAC
randomisation, preservation and translation. No dependencies; sans-IO.

    from pyv86.ne2k import NE2000
    card = NE2000(model="rtl8029", mac="52:54:00:12:34:56", send=on_frame, irq=on_irq_level)

See the package README for the whole API.
"""

from . import translate as translate
from ._card import MAC_MODES as MAC_MODES
from ._card import MODELS as MODELS
from ._card import NE2000 as NE2000
from ._dp8390 import DP8390 as DP8390
from ._dp8390 import multicast_index as multicast_index
from ._mac import V86_PREFIX as V86_PREFIX
from ._mac import format_mac as format_mac
from ._mac import is_locally_administered as is_locally_administered
from ._mac import is_multicast as is_multicast
from ._mac import parse_mac as parse_mac
from ._mac import parse_prefix as parse_prefix
from ._mac import random_mac as random_mac
from ._pci import PCIBar as PCIBar
from ._pci import RTL8029Function as RTL8029Function
from ._state import VERSION as STATE_VERSION
from ._version import __version__ as __version__
from .translate import MacTranslation as MacTranslation
from .translate import translate_frame as translate_frame

__all__ = [
    "DP8390",
    "MAC_MODES",
    "MODELS",
    "NE2000",
    "STATE_VERSION",
    "V86_PREFIX",
    "MacTranslation",
    "PCIBar",
    "RTL8029Function",
    "__version__",
    "format_mac",
    "is_locally_administered",
    "is_multicast",
    "multicast_index",
    "parse_mac",
    "parse_prefix",
    "random_mac",
    "translate",
    "translate_frame",
]

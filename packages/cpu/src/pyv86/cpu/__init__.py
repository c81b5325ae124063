"""pyv86.cpu: an i686-class x86 CPU in pure Python (see the package README)."""

from ._fault import CPUFault as CPUFault
from ._memory import NullIO as NullIO
from ._memory import SimpleMemory as SimpleMemory
from ._version import __version__ as __version__
from .cpu import CPU as CPU

__all__ = ["CPU", "CPUFault", "NullIO", "SimpleMemory", "__version__"]

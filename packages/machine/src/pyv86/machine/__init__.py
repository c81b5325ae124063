"""pyv86.machine: a PC assembled from the pyv86 packages that boots Linux with networking.

    from pyv86.machine import Machine
    m = Machine(bzimage="bzImage", initrd="initrd.cpio", network_relay_url="passt:")
    result = m.run(time_limit=60)

See the package README for the options, the frame tap API and the ``pyv86`` command.
"""

from ._version import __version__ as __version__
from .clock import DeterministicClock as DeterministicClock
from .clock import RealtimeClock as RealtimeClock
from .clock import Scheduler as Scheduler
from .iobus import IOBus as IOBus
from .loader import KernelImageError as KernelImageError
from .machine import DEFAULT_CMDLINE as DEFAULT_CMDLINE
from .machine import EXIT_CODES as EXIT_CODES
from .machine import Machine as Machine
from .machine import MachineConfigError as MachineConfigError
from .machine import RunResult as RunResult
from .machine import default_network as default_network
from .memory import PhysicalMemory as PhysicalMemory

__all__ = [
    "DEFAULT_CMDLINE",
    "EXIT_CODES",
    "DeterministicClock",
    "IOBus",
    "KernelImageError",
    "Machine",
    "MachineConfigError",
    "PhysicalMemory",
    "RealtimeClock",
    "RunResult",
    "Scheduler",
    "__version__",
    "default_network",
]

"""pyv86.pci — see the package README for what it offers."""

from ._version import __version__ as __version__

__all__ = ["__version__"]

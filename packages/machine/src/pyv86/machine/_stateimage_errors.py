"""Errors of the state image format: one base class, one subclass per kind of problem."""

from __future__ import annotations

from typing import Any, List, Optional, Sequence

__all__ = [
    "ConfigMismatchError",
    "CorruptImageError",
    "ForeignFileError",
    "StateImageError",
    "TruncatedImageError",
    "UnencodableValueError",
    "UnsupportedVersionError",
]


class StateImageError(ValueError):
    """A state image cannot be written or read; the message names the problem.

    ``offset`` is the byte offset in the file where the problem was found, when there is one.
    A ``ValueError`` like the components' own ``restore_state`` errors.
    """

    def __init__(self, message: str, *, offset: Optional[int] = None):
        super().__init__(message)
        self.offset = offset


class TruncatedImageError(StateImageError):
    """The file ends before the image does."""


class CorruptImageError(StateImageError):
    """A checksum does not match, or the content breaks the format's rules."""


class ForeignFileError(StateImageError):
    """The file is not a pyv86 state image (wrong magic); the message says what it looks like."""


class UnsupportedVersionError(StateImageError):
    """The image needs a newer reader: a newer format version or an unknown critical section."""


class ConfigMismatchError(StateImageError):
    """The image was saved by a machine configured differently; ``mismatches`` lists each
    difference as a sentence."""

    def __init__(self, mismatches: Sequence[str]):
        self.mismatches: List[str] = list(mismatches)
        super().__init__("the state image does not fit this machine: "
                         + "; ".join(self.mismatches))


class UnencodableValueError(StateImageError, TypeError):
    """A state tree holds a value outside the format's grammar (raised when writing).

    ``path`` lists the keys and indices from the top of the tree down to the value;
    ``reason`` says what is wrong there.
    """

    def __init__(self, message: str, *, path: List[Any], reason: str):
        super().__init__(message)
        self.path = path
        self.reason = reason

"""The exceptions this package raises. Every one names the relay URL it is about."""

from __future__ import annotations

import trio

__all__ = [
    "InvalidRelayURL",
    "PasstUnavailable",
    "RelayClosed",
    "RelayConnectError",
    "RelayError",
]


class RelayError(Exception):
    """Base class of every error raised by :mod:`pyv86.relay_client`.

    ``url`` is the relay URL the error is about (as the caller spelled it), or ``None``.
    """

    def __init__(self, message: str, *, url: object = None) -> None:
        super().__init__(message)
        self.url = url


class InvalidRelayURL(RelayError, ValueError):
    """The URL is not one this package can use: wrong type, unknown scheme, missing host or
    port, bad port, path too long for a UNIX socket, ... Raised before any I/O happens."""


class RelayConnectError(RelayError, OSError):
    """The relay could not be reached (refused, unreachable, TLS or WebSocket handshake failed)
    or did not answer within ``connect_timeout``. Also raised when a needed program such as
    ``passt`` fails to start. ``__cause__`` holds the underlying error."""


class PasstUnavailable(RelayConnectError):
    """``passt:`` was requested but the ``passt`` program is not installed (or not executable)."""


class RelayClosed(RelayError, trio.ClosedResourceError):
    """The relay was closed: sending or receiving on it is no longer possible."""

"""Parsing and validating relay URLs. Pure functions, no I/O."""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass

from ._errors import InvalidRelayURL

__all__ = ["SCHEMES", "RelayURL", "parse_relay_url"]

#: Every scheme :func:`open_relay` understands.
SCHEMES = ("ws", "wss", "tcp", "unix", "passt", "null")

# Linux's sockaddr_un.sun_path is 108 bytes including the terminating NUL.
_UNIX_PATH_MAX = 107

_HINTS = {
    "http": "use ws:// for a WebSocket relay",
    "https": "use wss:// for a WebSocket relay over TLS",
    "wisp": "wisp (stream multiplexing) is not an Ethernet relay protocol; not supported",
    "wisps": "wisp (stream multiplexing) is not an Ethernet relay protocol; not supported",
    "udp": "datagram transports are not supported; use tcp:// (QEMU stream framing)",
    "stream": "write tcp://host:port or unix:///path",
}


@dataclass(frozen=True)
class RelayURL:
    """A parsed relay URL.

    ``scheme`` is lower case. ``host``/``port`` are set for ``ws``, ``wss`` and ``tcp``;
    ``path`` is the resource for ``ws``/``wss`` (``/`` at least) or the socket path for
    ``unix``. ``text`` is the URL as given.
    """

    text: str
    scheme: str
    host: str = ""
    port: int = 0
    path: str = ""

    @property
    def netloc(self) -> str:
        """``host:port`` with IPv6 hosts in brackets, as in a URL or a Host header."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _bad(url: object, why: str) -> InvalidRelayURL:
    return InvalidRelayURL(f"invalid relay URL {url!r}: {why}", url=url)


def parse_relay_url(url: object) -> RelayURL:
    """Check ``url`` and split it into its parts.

    Raises :class:`InvalidRelayURL` (a ``ValueError``) naming the URL and the problem.
    """
    if isinstance(url, os.PathLike) or not isinstance(url, str):
        raise _bad(url, f"expected a str, got {type(url).__name__}")
    if not url:
        raise _bad(url, "empty; try passt:, ws://host:port/, tcp://host:port, unix:///path or null:")
    if url != url.strip() or any(ord(c) < 0x20 or c == "\x7f" for c in url):
        raise _bad(url, "contains whitespace or control characters")
    scheme, sep, rest = url.partition(":")
    scheme = scheme.lower()
    if not sep or not scheme:
        raise _bad(url, "no scheme; try passt:, ws://host:port/, tcp://host:port, unix:///path or null:")
    if scheme in _HINTS:
        raise _bad(url, _HINTS[scheme])
    if scheme not in SCHEMES:
        raise _bad(url, f"unknown scheme {scheme!r}; known: {', '.join(s + ':' for s in SCHEMES)}")

    if scheme in ("passt", "null"):
        if rest not in ("", "//", "///"):
            raise _bad(url, f"{scheme}: takes no host, path or parameters (options are keyword arguments)")
        return RelayURL(url, scheme)

    if scheme == "unix":
        if rest.startswith("//"):
            after = rest[2:]
            if not after.startswith("/"):
                raise _bad(url, "unix:// URLs have no host; write unix:///absolute/path")
            path = after
        else:
            path = rest  # unix:/abs/path or unix:relative/path
        if "?" in path or "#" in path:
            raise _bad(url, "unix: URLs take no query or fragment")
        path = urllib.parse.unquote(path)
        if not path or path == "/":
            raise _bad(url, "no socket path")
        if "\x00" in path:
            raise _bad(url, "NUL in socket path")
        if len(os.fsencode(path)) > _UNIX_PATH_MAX:
            raise _bad(url, f"socket path longer than {_UNIX_PATH_MAX} bytes")
        return RelayURL(url, scheme, path=path)

    # ws, wss, tcp: a network location is required
    parts = urllib.parse.urlsplit(url)
    if not rest.startswith("//"):
        raise _bad(url, f"{scheme}: needs a host, e.g. {scheme}://127.0.0.1:8080")
    if parts.username is not None or parts.password is not None:
        raise _bad(url, "user:password@ in the URL is not supported; use the auth_token or headers options")
    try:
        host = parts.hostname
        port = parts.port
    except ValueError as exc:
        raise _bad(url, f"bad host or port ({exc})") from None
    if not host:
        raise _bad(url, "no host")
    if parts.fragment:
        raise _bad(url, "fragments (#...) are not allowed")
    if scheme == "tcp":
        if port is None:
            raise _bad(url, "tcp: needs a port, e.g. tcp://127.0.0.1:5555")
        if port == 0:
            raise _bad(url, "port 0 cannot be connected to")
        if parts.path not in ("", "/") or parts.query:
            raise _bad(url, "tcp: URLs take no path or query")
        return RelayURL(url, scheme, host=host, port=port)
    if port is None:
        port = 443 if scheme == "wss" else 80
    if port == 0:
        raise _bad(url, "port 0 cannot be connected to")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return RelayURL(url, scheme, host=host, port=port, path=path)

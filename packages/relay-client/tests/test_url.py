"""Relay URLs: what each scheme accepts, and clear errors naming the URL for the rest
(v86 used to crash or freeze on invalid relay URLs)."""

from __future__ import annotations

import pytest

from pyv86.relay_client import InvalidRelayURL, RelayError, parse_relay_url


@pytest.mark.parametrize(("url", "scheme", "host", "port", "path"), [
    ("ws://127.0.0.1:8080/", "ws", "127.0.0.1", 8080, "/"),
    ("ws://relay.example", "ws", "relay.example", 80, "/"),
    ("WS://Relay.Example:81/net?x=1", "ws", "relay.example", 81, "/net?x=1"),
    ("wss://relay.example/", "wss", "relay.example", 443, "/"),
    ("wss://[::1]:4443/wstap", "wss", "::1", 4443, "/wstap"),
    ("tcp://127.0.0.1:5555", "tcp", "127.0.0.1", 5555, ""),
    ("tcp://[::1]:5555/", "tcp", "::1", 5555, ""),
    ("unix:///run/qemu/net.sock", "unix", "", 0, "/run/qemu/net.sock"),
    ("unix:/tmp/a%20b.sock", "unix", "", 0, "/tmp/a b.sock"),
    ("unix:relative.sock", "unix", "", 0, "relative.sock"),
    ("passt:", "passt", "", 0, ""),
    ("passt://", "passt", "", 0, ""),
    ("null:", "null", "", 0, ""),
])
def test_valid_urls_parse(url, scheme, host, port, path):
    u = parse_relay_url(url)
    assert (u.scheme, u.host, u.port, u.path, u.text) == (scheme, host, port, path, url)


def test_netloc_brackets_ipv6():
    assert parse_relay_url("tcp://[::1]:5").netloc == "[::1]:5"
    assert parse_relay_url("tcp://localhost:5").netloc == "localhost:5"


@pytest.mark.parametrize(("url", "why"), [
    ("", "empty"),
    ("relay.example:8080", "unknown scheme"),
    ("localhost", "no scheme"),
    ("ftp://x/", "unknown scheme"),
    ("http://relay.example/", "use ws://"),
    ("https://relay.example/", "use wss://"),
    ("wisp://relay.example/", "not supported"),
    ("ws:relay.example", "needs a host"),
    ("ws://", "no host"),
    ("ws://:80/", "no host"),
    ("ws://host:99999/", "bad host or port"),
    ("ws://host:port/", "bad host or port"),
    ("ws://host:0/", "port 0"),
    ("ws://user:pw@host/", "user:password"),
    ("ws://host/#frag", "fragments"),
    ("tcp://host", "needs a port"),
    ("tcp://host:1/path", "no path"),
    ("unix://", "unix:// URLs have no host"),
    ("unix://host/path", "no host"),
    ("unix:", "no socket path"),
    ("unix:///", "no socket path"),
    ("unix:///" + "a" * 200, "longer than 107"),
    ("unix:///tmp/x?y", "no query"),
    ("passt:foo", "takes no host"),
    ("null://x", "takes no host"),
    (" ws://host/", "whitespace"),
    ("ws://host/\n", "whitespace"),
])
def test_invalid_urls_raise_naming_the_url(url, why):
    with pytest.raises(InvalidRelayURL, match=why) as info:
        parse_relay_url(url)
    assert repr(url) in str(info.value)
    assert info.value.url == url
    assert isinstance(info.value, ValueError) and isinstance(info.value, RelayError)


@pytest.mark.parametrize("bad", [None, 8080, b"ws://host/", ["ws://host/"]])
def test_non_string_urls_raise_invalid_relay_url(bad):
    with pytest.raises(InvalidRelayURL, match="expected a str"):
        parse_relay_url(bad)

"""ws:// and wss://: the websockproxy protocol of v86's network_relay_url (one binary message
is one Ethernet frame; text messages are ignored), against trio-websocket servers."""

from __future__ import annotations

import shutil
import ssl
import subprocess

import pytest
import trio
import trio_websocket
from relay_testlib import (
    BROADCAST,
    frame,
    mac,
    seq_of,
    start_tcp_server,
    start_ws_server,
    wait_for,
    ws_echo_handler,
)

from pyv86.relay_client import RelayConnectError, open_relay

pytestmark = pytest.mark.trio


async def test_echo_relay_returns_every_frame_in_order():
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await start_ws_server(nursery, ws_echo_handler)
            async with open_relay(f"ws://127.0.0.1:{port}/") as relay:
                sizes = [14, 42, 60, 1514, 1518]
                for i, size in enumerate(sizes):
                    await relay.send(frame(size, seq=i))
                got = [await relay.receive() for _ in sizes]
                assert got == [frame(s, seq=i) for i, s in enumerate(sizes)]
                stats = relay.statistics()
                assert stats.state == "connected"
                assert (stats.frames_out, stats.frames_in) == (5, 5)
                assert stats.bytes_out == stats.bytes_in == sum(sizes)
                assert stats.dropped == {}
            nursery.cancel_scope.cancel()


async def test_async_iteration_yields_frames_until_close():
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await start_ws_server(nursery, ws_echo_handler)
            async with open_relay(f"ws://127.0.0.1:{port}/") as relay:
                for i in range(3):
                    relay.send_nowait(frame(60, seq=i))
                seen = []
                async for f in relay:
                    seen.append(seq_of(f))
                    if len(seen) == 3:
                        await relay.aclose()
                assert seen == [0, 1, 2]
            nursery.cancel_scope.cancel()


async def test_text_runt_and_oversize_messages_never_reach_the_card():
    async def handler(request):
        ws = await request.accept()
        await ws.send_message("text frames carry no Ethernet frame")
        await ws.send_message(b"\x01" * 13)            # runt
        await ws.send_message(b"\x02" * 1600)          # over the 1522-byte default
        await ws.send_message(frame(60, seq=42))
        try:
            await ws.get_message()  # wait for the client to go away
        except trio_websocket.ConnectionClosed:
            pass

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await start_ws_server(nursery, handler)
            async with open_relay(f"ws://127.0.0.1:{port}/") as relay:
                assert seq_of(await relay.receive()) == 42
                assert relay.statistics().dropped == {"text": 1, "runt": 1, "oversize": 1}
                assert relay.statistics().frames_in == 1
                with pytest.raises(trio.WouldBlock):
                    relay.receive_nowait()
            nursery.cancel_scope.cancel()


async def test_handshake_sends_a_same_origin_header_and_the_auth_token():
    seen: list[dict[str, str]] = []

    async def handler(request):
        seen.append({k.decode().lower(): v.decode() for k, v in request.headers})
        ws = await request.accept()
        try:
            await ws.get_message()
        except trio_websocket.ConnectionClosed:
            pass

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await start_ws_server(nursery, handler)
            url = f"ws://127.0.0.1:{port}/"
            async with open_relay(url, auth_token="s3cret", headers={"X-Client": "pyv86"}):
                pass
            async with open_relay(url, origin=None):
                pass
            async with open_relay(url, origin="https://my.page", headers=[("X-A", "1")]):
                pass
            nursery.cancel_scope.cancel()
    assert seen[0]["origin"] == f"http://127.0.0.1:{port}"
    assert seen[0]["authorization"] == "Bearer s3cret"
    assert seen[0]["x-client"] == "pyv86"
    assert "origin" not in seen[1] and "authorization" not in seen[1]
    assert seen[2]["origin"] == "https://my.page" and seen[2]["x-a"] == "1"


@pytest.mark.parametrize("headers", [{"X-Evil": "a\r\nInjected: 1"}, {"X\nY": "v"}])
async def test_header_injection_is_refused(headers):
    with pytest.raises(ValueError, match="line break"):
        async with open_relay("ws://127.0.0.1:9/", headers=headers):
            pass


async def test_a_rejected_handshake_is_a_connect_error_naming_the_url():
    async def handler(request):
        await request.reject(403, body=b"go away")

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await start_ws_server(nursery, handler)
            url = f"ws://127.0.0.1:{port}/"
            with pytest.raises(RelayConnectError, match="403") as info:
                async with open_relay(url):
                    pass
            assert url in str(info.value) and info.value.url == url
            nursery.cancel_scope.cancel()


async def test_a_server_that_never_answers_times_out_instead_of_hanging():
    async def silent(stream):
        await trio.sleep_forever()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await start_tcp_server(nursery, silent)
            url = f"ws://127.0.0.1:{port}/"
            start = trio.current_time()
            with pytest.raises(RelayConnectError, match=r"no answer within 0.3 s"):
                async with open_relay(url, connect_timeout=0.3):
                    pass
            assert trio.current_time() - start < 3
            nursery.cancel_scope.cancel()


async def test_switch_carries_frames_between_two_clients():
    """A tiny learning switch, like websockproxy: learn the source MAC per connection, flood
    broadcasts to every other client, forward unicast to the learned port."""
    ports: dict[bytes, trio_websocket.WebSocketConnection] = {}
    clients: list[trio_websocket.WebSocketConnection] = []

    async def switch(request):
        ws = await request.accept()
        clients.append(ws)
        try:
            while True:
                f = await ws.get_message()
                ports[f[6:12]] = ws
                targets = [c for c in clients if c is not ws] if f[0] & 1 else (
                    [ports[f[:6]]] if f[:6] in ports else [c for c in clients if c is not ws])
                for t in targets:
                    try:
                        await t.send_message(f)
                    except trio_websocket.ConnectionClosed:
                        pass
        except trio_websocket.ConnectionClosed:
            clients.remove(ws)

    a_mac, b_mac = mac(0xA), mac(0xB)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await start_ws_server(nursery, switch)
            url = f"ws://127.0.0.1:{port}/"
            async with open_relay(url) as a, open_relay(url) as b:
                await wait_for(lambda: len(clients) == 2)
                await a.send(frame(60, seq=1, dst=BROADCAST, src=a_mac))
                got = await b.receive()
                assert (got[:6], got[6:12], seq_of(got)) == (BROADCAST, a_mac, 1)
                await b.send(frame(60, seq=2, dst=a_mac, src=b_mac))
                got = await a.receive()
                assert (got[:6], got[6:12], seq_of(got)) == (a_mac, b_mac, 2)
                # a never hears its own broadcast
                with pytest.raises(trio.WouldBlock):
                    a.receive_nowait()
            nursery.cancel_scope.cancel()


def _self_signed(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl program to make a test certificate")
async def test_wss_uses_the_given_ssl_context_and_verifies_certificates(tmp_path):
    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    trusting = ssl.create_default_context(cafile=str(cert))
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            port = await start_ws_server(nursery, ws_echo_handler, server_ctx)
            url = f"wss://127.0.0.1:{port}/"
            async with open_relay(url, ssl_context=trusting) as relay:
                await relay.send(frame(60, seq=9))
                assert seq_of(await relay.receive()) == 9
            # The system CA store does not know our self-signed certificate.
            with pytest.raises(RelayConnectError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
                async with open_relay(url):
                    pass
            nursery.cancel_scope.cancel()


async def test_ssl_context_for_plain_ws_is_refused():
    with pytest.raises(ValueError, match="not wss"):
        async with open_relay("ws://127.0.0.1:9/", ssl_context=ssl.create_default_context()):
            pass


async def test_a_message_too_big_for_any_frame_drops_the_connection_and_reconnects():
    connections = 0

    async def handler(request):
        nonlocal connections
        connections += 1
        ws = await request.accept()
        try:
            if connections == 1:
                await ws.send_message(b"\x00" * 70000)  # over 69632: close 1009
            else:
                await ws.send_message(frame(60, seq=8))
            await ws.get_message()
        except trio_websocket.ConnectionClosed:
            pass

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await start_ws_server(nursery, handler)
            async with open_relay(f"ws://127.0.0.1:{port}/", reconnect_initial_delay=0.01) as relay:
                assert seq_of(await relay.receive()) == 8
                stats = relay.statistics()
                assert stats.reconnects == 1 and stats.frames_in == 1
                assert "1009" in (stats.last_error or "")
            nursery.cancel_scope.cancel()

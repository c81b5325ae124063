"""The pcap writer produces classic libpcap files (link type 1, Ethernet) that dpkt, like
Wireshark and tcpdump, reads back frame for frame."""

from __future__ import annotations

import io

import dpkt
import pytest
from relay_testlib import frame

from pyv86.relay_client import LINKTYPE_ETHERNET, PcapWriter


def test_pcap_file_reads_back_with_dpkt(tmp_path):
    path = tmp_path / "cap.pcap"
    frames = [frame(42, seq=1), frame(60, seq=2), frame(1514, seq=3)]
    with PcapWriter(path) as w:
        for i, f in enumerate(frames):
            w.write(f, timestamp=1700000000.25 + i)
    with open(path, "rb") as fh:
        reader = dpkt.pcap.Reader(fh)
        assert reader.datalink() == LINKTYPE_ETHERNET == 1
        records = list(reader)
    assert [bytes(buf) for _, buf in records] == frames
    assert [ts for ts, _ in records] == pytest.approx([1700000000.25, 1700000001.25, 1700000002.25])
    eth = dpkt.ethernet.Ethernet(records[1][1])
    assert eth.src == frames[1][6:12]


def test_pcap_writer_leaves_a_given_file_open():
    buf = io.BytesIO()
    w = PcapWriter(buf)
    w.write(frame(60))
    w.close()
    assert not buf.closed
    assert len(buf.getvalue()) == 24 + 16 + 60
    assert w.frames == 1


def test_pcap_writer_refuses_writes_after_close(tmp_path):
    w = PcapWriter(tmp_path / "x.pcap")
    w.close()
    with pytest.raises(ValueError, match="closed"):
        w.write(frame(60))


class _FailingFile:
    """A binary file whose writes fail after the pcap header (a full disk, ENOSPC)."""

    closed = False

    def __init__(self) -> None:
        self.writes = 0

    def write(self, data: bytes) -> int:
        self.writes += 1
        if self.writes > 1:
            raise OSError(28, "No space left on device")
        return len(data)

    def flush(self) -> None:
        pass


@pytest.mark.trio
async def test_a_failing_capture_stops_capturing_but_never_drops_the_link():
    """The capture is a diagnostic: a write error (disk full) must not be taken for a lost
    link (which would reconnect and, on passt, restart passt) or stop the frames."""
    import trio

    from pyv86.relay_client import open_relay

    with trio.fail_after(5):
        async with open_relay("null:", capture=_FailingFile(), reconnect_initial_delay=0.01) as relay:
            for i in range(5):
                await relay.send(frame(60, seq=i))
            while relay.statistics().frames_out < 5:
                await trio.sleep(0.01)
            await trio.sleep(0.05)
            stats = relay.statistics()
    assert stats.connects == 1 and stats.reconnects == 0
    assert stats.frames_out == 5
    assert "capture" in (stats.last_error or "") and "No space left" in stats.last_error


@pytest.mark.parametrize("bad", [5, 1.5, None.__class__, object()])
def test_capture_must_be_a_path_or_a_binary_file(bad):
    with pytest.raises(TypeError, match="capture"):
        PcapWriter(bad)

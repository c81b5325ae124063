"""pyv86.relay_client: carry Ethernet frames between an emulated card and the world.

``async with open_relay(url) as relay`` for trio programs, :class:`ThreadedRelay` for the
rest. URLs: ``ws://``/``wss://`` (websockproxy relays, as v86's ``network_relay_url``),
``tcp://host:port`` and ``unix:///path`` (QEMU stream framing), ``passt:`` (Debian's passt
as a child process: DHCP, DNS and NAT without root) and ``null:``. See the README.
"""

from ._errors import InvalidRelayURL as InvalidRelayURL
from ._errors import PasstUnavailable as PasstUnavailable
from ._errors import RelayClosed as RelayClosed
from ._errors import RelayConnectError as RelayConnectError
from ._errors import RelayError as RelayError
from ._framing import ETHERNET_HEADER_SIZE as ETHERNET_HEADER_SIZE
from ._framing import MAX_FRAME_SIZE as MAX_FRAME_SIZE
from ._framing import MAX_STREAM_LENGTH as MAX_STREAM_LENGTH
from ._framing import FramingError as FramingError
from ._framing import StreamDecoder as StreamDecoder
from ._framing import check_frame as check_frame
from ._framing import copy_frame as copy_frame
from ._framing import encode_stream as encode_stream
from ._framing import frame_from_message as frame_from_message
from ._pcap import LINKTYPE_ETHERNET as LINKTYPE_ETHERNET
from ._pcap import PcapWriter as PcapWriter
from ._relay import CLOSE_TIMEOUT as CLOSE_TIMEOUT
from ._relay import CONNECT_TIMEOUT as CONNECT_TIMEOUT
from ._relay import OVERFLOW as OVERFLOW
from ._relay import OVERFLOW_POLICIES as OVERFLOW_POLICIES
from ._relay import QUEUE_SIZE as QUEUE_SIZE
from ._relay import RECEIVE_QUEUE_SIZE as RECEIVE_QUEUE_SIZE
from ._relay import RECONNECT_INITIAL_DELAY as RECONNECT_INITIAL_DELAY
from ._relay import RECONNECT_MAX_DELAY as RECONNECT_MAX_DELAY
from ._relay import Relay as Relay
from ._relay import RelayStatistics as RelayStatistics
from ._relay import open_relay as open_relay
from ._thread import ThreadedRelay as ThreadedRelay
from ._transports import PASST_MTU as PASST_MTU
from ._url import SCHEMES as SCHEMES
from ._url import RelayURL as RelayURL
from ._url import parse_relay_url as parse_relay_url
from ._version import __version__ as __version__

__all__ = [
    "CLOSE_TIMEOUT",
    "CONNECT_TIMEOUT",
    "ETHERNET_HEADER_SIZE",
    "LINKTYPE_ETHERNET",
    "MAX_FRAME_SIZE",
    "MAX_STREAM_LENGTH",
    "OVERFLOW",
    "OVERFLOW_POLICIES",
    "PASST_MTU",
    "QUEUE_SIZE",
    "RECEIVE_QUEUE_SIZE",
    "RECONNECT_INITIAL_DELAY",
    "RECONNECT_MAX_DELAY",
    "SCHEMES",
    "FramingError",
    "InvalidRelayURL",
    "PasstUnavailable",
    "PcapWriter",
    "Relay",
    "RelayClosed",
    "RelayConnectError",
    "RelayError",
    "RelayStatistics",
    "RelayURL",
    "StreamDecoder",
    "ThreadedRelay",
    "__version__",
    "check_frame",
    "copy_frame",
    "encode_stream",
    "frame_from_message",
    "open_relay",
    "parse_relay_url",
]

"""The state image format (docs/state-images.md): codec, file layout, errors, compatibility.

Images that break a rule are crafted here byte by byte from the documented layout, not with
the writer, so these tests also pin the format the document describes.
"""

from __future__ import annotations

import array
import collections
import enum
import hashlib
import io
import math
import random
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyv86.machine import stateimage
from pyv86.machine.stateimage import (
    FORMAT_VERSION,
    MAGIC,
    PAGE_SIZE,
    ConfigMismatchError,
    CorruptImageError,
    ForeignFileError,
    ImageInfo,
    StateImage,
    StateImageError,
    TruncatedImageError,
    UnencodableValueError,
    UnsupportedVersionError,
    check_compatible,
    decode_state,
    encode_state,
    package_versions,
    read_image,
    read_image_info,
    write_image,
)

MIB = 1 << 20


# ------------------------------------------------------------------------ helpers
def bits(x: float) -> bytes:
    return struct.pack("<d", x)


def float_from_bits(b: int) -> float:
    return struct.unpack("<d", b.to_bytes(8, "little"))[0]


def same(a, b) -> bool:
    """Equal and of the same types all the way down; floats bit for bit (NaN payloads,
    -0.0); dicts in the same order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return bits(a) == bits(b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            same(ka, kb) and same(va, vb) for (ka, va), (kb, vb) in zip(a.items(), b.items()))
    return a == b


def image(memory=None, **kw) -> StateImage:
    mem = bytearray(2 * MIB) if memory is None else memory
    fields = {
        "config": {"memory_size": len(mem), "nic": {"model": "rtl8029"}},
        "versions": {"pyv86-machine": "0.1.0.dev0"},
        "components": {"cpu": {"version": 1, "eip": 0x100000, "msr": {0x10: 12345}},
                       "nic": {"version": 1, "ram": bytes(range(256)) * 4,
                               "tx_remaining": -0.0}},
        "memory": mem,
    }
    fields.update(kw)
    return StateImage(**fields)


def to_bytes(img: StateImage, **kw) -> bytes:
    buf = io.BytesIO()
    n = write_image(buf, img, **kw)
    data = buf.getvalue()
    assert n == len(data)
    return data


def small_image_bytes() -> bytes:
    """A small but complete image: a few state values and two runs of pages."""
    mem = bytearray(4 * PAGE_SIZE + 100)  # ends with a partial page
    mem[10] = 1
    mem[2 * PAGE_SIZE:3 * PAGE_SIZE] = bytes(range(256)) * 16
    mem[-1] = 0xAA
    return to_bytes(image(mem, config={"memory_size": len(mem)},
                          components={"cpu": {"version": 1, "reg": [1, 2, 3]}}))


# The layout from docs/state-images.md, written independently of the writer.
def crc(data: bytes) -> int:
    return zlib.crc32(data)


def file_header(version: int = 1, flags: int = 0) -> bytes:
    h = b"PYV86IMG" + struct.pack("<HH", version, flags)
    return h + struct.pack("<I", crc(h))


def section(tag: bytes, payload: bytes) -> bytes:
    h = tag + struct.pack("<Q", len(payload))
    return h + payload + struct.pack("<I", crc(h + payload))


def head(memory_size: int = 2 * PAGE_SIZE, **over) -> bytes:
    fields = {"memory_size": memory_size, "page_size": PAGE_SIZE, "versions": {},
              "config": {"memory_size": memory_size}, "metadata": {}}
    fields.update(over)
    return section(b"HEAD", encode_state(fields))


def devs(components=None) -> bytes:
    return section(b"DEVS", encode_state({"cpu": {"version": 1}} if components is None
                                         else components))


def page_run(first: int, count: int, data: bytes, encoding: int = 1) -> bytes:
    body = zlib.compress(data) if encoding == 1 else data
    return section(b"PAGE", struct.pack("<IIB", first, count, encoding) + body)


def finish(body: bytes) -> bytes:
    return body + section(b"END.", hashlib.sha256(body).digest())


def craft(*sections: bytes, version: int = 1, flags: int = 0) -> bytes:
    return finish(file_header(version, flags) + b"".join(sections))


# ------------------------------------------------------------------------ codec
_any_float = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(0, (1 << 64) - 1).map(float_from_bits),  # every bit pattern, NaN payloads
    st.sampled_from([0.0, -0.0, math.inf, -math.inf, float_from_bits(0x7FF0000000000001)]),
)
_leaves = st.one_of(
    st.none(), st.booleans(),
    st.integers(-(1 << 70), 1 << 70), st.integers(),
    st.sampled_from([(1 << 63) - 1, 1 << 63, -(1 << 63), -(1 << 63) - 1, 1 << 1000,
                     -(1 << 1000)]),
    _any_float,
    st.text(st.characters(exclude_categories=())),  # lone surrogates included
    st.binary(), st.binary().map(bytearray),
)
_keys = st.one_of(st.none(), st.booleans(), st.integers(), st.text(), st.binary(),
                  st.tuples(st.integers(), st.text()))
_trees = st.recursive(
    _leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=6), st.lists(inner, max_size=6).map(tuple),
                            st.dictionaries(_keys, inner, max_size=6)),
    max_leaves=40,
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(_trees)
def test_codec_round_trips_every_state_tree_bit_exact(tree):
    assert same(decode_state(encode_state(tree)), tree)


def test_codec_keeps_floats_bit_exact_nan_payloads_infinities_and_negative_zero():
    values = [-0.0, 0.0, math.inf, -math.inf, float_from_bits(0x7FF8000000000000),
              float_from_bits(0x7FF0000000000001),  # signalling NaN
              float_from_bits(0xFFF8DEADBEEF0001), 5e-324, 1.7976931348623157e308]
    back = decode_state(encode_state(values))
    assert [bits(v) for v in back] == [bits(v) for v in values]


@pytest.mark.parametrize("value", [0, 1, -1, 255, -256, (1 << 63) - 1, -(1 << 63), 1 << 63,
                                   -(1 << 63) - 1, 1 << 64, (1 << 80) - 1, -(1 << 4000)])
def test_codec_round_trips_ints_of_any_size(value):
    back = decode_state(encode_state(value))
    assert back == value and type(back) is int


def test_codec_encoding_matches_the_documented_bytes():
    # the examples table of docs/state-images.md
    assert encode_state({"version": 1}) == b"m\x01s\x07versioni\x02"
    assert encode_state([None, True, False]) == b"l\x03NTF"
    assert encode_state(-3) == b"i\x05"
    assert encode_state(300) == b"i\xd8\x04"
    assert encode_state(1 << 63) == b"I\x09" + (1 << 63).to_bytes(9, "little", signed=True)
    assert encode_state(1.5) == b"d" + struct.pack("<d", 1.5)
    assert encode_state(b"\x01\x02") == b"b\x02\x01\x02"
    assert encode_state(bytearray(b"\x01")) == b"B\x01\x01"
    assert encode_state((1, "a")) == b"t\x02i\x02s\x01a"
    assert encode_state({0x10: b""}) == b"m\x01i\x20b\x00"


def test_codec_keeps_list_tuple_bytes_bytearray_and_key_types_apart():
    tree = {1: [1, (1,)], "1": b"1", b"1": bytearray(b"1"), None: (), (2, "x"): []}
    assert same(decode_state(encode_state(tree)), tree)


def test_codec_writes_subclasses_as_their_base_type():
    class Mode(enum.IntEnum):
        FAST = 3

    Point = collections.namedtuple("Point", "x y")
    tree = collections.OrderedDict(mode=Mode.FAST, at=Point(1, 2))
    back = decode_state(encode_state(tree))
    assert same(back, {"mode": 3, "at": (1, 2)})


def test_codec_messages_never_print_the_decimal_of_a_huge_int():
    huge = 1 << 100_000  # str() of it is refused by CPython's digit limit
    with pytest.raises(CorruptImageError, match="<int of 100001 bits> appears twice"):
        decode_state(b"m\x02" + (encode_state(huge) + b"N") * 2)
    with pytest.raises(UnencodableValueError, match=r"\[<int of 100001 bits>\]"):
        encode_state({huge: object()})
    assert check_compatible({"a": huge}, {"a": 1}) == [
        "a: the image has <int of 100001 bits>, this machine has 1"]


def test_codec_bounds_the_nesting_of_tuple_dict_keys():
    key: tuple = ()
    for _ in range(300):  # deeper than the limit (64), shallow enough for Python to hash
        key = (key,)
    with pytest.raises(UnencodableValueError, match="nested too deeply"):
        encode_state({key: 1})


@pytest.mark.parametrize("value, path, reason", [
    ({"nic": {"ram": memoryview(b"x")}}, ["nic", "ram"], "memoryview"),
    ({"a": [1, 2, {3, 4}]}, ["a", 2], "set"),
    ({"cb": print}, ["cb"], "type builtin_function"),  # CPython and PyPy name it differently
    ({"k": {frozenset(): 1}}, ["k", frozenset()], "dict key"),
    ([object()], [0], "object"),
])
def test_codec_refuses_values_outside_the_grammar_naming_their_path(value, path, reason):
    with pytest.raises(UnencodableValueError, match=reason) as info:
        encode_state(value)
    assert info.value.path == path
    assert isinstance(info.value, StateImageError) and isinstance(info.value, TypeError)


def test_codec_refuses_a_cycle_instead_of_recursing_forever():
    loop: list = []
    loop.append(loop)
    with pytest.raises(UnencodableValueError, match="nested too deeply"):
        encode_state(loop)


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out + bytes([n]))


@pytest.mark.parametrize("data, problem", [
    (b"", "missing"),
    (b"l\x01" * 100_000 + b"N", "nesting deeper than 64"),
    (b"m\x01s\x01a" * 100_000 + b"N", "nesting deeper than 64"),
    (b"b" + _varint((1 << 64) - 1), "declares 18446744073709551615 but only 0 bytes remain"),
    (b"s" + _varint(1 << 40) + b"abc", "declares"),
    (b"l" + _varint(1 << 62) + b"NNNN", "declares"),
    (b"m" + _varint(3) + b"NNNN", "declares 3"),
    (b"I" + _varint(1 << 50), "declares"),
    (b"I\x00", "int of zero bytes"),
    (b"i" + b"\xff" * 11 + b"\x01", "longer than 10 bytes"),
    (b"i\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f", "exceeds 64 bits"),
    (b"i\x80\x00", "redundant zero"),
    (b"i\x80", "runs past the end"),
    (b"d\x00\x00", "float of 8 bytes runs past the end"),
    (b"x", "unknown type tag 0x78"),
    (b"NN", "trailing data"),
    (b"s\x02\xc3\x28", "not valid UTF-8"),
    (b"m\x02s\x01ai\x02s\x01ai\x04", "appears twice"),
    (b"m\x01l\x00N", "dict key of type list"),
    (b"m\x01t\x01l\x00N", "dict key of type tuple"),
])
def test_decoder_refuses_hostile_input_with_the_problem_and_offset(data, problem):
    with pytest.raises(CorruptImageError, match="at offset") as info:
        decode_state(data)
    assert problem in str(info.value)
    assert info.value.offset is not None and 0 <= info.value.offset <= len(data)


def test_decoder_limits_the_number_of_values():
    data = encode_state([None] * 1000)
    assert decode_state(data, max_values=1001) == [None] * 1000
    with pytest.raises(CorruptImageError, match="more values than"):
        decode_state(data, max_values=1000)


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_decoder_either_decodes_or_raises_state_image_error_on_any_bytes(data):
    try:
        decode_state(data)
    except StateImageError:
        pass


@settings(max_examples=200)
@given(_trees, st.data())
def test_decoder_survives_any_single_byte_change_of_a_valid_encoding(tree, data):
    enc = bytearray(encode_state(tree))
    i = data.draw(st.integers(0, len(enc) - 1))
    enc[i] = data.draw(st.integers(0, 255))
    try:
        decode_state(bytes(enc))
    except StateImageError:
        pass


# ------------------------------------------------------------------------ images
def test_image_round_trips_config_versions_components_metadata_and_memory():
    mem = bytearray(8 * MIB)
    rng = random.Random(1)
    for page in rng.sample(range(len(mem) // PAGE_SIZE), 200):
        mem[page * PAGE_SIZE + rng.randrange(PAGE_SIZE)] = rng.randrange(1, 256)
    mem[MIB:2 * MIB] = rng.getrandbits(8 * MIB).to_bytes(MIB, "little")  # incompressible
    img = image(mem, metadata={"created": "2026-11-24T21:00:00Z", "note": "after boot"},
                versions=package_versions())
    back = read_image(to_bytes(img))
    assert back.memory == mem and isinstance(back.memory, bytearray)
    assert same(back.components, img.components)
    assert back.config == img.config and back.versions == img.versions
    assert back.metadata == img.metadata and back.format_version == FORMAT_VERSION
    assert back.memory_size == 8 * MIB


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 40 * PAGE_SIZE),
       st.lists(st.tuples(st.integers(0, 40 * PAGE_SIZE), st.binary(min_size=1, max_size=9000)),
                max_size=8),
       st.dictionaries(st.text(max_size=8), _trees, max_size=4),
       st.dictionaries(st.text(max_size=8), _trees, max_size=3))
def test_any_memory_and_states_round_trip_through_an_image(size, writes, components, config):
    mem = bytearray(size)
    for at, data in writes:
        mem[at:at + len(data)] = data[:max(0, size - at)]
    del mem[size:]
    img = StateImage(config=config, versions={}, components=components, memory=mem)
    back = read_image(to_bytes(img))
    assert back.memory == mem
    assert same(back.components, components) and same(back.config, config)


def test_the_same_machine_gives_the_same_bytes():
    mem = bytearray(MIB)
    mem[100_000:100_100] = bytes(range(100))
    assert to_bytes(image(mem)) == to_bytes(image(bytearray(mem)))


def test_package_versions_name_the_installed_pyv86_distributions():
    versions = package_versions()
    assert versions["pyv86-machine"] == __import__("pyv86.machine").machine.__version__
    assert "pyv86-ne2k" in versions and "pyv86-cpu" in versions


@pytest.mark.parametrize("size", [0, 1, PAGE_SIZE - 1, PAGE_SIZE, PAGE_SIZE + 1, 5 * PAGE_SIZE + 7])
def test_image_round_trips_memory_of_any_length(size):
    rng = random.Random(size)
    mem = bytearray(rng.getrandbits(8) for _ in range(size))
    back = read_image(to_bytes(image(mem, config={})))
    assert back.memory == mem


@pytest.mark.parametrize("run_pages", [1, 3, 64, 4096])
@pytest.mark.parametrize("level", [0, 1, 9])
def test_image_round_trips_with_every_run_length_and_level(run_pages, level):
    rng = random.Random(run_pages * 10 + level)
    mem = bytearray(300 * PAGE_SIZE)
    for page in range(0, 300, 7):
        mem[page * PAGE_SIZE:(page + 1) * PAGE_SIZE] = bytes([page % 251 + 1]) * PAGE_SIZE
    mem[100 * PAGE_SIZE:140 * PAGE_SIZE] = rng.getrandbits(8 * 40 * PAGE_SIZE).to_bytes(
        40 * PAGE_SIZE, "little")
    back = read_image(to_bytes(image(mem, config={}), level=level, run_pages=run_pages))
    assert back.memory == mem


def test_image_stores_only_non_zero_pages():
    mem = bytearray(64 * MIB)
    empty = len(to_bytes(image(mem)))
    assert empty < 2048  # 64 MiB of zero pages cost nothing (1 KiB is the card's RAM)
    mem[40 * MIB + 123] = 1  # one page, compressible
    one = len(to_bytes(image(mem)))
    assert 0 < one - empty < 200
    data = to_bytes(image(mem))
    assert data.count(b"PAGE") == 1


def test_image_stores_an_incompressible_page_raw():
    mem = bytearray(4 * PAGE_SIZE)
    mem[PAGE_SIZE:2 * PAGE_SIZE] = random.Random(3).getrandbits(8 * PAGE_SIZE).to_bytes(
        PAGE_SIZE, "little")
    data = to_bytes(image(mem, config={}))
    at = data.index(b"PAGE")
    length = struct.unpack_from("<Q", data, at + 4)[0]
    first, count, encoding = struct.unpack_from("<IIB", data, at + 12)
    assert (first, count, encoding, length) == (1, 1, 0, 9 + PAGE_SIZE)
    assert read_image(data).memory == mem


def test_a_layout_crafted_from_the_document_reads_back():
    page = bytes(range(256)) * 16
    data = craft(head(3 * PAGE_SIZE, metadata={"by": "hand"}), devs(),
                 page_run(0, 1, page), page_run(2, 1, page[::-1], encoding=0))
    back = read_image(data)
    assert back.memory == page + bytes(PAGE_SIZE) + page[::-1]
    assert back.metadata == {"by": "hand"} and back.components == {"cpu": {"version": 1}}


def test_image_reads_from_a_path_a_file_object_a_stream_and_bytes(tmp_path):
    img = image()
    path = tmp_path / "guest.pyv86"
    write_image(path, img)
    write_image(str(tmp_path / "again.pyv86"), img)
    data = path.read_bytes()
    assert (tmp_path / "again.pyv86").read_bytes() == data

    class Stream:  # only read(): a pipe, a socket
        def __init__(self, data):
            self.buf = io.BytesIO(data)

        def read(self, n=-1):
            return self.buf.read(min(n, 1000))  # short reads, as pipes give

    for source in (path, str(path), io.BytesIO(data), Stream(data), data, bytearray(data),
                   memoryview(data)):
        assert read_image(source).memory == img.memory
    with path.open("rb") as f:
        read_image(f)
        assert not f.closed  # the caller's file stays open


def test_a_text_mode_file_gets_a_clear_error(tmp_path):
    path = tmp_path / "x.pyv86"
    write_image(path, image())
    with path.open("r", encoding="latin-1") as f, pytest.raises(StateImageError,
                                                                match="binary file"):
        read_image(f)


def test_writing_to_a_path_replaces_the_file_only_with_a_complete_image(tmp_path):
    path = tmp_path / "guest.pyv86"
    write_image(path, image())
    before = path.read_bytes()
    with pytest.raises(UnencodableValueError, match=r"\['nic'\]\['send'\]"):
        write_image(path, image(components={"nic": {"version": 1, "send": print}}))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["guest.pyv86"]

    def stop(done, total):
        if done:
            raise KeyboardInterrupt

    mem = bytearray(2 * MIB)
    mem[5] = 1
    with pytest.raises(KeyboardInterrupt):
        write_image(path, image(mem), progress=stop)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["guest.pyv86"]


def test_memory_may_be_any_contiguous_buffer():
    words = array.array("I", [0] * 2048)
    words[1500] = 0xDEADBEEF
    back = read_image(to_bytes(image(words, config={})))
    assert back.memory == words.tobytes() and len(back.memory) == 8192
    assert read_image(to_bytes(image(memoryview(bytes(5000)), config={}))).memory == bytes(5000)


def test_writer_refuses_inconsistent_images():
    with pytest.raises(StateImageError, match="memory_size=4096 but the memory holds"):
        write_image(io.BytesIO(), image(config={"memory_size": 4096}))
    with pytest.raises(StateImageError, match="components keys must be str"):
        write_image(io.BytesIO(), image(components={1: {}}))
    with pytest.raises(StateImageError, match="versions"):
        write_image(io.BytesIO(), image(versions={"pyv86-cpu": 1}))
    with pytest.raises(StateImageError, match="memory must be bytes-like"):
        write_image(io.BytesIO(), image(memory=[0, 1]))
    with pytest.raises(ValueError, match="level"):
        write_image(io.BytesIO(), image(), level=10)
    with pytest.raises(ValueError, match="run_pages"):
        write_image(io.BytesIO(), image(), run_pages=0)


def test_progress_reports_memory_bytes_in_order_for_save_and_restore():
    mem = bytearray(4 * MIB)
    for i in range(0, len(mem), 256 * 1024):
        mem[i] = 1
    saved, restored = [], []
    data = io.BytesIO()
    write_image(data, image(mem), progress=lambda d, t: saved.append((d, t)))
    read_image(data.getvalue(), progress=lambda d, t: restored.append((d, t)))
    for calls in (saved, restored):
        assert calls[0] == (0, 4 * MIB) and calls[-1] == (4 * MIB, 4 * MIB)
        done = [d for d, _ in calls]
        assert done == sorted(done) and len(calls) >= 16


def test_read_image_info_gives_the_header_without_the_memory(tmp_path):
    path = tmp_path / "x.pyv86"
    img = image(metadata={"note": "n"})
    write_image(path, img)
    info = read_image_info(path)
    assert isinstance(info, ImageInfo)
    assert (info.format_version, info.memory_size, info.config, info.versions, info.metadata,
            info.file_size) == (1, 2 * MIB, img.config, img.versions, {"note": "n"},
                                path.stat().st_size)
    assert check_compatible(info, img.config) == []


# ------------------------------------------------------------------------ damaged files
def test_truncation_at_every_byte_offset_is_reported_as_truncation():
    data = small_image_bytes()
    assert 200 < len(data) < 2000
    for cut in range(len(data)):
        with pytest.raises(TruncatedImageError, match="truncated") as info:
            read_image(data[:cut])
        assert info.value.offset == cut


def test_every_single_byte_corruption_is_detected():
    data = small_image_bytes()
    for i in range(len(data)):
        for flip in (0x01, 0x80, 0xFF):
            bad = bytearray(data)
            bad[i] ^= flip
            with pytest.raises(StateImageError):
                read_image(bytes(bad))


def test_random_corruption_of_a_larger_image_is_detected_as_corruption():
    rng = random.Random(5)
    mem = bytearray(MIB)
    for page in range(0, 256, 3):
        mem[page * PAGE_SIZE:page * PAGE_SIZE + 64] = rng.getrandbits(512).to_bytes(64, "little")
    data = to_bytes(image(mem))
    for _ in range(100):
        bad = bytearray(data)
        for _ in range(rng.randrange(1, 4)):
            bad[rng.randrange(16, len(bad))] ^= 1 << rng.randrange(8)
        with pytest.raises((CorruptImageError, TruncatedImageError)):
            read_image(bytes(bad))


def test_a_page_changed_with_matching_section_crc_is_caught_by_the_sha256():
    body = file_header() + head() + devs()
    good = page_run(0, 1, b"\x01" * PAGE_SIZE)
    trailer = section(b"END.", hashlib.sha256(body + good).digest())
    forged = page_run(0, 1, b"\x02" * PAGE_SIZE)  # its own CRC is right
    with pytest.raises(CorruptImageError, match="SHA-256"):
        read_image(body + forged + trailer)
    read_image(body + good + trailer)


def test_a_dropped_page_section_is_detected():
    body = file_header() + head() + devs()
    runs = page_run(0, 1, b"\x01" * PAGE_SIZE) + page_run(1, 1, b"\x02" * PAGE_SIZE)
    complete = finish(body + runs)
    dropped = complete.replace(page_run(1, 1, b"\x02" * PAGE_SIZE), b"")
    with pytest.raises(CorruptImageError, match="SHA-256"):
        read_image(dropped)


def test_data_after_the_end_section_is_corruption():
    with pytest.raises(CorruptImageError, match="data follows the END section"):
        read_image(small_image_bytes() + b"\x00")


@pytest.mark.parametrize("start, says", [
    (b"\x76\x86\x76\x86\x06\x00\x00\x00" + bytes(8), "v86 state file"),
    (b"\x28\xb5\x2f\xfd" + bytes(20), "zstd"),
    (b"\x1f\x8b\x08\x00" + bytes(20), "gzip"),
    (b"QEVM\x00\x00\x00\x03" + bytes(8), "QEMU"),
    (b"\x7fELF\x01\x01\x01" + bytes(20), "ELF"),
    (b"hello, this is text\n", "starts with b'hello, t'"),
    (b"PYV86IM", "starts with"),  # a prefix of the magic, then something else
])
def test_a_foreign_file_says_what_it_looks_like(start, says):
    data = start if start != b"PYV86IM" else b"PYV86IMX" + bytes(30)
    with pytest.raises(ForeignFileError, match="not a pyv86 state image") as info:
        read_image(data)
    assert says in str(info.value)


def test_an_empty_file_is_truncated():
    with pytest.raises(TruncatedImageError, match="empty"):
        read_image(b"")


def test_a_newer_format_version_asks_for_a_newer_reader():
    data = craft(head(), devs(), version=FORMAT_VERSION + 1)
    with pytest.raises(UnsupportedVersionError,
                       match=f"format version {FORMAT_VERSION + 1} is newer.*upgrade"):
        read_image(data)
    with pytest.raises(UnsupportedVersionError):
        read_image_info(data)


def test_unknown_flags_ask_for_a_newer_reader():
    with pytest.raises(UnsupportedVersionError, match="flags 0x0004"):
        read_image(craft(head(), devs(), flags=4))


def test_a_damaged_version_field_is_corruption_not_a_newer_version():
    data = bytearray(craft(head(), devs()))
    data[8] = 7  # without fixing the file header's CRC
    with pytest.raises(CorruptImageError, match="file header"):
        read_image(bytes(data))


def test_an_unknown_critical_section_asks_for_a_newer_reader():
    data = craft(head(), devs(), section(b"VGA0", b"\x00" * 10))
    with pytest.raises(UnsupportedVersionError, match=r"section VGA0.*newer"):
        read_image(data)


def test_an_unknown_ancillary_section_is_skipped():
    data = craft(head(), section(b"note", b"made by a later writer"), devs(),
                 page_run(1, 1, b"\x05" * PAGE_SIZE), section(b"xtra", b""))
    assert read_image(data).memory == bytes(PAGE_SIZE) + b"\x05" * PAGE_SIZE


@pytest.mark.parametrize("sections, problem", [
    ((devs(), head()), "first section is DEVS, not HEAD"),
    ((head(),), "before any DEVS"),
    ((), "before any HEAD"),
    ((head(), devs(), devs()), "second DEVS"),
    ((head(), head(), devs()), "second HEAD"),
    ((head(), page_run(0, 1, bytes(PAGE_SIZE)), devs()), "comes before DEVS"),
    ((head(), devs(), page_run(1, 1, b"\x01" * PAGE_SIZE), page_run(0, 1, b"\x01" * PAGE_SIZE)),
     "before the end of the previous run"),
    ((head(), devs(), page_run(0, 2, b"\x01" * 2 * PAGE_SIZE), page_run(1, 1, b"\x01" * PAGE_SIZE)),
     "before the end of the previous run"),
    ((head(), devs(), page_run(1, 2, b"\x01" * 2 * PAGE_SIZE)), "beyond the memory's 2 pages"),
    ((head(), devs(), page_run(0, 0, b"")), "holds 0 pages"),
    ((head(), devs(), page_run(0, 1, b"\x01" * 100, encoding=0)), "holds 100 bytes, not 4096"),
    ((head(), devs(), page_run(0, 1, b"\x01" * 100)), "exactly 4096 bytes"),
    ((head(), devs(), page_run(0, 1, b"\x01" * 2 * PAGE_SIZE)), "exactly 4096 bytes"),
    ((head(), devs(), page_run(0, 1, b"\x01" * PAGE_SIZE, encoding=7)), "unknown encoding 7"),
    ((head(), devs(), section(b"PAGE", struct.pack("<IIB", 0, 1, 1) + b"not zlib")),
     "PAGE section at offset"),
    ((head(), devs(), section(b"PAGE", b"\x00")), "too short"),
    ((head(), devs(), section(b"PAGE", struct.pack("<IIB", 0, 1, 1) + zlib.compress(bytes(PAGE_SIZE)) + b"junk")),
     "exactly 4096 bytes"),
    ((head(page_size=512), devs()), "page_size 512"),
    ((head(memory_size=-1), devs()), "bad memory_size -1"),
    ((head(memory_size=True), devs()), "bad memory_size True"),
    ((head(versions={"x": 1}), devs()), "versions must be str"),
    ((head(config=[1]), devs()), "'config' must be a dict"),
    ((section(b"HEAD", encode_state([1])), devs()), "HEAD section must be a dict"),
    ((head(), section(b"DEVS", encode_state({1: {}}))), "DEVS section must be a dict with str keys"),
    ((head(), section(b"DEVS", b"m\x01s\x01a")), "DEVS section: a value is missing"),
    ((head(), section(b"a b!", b"")), "bad section tag"),
])
def test_a_well_checksummed_image_that_breaks_a_rule_is_corruption(sections, problem):
    with pytest.raises(CorruptImageError, match="corrupted") as info:
        read_image(craft(*sections))
    assert problem in str(info.value)


def test_huge_declared_lengths_cost_no_memory():
    # a HEAD declaring 2**60 bytes is refused at once; one within the limit in a short
    # file reads as truncation, after reading only what is there
    huge = file_header() + b"HEAD" + struct.pack("<Q", 1 << 60)
    with pytest.raises(CorruptImageError, match="more than its limit"):
        read_image(huge + b"x" * 100)
    within = file_header() + b"HEAD" + struct.pack("<Q", 200 << 20)
    with pytest.raises(TruncatedImageError, match="ends at offset 128"):
        read_image(within + b"x" * 100)
    page = file_header() + head() + devs() + b"PAGE" + struct.pack("<Q", 1 << 40)
    with pytest.raises(CorruptImageError, match=r"PAGE .*more than its limit"):
        read_image(page)


def test_a_memory_size_over_the_limit_is_refused_before_allocating():
    data = craft(head(memory_size=1 << 40), devs())
    with pytest.raises(StateImageError, match="1099511627776 bytes of memory, more than the "
                                              "limit of 2147483648"):
        read_image(data)
    small = to_bytes(image(bytearray(8 * MIB)))
    with pytest.raises(StateImageError, match="limit of 4194304"):
        read_image(small, memory_limit=4 * MIB)
    assert len(read_image(small, memory_limit=8 * MIB).memory) == 8 * MIB


def test_a_state_section_over_the_state_limit_is_refused():
    data = to_bytes(image())
    with pytest.raises(CorruptImageError, match=r"DEVS .*more than its limit of 1000"):
        read_image(data, state_limit=1000)


# ------------------------------------------------------------------------ compatibility
def test_check_compatible_names_each_mismatch():
    saved = {"memory_size": 64 * MIB, "nic": {"model": "rtl8029", "slot": 5},
             "clock": "deterministic", "bios": None}
    ours = {"memory_size": 32 * MIB, "nic": {"model": "ne2000", "slot": 5},
            "clock": "deterministic", "cpu": "486"}
    assert check_compatible(saved, ours) == [
        "bios: the image has None, this machine does not set it",
        "cpu: the image does not record it, this machine has '486'",
        "memory_size: the image has 64 MiB, this machine has 32 MiB",
        "nic.model: the image has 'rtl8029', this machine has 'ne2000'",
    ]
    assert check_compatible(saved, ours, ignore=["bios", "cpu", "nic"]) == [
        "memory_size: the image has 64 MiB, this machine has 32 MiB"]
    assert check_compatible(saved, dict(saved)) == []
    assert check_compatible({"a": True}, {"a": 1}) == [
        "a: the image has True, this machine has 1"]


def test_read_image_with_a_different_configuration_raises_naming_each_mismatch():
    data = to_bytes(image())
    with pytest.raises(ConfigMismatchError) as info:
        read_image(data, expected_config={"memory_size": 4 * MIB, "nic": {"model": "ne2000"}})
    assert info.value.mismatches == [
        "memory_size: the image has 2 MiB, this machine has 4 MiB",
        "nic.model: the image has 'rtl8029', this machine has 'ne2000'"]
    assert str(info.value) == ("the state image does not fit this machine: memory_size: the "
                               "image has 2 MiB, this machine has 4 MiB; nic.model: the image "
                               "has 'rtl8029', this machine has 'ne2000'")
    back = read_image(data, expected_config={"memory_size": 2 * MIB, "nic": {"model": "x"}},
                      ignore=["nic.model"])
    assert back.config["nic"] == {"model": "rtl8029"}


def test_a_configuration_mismatch_is_reported_before_memory_is_read():
    body = craft(head(memory_size=2 * PAGE_SIZE), devs(),
                 section(b"PAGE", struct.pack("<IIB", 0, 1, 1) + b"garbage"))
    with pytest.raises(ConfigMismatchError, match="memory_size"):
        read_image(body, expected_config={"memory_size": 3 * PAGE_SIZE})


# ------------------------------------------------------------------------ versions
def test_an_older_format_version_is_migrated_by_its_hook(monkeypatch):
    data = to_bytes(image())  # written as version 1
    seen = []

    def v1_to_v2(parts):
        seen.append(sorted(parts))
        parts["components"]["renamed"] = parts["components"].pop("nic")
        return parts

    monkeypatch.setattr(stateimage, "FORMAT_VERSION", 2)
    monkeypatch.setattr(stateimage, "_MIGRATIONS", {1: v1_to_v2})
    back = read_image(data)
    assert seen == [["components", "header"]]
    assert "renamed" in back.components and "nic" not in back.components
    assert back.format_version == 1
    monkeypatch.setattr(stateimage, "_MIGRATIONS", {})
    with pytest.raises(UnsupportedVersionError, match="no migration from state image format "
                                                      "version 1 to 2"):
        read_image(data)


# ------------------------------------------------------------------------ real components
def test_a_cpu_restored_from_an_image_carries_on_exactly_like_the_original():
    from pyv86.cpu import CPU, NullIO, SimpleMemory

    def machine():
        mem = SimpleMemory(1 << 20)
        cpu = CPU(mem, NullIO())
        for s in range(6):
            cpu.set_segment(s, 0, 0, 0xFFFF, 0x9B if s == 1 else 0x93)
        return mem, cpu

    mem, cpu = machine()
    # mov cx, 10 ; l: add ax, cx ; loop l ; hlt
    mem.ram[0x1000:0x1008] = b"\xb9\x0a\x00\x01\xc8\xe2\xfc\xf4"
    cpu.eip = 0x1000
    cpu.run(7)
    data = to_bytes(StateImage(config={"memory_size": len(mem.ram)}, versions=package_versions(),
                               components={"cpu": cpu.save_state()}, memory=mem.ram))
    cpu.run(1000)

    back = read_image(data, expected_config={"memory_size": 1 << 20})
    mem2, cpu2 = machine()
    mem2.ram[:] = back.memory
    cpu2.restore_state(back.components["cpu"])
    cpu2.run(1000)
    assert cpu2.halted and cpu2.get_register("ax") == cpu.get_register("ax") == 55
    assert cpu2.save_state() == cpu.save_state()


def test_a_network_card_state_survives_an_image():
    from pyv86.ne2k import NE2000

    card = NE2000("rtl8029", mac="52:54:00:12:34:56")
    state = card.save_state()
    back = read_image(to_bytes(image(components={"nic": state}))).components["nic"]
    assert same(back, state)
    fresh = NE2000("rtl8029", mac="52:54:00:00:00:01")
    fresh.restore_state(back, mac_mode="preserve_mac_from_state_image")
    assert same(fresh.save_state(), state)


def test_magic_is_what_the_document_says():
    assert MAGIC == b"PYV86IMG" and small_image_bytes()[:8] == MAGIC


def test_the_module_command_verifies_images_and_prints_their_headers(tmp_path, capsys):
    good = tmp_path / "good.pyv86"
    mem = bytearray(2 * MIB)
    mem[PAGE_SIZE * 3] = 1
    write_image(good, image(mem, metadata={"note": "booted"}))
    bad = tmp_path / "bad.pyv86"
    bad.write_bytes(good.read_bytes()[:-5])
    assert stateimage.main([str(good)]) == 0
    out = capsys.readouterr().out
    assert f"{good}: sound, format version 1, {good.stat().st_size} bytes" in out
    assert "memory: 2 MiB, 1 non-zero pages of 512" in out
    assert "config: memory_size=2 MiB, nic.model='rtl8029'" in out
    assert "metadata: note='booted'" in out and "components: cpu, nic" in out
    assert stateimage.main([str(good), str(bad), str(tmp_path / "missing")]) == 1
    out = capsys.readouterr().out
    assert f"{bad}: state image truncated" in out and "No such file" in out
    assert stateimage.main([]) == 2

"""The tagged binary encoding of state trees (the values components put in their state dicts).

Grammar (docs/state-images.md has the table)::

    value  := 'N' | 'F' | 'T'                     None, False, True
            | 'i' zigzag-varint                    int in [-2**63, 2**63)
            | 'I' varint(n) n-bytes                any other int, n bytes little-endian,
                                                   two's complement
            | 'd' 8-bytes                          float, IEEE 754 binary64 little-endian
            | 's' varint(n) n-bytes                str, UTF-8 (lone surrogates kept)
            | 'b' varint(n) n-bytes                bytes
            | 'B' varint(n) n-bytes                bytearray
            | 'l' varint(n) value*n                list
            | 't' varint(n) value*n                tuple
            | 'm' varint(n) (value value)*n        dict: key, value; keys hashable, distinct

Nothing is ever evaluated or imported while decoding: the decoder builds only the eleven
types above. It is bounded: every declared length or count is checked against the bytes that
remain before anything is allocated, nesting is limited to ``max_depth`` and the number of
values to ``max_values``, and every problem raises :class:`StateImageError` naming it and the
byte offset.
"""

from __future__ import annotations

import struct
from typing import Any, Callable, Dict, List, NoReturn, Optional, Tuple

from ._stateimage_errors import CorruptImageError, UnencodableValueError

__all__ = ["DEFAULT_MAX_DEPTH", "DEFAULT_MAX_VALUES", "decode_state", "encode_state", "short_repr"]

DEFAULT_MAX_DEPTH = 64
DEFAULT_MAX_VALUES = 1 << 22
MAX_DEPTH_LIMIT = 200  # keeps the recursive coder far below Python's recursion limit

T_NONE, T_FALSE, T_TRUE = 0x4E, 0x46, 0x54  # N F T
T_INT, T_BIGINT, T_FLOAT = 0x69, 0x49, 0x64  # i I d
T_STR, T_BYTES, T_BYTEARRAY = 0x73, 0x62, 0x42  # s b B
T_LIST, T_TUPLE, T_DICT = 0x6C, 0x74, 0x6D  # l t m

_INT_MIN, _INT_MAX = -(1 << 63), (1 << 63) - 1
_DOUBLE = struct.Struct("<d")
_ONE_BYTE = [bytes([i]) for i in range(256)]


# ---------------------------------------------------------------------------- varints
def encode_varint(value: int) -> bytes:
    """Unsigned LEB128 of ``0 <= value < 2**64`` (1 to 10 bytes)."""
    if value < 0x80:
        return _ONE_BYTE[value]
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _zigzag(value: int) -> int:
    return (value << 1) if value >= 0 else ((-value << 1) - 1)


def _unzigzag(value: int) -> int:
    return (value >> 1) if not value & 1 else -((value + 1) >> 1)


# ---------------------------------------------------------------------------- encoding
def encode_state(value: Any, *, max_depth: int = DEFAULT_MAX_DEPTH) -> bytes:
    """Encode a state tree. Raises :class:`UnencodableValueError` naming the path of the first
    value outside the grammar (``bool``/``int``/``float``/``str`` subclasses such as IntEnum
    are written as their base type) or of nesting deeper than ``max_depth`` (also how a
    cycle shows)."""
    if not 0 <= max_depth <= MAX_DEPTH_LIMIT:
        raise ValueError(f"max_depth must be 0-{MAX_DEPTH_LIMIT}, got {max_depth}")
    out: List[bytes] = []
    try:
        _encode(value, out.append, max_depth)
    except UnencodableValueError as exc:
        keys = list(reversed(exc.path))
        path = "".join(f"[{short_repr(k)}]" for k in keys)
        raise UnencodableValueError(f"state value at {path or 'the top'}: {exc.reason}",
                                    path=keys, reason=exc.reason) from None
    return b"".join(out)


def _encode(v: Any, put: Callable[[bytes], Any], depth: int) -> None:
    t = type(v)
    if t is int:
        if _INT_MIN <= v <= _INT_MAX:
            put(b"i")
            put(encode_varint(_zigzag(v)))
        else:
            n = (v.bit_length() + 8) // 8
            put(b"I")
            put(encode_varint(n))
            put(v.to_bytes(n, "little", signed=True))
    elif t is str:
        data = v.encode("utf-8", "surrogatepass")
        put(b"s")
        put(encode_varint(len(data)))
        put(data)
    elif t is bool:
        put(b"T" if v else b"F")
    elif v is None:
        put(b"N")
    elif t is bytes or t is bytearray:
        put(b"b" if t is bytes else b"B")
        put(encode_varint(len(v)))
        put(bytes(v) if t is bytearray else v)
    elif t is float:
        put(b"d")
        put(_DOUBLE.pack(v))
    elif t is dict or t is list or t is tuple:
        if depth <= 0:
            raise UnencodableValueError("", path=[], reason="nested too deeply (a cycle?)")
        if t is dict:
            put(b"m")
            put(encode_varint(len(v)))
            for key, item in v.items():
                try:
                    problem = _key_problem(key, depth - 1)
                    if problem:
                        raise UnencodableValueError("", path=[], reason=problem)
                    _encode(key, put, depth - 1)
                    _encode(item, put, depth - 1)
                except UnencodableValueError as exc:
                    exc.path.append(key)
                    raise
        else:
            put(b"l" if t is list else b"t")
            put(encode_varint(len(v)))
            for index, item in enumerate(v):
                try:
                    _encode(item, put, depth - 1)
                except UnencodableValueError as exc:
                    exc.path.append(index)
                    raise
    else:
        for base in _BASES:  # subclasses (IntEnum, OrderedDict, namedtuple): the base type
            if isinstance(v, base):
                _encode(base(v), put, depth)
                return
        raise UnencodableValueError("", path=[], reason=f"type {t.__name__} is not a state "
                                    "value (None, bool, int, float, str, bytes, bytearray, "
                                    "list, tuple, dict)")


# bool cannot be subclassed; typed as plain callables so each converts its own instances
_BASES: Tuple[Any, ...] = (int, float, str, bytes, bytearray, dict, list, tuple)


def _key_problem(key: Any, depth: int) -> Optional[str]:
    """Why ``key`` cannot be a dict key of a state tree, or None when it can."""
    if key is None or isinstance(key, (bool, int, float, str, bytes)):
        return None
    if isinstance(key, tuple):
        if depth <= 0:
            return "nested too deeply (a cycle?)"
        for k in key:
            problem = _key_problem(k, depth - 1)
            if problem:
                return problem
        return None
    return f"dict key {short_repr(key)} of type {type(key).__name__} is not allowed"


# ---------------------------------------------------------------------------- decoding
def decode_state(data: Any, *, max_depth: int = DEFAULT_MAX_DEPTH,
                 max_values: int = DEFAULT_MAX_VALUES, base_offset: int = 0,
                 what: str = "state") -> Any:
    """Decode one value that fills ``data`` exactly. Errors are :class:`StateImageError`
    subclasses naming the problem and its offset (``base_offset`` + position in ``data``)."""
    if not 0 <= max_depth <= MAX_DEPTH_LIMIT:
        raise ValueError(f"max_depth must be 0-{MAX_DEPTH_LIMIT}, got {max_depth}")
    dec = _Decoder(bytes(data), max_depth, max_values, base_offset, what)
    value = dec.value(max_depth)
    if dec.pos != len(dec.data):
        dec.fail(f"{len(dec.data) - dec.pos} bytes of trailing data after the value")
    return value


class _Decoder:
    __slots__ = ("base", "data", "left", "max_depth", "pos", "what")

    def __init__(self, data: bytes, max_depth: int, max_values: int, base: int, what: str):
        self.data = data
        self.pos = 0
        self.max_depth = max_depth
        self.left = max_values
        self.base = base
        self.what = what

    def fail(self, problem: str, at: Optional[int] = None) -> NoReturn:
        offset = self.base + (self.pos if at is None else at)
        raise CorruptImageError(f"{self.what}: {problem} at offset {offset}", offset=offset)

    def take(self, n: int, what: str) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            self.fail(f"{what} of {n} bytes runs past the end ({len(self.data) - self.pos} "
                      "bytes left)")
        chunk = self.data[self.pos:end]
        self.pos = end
        return chunk

    def varint(self) -> int:
        data, pos, start = self.data, self.pos, self.pos
        result = shift = 0
        while True:
            if pos >= len(data):
                self.fail("varint runs past the end", at=start)
            b = data[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
            if shift >= 70:
                self.fail("varint longer than 10 bytes", at=start)
        if result >= 1 << 64:
            self.fail("varint exceeds 64 bits", at=start)
        if b == 0 and pos - start > 1:
            self.fail("varint has a redundant zero byte", at=start)
        self.pos = pos
        return result

    def count(self, min_item_bytes: int, what: str) -> int:
        start = self.pos
        n = self.varint()
        if n * min_item_bytes > len(self.data) - self.pos:
            self.fail(f"{what} declares {n} but only {len(self.data) - self.pos} bytes remain",
                      at=start)
        return n

    def value(self, depth: int) -> Any:
        self.left -= 1
        if self.left < 0:
            self.fail("more values than the decoder's limit")
        if self.pos >= len(self.data):
            self.fail("a value is missing (data ends)")
        start = self.pos
        tag = self.data[start]
        self.pos += 1
        if tag == T_INT:
            return _unzigzag(self.varint())
        if tag == T_STR:
            raw = self.take(self.count(1, "string length"), "string")
            try:
                return raw.decode("utf-8", "surrogatepass")
            except UnicodeDecodeError as exc:
                self.fail(f"string is not valid UTF-8 ({exc.reason})", at=start)
        if tag == T_NONE:
            return None
        if tag == T_TRUE:
            return True
        if tag == T_FALSE:
            return False
        if tag == T_BYTES:
            return self.take(self.count(1, "bytes length"), "bytes")
        if tag == T_BYTEARRAY:
            return bytearray(self.take(self.count(1, "bytearray length"), "bytearray"))
        if tag == T_FLOAT:
            return _DOUBLE.unpack(self.take(8, "float"))[0]
        if tag == T_BIGINT:
            n = self.count(1, "int length")
            if n == 0:
                self.fail("int of zero bytes", at=start)
            return int.from_bytes(self.take(n, "int"), "little", signed=True)
        if tag in (T_LIST, T_TUPLE, T_DICT):
            if depth <= 0:
                self.fail(f"nesting deeper than {self.max_depth} levels", at=start)
            if tag == T_DICT:
                return self._dict(depth - 1, start)
            n = self.count(1, "list length" if tag == T_LIST else "tuple length")
            items = [self.value(depth - 1) for _ in range(n)]
            return items if tag == T_LIST else tuple(items)
        self.fail(f"unknown type tag 0x{tag:02x}", at=start)

    def _dict(self, depth: int, start: int) -> Dict[Any, Any]:
        n = self.count(2, "dict size")
        out: Dict[Any, Any] = {}
        for _ in range(n):
            key_at = self.pos
            key = self.value(depth)
            if _key_problem(key, self.max_depth):
                self.fail(f"dict key of type {type(key).__name__} is not allowed", at=key_at)
            if key in out:
                self.fail(f"dict key {short_repr(key)} appears twice", at=key_at)
            out[key] = self.value(depth)
        return out


def short_repr(value: Any, limit: int = 60) -> str:
    """repr for messages: shortened, and never the (slow, limited) decimal of a huge int."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"<int of {value.bit_length()} bits>"
    if isinstance(value, (tuple, list)) and len(value) <= 8:
        inner = ", ".join(short_repr(v, limit) for v in value)
        text = f"({inner})" if isinstance(value, tuple) else f"[{inner}]"
    else:
        try:
            text = repr(value)
        except ValueError:  # e.g. an int nested somewhere, over the str digits limit
            text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


"""State image files: a whole machine (configuration, device states, RAM) in one file.

The format is documented byte by byte in ``docs/state-images.md``. In short::

    file header   "PYV86IMG", format version, flags, CRC-32 of these 12 bytes
    sections      tag (4 ASCII bytes), payload length (u64), payload, CRC-32
        HEAD      encoded dict: memory size, page size, package versions, config, metadata
        DEVS      encoded dict: component name -> state dict
        PAGE*     one run of consecutive non-zero RAM pages, zlib-compressed or raw
        END.      SHA-256 of every byte before this section; nothing may follow

Values in HEAD and DEVS use the tagged encoding of :mod:`._stateimage_codec` (never pickle,
never eval). Reading checks everything, so :func:`read_image` either returns a complete,
verified :class:`StateImage` or raises a :class:`StateImageError` subclass naming the
problem; the caller applies the image only after that, so nothing half-restores.

Example::

    write_image("guest.pyv86", StateImage(config={"memory_size": 64 << 20},
                versions=package_versions(), components={"cpu": cpu.save_state()},
                memory=ram))
    image = read_image("guest.pyv86", expected_config={"memory_size": 64 << 20})
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from dataclasses import dataclass, field
from typing import (
    IO,
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Tuple,
    Union,
)

from ._stateimage_codec import decode_state, encode_state, short_repr
from ._stateimage_errors import (
    ConfigMismatchError,
    CorruptImageError,
    ForeignFileError,
    StateImageError,
    TruncatedImageError,
    UnencodableValueError,
    UnsupportedVersionError,
)

__all__ = [
    "DEFAULT_LEVEL",
    "DEFAULT_MEMORY_LIMIT",
    "DEFAULT_STATE_LIMIT",
    "FORMAT_VERSION",
    "MAGIC",
    "PAGE_SIZE",
    "RUN_PAGES",
    "ConfigMismatchError",
    "CorruptImageError",
    "ForeignFileError",
    "ImageInfo",
    "StateImage",
    "StateImageError",
    "TruncatedImageError",
    "UnencodableValueError",
    "UnsupportedVersionError",
    "check_compatible",
    "decode_state",
    "encode_state",
    "package_versions",
    "read_image",
    "read_image_info",
    "write_image",
]

MAGIC = b"PYV86IMG"
FORMAT_VERSION = 1
PAGE_SIZE = 4096
RUN_PAGES = 64  # pages per PAGE section the writer produces at most (256 KiB)
MAX_RUN_PAGES = 4096  # what a reader accepts per PAGE section (16 MiB)
DEFAULT_LEVEL = 1  # zlib level: see docs/state-images.md for the measurements
DEFAULT_MEMORY_LIMIT = 2 << 30  # the largest Machine; a reader allocates what HEAD declares
DEFAULT_STATE_LIMIT = 256 << 20  # bytes of one HEAD, DEVS or ancillary section

ENC_RAW, ENC_ZLIB = 0, 1

_FILE_HEADER = struct.Struct("<8sHH")  # magic, format version, flags
_U32 = struct.Struct("<I")
_SECTION = struct.Struct("<4sQ")  # tag, payload length
_RUN = struct.Struct("<IIB")  # first page, page count, encoding
_HEADER_SIZE = _FILE_HEADER.size + _U32.size  # 16
_CHUNK = 1 << 20  # reads never ask for more than this at once
_ZERO_PAGE = bytes(PAGE_SIZE)

TAG_HEAD, TAG_DEVS, TAG_PAGE, TAG_END = b"HEAD", b"DEVS", b"PAGE", b"END."
_TAG_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._")

Progress = Callable[[int, int], Any]
Source = Union[str, "os.PathLike[str]", IO[bytes], bytes, bytearray, memoryview]
Target = Union[str, "os.PathLike[str]", IO[bytes]]

# Migration hooks: _MIGRATIONS[n] turns the decoded parts of a version-n image
# ({"header": dict, "components": dict}) into those of version n + 1. The reader applies
# them in order up to FORMAT_VERSION. Version 1 is the first: no hooks yet.
_MIGRATIONS: Dict[int, Callable[[Dict[str, Any]], Dict[str, Any]]] = {}


@dataclass
class StateImage:
    """Everything a state image holds.

    ``config``: the machine configuration that matters for restoring (memory size, card
    model, ...; see :func:`check_compatible`); ``versions``: distribution name -> version of
    the packages that produced it; ``components``: component name -> the dict its
    ``save_state()`` returned; ``memory``: all of physical RAM (bytes-like, its length is the
    memory size); ``metadata``: free-form notes (creation time, a description, ...).
    ``format_version`` is the version of the file an image was read from.
    """

    config: Dict[str, Any]
    versions: Dict[str, str]
    components: Dict[str, Any]
    memory: Any
    metadata: Dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @property
    def memory_size(self) -> int:
        return len(self.memory)


@dataclass
class ImageInfo:
    """The header of an image, read without its device states and memory."""

    format_version: int
    memory_size: int
    versions: Dict[str, str]
    config: Dict[str, Any]
    metadata: Dict[str, Any]
    file_size: Optional[int] = None


def package_versions() -> Dict[str, str]:
    """Versions of the installed pyv86 distributions, for :attr:`StateImage.versions`."""
    from importlib import metadata

    out: Dict[str, str] = {}
    for name in ("pyv86-cpu", "pyv86-pci", "pyv86-ne2k", "pyv86-relay-client",
                 "pyv86-machine"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


# ================================================================================ writing
class _Writer:
    def __init__(self, f: IO[bytes]):
        self.f = f
        self.sha = hashlib.sha256()
        self.size = 0

    def raw(self, data: Any) -> None:
        self.f.write(data)
        self.sha.update(data)
        self.size += len(data)

    def section(self, tag: bytes, *parts: Any) -> None:
        length = sum(len(p) for p in parts)
        head = _SECTION.pack(tag, length)
        crc = zlib.crc32(head)
        self.raw(head)
        for p in parts:
            crc = zlib.crc32(p, crc)
            self.raw(p)
        self.raw(_U32.pack(crc))


def _memory_view(memory: Any) -> memoryview:
    try:
        mv = memoryview(memory)
    except TypeError:
        raise StateImageError(f"memory must be bytes-like, got {type(memory).__name__}"
                              ) from None
    if mv.ndim != 1 or mv.format != "B":
        try:
            mv = mv.cast("B")
        except TypeError as exc:
            raise StateImageError(f"memory must be a contiguous buffer: {exc}") from None
    return mv


def nonzero_runs(memory: Any, run_pages: int = RUN_PAGES) -> Iterator[Tuple[int, int]]:
    """(first page, page count) of each run of consecutive pages holding a non-zero byte,
    runs at most ``run_pages`` long. ``memory`` is bytes or bytearray."""
    size = len(memory)
    full = size // PAGE_SIZE
    start = -1
    count = 0
    is_zero = memory.startswith  # fastest page test on CPython and PyPy alike
    zero = _ZERO_PAGE
    for page in range(full):
        off = page * PAGE_SIZE
        if is_zero(zero, off, off + PAGE_SIZE):
            if count:
                yield start, count
                count = 0
        else:
            if not count:
                start = page
            count += 1
            if count == run_pages:
                yield start, count
                count = 0
    if size % PAGE_SIZE:  # a last, partial page
        off = full * PAGE_SIZE
        if not is_zero(zero[: size - off], off, size):
            if not count:
                start = full
            count += 1
    if count:
        yield start, count


def write_image(target: Target, image: StateImage, *, progress: Optional[Progress] = None,
                level: int = DEFAULT_LEVEL, run_pages: int = RUN_PAGES) -> int:
    """Write ``image`` to a path or a binary file object; returns the bytes written.

    A path is written to a temporary file next to it and renamed into place, so an existing
    image under that name is replaced only by a complete one. ``progress(done, total)``
    is called with bytes of memory stored so far. ``level`` is the zlib level (0-9) and
    ``run_pages`` the longest run of pages in one PAGE section (1-4096).

    Raises :class:`UnencodableValueError` (a :class:`StateImageError`) naming the path of a
    state value outside the format's grammar, before anything is written to a path.
    """
    if not 0 <= level <= 9:
        raise ValueError(f"zlib level must be 0-9, got {level}")
    if not 1 <= run_pages <= MAX_RUN_PAGES:
        raise ValueError(f"run_pages must be 1-{MAX_RUN_PAGES}, got {run_pages}")
    head, devs = _encode_parts(image)
    if isinstance(target, (str, os.PathLike)):
        path = os.fspath(target)
        tmp = f"{path}.tmp-{os.getpid()}"
        try:
            with open(tmp, "wb") as f:
                size = _write(f, image, head, devs, progress, level, run_pages)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        return size
    return _write(target, image, head, devs, progress, level, run_pages)


def _check_tree_keys(what: str, value: Any, str_keys: bool = True) -> Dict[str, Any]:
    if not isinstance(value, dict):
        raise StateImageError(f"{what} must be a dict, got {type(value).__name__}")
    if str_keys:
        for k in value:
            if not isinstance(k, str):
                raise StateImageError(f"{what} keys must be str, got {k!r}")
    return value


def _encode_parts(image: StateImage) -> Tuple[bytes, bytes]:
    config = _check_tree_keys("config", image.config)
    versions = _check_tree_keys("versions", image.versions)
    for k, v in versions.items():
        if not isinstance(v, str):
            raise StateImageError(f"versions[{k!r}] must be a str, got {v!r}")
    components = _check_tree_keys("components", image.components)
    metadata = _check_tree_keys("metadata", image.metadata)
    size = len(_memory_view(image.memory))
    if "memory_size" in config and config["memory_size"] != size:
        raise StateImageError(f"config says memory_size={config['memory_size']!r} but the "
                              f"memory holds {size} bytes")
    header = {"memory_size": size, "page_size": PAGE_SIZE, "versions": versions,
              "config": config, "metadata": metadata}
    try:
        head = encode_state(header)
    except UnencodableValueError as exc:
        raise UnencodableValueError(f"header {exc}", path=exc.path, reason=exc.reason
                                    ) from None
    try:
        devs = encode_state(components)
    except UnencodableValueError as exc:
        raise UnencodableValueError(f"components: {exc}", path=exc.path, reason=exc.reason
                                    ) from None
    return head, devs


def _write(f: IO[bytes], image: StateImage, head: bytes, devs: bytes,
           progress: Optional[Progress], level: int, run_pages: int) -> int:
    w = _Writer(f)
    first = _FILE_HEADER.pack(MAGIC, FORMAT_VERSION, 0)
    w.raw(first + _U32.pack(zlib.crc32(first)))
    w.section(TAG_HEAD, head)
    w.section(TAG_DEVS, devs)
    mv = _memory_view(image.memory)
    mem = image.memory if type(image.memory) in (bytes, bytearray) else mv.tobytes()
    total = len(mv)
    if progress is not None:
        progress(0, total)
    for first_page, count in nonzero_runs(mem, run_pages):
        start = first_page * PAGE_SIZE
        end = min(start + count * PAGE_SIZE, total)
        chunk = mv[start:end]
        packed = zlib.compress(chunk, level) if level else b""
        if level and len(packed) < len(chunk):
            w.section(TAG_PAGE, _RUN.pack(first_page, count, ENC_ZLIB), packed)
        else:
            w.section(TAG_PAGE, _RUN.pack(first_page, count, ENC_RAW), chunk)
        if progress is not None:
            progress(end, total)
    w.section(TAG_END, w.sha.digest())
    if progress is not None:
        progress(total, total)
    return w.size


# ================================================================================ reading
class _Reader:
    def __init__(self, f: IO[bytes]):
        self.f = f
        self.pos = 0
        self.sha = hashlib.sha256()

    def read(self, n: int, what: str, hashed: bool = True) -> bytes:
        """Exactly ``n`` bytes, read in bounded chunks (a huge declared length in a short
        file costs no more memory than the file has)."""
        data = self.f.read(min(n, _CHUNK)) if n else b""
        if len(data) < n and data:  # a short read (pipe, socket) or a long section
            parts = [data]
            left = n - len(data)
            while left:
                part = self.f.read(min(left, _CHUNK))
                if not part:
                    break
                parts.append(part)
                left -= len(part)
            data = b"".join(parts)
        if len(data) != n:
            raise TruncatedImageError(
                f"state image truncated: {what} needs {n} bytes at offset {self.pos}, the "
                f"file ends at offset {self.pos + len(data)}", offset=self.pos + len(data))
        if hashed:
            self.sha.update(data)
        self.pos += n
        return data


def _describe_foreign(start: bytes) -> str:
    if start[:4] == b"\x76\x86\x76\x86":
        return ("it is a v86 state file (magic 0x86768676), which pyv86 cannot restore: "
                "pyv86 has its own format")
    if start[:4] == b"\x28\xb5\x2f\xfd":
        return ("it is zstd-compressed data (v86 ships its state images as .zst); "
                "pyv86 images are not compressed as a whole")
    if start[:2] == b"\x1f\x8b":
        return "it is gzip-compressed data; pyv86 images are not compressed as a whole"
    if start[:4] == b"QEVM":
        return "it is a QEMU migration stream"
    if start[:4] == b"\x7fELF":
        return "it is an ELF file (a kernel goes to the bzimage/vmlinux option)"
    return f"it starts with {start[:8]!r}, not {MAGIC!r}"


def _open_source(source: Source) -> Tuple[IO[bytes], bool]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        import io

        return io.BytesIO(bytes(source)), True
    if isinstance(source, (str, os.PathLike)):
        return open(source, "rb"), True  # closed by the caller
    return source, False


def _read_file_header(r: _Reader) -> int:
    start = r.f.read(_HEADER_SIZE)
    if not isinstance(start, (bytes, bytearray)):
        raise StateImageError(f"read a state image from a binary file (open it with 'rb'); "
                              f"read() gave {type(start).__name__}")
    start = bytes(start)
    while 0 < len(start) < _HEADER_SIZE:  # a short read from a pipe
        more = r.f.read(_HEADER_SIZE - len(start))
        if not more:
            break
        start += more
    if (len(start) < len(MAGIC) and MAGIC.startswith(start)) or (
            len(start) < _HEADER_SIZE and start.startswith(MAGIC)):
        if not start:
            raise TruncatedImageError("state image truncated: the file is empty", offset=0)
        raise TruncatedImageError(
            f"state image truncated: the file header needs {_HEADER_SIZE} bytes, the file "
            f"ends at offset {len(start)}", offset=len(start))
    if not start.startswith(MAGIC):
        raise ForeignFileError(f"not a pyv86 state image: {_describe_foreign(start)}",
                               offset=0)
    r.sha.update(start)
    r.pos = _HEADER_SIZE
    _magic, version, flags = _FILE_HEADER.unpack_from(start)
    (crc,) = _U32.unpack_from(start, _FILE_HEADER.size)
    if zlib.crc32(start[:_FILE_HEADER.size]) != crc:
        raise CorruptImageError("state image corrupted: the file header's checksum does not "
                                "match", offset=0)
    if version == 0:
        raise CorruptImageError("state image corrupted: format version 0 does not exist",
                                offset=8)
    if version > FORMAT_VERSION:
        raise UnsupportedVersionError(
            f"state image format version {version} is newer than this reader's "
            f"({FORMAT_VERSION}): it was written by a newer pyv86; upgrade pyv86-machine",
            offset=8)
    if flags:
        raise UnsupportedVersionError(
            f"state image uses format flags {flags:#06x} that this reader does not know: it "
            "was written by a newer pyv86; upgrade pyv86-machine", offset=10)
    return version


def _read_section(r: _Reader, state_limit: int) -> Tuple[bytes, int, bytes]:
    """(tag, payload offset, payload) of the next section, its CRC verified."""
    at = r.pos
    head = r.read(_SECTION.size, "a section header", hashed=False)
    tag, length = _SECTION.unpack(head)
    if len(tag) != 4 or not all(c in _TAG_CHARS for c in tag):
        raise CorruptImageError(f"state image corrupted: bad section tag {tag!r} at offset "
                                f"{at}", offset=at)
    if tag == TAG_PAGE:
        limit = _RUN.size + MAX_RUN_PAGES * PAGE_SIZE + (MAX_RUN_PAGES * PAGE_SIZE >> 6)
    elif tag == TAG_END:
        limit = 32
    else:
        limit = state_limit
    if length > limit:
        raise CorruptImageError(
            f"state image corrupted: section {tag.decode()} at offset {at} declares "
            f"{length} bytes, more than its limit of {limit}", offset=at)
    if tag != TAG_END:
        r.sha.update(head)
    payload = r.read(length, f"section {tag.decode()} (from offset {at})", tag != TAG_END)
    (crc,) = _U32.unpack(r.read(4, f"the checksum of section {tag.decode()}", tag != TAG_END))
    if zlib.crc32(payload, zlib.crc32(head)) != crc:
        raise CorruptImageError(f"state image corrupted: checksum mismatch in section "
                                f"{tag.decode()} at offset {at}", offset=at)
    return tag, at + _SECTION.size, payload


def _as_dict(value: Any, what: str, at: int, str_keys: bool = True) -> Dict[str, Any]:
    if not isinstance(value, dict) or (str_keys and not all(isinstance(k, str) for k in value)):
        raise CorruptImageError(f"state image corrupted: {what} must be a dict with str keys "
                                f"(section at offset {at})", offset=at)
    return value


def _parse_header(value: Any, at: int, memory_limit: int) -> Dict[str, Any]:
    header = _as_dict(value, "the HEAD section", at)
    size = header.get("memory_size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise CorruptImageError(f"state image corrupted: bad memory_size {size!r} in the "
                                f"header at offset {at}", offset=at)
    if header.get("page_size") != PAGE_SIZE:
        raise CorruptImageError(f"state image corrupted: page_size {header.get('page_size')!r}"
                                f" in the header at offset {at}; format version 1 uses "
                                f"{PAGE_SIZE}", offset=at)
    for key in ("versions", "config", "metadata"):
        _as_dict(header.get(key), f"the header's {key!r}", at)
    if not all(isinstance(v, str) for v in header["versions"].values()):
        raise CorruptImageError("state image corrupted: the header's versions must be str",
                                offset=at)
    if size > memory_limit:
        raise StateImageError(f"the state image holds {size} bytes of memory, more than the "
                              f"limit of {memory_limit} given to the reader", offset=at)
    return header


def read_image_info(source: Source, *, state_limit: int = DEFAULT_STATE_LIMIT) -> ImageInfo:
    """The header of an image (format and package versions, configuration, memory size)
    without reading its states and memory. Only the file header and the HEAD section are
    verified: :func:`read_image` checks the rest."""
    f, owned = _open_source(source)
    try:
        r = _Reader(f)
        version = _read_file_header(r)
        tag, at, payload = _read_section(r, state_limit)
        if tag != TAG_HEAD:
            raise CorruptImageError(f"state image corrupted: the first section is "
                                    f"{tag.decode()}, not HEAD", offset=at - _SECTION.size)
        header = _parse_header(decode_state(payload, base_offset=at, what="HEAD section"),
                               at, 1 << 64)
        file_size = None
        try:
            file_size = os.fstat(f.fileno()).st_size
        except (AttributeError, OSError, ValueError):
            pass
        return ImageInfo(version, header["memory_size"], header["versions"], header["config"],
                         header["metadata"], file_size)
    finally:
        if owned:
            f.close()


def read_image(source: Source, *, expected_config: Optional[Mapping[str, Any]] = None,
               ignore: Iterable[str] = (), memory_limit: int = DEFAULT_MEMORY_LIMIT,
               state_limit: int = DEFAULT_STATE_LIMIT,
               progress: Optional[Progress] = None) -> StateImage:
    """Read and verify a whole image from a path, a binary file object or bytes.

    Returns a :class:`StateImage` whose ``memory`` is a fresh bytearray, only once every
    checksum, length and rule has been verified. ``expected_config`` is the configuration of
    the machine that will restore it: a difference raises :class:`ConfigMismatchError`
    naming each (see :func:`check_compatible`; ``ignore`` lists keys to skip) before memory
    is read. ``memory_limit`` bounds the memory size accepted, ``state_limit`` the bytes of
    one HEAD, DEVS or ancillary section; ``progress(done, total)`` reports bytes of memory
    read.

    Errors: :class:`TruncatedImageError`, :class:`CorruptImageError`,
    :class:`ForeignFileError`, :class:`UnsupportedVersionError`,
    :class:`ConfigMismatchError` or :class:`StateImageError` (memory over the limit), each
    naming the problem and, where there is one, the offset.
    """
    f, owned = _open_source(source)
    try:
        return _read(f, expected_config, tuple(ignore), memory_limit, state_limit, progress)
    finally:
        if owned:
            f.close()


def _read(f: IO[bytes], expected_config: Optional[Mapping[str, Any]], ignore: Tuple[str, ...],
          memory_limit: int, state_limit: int, progress: Optional[Progress]) -> StateImage:
    r = _Reader(f)
    version = _read_file_header(r)
    header: Optional[Dict[str, Any]] = None
    components: Optional[Dict[str, Any]] = None
    memory: Optional[bytearray] = None
    size = 0
    pages = 0
    next_page = 0
    while True:
        section_at = r.pos
        tag, at, payload = _read_section(r, state_limit)
        if tag == TAG_END:
            break
        if header is None:
            if tag != TAG_HEAD:
                raise CorruptImageError(f"state image corrupted: the first section is "
                                        f"{tag.decode()}, not HEAD", offset=section_at)
            header = _parse_header(decode_state(payload, base_offset=at,
                                                what="state image corrupted: HEAD section"),
                                   at, memory_limit)
            size = header["memory_size"]
            pages = -(-size // PAGE_SIZE)
            if expected_config is not None:
                mismatches = check_compatible(header["config"], expected_config,
                                              ignore=ignore)
                if mismatches:
                    raise ConfigMismatchError(mismatches)
        elif tag == TAG_HEAD:
            raise CorruptImageError(f"state image corrupted: a second HEAD section at offset "
                                    f"{section_at}", offset=section_at)
        elif tag == TAG_DEVS:
            if components is not None:
                raise CorruptImageError(f"state image corrupted: a second DEVS section at "
                                        f"offset {section_at}", offset=section_at)
            components = _as_dict(decode_state(payload, base_offset=at,
                                               what="state image corrupted: DEVS section"),
                                  "the DEVS section", at)
            memory = bytearray(size)
            if progress is not None:
                progress(0, size)
        elif tag == TAG_PAGE:
            if memory is None:
                raise CorruptImageError(f"state image corrupted: PAGE section at offset "
                                        f"{section_at} comes before DEVS", offset=section_at)
            next_page = _read_run(payload, at, memory, size, pages, next_page)
            if progress is not None:
                progress(min(next_page * PAGE_SIZE, size), size)
        elif tag[0] in b"abcdefghijklmnopqrstuvwxyz":
            continue  # ancillary section: a later writer's addition this reader may skip
        else:
            raise UnsupportedVersionError(
                f"state image has a section {tag.decode()} at offset {section_at} that this "
                "reader does not know: it was written by a newer pyv86; upgrade pyv86-machine",
                offset=section_at)
    if header is None or components is None or memory is None:
        missing = "HEAD" if header is None else "DEVS"
        raise CorruptImageError(f"state image corrupted: the END section at offset "
                                f"{section_at} comes before any {missing} section",
                                offset=section_at)
    if payload != r.sha.digest():
        raise CorruptImageError("state image corrupted: the SHA-256 over the whole image "
                                f"does not match (END section at offset {section_at})",
                                offset=section_at)
    extra = f.read(1)
    if extra:
        raise CorruptImageError(f"state image corrupted: data follows the END section at "
                                f"offset {r.pos}", offset=r.pos)
    parts = {"header": header, "components": components}
    for v in range(version, FORMAT_VERSION):
        hook = _MIGRATIONS.get(v)
        if hook is None:
            raise UnsupportedVersionError(f"no migration from state image format version {v} "
                                          f"to {v + 1}")
        parts = hook(parts)
    header, components = parts["header"], parts["components"]
    if progress is not None:
        progress(size, size)
    return StateImage(config=header["config"], versions=header["versions"],
                      components=components, memory=memory, metadata=header["metadata"],
                      format_version=version)


def _read_run(payload: bytes, at: int, memory: bytearray, size: int, pages: int,
              next_page: int) -> int:
    if len(payload) < _RUN.size:
        raise CorruptImageError(f"state image corrupted: PAGE section at offset {at} is too "
                                "short", offset=at)
    first, count, encoding = _RUN.unpack_from(payload)
    if count < 1 or count > MAX_RUN_PAGES:
        raise CorruptImageError(f"state image corrupted: PAGE section at offset {at} holds "
                                f"{count} pages (1-{MAX_RUN_PAGES} allowed)", offset=at)
    if first < next_page:
        raise CorruptImageError(f"state image corrupted: PAGE section at offset {at} starts "
                                f"at page {first}, before the end of the previous run "
                                f"(page {next_page})", offset=at)
    if first + count > pages:
        raise CorruptImageError(f"state image corrupted: PAGE section at offset {at} covers "
                                f"pages {first}-{first + count - 1}, beyond the memory's "
                                f"{pages} pages", offset=at)
    start = first * PAGE_SIZE
    end = min((first + count) * PAGE_SIZE, size)
    want = end - start
    data = memoryview(payload)[_RUN.size:]
    if encoding == ENC_RAW:
        if len(data) != want:
            raise CorruptImageError(f"state image corrupted: raw PAGE section at offset {at} "
                                    f"holds {len(data)} bytes, not {want}", offset=at)
        memory[start:end] = data
    elif encoding == ENC_ZLIB:
        d = zlib.decompressobj()
        try:
            out = d.decompress(data, want + 1)
        except zlib.error as exc:
            raise CorruptImageError(f"state image corrupted: PAGE section at offset {at}: "
                                    f"{exc}", offset=at) from None
        if len(out) != want or not d.eof or d.unconsumed_tail or d.unused_data:
            raise CorruptImageError(f"state image corrupted: PAGE section at offset {at} "
                                    f"does not inflate to exactly {want} bytes", offset=at)
        memory[start:end] = out
    else:
        raise CorruptImageError(f"state image corrupted: PAGE section at offset {at} has "
                                f"unknown encoding {encoding}", offset=at)
    return first + count


# =========================================================================== compatibility
def _show(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and 1 << 20 <= value < 1 << 64 \
            and value % (1 << 20) == 0:
        return f"{value >> 20} MiB"
    return short_repr(value, 80)


def _leaves(value: Any, path: str, out: Dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _leaves(v, f"{path}.{k}" if path else str(k), out)
    else:
        out[path] = value


def check_compatible(image: Union[StateImage, ImageInfo, Mapping[str, Any]],
                     config: Mapping[str, Any], *, ignore: Iterable[str] = ()) -> List[str]:
    """The differences between the configuration an image was saved with and ``config``
    (the machine that would restore it), one sentence each, e.g.
    ``"memory_size: the image has 64 MiB, this machine has 32 MiB"``. Nested dicts compare
    key by key (``"nic.model"``). ``ignore`` names keys (or dotted paths, or their
    prefixes) that do not matter. An empty list means compatible."""
    saved = image.config if isinstance(image, (StateImage, ImageInfo)) else image
    ours: Dict[str, Any] = {}
    theirs: Dict[str, Any] = {}
    _leaves(dict(saved), "", theirs)
    _leaves(dict(config), "", ours)
    skip = tuple(ignore)
    out = []
    for key in sorted(set(theirs) | set(ours)):
        if any(key == s or key.startswith(s + ".") for s in skip):
            continue
        if key not in ours:
            out.append(f"{key}: the image has {_show(theirs[key])}, this machine does not "
                       "set it")
        elif key not in theirs:
            out.append(f"{key}: the image does not record it, this machine has "
                       f"{_show(ours[key])}")
        elif theirs[key] != ours[key] or (type(theirs[key]) is not type(ours[key]) and (
                isinstance(theirs[key], bool) or isinstance(ours[key], bool))):
            out.append(f"{key}: the image has {_show(theirs[key])}, this machine has "
                       f"{_show(ours[key])}")
    return out


# ==================================================================================== CLI
def main(argv: Optional[List[str]] = None) -> int:
    """``python -m pyv86.machine.stateimage IMAGE...``: verify each image completely and
    print its header; exit status 0 when all are sound, 1 otherwise (with the reason)."""
    import sys

    paths = list(sys.argv[1:] if argv is None else argv)
    if not paths or any(p in ("-h", "--help") for p in paths):
        print("usage: python -m pyv86.machine.stateimage IMAGE...\n"
              "Verify pyv86 state images and print their headers.")
        return 0 if paths else 2
    status = 0
    for path in paths:
        try:
            image = read_image(path, memory_limit=0xE0000000)  # PhysicalMemory's largest
            size = os.path.getsize(path)
        except (StateImageError, OSError, MemoryError) as exc:
            print(f"{path}: {exc or type(exc).__name__}")
            status = 1
            continue
        stored = sum(count for _first, count in nonzero_runs(image.memory))
        print(f"{path}: sound, format version {image.format_version}, {size} bytes")
        print(f"  memory: {_show(image.memory_size)}, {stored} non-zero pages of "
              f"{-(-image.memory_size // PAGE_SIZE)}")
        for title, tree in (("config", image.config), ("versions", image.versions),
                            ("metadata", image.metadata)):
            leaves: Dict[str, Any] = {}
            _leaves(tree, "", leaves)
            shown = ", ".join(f"{k}={_show(v)}" for k, v in leaves.items() if k)
            print(f"  {title}: {shown or '-'}")
        print(f"  components: {', '.join(sorted(image.components)) or '-'}")
    return status


if __name__ == "__main__":  # pragma: no cover - exercised through main() in the tests
    raise SystemExit(main())

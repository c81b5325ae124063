"""Build the default guest: a tiny i386 Linux kernel and a busybox initramfs, from Debian packages.

Ingredients (installed by ``scripts/setup-debian --guest``):

- Debian's kernel source tarball ``/usr/src/linux-source-*.tar.xz``,
- the i686 cross compiler ``i686-linux-gnu-gcc``,
- a static i386 busybox (``busybox-static:i386``).

The kernel starts from ``make tinyconfig`` plus :file:`_guest/kernel.config`; the initramfs is
an uncompressed cpio archive with busybox and :file:`_guest/init.sh`. Results are cached under
``~/.cache/pyv86/guest/<key>/``, where the key hashes the configuration, the scripts and the
package versions, so a second call returns at once. The build runs under ``nice -n 19`` with
``make -j2``.

Every instruction of the guest's boot costs host time, so the recipe avoids work the guest
never uses (measured by sampling EIP over the whole boot and mapping it to ``nm vmlinux``;
the figures are instructions from the 32-bit entry to ``Run /init``: 66.5 M with
tinyconfig's choices, 29.0 M without the legacy ptys alone, 22.9 M with all three):

- No legacy BSD pseudo-terminals (``CONFIG_LEGACY_PTYS``): tinyconfig registers 256
  ``/dev/ptyXX`` + ``/dev/ttyXX`` pairs, 512 devices with their sysfs and devtmpfs nodes
  (37.5 M instructions, most of them in SLOB's allocation scans); busybox and the init
  script use no pty, and UNIX98 ptys (``/dev/ptmx``) remain.
- SLUB instead of tinyconfig's SLOB: SLOB scans its partially free pages first-fit on every
  allocation (``slob_page_alloc``/``slob_next``); SLUB allocates in O(1) and is what
  distribution kernels use (SLOB was removed from Linux in 6.4).
- ``CONFIG_CRYPTO`` only so that ``CONFIG_CRYPTO_MANAGER_DISABLE_TESTS`` exists: without it
  ``lib/crypto`` runs its BLAKE2s self-test at every boot (4 M instructions).

What is left is real work: the LZ4 decompressor (about 11.8 M instructions for 3 MB of
kernel), page and memory map initialisation, the initramfs unpacking, and about 1900
instructions per 10 ms timer tick (``CONFIG_HZ_PERIODIC``) while the guest waits.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import os
import pathlib
import shutil
import stat
import subprocess
import sys
import time
from typing import Callable, List, Optional, Tuple

__all__ = ["GuestBuildError", "GuestImage", "build_guest", "cached_guest", "default_cache_dir"]

_HERE = pathlib.Path(__file__).resolve().parent / "_guest"
CROSS = "i686-linux-gnu-"
#: The kernel command line the default guest boots with.
DEFAULT_CMDLINE = "console=ttyS0 earlyprintk=serial,ttyS0 panic=-1 tsc=reliable"
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")


class GuestBuildError(RuntimeError):
    """The guest cannot be built; the message says what is missing or what failed."""


@dataclasses.dataclass(frozen=True)
class GuestImage:
    """Paths of a built guest."""

    bzimage: pathlib.Path
    vmlinux: pathlib.Path
    initrd: pathlib.Path
    cmdline: str = DEFAULT_CMDLINE


def default_cache_dir() -> pathlib.Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "pyv86" / "guest"


def _find_source() -> pathlib.Path:
    found = sorted(glob.glob("/usr/src/linux-source-*.tar.xz"))
    if not found:
        raise GuestBuildError(
            "no kernel source: /usr/src/linux-source-*.tar.xz is missing "
            "(install Debian's linux-source: scripts/setup-debian --guest)")
    return pathlib.Path(found[-1])


def _find_busybox() -> pathlib.Path:
    for cand in BUSYBOX_CANDIDATES:
        p = pathlib.Path(cand)
        if p.is_file():
            head = p.read_bytes()[:20]
            # ELF, 32-bit class, machine EM_386 (3)
            if head[:4] == b"\x7fELF" and head[4] == 1 and head[18] == 3:
                return p
    raise GuestBuildError(
        "no static i386 busybox found (install busybox-static:i386: scripts/setup-debian --guest)")


def _tool_version(cmd: List[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GuestBuildError(f"cannot run {cmd[0]}: {exc}") from exc
    return (out.stdout or out.stderr).splitlines()[0] if (out.stdout or out.stderr) else ""


def _keys(source: pathlib.Path, busybox: pathlib.Path) -> Tuple[str, str]:
    """(kernel key, initrd key): hashes of everything each one is built from."""
    if shutil.which(CROSS + "gcc") is None:
        raise GuestBuildError(
            f"no cross compiler {CROSS}gcc (install gcc-i686-linux-gnu: "
            "scripts/setup-debian --guest)")
    k = hashlib.sha256()
    k.update((_HERE / "kernel.config").read_bytes())
    st = source.stat()
    k.update(f"{source.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    k.update(_tool_version([CROSS + "gcc", "--version"]).encode())
    i = hashlib.sha256()
    for name in ("init.sh", "udhcpc.script"):
        i.update((_HERE / name).read_bytes())
    i.update(hashlib.sha256(busybox.read_bytes()).digest())
    return k.hexdigest()[:16], i.hexdigest()[:16]


def _paths(root: pathlib.Path, keys: Tuple[str, str]) -> GuestImage:
    kdir = root / f"kernel-{keys[0]}"
    return GuestImage(kdir / "bzImage", kdir / "vmlinux", root / f"initrd-{keys[1]}.cpio")


def cached_guest(cache_dir: Optional[pathlib.Path] = None) -> Optional[GuestImage]:
    """The cached guest for the current configuration, or None if it is not built yet."""
    try:
        img = _paths(cache_dir or default_cache_dir(), _keys(_find_source(), _find_busybox()))
    except GuestBuildError:
        return None
    if img.bzimage.is_file() and img.initrd.is_file() and img.vmlinux.is_file():
        return img
    return None


def _run(cmd: List[str], cwd: pathlib.Path, log, progress: Callable[[str], None],
         what: str) -> None:
    progress(f"build-guest: {what}")
    started = time.monotonic()
    proc = subprocess.Popen(["nice", "-n", "19", *cmd], cwd=str(cwd), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace")
    assert proc.stdout is not None
    lines = 0
    last = started
    for line in proc.stdout:
        log.write(line)
        lines += 1
        now = time.monotonic()
        if now - last >= 15:
            last = now
            progress(f"build-guest:   ... {what}: {int(now - started)} s, "
                     f"{lines} lines of output, last: {line.strip()[:70]}")
    rc = proc.wait()
    if rc != 0:
        log.flush()
        raise GuestBuildError(f"{what} failed (exit {rc}); see {log.name}")
    progress(f"build-guest:   {what} done in {time.monotonic() - started:.0f} s")


def _check_config(config: pathlib.Path) -> None:
    """Every `=y` line of the fragment must have survived olddefconfig."""
    have = set(config.read_text().splitlines())
    missing = []
    for line in (_HERE / "kernel.config").read_text().splitlines():
        line = line.strip()
        if line.startswith("CONFIG_") and line.endswith("=y") and line not in have:
            missing.append(line)
        elif line.startswith("CONFIG_") and line.endswith("=n"):
            name = line[:-2]
            if f"{name}=y" in have:
                missing.append(f"# {name} is not set")
    if missing:
        raise GuestBuildError("kernel configuration did not take: " + ", ".join(missing))


def _write_cpio(out: pathlib.Path, busybox: pathlib.Path) -> None:
    """A newc cpio archive: /bin/busybox, /init, /etc/udhcpc.script, a few directories."""
    entries = []
    ino = [1000]

    def add(name: str, mode: int, data: bytes = b"") -> None:
        ino[0] += 1
        entries.append((name, mode, data, ino[0]))

    for d in ("bin", "sbin", "dev", "etc", "proc", "sys", "tmp", "usr", "usr/bin", "usr/sbin"):
        add(d, stat.S_IFDIR | 0o755)
    add("dev/console", stat.S_IFCHR | 0o600)
    add("bin/busybox", stat.S_IFREG | 0o755, busybox.read_bytes())
    add("bin/sh", stat.S_IFLNK | 0o777, b"busybox")
    add("init", stat.S_IFREG | 0o755, (_HERE / "init.sh").read_bytes())
    add("etc/udhcpc.script", stat.S_IFREG | 0o755, (_HERE / "udhcpc.script").read_bytes())
    buf = bytearray()

    def pad4() -> None:
        while len(buf) % 4:
            buf.append(0)

    for name, mode, data, ino_n in [*entries, ("TRAILER!!!", 0, b"", 0)]:
        nameb = name.encode() + b"\0"
        rdev_major, rdev_minor = (5, 1) if name == "dev/console" else (0, 0)
        fields = [ino_n, mode, 0, 0, 1, 0, len(data), 0, 0, rdev_major, rdev_minor,
                  len(nameb), 0]
        buf += b"070701" + b"".join(b"%08X" % f for f in fields)
        buf += nameb
        pad4()
        buf += data
        pad4()
    out.write_bytes(bytes(buf))


def build_guest(cache_dir: Optional[pathlib.Path] = None, *,
                progress: Optional[Callable[[str], None]] = None,
                jobs: int = 2, force: bool = False) -> GuestImage:
    """Build (or return the cached) default guest. Long: a kernel build, printed as it goes."""
    say = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
    source, busybox = _find_source(), _find_busybox()
    keys = _keys(source, busybox)
    root = cache_dir or default_cache_dir()
    img = _paths(root, keys)
    if not force and cached_guest(root) is not None:
        say(f"build-guest: cached guest {img.bzimage.parent}")
        return img
    if force or not (img.bzimage.is_file() and img.vmlinux.is_file()):
        _build_kernel(root, keys[0], img, jobs, say)
    if force or not img.initrd.is_file():
        tmp = img.initrd.with_suffix(".tmp")
        _write_cpio(tmp, busybox)
        tmp.replace(img.initrd)
        say(f"build-guest: initramfs {img.initrd}")
    say(f"build-guest: guest ready: {img.bzimage} {img.initrd}")
    return img


def _build_kernel(root: pathlib.Path, key: str, img: GuestImage, jobs: int,
                  say: Callable[[str], None]) -> None:
    source = _find_source()
    build = root / f"build-{key}"
    build.mkdir(parents=True, exist_ok=True)
    out = img.bzimage.parent
    out.mkdir(parents=True, exist_ok=True)
    logpath = build / "build.log"
    with open(logpath, "a") as log:
        tree = build / "linux"
        if not (tree / "Makefile").is_file():
            say(f"build-guest: unpacking {source}")
            shutil.rmtree(tree, ignore_errors=True)
            tmp = build / "unpack"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            _run(["tar", "-xf", str(source), "-C", str(tmp)], build, log, say,
                 f"unpack {source.name}")
            top = next(tmp.iterdir())
            top.rename(tree)
        make = ["make", "ARCH=i386", f"CROSS_COMPILE={CROSS}", f"-j{jobs}"]
        _run([*make, "tinyconfig"], tree, log, say, "make tinyconfig")
        _run(["scripts/kconfig/merge_config.sh", "-m", ".config",
              str(_HERE / "kernel.config")], tree, log, say, "merge the pyv86 fragment")
        _run([*make, "olddefconfig"], tree, log, say, "make olddefconfig")
        _check_config(tree / ".config")
        _run([*make, "bzImage"], tree, log, say, "make bzImage (several minutes)")
        shutil.copyfile(tree / "vmlinux", out / "vmlinux")
        shutil.copyfile(tree / ".config", out / "config")
        shutil.copyfile(tree / "arch/x86/boot/bzImage", out / "bzImage")


def main(argv: Optional[List[str]] = None) -> int:  # pragma: no cover - thin wrapper
    import argparse

    ap = argparse.ArgumentParser(prog="pyv86 build-guest", description=__doc__.splitlines()[0])
    ap.add_argument("--cache-dir", type=pathlib.Path, default=None)
    ap.add_argument("--force", action="store_true", help="rebuild even if cached")
    ap.add_argument("-j", "--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    try:
        img = build_guest(args.cache_dir, jobs=args.jobs, force=args.force)
    except GuestBuildError as exc:
        print(f"pyv86 build-guest: {exc}", file=sys.stderr)
        return 1
    print(img.bzimage)
    print(img.initrd)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

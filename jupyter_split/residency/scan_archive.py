"""What the scanner reads inside a file: archives opened, safetensors weights skipped.

The kind of content is told by its first bytes, never by its name (a CSV renamed `.bin`
is scanned as what it is): zip, tar, gzip, bz2 and xz are opened, to `depth` levels of
nesting, their members named `outer.zip!inner/a.csv`; a safetensors file has its JSON
header (with `__metadata__`) and its tensors of bytes and integers scanned, its floating-point
tensors skipped; UTF-16 text is read
as text. Everything is streamed: memory stays bounded whatever the size. What cannot be
read (nested too deep, an encrypted member, a corrupt archive, a format with no reader
here) is reported as unscannable, which the guard refuses.
"""
from __future__ import annotations

import bz2
import codecs
import gzip
import json
import lzma
import math
import posixpath
import shutil
import tarfile
import tempfile
import zipfile
import zlib
from typing import TYPE_CHECKING, Any, BinaryIO

from .findings import CHUNK, ScanResult, Unscannable

if TYPE_CHECKING:
    from .scan import Scanner

HEAD = 520  # enough to see a tar header's magic at 257
MAX_SAFETENSORS_HEADER = 100 << 20  # safetensors' own limit
SPOOL_IN_MEMORY = 16 << 20  # a non-seekable zip is copied to a temporary file past this
_CLOSED = {b"\x28\xb5\x2f\xfd": "zstd", b"7z\xbc\xaf\x27\x1c": "7z", b"Rar!\x1a\x07": "RAR"}
_BROKEN = (OSError, EOFError, zlib.error, lzma.LZMAError, tarfile.TarError, zipfile.BadZipFile,
           NotImplementedError, RuntimeError, ValueError)
_REPACK = "Send its files unpacked, or as a zip or .tar.gz the scanner can open"
# streams that seek by decompressing again from the start: a zip inside one is copied out first
_DECOMPRESSING = (zipfile.ZipExtFile, gzip.GzipFile, bz2.BZ2File, lzma.LZMAFile)


class Peek:
    """A forward-only reader that can look at its first bytes before they are read."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.head = b""
        try:
            self.origin = raw.tell() if raw.seekable() else None
        except (AttributeError, OSError, ValueError):
            self.origin = None

    def peek(self, size: int) -> bytes:
        """The next `size` bytes, left to be read (fewer at the end of the file)."""
        while len(self.head) < size:
            more = self.raw.read(size - len(self.head))
            if not more:
                break
            self.head += more
        return self.head[:size]

    def read(self, size: int = -1) -> bytes:
        """Read up to `size` bytes (all that is left for -1), the peeked ones first."""
        if not self.head:
            return self.raw.read(size)
        if size < 0:
            out, self.head = self.head + self.raw.read(), b""
            return out
        out, self.head = self.head[:size], self.head[size:]
        return out

    def readinto(self, target: memoryview) -> int:
        """Read into `target`, the peeked bytes first; returns how many bytes it got."""
        held = min(len(self.head), len(target))
        target[:held], self.head = self.head[:held], self.head[held:]
        if held == len(target):
            return held
        if hasattr(self.raw, "readinto"):
            return held + (self.raw.readinto(target[held:]) or 0)
        data = self.raw.read(len(target) - held)
        target[held:held + len(data)] = data
        return held + len(data)

    def skip(self, size: int) -> None:
        """Pass over `size` bytes without reading them where the file can seek."""
        held = min(size, len(self.head))
        self.head, size = self.head[held:], size - held
        if size and self.origin is not None:
            self.raw.seek(size, 1)
            return
        if size and hasattr(self.raw, "skip"):  # a reader that can pass over bytes without reading them
            self.raw.skip(size)
            return
        while size:
            got = self.raw.read(min(size, CHUNK))
            if not got:
                return
            size -= len(got)


def walk(scanner: Scanner, handle: Any, where: str, size: int | None, result: ScanResult, level: int = 0) -> None:
    """Scan `handle`'s content into `result`, opening archives up to `scanner.depth` levels deep."""
    reader = handle if isinstance(handle, Peek) else Peek(handle)
    head = reader.peek(HEAD)
    kind = identify(head)
    if kind in _CLOSED.values():
        result.unscannable.append(Unscannable(where, f"it is compressed with {kind}, which the scanner cannot open", _REPACK))
        return
    if kind in ("zip", "tar", "gzip", "bz2", "xz") and level >= scanner.depth:
        result.unscannable.append(Unscannable(
            where, f"it is a {kind} archive nested {level + 1} deep, past the {scanner.depth} levels the scanner opens",
            f"Send its files unpacked, or raise `depth` in [policy.scan] (now {scanner.depth})"))
        return
    try:
        if kind == "zip":
            _zip(scanner, reader, where, result, level)
        elif kind == "tar":
            _tar(scanner, reader, where, result, level)
        elif kind in ("gzip", "bz2", "xz"):
            _compressed(scanner, reader, kind, where, result, level)
        elif kind == "safetensors":
            _safetensors(scanner, reader, where, size, result)
        elif kind == "utf16":
            scanner.scan_text(_Utf16(reader), where, result)
        else:
            scanner.scan_text(reader, where, result)
    except _BROKEN as exc:
        if kind == "plain":
            raise  # a read error of the file itself: the caller says the file could not be scanned
        result.unscannable.append(Unscannable(
            where, f"it looks like a {kind} file but cannot be read ({type(exc).__name__}: {exc})",
            "Repair or re-create it, or send its files unpacked"))


def identify(head: bytes) -> str:
    """The kind of content by its first bytes: an archive format, safetensors, utf16 or plain."""
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    # gzip: magic, deflate, no reserved flag bits (so random bytes are almost never taken for it)
    if head[:3] == b"\x1f\x8b\x08" and len(head) > 3 and not head[3] & 0xE0:
        return "gzip"
    if head[:3] == b"BZh" and head[4:10] == b"1AY&SY":
        return "bz2"
    if head[:6] == b"\xfd7zXZ\x00":
        return "xz"
    for magic, name in _CLOSED.items():
        if head.startswith(magic):
            return name
    if is_tar(head):
        return "tar"
    if len(head) > 8 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") <= MAX_SAFETENSORS_HEADER:
        return "safetensors"
    if head[:2] in (b"\xff\xfe", b"\xfe\xff") and head[:4] != b"\xff\xfe\x00\x00":
        return "utf16"
    return "plain"


def is_tar(head: bytes) -> bool:
    """A POSIX or GNU tar header (the `ustar` magic at 257, and a header checksum that adds up)."""
    if len(head) < 512 or head[257:262] != b"ustar":
        return False
    try:
        stored = int(head[148:156].rstrip(b" \x00") or b"0", 8)
    except ValueError:
        return False
    return stored == sum(head[:148]) + 8 * 32 + sum(head[156:512])


def _zip(scanner: Scanner, reader: Peek, where: str, result: ScanResult, level: int) -> None:
    spool = None
    if reader.origin == 0 and not isinstance(reader.raw, _DECOMPRESSING):
        reader.raw.seek(0)
        archive_file: BinaryIO = reader.raw
    else:  # the central directory is at the end: a stream is kept aside (in a file past 16 MiB) to read it
        spool = archive_file = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)
        shutil.copyfileobj(reader, spool, CHUNK)
        spool.seek(0)
    try:
        with zipfile.ZipFile(archive_file) as archive:
            for info in archive.infolist():
                if info.is_dir() or result.full:
                    continue
                member = f"{where}!{info.filename}"
                if info.flag_bits & 0x1:
                    result.unscannable.append(Unscannable(
                        member, "it is encrypted in the zip, so its content cannot be read",
                        "Send it unencrypted (the scanner must see it), or keep it at home"))
                    continue
                try:
                    with archive.open(info) as handle:
                        walk(scanner, handle, member, info.file_size, result, level + 1)
                except _BROKEN as exc:
                    result.unscannable.append(Unscannable(
                        member, f"it cannot be read from the zip ({type(exc).__name__}: {exc})",
                        "Re-create the zip with the deflate or store method, or send the file unpacked"))
    finally:
        if spool is not None:
            spool.close()


def _tar(scanner: Scanner, reader: Any, where: str, result: ScanResult, level: int) -> None:
    with tarfile.open(fileobj=reader, mode="r|") as archive:
        for member in archive:
            if result.full:
                return
            if member.isreg():
                handle = archive.extractfile(member)
                if handle is not None:
                    walk(scanner, handle, f"{where}!{member.name}", member.size, result, level + 1)


def _compressed(scanner: Scanner, reader: Peek, kind: str, where: str, result: ScanResult, level: int) -> None:
    opened: Any = {"gzip": lambda: gzip.GzipFile(fileobj=reader, mode="rb"),
                   "bz2": lambda: bz2.BZ2File(reader), "xz": lambda: lzma.LZMAFile(reader)}[kind]()
    with opened:
        inner = Peek(opened)
        if is_tar(inner.peek(HEAD)):  # a .tar.gz is one archive: its members are one level in
            _tar(scanner, inner, where, result, level)
            return
        name = posixpath.basename(where.rpartition("!")[2])
        stem, dot, suffix = name.rpartition(".")
        inside = stem if dot and suffix.lower() in ("gz", "gzip", "bz2", "xz") else f"{name} (decompressed)"
        walk(scanner, inner, f"{where}!{inside}", None, result, level + 1)


# safetensors dtypes whose payload is skipped: floating-point numbers are weights, not text. A tensor
# of bytes, booleans or integers can hold text as it is (a byte-level dataset's cache, code points
# in int32 as UTF-32), so its bytes are scanned as any file's.
FLOAT_DTYPES = frozenset({"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "F8_E4M3FNUZ", "F8_E5M2FNUZ",
                          "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4", "C64"})


# bytes an element of each dtype takes: a tensor whose range is not its shape's size is no tensor
# the format allows, so its file is scanned whole
_ITEM_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E4M3FNUZ": 1,
               "F8_E5M2FNUZ": 1, "F8_E8M0": 1, "C64": 8, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8,
               "U32": 4, "U16": 2, "U8": 1, "BOOL": 1}


def payload_scanned(dtype: str) -> bool:
    """Whether the border's scan reads a safetensors tensor of `dtype` (a safetensors dtype name)."""
    return dtype not in FLOAT_DTYPES


def _safetensors(scanner: Scanner, reader: Peek, where: str, size: int | None, result: ScanResult) -> None:
    length = int.from_bytes(reader.peek(8), "little")
    head = reader.read(8)
    header = _read_exactly(reader, length)
    ranges = _tensor_ranges(header) if len(header) == length and (size is None or 8 + length <= size) else None
    if ranges is None:  # not a safetensors file after all: everything is scanned
        scanner.scan_text(_Chain(head + header, reader), where, result)
        return
    scanner.scan_text(_Chain(header, _Empty()), where, result, base=8)
    position = 0
    for begin, end, scanned in _runs(ranges):  # each run of tensors read together, or skipped together
        if result.full:
            return
        if scanned:
            scanner.scan_text(_Bounded(reader, end - begin), where, result, base=8 + length + begin)
        else:
            reader.skip(end - begin)
        position = end
    # bytes past the last tensor are no tensor's: they are scanned
    scanner.scan_text(reader, where, result, base=8 + length + position)


def _runs(ranges: list[tuple[int, int, str]]) -> list[tuple[int, int, bool]]:
    """The tensors' ranges merged into runs that are all scanned or all skipped, in order."""
    runs: list[tuple[int, int, bool]] = []
    for begin, end, dtype in ranges:
        scanned = payload_scanned(dtype)
        if runs and runs[-1][2] == scanned:
            runs[-1] = (runs[-1][0], end, scanned)
        else:
            runs.append((begin, end, scanned))
    return runs


def _tensor_ranges(header: bytes) -> list[tuple[int, int, str]] | None:
    # the tensors' byte ranges and dtypes, when they tile the payload from 0 with no gap and each is
    # its shape's size (else None: scan it all)
    try:
        table = json.loads(header)
        ranges = []
        for name, info in table.items():
            if name == "__metadata__":
                continue
            begin, end, dtype = int(info["data_offsets"][0]), int(info["data_offsets"][1]), str(info["dtype"])
            if dtype in _ITEM_BYTES and math.prod(int(n) for n in info["shape"]) * _ITEM_BYTES[dtype] != end - begin:
                return None
            ranges.append((begin, end, dtype))
        ranges.sort()
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return None
    position = 0
    for begin, end, _ in ranges:
        if begin != position or end < begin:
            return None
        position = end
    return ranges


def _read_exactly(reader: Peek, size: int) -> bytes:
    parts, left = [], size
    while left:
        got = reader.read(min(left, CHUNK))
        if not got:
            break
        parts.append(got)
        left -= len(got)
    return b"".join(parts)


class _Empty:
    def read(self, size: int = -1) -> bytes:
        return b""


class _Bounded:
    """The next `size` bytes of a reader, then its end."""

    def __init__(self, reader: Any, size: int) -> None:
        self.reader, self.left = reader, size

    def read(self, size: int = -1) -> bytes:
        want = self.left if size < 0 else min(size, self.left)
        data = self.reader.read(want) if want else b""
        self.left -= len(data)
        return data


class _Chain:
    """Bytes already read, then the rest of a reader."""

    def __init__(self, first: bytes, rest: Any) -> None:
        self.first, self.rest = first, rest

    def read(self, size: int = -1) -> bytes:
        if self.first:
            out, self.first = (self.first, b"") if size < 0 else (self.first[:size], self.first[size:])
            return out
        return self.rest.read(size)


class _Utf16:
    """UTF-16 text (with its byte order mark) read as UTF-8, so its digits and addresses are contiguous."""

    def __init__(self, reader: Peek) -> None:
        self.reader = reader
        self.decoder = codecs.getincrementaldecoder("utf-16")(errors="replace")

    def read(self, size: int = -1) -> bytes:
        while True:
            raw = self.reader.read(size)
            text = self.decoder.decode(raw, final=not raw)
            if text or not raw:
                return text.encode("utf-8", "replace")

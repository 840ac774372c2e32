"""Unpack a ZIP or tar into a folder:
``python3 -I unpacker.py ARCHIVE STAGING FOLDER MAX_ENTRIES MAX_BYTES MAX_RATIO``.

The server runs this as its own process (a large archive never stalls the server's loop, and a
hostile one costs this process's memory, capped, not the server's), as the cell's user. Its
answer is one JSON line on stdout: ``{"entries": N, "bytes": B}``, or ``{"code", "message"}``
with exit status 1 (the codes are agentcell.errors'; the message names the entry).

Nothing reaches FOLDER until the whole archive has passed. Each entry is checked before it is
written: a name that is absolute or leaves the folder, a link (symbolic or hard), a device or a
FIFO is refused (``unsafe_archive``); so are more than MAX_ENTRIES entries, files adding up to
more than MAX_BYTES, and an entry (a tar: the whole stream) unpacking to more than MAX_RATIO
times its packed size (``archive_too_large``); a limit of 0 is none. Sizes are taken from the
headers first and counted again as the bytes are written, since headers can lie. Entries are
written into STAGING (an empty folder of the server's, on the same file system); once all are
there and none clashes with what FOLDER holds, they are moved in: files replaced, folders
merged, walking FOLDER without following a link. ZIPs are read through their directory, tars
front to back (compressed ones are never seeked back), so each byte is unpacked once.
Standard library only, and no imports from the package: it runs as a plain script.
"""

from __future__ import annotations

import contextlib
import json
import lzma
import os
import resource
import shutil
import stat
import struct
import sys
import tarfile
import time
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

NAME_MAX = 255  # bytes in one name
MAX_DEPTH = 256  # levels in an entry's path, as the server's paths
COPY_BYTES = 1024 * 1024
RATIO_FLOOR = 1024 * 1024  # what unpacks to less than this is never taken for a bomb
DIRECTORY_BYTES = 1024  # a ZIP's directory (read whole) may hold this much per entry allowed
MEMORY_BYTES = 256 * 1024 * 1024  # this process's address space: a header cannot exhaust the cell
READ_ERRORS = (tarfile.TarError, zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError)
FILE, DIR = "file", "folder"


class Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def unsafe(message: str) -> Refused:
    return Refused("unsafe_archive", message)


def too_large(message: str) -> Refused:
    return Refused("archive_too_large", message)


def damaged(message: str) -> Refused:
    return Refused("invalid_archive", message)


@dataclass(frozen=True)
class Limits:
    entries: int
    bytes: int
    ratio: int


@dataclass
class Entry:
    name: str  # as the archive has it
    parts: tuple[str, ...]
    kind: str  # FILE or DIR
    size: int  # as its header says
    executable: bool = False
    mtime: float | None = None


def shown(name: str) -> str:
    """A name for a message: quoted, cut short, control characters escaped, valid UTF-8."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return repr(text if len(text) <= 200 else text[:200] + "...")


def size_words(size: int) -> str:
    """A byte count as people say it: 512 bytes, 1.5 MiB (as files.size_words)."""
    if size < 1024:
        return f"{size} bytes"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        value /= 1024
        if value < 1024 or unit == "PiB":
            break
    return f"{value:.1f} {unit}"


def parts_of(name: str, is_dir: bool) -> tuple[str, ...]:
    """The entry's path in the folder, as names; refused when it is not one."""
    if "\0" in name:
        raise unsafe(f"entry {shown(name)} has a NUL byte in its name")
    if name.startswith("/"):
        raise unsafe(f"entry {shown(name)} is an absolute path")
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    if ".." in parts:
        raise unsafe(f"entry {shown(name)} escapes the folder")
    if any(len(os.fsencode(part)) > NAME_MAX for part in parts):
        raise unsafe(f"entry {shown(name)} has a name longer than {NAME_MAX} bytes")
    if len(parts) > MAX_DEPTH:
        raise unsafe(f"entry {shown(name)} is nested deeper than {MAX_DEPTH} levels")
    if not parts and not is_dir:
        raise unsafe(f"entry {shown(name)} is a file without a name")
    return parts


class Budget:
    """What the archive may still unpack to, counted as it is written."""

    def __init__(self, limits: Limits, packed: int) -> None:
        self.limits, self.packed = limits, packed
        self.declared = self.written = self.entries = 0

    def enter(self, name: str, size: int) -> None:
        """One more entry of ``size`` (its header's): refused past a limit, before a byte."""
        self.entries += 1
        self.declared += size
        most = self.limits.entries
        if most and self.entries > most:
            raise too_large(f"the archive has more than {most:,} entries (the limit)")
        if self.limits.bytes and self.declared > self.limits.bytes:
            raise too_large(
                f"the archive's files add up to more than {size_words(self.limits.bytes)} "
                f"unpacked, the limit (at entry {shown(name)})"
            )

    def take(self, name: str, size: int) -> None:
        self.written += size
        if self.limits.bytes and self.written > self.limits.bytes:
            raise too_large(
                f"the archive unpacks to more than {size_words(self.limits.bytes)}, the limit "
                f"(at entry {shown(name)}, whose header said less)"
            )


def check_ratio(limits: Limits, what: str, unpacked: int, packed: int) -> None:
    if limits.ratio and unpacked > RATIO_FLOOR and unpacked > limits.ratio * max(packed, 1):
        raise too_large(
            f"{what} unpacks to {size_words(unpacked)} from {size_words(packed)} "
            f"({unpacked // max(packed, 1):,}-fold): a decompression bomb? Entries may grow "
            f"at most {limits.ratio:,}-fold"
        )


# --- ZIP ---------------------------------------------------------------------------------------


def zip_directory(f: IO[bytes]) -> tuple[int, int] | None:
    """(entries, bytes) of a ZIP's directory as its end record says, None without one (zipfile
    then says what is wrong). The directory is read whole: its size is checked first."""
    end = f.seek(0, os.SEEK_END)
    f.seek(max(0, end - 22 - 65535))
    tail = f.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        return None
    entries, size = struct.unpack_from("<HI", tail, at + 10)
    zip64 = at - 20 - 56  # the ZIP64 end record, just before its locator
    if (
        zip64 >= 0
        and tail[at - 20 : at - 16] == b"PK\x06\x07"
        and tail[zip64:].startswith(b"PK\x06\x06")
    ):
        entries, size = struct.unpack_from("<QQ", tail, zip64 + 32)
    return entries, size


def zip_entry(info: zipfile.ZipInfo) -> Entry:
    name, mode = info.filename, info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if stat.S_ISLNK(mode):
        raise unsafe(f"entry {shown(name)} is a symbolic link; links are not unpacked")
    if info.is_dir():
        return Entry(name, parts_of(name, True), DIR, 0)
    if kind not in (0, stat.S_IFREG):
        raise unsafe(f"entry {shown(name)} is a device, FIFO or socket, not a file")
    if info.flag_bits & 0x1:
        raise damaged(f"entry {shown(name)} is encrypted; encrypted archives are not supported")
    mtime = None
    with contextlib.suppress(ValueError, OverflowError):
        mtime = time.mktime((*info.date_time, 0, 0, -1))
    return Entry(name, parts_of(name, False), FILE, info.file_size, bool(mode & 0o111), mtime)


def zip_entries(
    f: IO[bytes], limits: Limits, budget: Budget
) -> Iterator[tuple[Entry, IO[bytes] | None]]:
    """Every entry checked (names, types, sizes, ratios) before the first is opened."""
    found = zip_directory(f)
    if found is not None:
        entries, size = found
        if limits.entries and entries > limits.entries:
            raise too_large(
                f"the archive has {entries:,} entries, more than {limits.entries:,} (the limit)"
            )
        if limits.entries and size > max(COPY_BYTES, limits.entries * DIRECTORY_BYTES):
            raise too_large(f"the archive's directory is {size_words(size)}, too large")
    f.seek(0)
    with zipfile.ZipFile(f) as zf:
        infos = zf.infolist()
        checked = [(zip_entry(info), info) for info in infos]
        for entry, info in checked:
            budget.enter(entry.name, entry.size)
            if entry.kind == FILE:
                check_ratio(limits, f"entry {shown(entry.name)}", entry.size, info.compress_size)
        for entry, info in checked:
            if entry.kind == DIR:
                yield entry, None
                continue
            try:
                src = zf.open(info)
            except NotImplementedError as exc:  # a compression method zipfile lacks
                raise damaged(f"entry {shown(entry.name)}: {exc}") from None
            with src:
                yield entry, src


# --- tar ---------------------------------------------------------------------------------------


def tar_entry(member: tarfile.TarInfo) -> Entry:
    name = member.name
    if member.issym():
        raise unsafe(f"entry {shown(name)} is a symbolic link; links are not unpacked")
    if member.islnk():
        raise unsafe(f"entry {shown(name)} is a hard link; links are not unpacked")
    if member.ischr() or member.isblk():
        raise unsafe(f"entry {shown(name)} is a device, not a file")
    if member.isfifo():
        raise unsafe(f"entry {shown(name)} is a FIFO, not a file")
    if member.isdir():
        return Entry(name, parts_of(name, True), DIR, 0)
    if not member.isreg():
        raise unsafe(f"entry {shown(name)} is of a type that is not unpacked (not a file)")
    executable = bool(member.mode & 0o111)
    return Entry(name, parts_of(name, False), FILE, member.size, executable, member.mtime)


def open_tar(f: IO[bytes]) -> tarfile.TarFile:
    try:
        return tarfile.open(fileobj=f, mode="r|*")  # noqa: SIM115  (the caller's with closes it)
    except READ_ERRORS:
        raise damaged("this is neither a ZIP nor a tar (plain, gzip, bzip2 or xz)") from None


def tar_entries(
    f: IO[bytes], limits: Limits, budget: Budget
) -> Iterator[tuple[Entry, IO[bytes] | None]]:
    """Front to back: each entry is checked, then written, before the next header is read."""
    with open_tar(f) as tf:
        while True:
            try:
                member = tf.next()
            except READ_ERRORS as exc:
                raise damaged(
                    f"the archive is damaged after {budget.entries} entries: {exc}"
                ) from None
            if member is None:
                return
            entry = tar_entry(member)
            budget.enter(entry.name, entry.size)
            check_ratio(limits, "the archive", budget.declared, budget.packed)
            yield entry, tf.extractfile(member) if entry.kind == FILE else None


# --- writing -------------------------------------------------------------------------------------


def os_refusal(exc: OSError, entry: Entry) -> Refused:
    if exc.errno in (28, 122):  # ENOSPC, EDQUOT
        return Refused(
            "workspace_full", f"no space left in the workspace at entry {shown(entry.name)}"
        )
    return Refused("invalid_request", f"{exc.strerror or exc} at entry {shown(entry.name)}")


class Staging:
    """The entries written under ``root`` (the server's empty folder), each path once."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.kinds: dict[tuple[str, ...], str] = {}  # parents before children
        self.names: dict[tuple[str, ...], str] = {}  # the entry that made each path

    def claim(self, entry: Entry) -> None:
        parts = entry.parts
        for i in range(1, len(parts)):
            have = self.kinds.setdefault(parts[:i], DIR)
            self.names.setdefault(parts[:i], entry.name)
            if have != DIR:
                raise damaged(
                    f"entry {shown(entry.name)} is inside {shown('/'.join(parts[:i]))}, which the "
                    "archive has as a file"
                )
        have = self.kinds.setdefault(parts, entry.kind)
        self.names.setdefault(parts, entry.name)
        if have != entry.kind:
            raise damaged(f"the archive has {shown('/'.join(parts))} as a file and as a folder")

    def write(self, entry: Entry, src: IO[bytes] | None, budget: Budget) -> None:
        if not entry.parts:
            return  # the folder itself
        self.claim(entry)
        path = os.path.join(self.root, *entry.parts)
        try:
            if entry.kind == DIR:
                os.makedirs(path, 0o700, exist_ok=True)
                return
            os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # an entry the archive had before: the last one wins
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise os_refusal(exc, entry) from None
        try:
            self.copy(entry, src, fd, budget)
            with contextlib.suppress(OSError):
                os.fchmod(fd, 0o755 if entry.executable else 0o644)
                if entry.mtime is not None:
                    os.utime(fd, (entry.mtime, entry.mtime))
        finally:
            os.close(fd)

    @staticmethod
    def copy(entry: Entry, src: IO[bytes] | None, fd: int, budget: Budget) -> None:
        written = 0
        while src is not None:
            try:
                chunk = src.read(COPY_BYTES)
            except READ_ERRORS as exc:
                raise damaged(
                    f"the archive is damaged at entry {shown(entry.name)}: {exc}"
                ) from None
            if not chunk:
                return
            written += len(chunk)
            if written > entry.size:
                raise damaged(f"entry {shown(entry.name)} holds more than its header says")
            budget.take(entry.name, len(chunk))
            view = memoryview(chunk)
            try:
                while view:
                    view = view[os.write(fd, view) :]
            except OSError as exc:
                raise os_refusal(exc, entry) from None


# --- into the folder -----------------------------------------------------------------------------


def kind_on_disk(path: str) -> str:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return "missing"
    if stat.S_ISDIR(mode):
        return DIR
    if stat.S_ISREG(mode):
        return FILE
    return "symbolic link" if stat.S_ISLNK(mode) else "special file"


def check_folder(staging: Staging, folder: str) -> None:
    """Refuse (``conflict``) before the first move when an entry meets, in the folder, a file
    where it is a folder, a folder where it is a file, or a link or special file anywhere."""
    seen: dict[tuple[str, ...], str] = {(): kind_on_disk(folder)}
    for parts, kind in staging.kinds.items():
        parent = seen[parts[:-1]]
        have = "missing" if parent == "missing" else kind_on_disk(os.path.join(folder, *parts))
        seen[parts] = have
        if have not in ("missing", kind):
            name, where = shown(staging.names[parts]), shown("/".join(parts))
            raise Refused(
                "conflict",
                f"entry {name} needs {where} as a {kind}, but in the folder it is a {have}; "
                "move it away first",
            )


def open_folder(top: int, parts: tuple[str, ...]) -> int:
    """The folder at ``parts`` under the open folder ``top``, walked without following links."""
    fd = os.dup(top)
    try:
        for part in parts:
            nxt = os.open(
                part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd
            )
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def move_in(staging: Staging, folder: str) -> None:
    missing, above = [], folder
    while kind_on_disk(above) == "missing":
        missing.append(above)
        above = os.path.dirname(above)
    for path in reversed(missing):
        os.mkdir(path, 0o755)
    top = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        at: tuple[str, ...] = ()  # the last parent opened: entries come folder by folder
        parent = os.dup(top)
        try:
            for parts, kind in staging.kinds.items():
                if parts[:-1] != at:
                    os.close(parent)
                    parent, at = open_folder(top, parts[:-1]), parts[:-1]
                name = parts[-1]
                if kind == DIR:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(name, 0o755, dir_fd=parent)
                else:
                    os.replace(os.path.join(staging.root, *parts), name, dst_dir_fd=parent)
        finally:
            os.close(parent)
    finally:
        os.close(top)


# --- the whole ------------------------------------------------------------------------------------


def limit_memory() -> None:
    """A hostile header (a tar's pax record of a GiB) fails here, not in the cell's memory."""
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as f:
        f.write("500")  # and the OOM killer picks this process before the server


def is_zip(f: IO[bytes]) -> bool:
    """By content: a ZIP's first bytes, or its end record after a prefix (self-extracting)
    unless the start is a tar's (a tar may end with a ZIP as its last file)."""
    head = f.read(512)
    f.seek(0)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return True
    if head.startswith(COMPRESSED) or head[257:262] == b"ustar":
        return False
    found = zipfile.is_zipfile(f)
    f.seek(0)
    return found


COMPRESSED = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")  # gzip, bzip2, xz


def unpack(archive: str, staging_root: str, folder: str, limits: Limits) -> dict[str, int]:
    staging = Staging(staging_root)
    with open(archive, "rb") as f:
        budget = Budget(limits, os.fstat(f.fileno()).st_size)
        read = zip_entries if is_zip(f) else tar_entries
        try:
            for entry, src in read(f, limits, budget):
                staging.write(entry, src, budget)
        except (zipfile.BadZipFile, struct.error) as exc:
            raise damaged(f"the archive is damaged: {exc}") from None
    check_folder(staging, folder)
    move_in(staging, folder)
    return {"entries": budget.entries, "bytes": budget.written}


def main(argv: list[str]) -> int:
    archive, staging, folder = argv[1:4]
    limits = Limits(*(int(arg) for arg in argv[4:7]))
    limit_memory()
    try:
        answer: dict[str, object] = dict(unpack(archive, staging, folder, limits))
    except Refused as exc:
        answer = refusal(exc.code, str(exc))
    except MemoryError:
        words = size_words(MEMORY_BYTES)
        answer = refusal(
            "archive_too_large", f"unpacking needs more than {words}: a header is huge"
        )
    except OSError as exc:
        answer = refusal("invalid_request", f"unpacking failed: {exc}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    sys.stdout.write(json.dumps(answer) + "\n")
    return 0 if "entries" in answer else 1


def refusal(code: str, message: str) -> dict[str, object]:
    """The answer of a refusal; the message as valid UTF-8 (names may hold any bytes)."""
    return {"code": code, "message": message.encode("utf-8", "replace").decode()}


if __name__ == "__main__":
    sys.exit(main(sys.argv))

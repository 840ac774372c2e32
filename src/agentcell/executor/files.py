"""File operations in the workspace, done inside the cell as the cell's user. Standard library
only. Paths are relative to the workspace; no link leads out of it, and the final component of a
path is never followed when it is written or deleted."""

# Paths stay str (pathlib adds nothing to realpath checks and raw fds), as in server.py.

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import errno
import os
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator

from . import protocol as p
from .conn import Conn, Fail
from .procs import HELPERS, killpg, watch_exit

MAX_DEPTH = 256  # levels in a request's path (shutil.rmtree and friends recurse per level)
ZIPPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "zipper.py")
ZIP_TOO_LARGE = 3  # zipper.py's exit code when the files add up to more than asked


class Files:
    """The list, read, write and delete requests, confined to the workspace ``root``."""

    def __init__(self, root: str) -> None:
        self.root = root

    def locate(self, rel: str) -> tuple[str, str]:
        """(real parent directory, final name) of a workspace path; the name is "" for the root.
        The final component is not followed, so a link is seen as a link."""
        parts = path_parts(rel)
        if not parts:
            return self.root, ""
        parent = os.path.realpath(os.path.join(self.root, *parts[:-1]))
        if not inside(parent, self.root):
            raise Fail("invalid_path", f"path leaves the workspace: {rel}")
        return parent, parts[-1]

    def follow(self, rel: str) -> str:
        """The real path of a workspace path, links followed; it must stay in the workspace."""
        real = os.path.realpath(os.path.join(self.root, *path_parts(rel)))
        if not inside(real, self.root):
            raise Fail("invalid_path", f"path leaves the workspace: {rel}")
        return real

    async def list(self, req: p.ListDir, conn: Conn) -> None:
        parent, name = self.locate(req.path)
        path = os.path.join(parent, name) if name else parent
        rel = "/".join(path_parts(req.path))
        with os_errors(req.path):
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                page = list_page(path, f"{rel}/" if rel else "", req.limit, req.cursor)
            else:
                page = p.Entries([entry(name, rel, st)])
        conn.write(page.encode())

    async def read(self, req: p.Read, conn: Conn) -> None:
        path = self.follow(req.path)
        with os_errors(req.path):
            fd = open_regular(path, req.path, os.O_RDONLY)
        size = 0
        if req.max_bytes and (length := os.fstat(fd).st_size) > req.max_bytes:
            os.close(fd)
            raise Fail(
                "file_too_large",
                f"{req.path} is {size_words(length)}; downloads are limited to "
                f"{size_words(req.max_bytes)}",
            )
        try:
            while chunk := os.read(fd, p.CHUNK_BYTES):
                size += len(chunk)
                conn.write(p.Chunk(base64.b64encode(chunk).decode()).encode())
                await conn.drain()
        finally:
            os.close(fd)
        conn.write(p.End(size).encode())

    async def zip(self, req: p.Zip, conn: Conn) -> None:
        """Stream a ZIP made by zipper.py in its own process group, as Chunk frames."""
        folder = self.follow(req.path)
        with os_errors(req.path):
            if not stat.S_ISDIR(os.stat(folder).st_mode):
                raise Fail("invalid_request", f"not a folder: {req.path}")
        out, into = os.pipe()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", ZIPPER, folder, str(req.max_bytes)],
                stdin=subprocess.DEVNULL,
                stdout=into,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            os.close(into)
        HELPERS.add(proc.pid)
        exited = watch_exit(proc.pid, proc)
        exited.add_done_callback(lambda _: HELPERS.discard(proc.pid))
        size = 0
        try:
            os.set_blocking(out, False)
            while chunk := await read_some(out):
                size += len(chunk)
                conn.write(p.Chunk(base64.b64encode(chunk).decode()).encode())
                await conn.drain()
            status = os.waitstatus_to_exitcode(await exited)
            if status == ZIP_TOO_LARGE:
                raise Fail(
                    "file_too_large",
                    f"the files in {req.path} add up to more than {size_words(req.max_bytes)}, "
                    "the limit of a ZIP",
                )
            if status != 0:
                raise Fail("internal", f"making the ZIP of {req.path} failed")
        finally:
            os.close(out)
            if not exited.done():
                killpg(proc.pid, signal.SIGKILL)
        conn.write(p.End(size).encode())

    async def write(self, req: p.Write, conn: Conn) -> None:
        parent, name = self.locate(req.path)
        if not name:
            raise Fail("invalid_path", "the workspace root is not a file")
        target = os.path.join(parent, name)
        tmp = os.path.join(parent, f".upload-{os.urandom(8).hex()}~")  # fits any valid name
        with os_errors(req.path):
            if req.make_parents:
                make_dirs(parent)
            mode = writable_mode(target, req.path)
            fd = os.open(
                tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode
            )
        try:
            with os_errors(req.path):
                size = await receive(conn, fd)
                os.close(fd)
                fd = -1
                os.replace(tmp, target)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        conn.write(p.End(size).encode())

    async def delete(self, req: p.Delete, conn: Conn) -> None:
        parent, name = self.locate(req.path)
        if not name:
            raise Fail("invalid_path", "refusing to delete the workspace root")
        path = os.path.join(parent, name)
        with os_errors(req.path):
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                os.unlink(path)
            elif req.recursive:
                try:
                    shutil.rmtree(path)
                except RecursionError:  # rmtree recurses per level; a cell can nest deeper
                    raise Fail("invalid_request", f"too deeply nested: {req.path}") from None
            else:
                os.rmdir(path)
        conn.write(p.Ok().encode())


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def read_some(fd: int) -> bytes:
    """Up to CHUNK_BYTES from a non-blocking fd; b"" at end of file."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            return os.read(fd, p.CHUNK_BYTES)
        except BlockingIOError:
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_reader(fd, _resolve, ready)
            try:
                await ready
            finally:
                loop.remove_reader(fd)


def list_page(path: str, prefix: str, limit: int, cursor: str) -> p.Entries:
    """The entries of folder ``path`` after ``cursor`` (the last name of the page before, as
    base64 of its bytes), by name: at most ``limit`` and about LIST_PAGE_BYTES of them."""
    limit = min(limit or p.LIST_PAGE, p.LIST_PAGE_MAX)
    after = b""
    if cursor:
        try:
            after = base64.b64decode(cursor.encode("ascii"), altchars=b"-_", validate=True)
        except (binascii.Error, UnicodeError, ValueError):
            raise Fail("invalid_request", "this cursor is not one a listing gave") from None
    with os.scandir(path) as it:
        found = sorted((os.fsencode(e.name), e) for e in it if os.fsencode(e.name) > after)
    entries: list[p.Entry] = []
    room = p.LIST_PAGE_BYTES
    taken, last = 0, after
    for key, item in found[:limit]:
        room -= 2 * len(prefix) + 4 * len(item.name) + 128  # JSON escapes at most quadruple
        if room < 0 and taken:
            break
        taken, last = taken + 1, key
        with contextlib.suppress(FileNotFoundError):  # gone meanwhile
            entries.append(entry(item.name, prefix + item.name, item.stat(follow_symlinks=False)))
    more = len(found) > taken
    return p.Entries(entries, base64.urlsafe_b64encode(last).decode() if more else "")


def size_words(size: int) -> str:
    """A byte count as people say it: 512 bytes, 1.5 MiB, 1.0 TiB."""
    if size < 1024:
        return f"{size} bytes"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        value /= 1024
        if value < 1024 or unit == "PiB":
            break
    return f"{value:.1f} {unit}"


def inside(real: str, root: str) -> bool:
    return real == root or real.startswith(root.rstrip("/") + "/")


def path_parts(rel: str) -> list[str]:
    if not isinstance(rel, str) or "\0" in rel or rel.startswith("/"):
        raise Fail("invalid_path", f"not a path relative to the workspace: {rel!r}")
    parts = [part for part in rel.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise Fail("invalid_path", f"'..' is not allowed in paths: {rel!r}")
    if len(parts) > MAX_DEPTH:
        raise Fail("invalid_path", f"paths are limited to {MAX_DEPTH} levels: {rel[:200]}")
    return parts


def entry(name: str, rel: str, st: os.stat_result) -> p.Entry:
    mode = st.st_mode
    kind: p.EntryType = (
        "file"
        if stat.S_ISREG(mode)
        else "dir"
        if stat.S_ISDIR(mode)
        else "link"
        if stat.S_ISLNK(mode)
        else "other"
    )
    return p.Entry(name, rel, kind, st.st_size, st.st_mtime)


def check_type(mode: int, rel: str) -> None:
    if stat.S_ISDIR(mode):
        raise Fail("invalid_request", f"is a directory, not a file: {rel}")
    if not stat.S_ISREG(mode):
        raise Fail("unsupported_file_type", f"not a regular file: {rel}")


def open_regular(path: str, rel: str, flags: int) -> int:
    """Open a regular file, never following a link and never blocking on a FIFO or device."""
    check_type(os.lstat(path).st_mode, rel)
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        check_type(os.fstat(fd).st_mode, rel)
    except BaseException:
        os.close(fd)
        raise
    return fd


def writable_mode(target: str, rel: str) -> int:
    """The mode of the file a write replaces (0o644 for a new one); links and such are refused."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return 0o644
    check_type(st.st_mode, rel)
    return stat.S_IMODE(st.st_mode)


async def receive(conn: Conn, fd: int) -> int:
    """Write the Chunk frames up to End into fd; the byte count."""
    size = 0
    while True:
        line = await conn.readline()
        if not line:
            raise ConnectionResetError("the client hung up")
        msg = p.decode(line)
        if isinstance(msg, p.End):
            if msg.size != size:
                raise Fail("invalid_request", f"got {size} bytes, the client said {msg.size}")
            return size
        if not isinstance(msg, p.Chunk):
            raise Fail("invalid_request", f"expected chunk or end, got {msg.kind}")
        try:
            view = memoryview(base64.b64decode(msg.data, validate=True))
        except binascii.Error as exc:
            raise Fail("invalid_request", f"bad base64 chunk: {exc}") from exc
        size += len(view)
        while view:
            view = view[os.write(fd, view) :]


def make_dirs(path: str) -> None:
    """os.makedirs without its recursion, which a path of ~1000 folders exhausts."""
    missing = []
    while not os.path.isdir(path):
        missing.append(path)
        path = os.path.dirname(path)
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder)


@contextlib.contextmanager
def os_errors(rel: str) -> Iterator[None]:
    """Turn OS errors into the request errors the client understands."""
    try:
        yield
    except OSError as exc:
        code = exc.errno
        if code in (errno.ENOENT, errno.ENOTDIR):
            raise Fail("not_found", f"no such file or directory: {rel}") from exc
        if code in (errno.ENOSPC, errno.EDQUOT):
            raise Fail("workspace_full", f"no space left in the workspace writing {rel}") from exc
        if code == errno.ELOOP:
            raise Fail("unsupported_file_type", f"is a symbolic link: {rel}") from exc
        if code == errno.ENOTEMPTY:
            raise Fail(
                "invalid_request", f"directory not empty (delete recursively): {rel}"
            ) from exc
        if code == errno.ENAMETOOLONG:
            raise Fail("invalid_path", f"name or path too long: {rel[:200]}") from exc
        if code in (errno.EISDIR, errno.EEXIST, errno.EACCES, errno.EPERM, errno.EROFS):
            raise Fail("invalid_request", f"{exc.strerror}: {rel}") from exc
        raise

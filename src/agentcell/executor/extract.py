"""The extract request: an archive received into the workspace, then unpacked into a folder by
unpacker.py in its own process group, as the cell's user. Standard library only.

The archive and the unpacked entries wait in a staging folder of their own at the workspace's
top (``.extract-<random>~``, on the workspace's file system, so its quota counts them and the
entries move into place by rename); it is removed whatever happens. The folder is touched only
once the whole archive has passed (see unpacker.py)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from . import protocol as p
from .conn import Conn, Fail
from .files import Files, os_errors, path_parts, read_some, receive
from .procs import HELPERS, killpg, watch_exit

UNPACKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "unpacker.py")
ANSWER_BYTES = 64 * 1024  # the unpacker's answer is one short line
Handler = Callable[[Any, Conn], Awaitable[None]]
CODES = frozenset(  # what the unpacker may answer with
    {"unsafe_archive", "archive_too_large", "invalid_archive", "conflict", "workspace_full"}
    | {"invalid_request"}
)


class Extractor:
    def __init__(self, files: Files) -> None:
        self.files = files

    def handlers(self) -> dict[type[p.Message], Handler]:
        return {p.Extract: self.extract}

    async def extract(self, req: p.Extract, conn: Conn) -> None:
        check(req)
        folder = self.files.follow(req.path)
        rel = "/".join(path_parts(req.path)) or "."
        with os_errors(req.path):
            try:
                is_dir = stat.S_ISDIR(os.stat(folder).st_mode)
            except FileNotFoundError:
                is_dir = True  # made once the archive has passed
            except NotADirectoryError:
                is_dir = False
            if not is_dir:
                raise Fail("invalid_request", f"not a folder: {req.path}")
            staging = os.path.join(self.files.root, f".extract-{os.urandom(8).hex()}~")
            os.mkdir(staging, 0o700)
        try:
            archive, tree = os.path.join(staging, "archive"), os.path.join(staging, "tree")
            with os_errors(req.path):
                os.mkdir(tree, 0o700)
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                fd = os.open(archive, flags, 0o600)
                try:
                    await receive(conn, fd)
                finally:
                    os.close(fd)
            answer = await unpack([archive, tree, folder], req, conn)
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # the unpacker emptied its tree
        conn.write(p.Extracted(rel, answer["entries"], answer["bytes"]).encode())


def check(req: p.Extract) -> None:
    limits = (req.max_entries, req.max_bytes, req.max_ratio)
    if not all(isinstance(n, int) and n >= 0 for n in limits):
        raise Fail("invalid_request", "the limits of an extract must be counts (0 = none)")


async def unpack(paths: list[str], req: p.Extract, conn: Conn) -> dict[str, int]:
    """Run unpacker.py on (archive, tree, folder); a Beat every BEAT_S while it works."""
    limits = [str(n) for n in (req.max_entries, req.max_bytes, req.max_ratio)]
    out, into = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", UNPACKER, *paths, *limits],
            stdin=subprocess.DEVNULL,
            stdout=into,
            start_new_session=True,
        )
    finally:
        os.close(into)
    HELPERS.add(proc.pid)
    exited = watch_exit(proc.pid, proc)
    exited.add_done_callback(lambda _: HELPERS.discard(proc.pid))
    os.set_blocking(out, False)
    reading = asyncio.ensure_future(read_all(out))
    try:
        while not (await asyncio.wait({reading}, timeout=p.BEAT_S))[0]:
            conn.write(p.Beat().encode())
        status = os.waitstatus_to_exitcode(await exited)
        return answer_of(reading.result(), status, req.path)
    finally:
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)  # its reader is gone before close
        os.close(out)
        if not exited.done():
            killpg(proc.pid, signal.SIGKILL)


async def read_all(fd: int) -> bytes:
    data = b""
    while len(data) <= ANSWER_BYTES and (chunk := await read_some(fd)):
        data += chunk
    return data


def answer_of(data: bytes, status: int, rel: str) -> dict[str, int]:
    try:
        answer = json.loads(data)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        how = f"was killed by signal {-status}" if status < 0 else f"exited with {status}"
        raise Fail("internal", f"unpacking into {rel} failed: the unpacker {how}")
    if (
        status == 0
        and isinstance(answer.get("entries"), int)
        and isinstance(answer.get("bytes"), int)
    ):
        return {"entries": answer["entries"], "bytes": answer["bytes"]}
    code, message = answer.get("code"), answer.get("message")
    if code not in CODES or not isinstance(message, str):
        raise Fail("internal", f"unpacking into {rel} failed: {str(answer)[:200]}")
    raise Fail(code, message)

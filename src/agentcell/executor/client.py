"""Host side of the executor: one client per cell, one connection per call.

The control directory is writable by the cell, so nothing there is trusted: the socket is
opened with ``O_PATH | O_NOFOLLOW``, must be a socket, and is connected through
``/proc/self/fd/N`` so that no name is resolved twice and no link is ever followed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import builtins
import os
import socket
import stat
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from agentcell.errors import (
    ExecutorError,
    ExecutorUnreachable,
    FileTooLarge,
    NotFound,
    executor_error,
)
from agentcell.executor import protocol as p
from agentcell.executor.duplex import SocketDuplex
from agentcell.executor.protocol import Entry, Exec, Exit, JobInfo, JobStart, Output, Pong

__all__ = [
    "Entry",
    "Exec",
    "ExecResult",
    "ExecutorClient",
    "Exit",
    "JobInfo",
    "JobStart",
    "Output",
    "Pong",
]

RECV_BYTES = 64 * 1024
CONNECT_RETRIES = (0.001, 0.005, 0.02, 0.1, 0.5, None)  # while the listen backlog is full
PATIENCE_S = 60.0  # the longest silence we accept from an executor, beyond an exec's timeout
M = TypeVar("M", bound=p.Message)


@dataclass
class ExecResult:
    stdout: str
    stderr: str
    exit_code: int
    duration_ms: float
    truncated: bool = False
    timed_out: bool = False
    oom_killed: bool = False
    context_reset: bool = False


class _Connection:
    """One call's connection: a non-blocking socket read by lines. Lighter than asyncio
    streams (no transport, no extra loop turns to set up and tear down): the warm path is
    made of such fixed costs. The cell is not trusted: lines are bounded, and so is silence."""

    def __init__(self, sock: socket.socket, patience: float | None, paths: bool = True) -> None:
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.buf = bytearray()
        self.patience = patience
        self.paths = paths  # a not_found is a PathNotFound (else a NotFound: a job's)

    async def send(self, data: bytes) -> None:
        try:
            await self.loop.sock_sendall(self.sock, data)
        except OSError as exc:
            raise _gone(exc) from exc

    async def event(self) -> p.Message:
        """The next message; an Error event is raised as the matching exception."""
        line = await self.readline()
        try:
            msg = p.decode(line)
        except p.ProtocolError as exc:
            raise ExecutorError(f"the executor sent garbage: {exc}") from exc
        if isinstance(msg, p.Error):
            raise executor_error(msg.code, msg.message, paths=self.paths)
        return msg

    async def expect(self, kind: type[M]) -> M:
        msg = await self.event()
        if not isinstance(msg, kind):
            raise _unexpected(msg)
        return msg

    async def readline(self) -> bytes:
        start = 0
        while (end := self.buf.find(b"\n", start)) < 0:
            if len(self.buf) > p.EVENT_LINE_LIMIT:
                raise ExecutorError("the executor sent an oversized message")
            start = len(self.buf)
            try:
                async with asyncio.timeout(self.patience):
                    data = await self.loop.sock_recv(self.sock, RECV_BYTES)
            except TimeoutError as exc:
                raise ExecutorUnreachable(
                    f"the executor is not answering: silent for {self.patience or 0:.0f} s"
                ) from exc
            except OSError as exc:
                raise _gone(exc) from exc
            if not data:
                raise ExecutorUnreachable("the executor is not answering: it hung up")
            self.buf += data
        line = bytes(self.buf[: end + 1])
        del self.buf[: end + 1]
        return line

    async def read_with_fd(self) -> socket.socket | None:
        """Read what comes first, and the TCP connection sent with it, if one was (anything
        else the cell sends as an fd is closed: it is not trusted)."""
        ready: asyncio.Future[None] = self.loop.create_future()

        def readable() -> None:
            if not ready.done():
                ready.set_result(None)

        self.loop.add_reader(self.sock.fileno(), readable)
        try:
            async with asyncio.timeout(self.patience):
                await ready
        except TimeoutError as exc:
            raise ExecutorUnreachable("the executor is not answering") from exc
        finally:
            self.loop.remove_reader(self.sock.fileno())
        try:
            data, fds, _, _ = socket.recv_fds(self.sock, RECV_BYTES, 1)
        except OSError as exc:
            raise _gone(exc) from exc
        self.buf += data
        return tcp_connection(fds[0]) if fds else None

    def close(self) -> None:
        self.sock.close()


def tcp_connection(fd: int) -> socket.socket:
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        os.close(fd)
        raise ExecutorError(
            f"the executor handed over something that is not a socket: {exc}"
        ) from None
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
        sock.close()
        raise ExecutorError("the executor handed over something that is not a TCP connection")
    sock.setblocking(False)
    return sock


class ExecutorClient:
    """Talks to the executor whose socket is ``control_dir/exec.sock``."""

    def __init__(self, control_dir: Path) -> None:
        self.control_dir = Path(control_dir)
        self._path = os.fspath(self.control_dir / p.SOCKET_NAME)

    def __repr__(self) -> str:
        return f"ExecutorClient({str(self.control_dir)!r})"

    async def ping(self) -> Pong:
        return await self._call(p.Ping(), Pong)

    async def stream(self, req: Exec) -> AsyncGenerator[Output | Exit, None]:
        """Output events as they come, then the Exit. Closing the iterator early closes the
        connection, which stops the code (as a timeout would)."""
        conn = await self._open(req)
        try:
            while True:
                msg = await conn.event()
                if isinstance(msg, Output):
                    yield msg
                elif isinstance(msg, Exit):
                    yield msg
                    return
                else:
                    raise _unexpected(msg)
        finally:
            conn.close()

    async def exec(self, req: Exec) -> ExecResult:
        conn = await self._open(req)
        out: builtins.list[str] = []
        err: builtins.list[str] = []
        room = req.output_limit  # a character is at least a byte: more is a broken executor
        try:
            while True:
                msg = await conn.event()
                if isinstance(msg, Output):
                    room -= len(msg.data)
                    if room < 0:
                        raise ExecutorError("the executor sent more output than the limit")
                    (out if msg.stream == "stdout" else err).append(msg.data)
                elif isinstance(msg, Exit):
                    return ExecResult(
                        "".join(out),
                        "".join(err),
                        msg.exit_code,
                        msg.duration_ms,
                        msg.truncated,
                        msg.timed_out,
                        msg.oom_killed,
                        msg.context_reset,
                    )
                else:
                    raise _unexpected(msg)
        finally:
            conn.close()

    async def interrupt(self, context: str = "default") -> None:
        await self._call(p.Interrupt(context), p.Ok)

    async def close_context(self, context: str = "default") -> None:
        await self._call(p.CloseContext(context), p.Ok)

    async def list_processes(self) -> builtins.list[p.Process]:
        """The processes background execs kept running."""
        return (await self._call(p.ListProcesses(), p.Processes)).processes

    async def kill_process(self, pid: int) -> None:
        """Kill a kept process and everything under it."""
        await self._call(p.KillProcess(pid), p.Ok)

    async def list(self, path: str = ".") -> builtins.list[Entry]:
        """Every entry of the folder (or the one file), page after page."""
        entries: builtins.list[Entry] = []
        cursor = ""
        while True:
            page = await self.list_page(path, cursor=cursor)
            entries += page.entries
            if not (cursor := page.next_cursor):
                return entries

    async def list_page(self, path: str = ".", limit: int = 0, cursor: str = "") -> p.Entries:
        """One page of the folder's entries, by name; pass ``next_cursor`` for the next."""
        return await self._call(p.ListDir(path, limit, cursor), p.Entries)

    async def delete(self, path: str, recursive: bool = False) -> None:
        await self._call(p.Delete(path, recursive), p.Ok)

    async def read(self, path: str, max_bytes: int = 0) -> AsyncGenerator[bytes, None]:
        """The file's bytes, in chunks of up to protocol.CHUNK_BYTES. A file larger than
        ``max_bytes`` (0 = no limit) raises FileTooLarge before any data."""
        async for chunk in self._chunks(p.Read(path, max_bytes), path):
            yield chunk

    async def zip(self, path: str = ".", max_bytes: int = 0) -> AsyncGenerator[bytes, None]:
        """A ZIP of the folder, streamed as the cell makes it (links and special files left out).
        Files adding up to more than ``max_bytes`` (0 = no limit) raise FileTooLarge first."""
        async for chunk in self._chunks(p.Zip(path, max_bytes), path):
            yield chunk

    async def _chunks(self, request: p.Read | p.Zip, path: str) -> AsyncGenerator[bytes, None]:
        conn = await self._open(request)
        size = 0
        try:
            while True:
                msg = await conn.event()
                if isinstance(msg, p.Chunk):
                    data = _b64decode(msg.data)
                    size += len(data)
                    yield data
                elif isinstance(msg, p.End):
                    if msg.size != size:
                        raise ExecutorError(
                            f"{request.kind} {path}: got {size} bytes of {msg.size}"
                        )
                    return
                else:
                    raise _unexpected(msg)
        finally:
            conn.close()

    async def read_bytes(self, path: str, max_bytes: int = 64 * 1024 * 1024) -> bytes:
        parts: builtins.list[bytes] = []
        size = 0
        async with aclosing(self.read(path)) as chunks:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise FileTooLarge(f"{path} is larger than {max_bytes} bytes")
                parts.append(chunk)
        return b"".join(parts)

    async def write(
        self, path: str, data: bytes | AsyncIterable[bytes], *, make_parents: bool = True
    ) -> int:
        """Replace the file atomically with data; the number of bytes written."""
        conn = await self._open(p.Write(path, make_parents))
        try:
            await _send_data(conn, data)
            return (await conn.expect(p.End)).size
        finally:
            conn.close()

    async def extract(self, req: p.Extract, data: bytes | AsyncIterable[bytes]) -> p.Extracted:
        """Unpack the archive ``data`` (ZIP or tar, plain or compressed) into the folder
        ``req.path``, within ``req``'s limits: nothing is written unless all of it passes
        (``UnsafeArchive``, ``ArchiveTooLarge``, ``InvalidArchive``, ``Conflict`` say why not).
        Waits as long as it unpacks: the executor's beats show it is there."""
        conn = await self._open(req)
        try:
            await _send_data(conn, data)
            while isinstance(msg := await conn.event(), p.Beat):
                pass
            if not isinstance(msg, p.Extracted):
                raise _unexpected(msg)
            return msg
        finally:
            conn.close()

    # --- jobs: detached from any connection, with a log in the cell ----------------------

    async def start_job(self, req: JobStart) -> JobInfo:
        """Start the job; ``Conflict`` when its id is taken."""
        return await self._call(req, JobInfo)

    async def job_status(self, job_id: str) -> JobInfo:
        """The job as it is; ``NotFound`` when the cell has no such job."""
        return await self._call(p.JobStatus(job_id), JobInfo)

    async def jobs(self) -> builtins.list[JobInfo]:
        """Every job whose folder is in the cell, by start time."""
        return (await self._call(p.JobList(), p.JobInfos)).jobs

    async def wait_job(self, job_id: str) -> JobInfo:
        """The job once it has ended (or is lost). Waits as long as it runs: the executor's
        beats show it is there."""
        conn = await self._open(p.JobWait(job_id))
        try:
            while isinstance(msg := await conn.event(), p.Beat):
                pass
            if not isinstance(msg, JobInfo):
                raise _unexpected(msg)
            return msg
        finally:
            conn.close()

    async def job_log(
        self, job_id: str, offset: int = 0, follow: bool = False
    ) -> AsyncGenerator[bytes, None]:
        """The job's log from ``offset``, in chunks of up to protocol.CHUNK_BYTES; with
        ``follow``, on as it grows until the job has ended. Closing it early just hangs up."""
        conn = await self._open(p.JobLog(job_id, offset, follow))
        size = 0
        try:
            while True:
                msg = await conn.event()
                if isinstance(msg, p.Chunk):
                    data = _b64decode(msg.data)
                    size += len(data)
                    yield data
                elif isinstance(msg, p.End):
                    if msg.size != offset + size and (size or msg.size > offset):
                        raise ExecutorError(
                            f"log of job {job_id}: got {size} bytes from {offset}, "
                            f"the executor says up to {msg.size}"
                        )
                    return
                elif not isinstance(msg, p.Beat):
                    raise _unexpected(msg)
        finally:
            conn.close()

    async def cancel_job(self, job_id: str) -> JobInfo:
        """Kill the job's processes, all of them; the answer comes once they are dead. An
        ended job is left as it is."""
        return await self._call(p.JobCancel(job_id), JobInfo)

    async def append_job_log(self, job_id: str, text: str) -> None:
        """Add text to an external job's log."""
        await self._call(p.JobAppend(job_id, text), p.Ok)

    async def end_job(self, job_id: str, exit_code: int) -> JobInfo:
        """End an external job (one that has ended already is left as it is)."""
        return await self._call(p.JobEnd(job_id, exit_code), JobInfo)

    async def forget_job(self, job_id: str) -> None:
        """Delete an ended job's folder, log and all; ``Conflict`` while it runs."""
        await self._call(p.JobForget(job_id), p.Ok)

    # --- egress: the connections programs in the cell open to its forwarder ---------------

    @asynccontextmanager
    async def egress(self) -> AsyncIterator[AsyncIterator[SocketDuplex]]:
        """Run the cell's egress forwarder (127.0.0.1:protocol.EGRESS_PORT in the cell) for
        the block: listening once entered (``Conflict`` when the cell's port is taken or
        another listen holds it), it yields the connections programs in the cell open, each
        taken and spliced to it: the caller relays its bytes (and closes it). On exit the
        forwarder stops and offers not taken yet are dropped. Silence is no error (a paused
        cell is silent); the executor going away ends the iteration with
        ``ExecutorUnreachable``."""
        conn = await self._open(p.EgressListen())
        try:
            await conn.expect(p.Ok)
            yield self._offers(conn)
        finally:
            conn.close()

    async def _offers(self, conn: _Connection) -> AsyncGenerator[SocketDuplex, None]:
        while True:
            msg = await conn.event()
            if isinstance(msg, p.EgressOffer):
                if (duplex := await self._take_offer(msg.id)) is not None:
                    yield duplex
            elif not isinstance(msg, p.Beat):
                raise _unexpected(msg)

    async def _take_offer(self, offer_id: str) -> SocketDuplex | None:
        """The offered connection, or None when the cell dropped it meanwhile."""
        conn = await self._open(p.EgressAccept(offer_id))
        try:
            await conn.expect(p.Ok)
        except NotFound:
            conn.close()
            return None
        except BaseException:
            conn.close()
            raise
        return SocketDuplex(conn.sock, offer_id, bytes(conn.buf))

    # --- ports: the host's connections to servers listening in the cell -----------------

    async def list_ports(self) -> builtins.list[p.Port]:
        return (await self._call(p.ListPorts(), p.PortList)).ports

    async def connect(self, port: int) -> SocketDuplex:
        """A connection to ``port`` on the cell's loopback, as raw bytes both ways; the caller
        closes it. ``PortClosed`` when nothing listens there. The executor hands over the
        connection itself where it can (ports.py): then no process of the cell's is between."""
        conn = await self._open(p.Connect(port))
        try:
            handed = await conn.read_with_fd()
            await conn.expect(p.Ok)
            if handed is not None:
                await conn.send(b"T")
                conn.close()
                return SocketDuplex(handed, f"port {port}")
            await conn.send(b"S")
        except BaseException:
            conn.close()
            raise
        return SocketDuplex(conn.sock, f"port {port}", bytes(conn.buf))

    async def attach_terminal(
        self, terminal: str = "", cols: int = 80, rows: int = 24
    ) -> tuple[p.TerminalInfo, SocketDuplex]:
        """Attach to a terminal (``""``: start one): its info, and a connection carrying
        keystrokes in and its output out, which ends once its shell has exited (or another
        attachment took over). ``NotFound`` for a terminal the cell does not have."""
        conn = await self._open(p.TerminalAttach(terminal, cols, rows))
        try:
            info = await conn.expect(p.TerminalInfo)
        except BaseException:
            conn.close()
            raise
        return info, SocketDuplex(conn.sock, f"terminal {info.terminal}", bytes(conn.buf))

    async def resize_terminal(self, terminal: str, cols: int, rows: int) -> None:
        await self._call(p.TerminalResize(terminal, cols, rows), p.Ok)

    async def terminals(self) -> builtins.list[p.TerminalInfo]:
        return (await self._call(p.ListTerminals(), p.TerminalInfos)).terminals

    async def close_terminal(self, terminal: str) -> p.TerminalInfo:
        """End the terminal (if its shell still runs) and forget it: its last info."""
        return await self._call(p.TerminalClose(terminal), p.TerminalInfo)

    async def start_desktop(self) -> p.DesktopInfo:
        """Start the live desktop unless it runs: its display and VNC port."""
        return await self._call(p.DesktopStart(), p.DesktopInfo)

    async def _call(self, req: p.Message, kind: type[M]) -> M:
        conn = await self._open(req)
        try:
            return await conn.expect(kind)
        finally:
            conn.close()

    async def _open(self, req: p.Message) -> _Connection:
        patience: float | None = PATIENCE_S + (req.timeout_s if isinstance(req, Exec) else 0)
        if isinstance(req, p.EgressListen):
            patience = None
        # a missing job, offer or terminal: NotFound
        paths = not req.kind.startswith(("job_", "egress_", "terminal_"))
        conn = _Connection(await self._connect(), patience, paths=paths)
        try:
            await conn.send(req.encode())
        except BaseException:
            conn.close()
            raise
        return conn

    async def _connect(self) -> socket.socket:
        try:
            fd = os.open(self._path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise _gone(exc) from exc
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                raise ExecutorUnreachable(f"{self._path} is not a socket: no executor answers")
            for delay in CONNECT_RETRIES:
                try:
                    sock.connect(f"/proc/self/fd/{fd}")  # an AF_UNIX connect never blocks
                    break
                except BlockingIOError:
                    if delay is None:
                        raise
                    await asyncio.sleep(delay)
        except OSError as exc:
            sock.close()
            raise _gone(exc) from exc
        except BaseException:
            sock.close()
            raise
        finally:
            os.close(fd)
        return sock


async def _send_data(conn: _Connection, data: bytes | AsyncIterable[bytes]) -> None:
    """data as Chunk frames, then its End. A server that stops reading (it refused the data)
    is no error here: its answer says why."""
    try:
        size = 0
        async for piece in _pieces(data):
            await conn.send(p.Chunk(base64.b64encode(piece).decode()).encode())
            size += len(piece)
        await conn.send(p.End(size).encode())
    except ExecutorUnreachable:
        pass


async def _pieces(data: bytes | AsyncIterable[bytes]) -> AsyncIterator[memoryview]:
    """data cut into frames of at most CHUNK_BYTES."""
    if isinstance(data, bytes | bytearray | memoryview):
        view = memoryview(data)
        for i in range(0, len(view), p.CHUNK_BYTES):
            yield view[i : i + p.CHUNK_BYTES]
        return
    async for piece in data:
        view = memoryview(piece)
        for i in range(0, len(view), p.CHUNK_BYTES):
            yield view[i : i + p.CHUNK_BYTES]


def _b64decode(data: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except binascii.Error as exc:
        raise ExecutorError(f"the executor sent a bad chunk: {exc}") from exc


def _gone(exc: OSError) -> ExecutorUnreachable:
    return ExecutorUnreachable(f"the executor is not answering: {exc.strerror or exc}")


def _unexpected(msg: p.Message) -> ExecutorError:
    return ExecutorError(f"unexpected {msg.kind!r} message from the executor")

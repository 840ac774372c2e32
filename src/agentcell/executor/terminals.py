"""Terminals: interactive shells on pseudo-terminals in the cell (DESIGN §11). Standard library
only.

A terminal is ``bash --norc -i`` under a holder (holder.py) whose session has the pseudo-terminal as
its controlling terminal, so job control, Ctrl-C and hangups behave as in a login. The host
attaches with ``TerminalAttach``: the connection then carries keystrokes in and output out,
starting with the scrollback (the last TERMINAL_SCROLLBACK bytes), so a reloaded page sees
what was on screen. One attachment at a time: a new one takes over. Memory stays bounded
whatever the shell prints: while attached, output is read only as fast as the attachment takes
it (the program blocks on a full terminal, as it would over ssh); while nobody is attached, it
goes to the scrollback ring only. A terminal nobody is attached to is ended after
TERMINAL_GRACE_S; once its shell has exited, it stays that long for its exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import secrets
import socket
import struct
import termios
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from . import protocol as p
from .conn import Conn, Fail
from .holder import fork_terminal_holder, read_status
from .procs import watch_exit

T = TypeVar("T")


class Runner(Protocol):
    """What terminals use of the executor server: its shell, and its way of starting and
    killing a holder."""

    root: str
    shell: str
    holders: set[int]
    base_env: dict[str, str]

    async def fork(self, start: Callable[[], T]) -> T: ...
    def forget(self, holder: int) -> None: ...
    def kill_shell(self, holder: int, *, session: bool = True) -> None: ...


Handler = Callable[[Any, Conn], Awaitable[None]]
READ_BYTES = 64 * 1024
OUT_HIGH = 256 * 1024  # output waiting for the attachment before the terminal is read no more
SIZE_MAX = 1000  # columns or rows
PROMPT = r"\w \$ "
IUTF8 = getattr(termios, "IUTF8", 0o40000)  # Linux's value; Python's termios has it from 3.13
CONTROL_KEYS = {  # as stty sane has them
    termios.VINTR: b"\x03",  # Ctrl-C
    termios.VQUIT: b"\x1c",  # Ctrl-\
    termios.VERASE: b"\x7f",
    termios.VKILL: b"\x15",  # Ctrl-U
    termios.VEOF: b"\x04",  # Ctrl-D
    termios.VSUSP: b"\x1a",  # Ctrl-Z
    termios.VWERASE: b"\x17",  # Ctrl-W
    termios.VLNEXT: b"\x16",  # Ctrl-V
}


class Terminals:
    def __init__(self, executor: Runner) -> None:
        self.executor = executor
        self.by_id: dict[str, Terminal] = {}
        self.env = {**executor.base_env, "TERM": "xterm-256color", "PS1": PROMPT}

    def handlers(self) -> dict[type[p.Message], Handler]:
        return {
            p.TerminalAttach: self.attach,
            p.TerminalResize: self.resize,
            p.ListTerminals: self.list,
            p.TerminalClose: self.close,
        }

    async def attach(self, req: p.TerminalAttach, conn: Conn) -> None:
        cols, rows = check_size(req.cols, req.rows)
        if req.terminal:
            terminal = self.get(req.terminal)
            terminal.resize(cols, rows)
        else:
            terminal = await self.open(cols, rows)
        conn.write(terminal.info().encode())
        await conn.drain()
        keys, conn.inbuf = bytes(conn.inbuf), bytearray()
        conn.loop.remove_reader(conn.fd)
        await terminal.attach(conn.sock, keys)

    async def open(self, cols: int, rows: int) -> Terminal:
        if len(self.by_id) >= p.TERMINALS_MAX:
            raise Fail(
                "conflict", f"{p.TERMINALS_MAX} terminals are open in this cell: close one first"
            )
        leader, follower = os.openpty()
        try:
            set_size(leader, cols, rows)
            sane(follower)
            # No rc files: the image's would set a prompt naming a user the cell's uid is not.
            argv = [self.executor.shell, "--norc", "-i"]
            holder, status_r = await self.executor.fork(
                lambda: fork_terminal_holder(argv, self.executor.root, self.env, follower)
            )
        except BaseException:
            os.close(leader)
            raise
        finally:
            os.close(follower)  # the shell's only: the leader side reads EOF once it is gone
        self.executor.holders.add(holder)
        held = watch_exit(holder)
        held.add_done_callback(lambda _: self.executor.forget(holder))
        terminal = Terminal(secrets.token_hex(6), holder, leader, cols, rows, self)
        self.by_id[terminal.id] = terminal
        terminal.start(read_status(status_r))
        return terminal

    def get(self, terminal_id: str) -> Terminal:
        terminal = self.by_id.get(terminal_id) if isinstance(terminal_id, str) else None
        if terminal is None:
            raise Fail("not_found", f"no terminal {str(terminal_id)[: p.TERMINAL_ID_MAX]!r}")
        return terminal

    async def resize(self, req: p.TerminalResize, conn: Conn) -> None:
        self.get(req.terminal).resize(*check_size(req.cols, req.rows))
        conn.write(p.Ok().encode())

    async def list(self, _req: p.ListTerminals, conn: Conn) -> None:
        conn.write(p.TerminalInfos([t.info() for t in self.by_id.values()]).encode())

    async def close(self, req: p.TerminalClose, conn: Conn) -> None:
        terminal = self.get(req.terminal)
        await terminal.end()
        conn.write(terminal.info().encode())

    def shutdown(self) -> None:
        for terminal in list(self.by_id.values()):
            terminal.kill()


def check_size(cols: object, rows: object) -> tuple[int, int]:
    for value in (cols, rows):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= SIZE_MAX:
            raise Fail("invalid_request", f"a terminal's size is 1 to {SIZE_MAX} columns and rows")
    return cols, rows  # type: ignore[return-value]


def sane(fd: int) -> None:
    """The modes of a login's terminal (``stty sane``), whatever the kernel's defaults are
    (gVisor's have no signals from keys: Ctrl-C would be a plain character)."""
    iflag, oflag, cflag, lflag, ispeed, ospeed, cc = termios.tcgetattr(fd)
    iflag |= termios.ICRNL | termios.IXON | IUTF8
    oflag |= termios.OPOST | termios.ONLCR
    lflag |= (termios.ISIG | termios.ICANON | termios.IEXTEN | termios.ECHO | termios.ECHOE) | (
        termios.ECHOK | termios.ECHOCTL | termios.ECHOKE
    )
    for index, key in CONTROL_KEYS.items():
        cc[index] = key
    termios.tcsetattr(fd, termios.TCSANOW, [iflag, oflag, cflag, lflag, ispeed, ospeed, cc])


def set_size(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class Terminal:
    def __init__(
        self, id: str, holder: int, leader: int, cols: int, rows: int, owner: Terminals
    ) -> None:
        self.id, self.holder, self.leader = id, holder, leader
        self.cols, self.rows = cols, rows
        self.owner = owner
        self.loop = asyncio.get_running_loop()
        self.scrollback = bytearray()
        self.attachment: Attachment | None = None
        self.exit_code: int | None = None
        self.reading = False
        self.ended = self.loop.create_future()  # the shell exited, and its output was read
        self.expiry: asyncio.TimerHandle | None = None
        os.set_blocking(leader, False)

    def start(self, status: asyncio.Future[int | None]) -> None:
        self.pause_output(False)
        status.add_done_callback(self.on_exit)
        self.detached()

    def info(self) -> p.TerminalInfo:
        attached = self.attachment is not None
        return p.TerminalInfo(self.id, self.holder, self.cols, self.rows, attached, self.exit_code)

    def resize(self, cols: int, rows: int) -> None:
        if (cols, rows) != (self.cols, self.rows) and not self.ended.done():
            set_size(self.leader, cols, rows)  # the kernel sends the foreground SIGWINCH
            self.cols, self.rows = cols, rows

    def pause_output(self, paused: bool) -> None:
        if self.ended.done() or paused != self.reading:
            return
        if paused:
            self.loop.remove_reader(self.leader)
        else:
            self.loop.add_reader(self.leader, self.on_output)
        self.reading = not paused

    def on_output(self) -> None:
        try:
            data = os.read(self.leader, READ_BYTES)
        except BlockingIOError:
            return
        except OSError:  # EIO: no process has the terminal open any more
            data = b""
        if data:
            self.output(data)

    def output(self, data: bytes) -> None:
        self.scrollback += data
        del self.scrollback[: -p.TERMINAL_SCROLLBACK]
        if self.attachment is not None:
            self.attachment.send(data)

    def on_exit(self, status: asyncio.Future[int | None]) -> None:
        if self.ended.done():  # killed and forgotten: its leader fd is closed
            return
        code = status.result()
        self.exit_code = 127 if code is None else os.waitstatus_to_exitcode(code)
        self.owner.executor.kill_shell(self.holder)  # what it left running in the terminal
        with contextlib.suppress(OSError):  # what it printed last
            while data := os.read(self.leader, READ_BYTES):
                self.output(data)
        self.pause_output(True)
        self.ended.set_result(None)
        if self.attachment is not None:
            self.attachment.finish()

    async def attach(self, sock: socket.socket, keys: bytes) -> None:
        if self.attachment is not None:
            self.attachment.stop()
        if self.expiry is not None:
            self.expiry.cancel()
        attachment = self.attachment = Attachment(sock, self)
        attachment.send(bytes(self.scrollback))
        if self.ended.done():
            attachment.finish()
        else:
            attachment.keys(keys)
        try:
            await attachment.done
        finally:
            if self.attachment is attachment and self.id in self.owner.by_id:
                self.attachment = None
                self.pause_output(False)
                self.detached()

    def detached(self) -> None:
        self.expiry = self.loop.call_later(p.TERMINAL_GRACE_S, self.expire)

    def expire(self) -> None:
        if self.attachment is None:
            self.kill()

    def kill(self) -> None:
        """Kill its shell and everything under it, and forget it."""
        if self.expiry is not None:
            self.expiry.cancel()
        if self.attachment is not None:
            self.attachment.stop()
        if self.owner.by_id.pop(self.id, None) is None:
            return
        self.owner.executor.kill_shell(self.holder)
        self.pause_output(True)
        if not self.ended.done():
            self.ended.set_result(None)
        os.close(self.leader)

    async def end(self) -> None:
        if not self.ended.done():
            self.owner.executor.kill_shell(self.holder)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await asyncio.shield(self.ended)
        self.kill()


class Attachment:
    """The host's connection to a terminal: keystrokes from it are written to the terminal,
    the terminal's output to it; ``done`` once it hung up, was taken over, or the shell's
    output has all gone out."""

    def __init__(self, sock: socket.socket, terminal: Terminal) -> None:
        self.sock, self.fd = sock, sock.fileno()
        self.terminal = terminal
        self.loop = terminal.loop
        self.out = bytearray()
        self.pending_keys = b""
        self.finishing = False
        self.done: asyncio.Future[None] = self.loop.create_future()
        self.loop.add_reader(self.fd, self.on_keys)

    def send(self, data: bytes) -> None:
        if self.done.done() or not data:
            return
        if not self.out:
            try:
                data = data[self.sock.send(data) :]
            except BlockingIOError:
                pass
            except OSError:
                self.stop()
                return
            if not data:
                return
            self.loop.add_writer(self.fd, self.flush)
        self.out += data
        if len(self.out) > OUT_HIGH:
            self.terminal.pause_output(True)

    def flush(self) -> None:
        try:
            del self.out[: self.sock.send(self.out)]
        except BlockingIOError:
            return
        except OSError:
            self.stop()
            return
        if not self.out:
            self.loop.remove_writer(self.fd)
            if self.finishing:
                self.stop()
            else:
                self.terminal.pause_output(False)

    def finish(self) -> None:
        """The shell is done: end once its output has gone out."""
        self.finishing = True
        if not self.out:
            self.stop()

    def on_keys(self) -> None:
        try:
            data = self.sock.recv(READ_BYTES)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.keys(data)
        else:
            self.stop()  # the host hung up: detached, the terminal lives on

    def keys(self, data: bytes) -> None:
        """Write keystrokes to the terminal; what it cannot take yet waits, and no more is read
        from the host until it has (the host's side of the socket fills up, not our memory)."""
        leader = self.terminal.leader
        if self.terminal.ended.done() or not data:
            return
        try:
            data = data[os.write(leader, data) :]
        except BlockingIOError:
            pass
        except OSError:
            return
        if data:
            self.pending_keys = data
            self.loop.remove_reader(self.fd)
            self.loop.add_writer(leader, self.more_keys)

    def more_keys(self) -> None:
        leader, data = self.terminal.leader, self.pending_keys
        try:
            data = data[os.write(leader, data) :]
        except BlockingIOError:
            return
        except OSError:
            data = b""
        self.pending_keys = data
        if not data:
            self.loop.remove_writer(leader)
            if not self.done.done():
                self.loop.add_reader(self.fd, self.on_keys)

    def stop(self) -> None:
        if self.done.done():
            return
        self.loop.remove_reader(self.fd)
        self.loop.remove_writer(self.fd)
        if self.pending_keys:
            with contextlib.suppress(ValueError, OSError):
                self.loop.remove_writer(self.terminal.leader)
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.done.set_result(None)

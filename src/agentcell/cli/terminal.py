"""``agentcell shell``: an interactive terminal in your cell (the keyboard in raw mode, the
window's size followed, the shell's exit code as ours), and ``agentcell terminals ls|rm``."""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import shutil
import signal
import sys
import termios
import threading
import tty
from collections.abc import Iterator

from rich.table import Table

from agentcell.cli._common import Commands, connect, group
from agentcell.cli._jobs_show import JSON_HELP, print_json
from agentcell.cli._output import out, print_table
from agentcell.client._terminal import Terminal
from agentcell.config import Settings

READ_BYTES = 64 * 1024


def add_terminal(groups: Commands) -> None:
    shell = groups.add_parser("shell", help="an interactive terminal in your cell (exit to leave)")
    shell.add_argument(
        "--session",
        metavar="ID",
        help="attach to a terminal that is there (agentcell terminals ls)",
    )
    shell.set_defaults(handler=_shell)
    cmds = group(groups, "terminals", "your cell's terminals (agentcell shell, the web page)")
    ls = cmds.add_parser("ls", aliases=["list"], help="terminals, attached or waiting")
    ls.add_argument("--json", action="store_true", help=JSON_HELP)
    ls.set_defaults(handler=_ls)
    rm = cmds.add_parser("rm", help="end a terminal and what runs in it")
    rm.add_argument("id", metavar="ID", help="an id from agentcell terminals ls")
    rm.set_defaults(handler=_rm)


def _shell(args: argparse.Namespace, settings: Settings) -> int:
    cols, rows = window_size()
    with connect(args, settings) as client:
        terminal = client.terminal(args.session, cols, rows)
    with terminal, raw_keyboard() as keyboard:
        keys = threading.Thread(target=type_keys, args=(terminal, keyboard), daemon=True)
        keys.start()
        while (output := terminal.recv()) is not None:
            os.write(sys.stdout.fileno(), output)
    if terminal.exit_code is None:
        out().print("the terminal ended without an exit code (the cell was stopped?)")
        return 1
    code = terminal.exit_code
    return 128 - code if code < 0 else code  # killed by signal N: 128+N, as shells say


def window_size() -> tuple[int, int]:
    """The window's size from the terminal itself (COLUMNS and LINES in the environment may
    be stale; they are what shutil asks first)."""
    for stream in (sys.stdout, sys.stdin):
        with contextlib.suppress(OSError, ValueError):
            size = os.get_terminal_size(stream.fileno())
            return size.columns, size.lines
    size = shutil.get_terminal_size()
    return size.columns, size.lines


@contextlib.contextmanager
def raw_keyboard() -> Iterator[int]:
    """Stdin in raw mode while the block runs (keys go to the cell's shell as typed: Ctrl-C
    too), restored after; a pipe that SIGWINCH wakes (its read end is yielded)."""
    stdin = sys.stdin.fileno()
    saved = termios.tcgetattr(stdin) if os.isatty(stdin) else None
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    previous = signal.signal(signal.SIGWINCH, lambda *_: _poke(wake_w))
    try:
        if saved is not None:
            tty.setraw(stdin)
        yield wake_r
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        signal.signal(signal.SIGWINCH, previous)
        os.close(wake_w)


def _poke(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, b"!")


def type_keys(terminal: Terminal, wake: int) -> None:
    """Send what is typed, and the window's size when it changes; stop at the end of stdin
    (the shell goes on: a piped script ends with its own exit)."""
    stdin = sys.stdin.fileno()
    sources = [stdin, wake]
    with contextlib.suppress(OSError):  # stdin closed under us
        while sources:
            ready, _, _ = select.select(sources, [], [])
            if wake in ready:
                os.read(wake, 64)
                terminal.resize(*window_size())
            if stdin in ready:
                data = os.read(stdin, READ_BYTES)
                if not data:
                    sources.remove(stdin)
                    continue
                terminal.send(data)


def _ls(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings) as client:
        terminals = client.terminals()
    if args.json:
        print_json(terminals)
        return 0
    if not terminals:
        out().print("no terminals (open one: agentcell shell)")
        return 0
    table = Table(box=None)
    for column in ("ID", "PID", "SIZE", "ATTACHED", "EXIT"):
        table.add_column(column)
    for t in terminals:
        exit_code = "" if t.exit_code is None else str(t.exit_code)
        attached = "yes" if t.attached else "no"
        table.add_row(t.id, str(t.pid), f"{t.cols}x{t.rows}", attached, exit_code)
    print_table(table)
    return 0


def _rm(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings) as client:
        ended = client.terminal_close(args.id)
    out().print(f"ended terminal {ended.id}")
    return 0

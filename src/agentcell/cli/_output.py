"""How the CLI shows things: errors and hints on stderr, tables, times, and build progress."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from agentcell.progress import ProgressEvent, ProgressHook

MESSAGE_WIDTH = 90
# Control characters but newline and tab: C0, DEL, C1. A terminal acts on them (ESC starts
# sequences that clear the screen, set the title, write the clipboard via OSC 52...).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
RAW_HELP = "print cell output, file names and model text unchanged, even to a terminal"


def visible(text: str) -> str:
    """Text with its control characters shown, not obeyed: ESC as ^[, CR as ^M, C1 as \\x9b."""
    return _CONTROL.sub(_show, text)


def _show(match: re.Match[str]) -> str:
    code = ord(match[0])
    return f"^{chr(code ^ 0x40)}" if code < 0x20 or code == 0x7F else f"\\x{code:02x}"


def untrusted(stream: IO[str], raw: bool = False) -> Callable[[str], str]:
    """How to render text we do not control (cell output, file names, model text) on
    ``stream``: made visible on a terminal, unless ``raw``; unchanged into pipes and files."""
    if raw or not stream.isatty():
        return str
    return visible


def err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def out() -> Console:
    return Console(highlight=False, soft_wrap=True)


def error(message: str, hint: str) -> int:
    console = err()
    shown = untrusted(sys.stderr)  # a message may quote a file name or a cell's output
    console.print(f"[bold red]error:[/] {escape(shown(message))}")
    if hint:
        console.print(f"[yellow]hint:[/] {escape(shown(hint))}")
    return 1


def print_table(table: Table) -> None:
    console = Console()
    (console if console.is_terminal else Console(width=200)).print(table)


def when(at: Any) -> str:
    return at.astimezone().strftime("%Y-%m-%d %H:%M:%S") if at else ""


@contextmanager
def progress_view(console: Console | None = None) -> Iterator[ProgressHook]:
    """A ProgressHook that renders on stderr: on a terminal, a live line per step (spinner,
    bar and count when the total is known, elapsed time, last message) and a check mark when
    the step ends; otherwise one plain line per event (logs, CI)."""
    console = console or Console(stderr=True)
    if not console.is_terminal:
        yield lambda e: console.print(
            f"{e.step}: {e.message}", markup=False, highlight=False, soft_wrap=True
        )
        return
    columns = (
        SpinnerColumn(),
        TextColumn("[bold cyan]{task.fields[step]:<12}"),
        BarColumn(bar_width=20),
        TextColumn("{task.fields[count]:>7}"),
        TimeElapsedColumn(),
        TextColumn("{task.description}", markup=False),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        view = _StepView(bar, console)
        yield view.update
        view.finish()


class _StepView:
    """One live task per step; a finished step leaves a check mark and its duration."""

    def __init__(self, bar: Progress, console: Console) -> None:
        self.bar, self.console = bar, console
        self.step: str | None = None
        self.task: TaskID | None = None
        self.started = 0.0
        self.message = ""

    def update(self, event: ProgressEvent) -> None:
        if event.step != self.step:
            self.finish()
            self.step, self.started = event.step, time.monotonic()
            self.task = self.bar.add_task("", total=None, step=event.step, count="")
        assert self.task is not None
        self.message = " ".join(event.message.split())[:MESSAGE_WIDTH]
        count = f"{event.done}/{event.total}" if event.total else ""
        self.bar.update(self.task, description=self.message, completed=event.done or 0, count=count)
        if event.total:
            self.bar.update(self.task, total=event.total)

    def finish(self) -> None:
        if self.task is None or self.step is None:
            return
        self.bar.remove_task(self.task)
        if self.step != "done":
            took = f"{time.monotonic() - self.started:.0f} s"
            note = self.message if self.step == "cached" else took
            self.console.print(f"[green]✓[/] {escape(self.step)} [dim]{escape(note)}[/]")
        self.task = self.step = None

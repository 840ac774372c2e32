"""``agentcell chat`` and ``agentcell sessions ls|rm``: talk to the agent, which works in your
cell. The answer streams to stdout as the model writes it; hand-offs between agents, tool calls
and their results go to stderr, dimmed, so ``agentcell chat "..." > answer.md`` keeps only the
answer."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from typing import TextIO

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from agentcell.cli._common import Commands, connect, group
from agentcell.cli._output import RAW_HELP, err, out, print_table, untrusted, when
from agentcell.client import (
    ChatAgent,
    ChatDone,
    ChatEvent,
    ChatText,
    ChatToolCall,
    ChatToolResult,
    Client,
)
from agentcell.config import Settings
from agentcell.errors import AgentcellError, InvalidRequest

SHOWN_CHARS = 300  # of a tool call's arguments or result, on one dimmed line
EXIT_WORDS = {"exit", "quit", "/exit", "/quit"}
MAIN_AGENT = "coordinator"


def add_chat(groups: Commands) -> None:
    p = groups.add_parser(
        "chat",
        help="talk to the agent, which works in your cell",
        description="With MESSAGE: send it and stream the answer. Without: read messages "
        "line by line until EOF or 'exit', all in one session.",
    )
    p.add_argument("message", nargs="?", metavar="MESSAGE", help="what to ask; - = stdin")
    p.add_argument(
        "--session", "-s", metavar="ID", help="continue this session (default: a new one)"
    )
    p.add_argument("--raw", action="store_true", help=RAW_HELP)
    p.set_defaults(handler=_chat)

    cmds = group(groups, "sessions", "your chat sessions: list, remove")
    ls = cmds.add_parser("ls", aliases=["list"], help="list your sessions, latest first")
    ls.set_defaults(handler=_sessions_ls)
    rm = cmds.add_parser("rm", help="delete a session and its messages")
    rm.add_argument("session_id", metavar="ID")
    rm.set_defaults(handler=_sessions_rm)


def _chat(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings) as client:
        chat = Chat(client, args.session, args.raw)
        if args.message is not None:
            message = sys.stdin.read() if args.message == "-" else args.message
            if not message.strip():
                raise InvalidRequest("the message is empty", hint='agentcell chat "what to ask"')
            chat.turn(message)
            return 0
        for message in _prompts():
            chat.turn(message)
    return 0


class Chat:
    """One session's turns. A new session is made only with the first message, and removed
    again when that turn fails (no model configured, interrupted...): a failed turn keeps
    nothing, so its session would be left empty."""

    def __init__(self, client: Client, session_id: str | None, raw: bool = False) -> None:
        self.client, self.session_id, self.raw = client, session_id, raw

    def turn(self, message: str) -> None:
        if self.session_id is not None:
            _turn(self.client, self.session_id, message, self.raw)
            return
        session = self.client.sessions_create()
        try:
            _turn(self.client, session.id, message, self.raw)
        except BaseException:
            with contextlib.suppress(AgentcellError):
                self.client.sessions_rm(session.id)
            raise
        self.session_id = session.id
        err().print(
            f"[dim]session {escape(session.id)} (continue it with --session {session.id})[/]"
        )


def _prompts() -> Iterator[str]:
    """Lines typed (or piped) until EOF or an exit word; blank lines are skipped. On a
    terminal, lines are read with readline: arrows, editing and history work."""
    interactive = sys.stdin.isatty()
    if interactive:
        import readline  # noqa: F401 - importing it gives input() line editing and history
    while True:
        try:
            line = input("you> ") + "\n" if interactive else sys.stdin.readline()
        except EOFError:
            return
        if not line:
            return
        message = line.strip()
        if message.lower() in EXIT_WORDS:
            return
        if message:
            yield message


def _turn(client: Client, session_id: str, message: str, raw: bool = False) -> None:
    view = TurnView(sys.stdout, err(), raw)
    for event in client.chat_stream(session_id, message):
        view.show(event)
    view.finish()


class TurnView:
    """Renders one turn's events: the main agent's text live on ``answer``, as written (no
    markup); everything else dimmed on ``notes``, one line each (a sub-agent's text once it
    is complete)."""

    def __init__(self, answer: TextIO, notes: Console, raw: bool = False) -> None:
        self.answer, self.notes = answer, notes
        # The model's text and tool output are not ours: a terminal shows their control
        # characters instead of obeying them (unless --raw).
        self.shown_answer = untrusted(answer, raw)
        self.shown_note = untrusted(notes.file, raw)
        self.open_line = False  # the answer's last piece did not end a line
        self.answered = False  # some of the main agent's text was shown
        self.aside: tuple[str, str] | None = None  # a sub-agent's text so far: (agent, text)

    def show(self, event: ChatEvent) -> None:
        if isinstance(event, ChatText) and event.agent != MAIN_AGENT:
            if self.aside and self.aside[0] != event.agent:
                self._flush_aside()
            agent, so_far = self.aside or (event.agent, "")
            self.aside = (agent, so_far + event.text)
            return
        self._flush_aside()
        if isinstance(event, ChatText):
            self._write(event.text)
            self.answered = self.answered or bool(event.text)
        elif isinstance(event, ChatAgent):
            if event.action == "start":
                task = f": {_one_line(event.task)}" if event.task else ""
                self._note(f"→ {event.agent}{task}")
            else:
                self._note(f"← {event.agent} {'done' if event.ok else 'failed'}")
        elif isinstance(event, ChatToolCall):
            args = json.dumps(event.args, ensure_ascii=False)
            self._note(f"{event.agent} ▸ {event.tool}({_one_line(args)})")
        elif isinstance(event, ChatToolResult):
            mark = "" if event.ok else " [failed]"
            self._note(f"{event.agent} ◂ {event.tool}{mark}: {_one_line(event.content)}")
        elif isinstance(event, ChatDone) and not self.answered and event.output:
            self._write(event.output)  # the answer came whole, not in pieces

    def finish(self) -> None:
        self._flush_aside()
        if self.open_line:
            self._write("\n")

    def _write(self, text: str) -> None:
        self.answer.write(self.shown_answer(text))
        self.answer.flush()
        self.open_line = not text.endswith("\n")

    def _flush_aside(self) -> None:
        if self.aside is not None:
            agent, text = self.aside
            self.aside = None
            if text.strip():
                self._note(f"{agent}: {_one_line(text)}")

    def _note(self, text: str) -> None:
        if self.open_line:
            self._write("\n")
        self.notes.print(f"[dim]{escape(self.shown_note(text))}[/]", emoji=False)


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= SHOWN_CHARS else flat[: SHOWN_CHARS - 1] + "…"


def _sessions_ls(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings) as client:
        sessions = client.sessions_list()
    table = Table(box=None, header_style="bold")
    for column in ("ID", "TITLE", "UPDATED", "CREATED"):
        table.add_column(column, no_wrap=column != "TITLE")
    for s in sessions:
        table.add_row(s.id, escape(s.title), when(s.updated_at), when(s.created_at))
    print_table(table)
    return 0


def _sessions_rm(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings) as client:
        client.sessions_rm(args.session_id)
    out().print(f"session {escape(args.session_id)} deleted")
    return 0

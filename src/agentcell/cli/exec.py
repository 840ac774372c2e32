"""``agentcell exec``: run code in your cell; output streams live, the exit code is the code's."""

from __future__ import annotations

import argparse
import sys

from rich.markup import escape

from agentcell.cli._common import Commands, connect
from agentcell.cli._output import err
from agentcell.client import ExitEvent, StderrEvent, StdoutEvent
from agentcell.config import Settings


def add_exec(groups: Commands) -> None:
    p = groups.add_parser(
        "exec", help="run code in your cell: output streams live, exit code is the code's"
    )
    p.add_argument("code", metavar="CODE", help="python code (a command with --shell); - = stdin")
    p.add_argument("--shell", action="store_true", help="run CODE with bash")
    p.add_argument("--timeout", type=float, metavar="S", help="seconds (default: the server's)")
    p.add_argument(
        "--context", default="default", metavar="NAME", help="python context; variables persist"
    )
    p.add_argument(
        "--background",
        action="store_true",
        help="keep the processes it leaves running (see agentcell ps, agentcell kill)",
    )
    p.set_defaults(handler=_exec)


def _exec(args: argparse.Namespace, settings: Settings) -> int:
    code = sys.stdin.read() if args.code == "-" else args.code
    language = "shell" if args.shell else "python"
    done: ExitEvent | None = None
    with connect(args, settings) as client:
        for event in client.exec_stream(
            code, language, args.timeout, args.context, background=args.background
        ):
            if isinstance(event, StdoutEvent | StderrEvent):
                stream = sys.stdout if isinstance(event, StdoutEvent) else sys.stderr
                stream.write(event.data)
                stream.flush()
            else:
                done = event
    assert done is not None  # exec_stream ends with an ExitEvent, or raises
    console = err()
    if done.timed_out:
        console.print(f"[yellow]timed out[/] after {done.duration_ms / 1000:.1f} s")
    if done.context_reset:
        console.print(
            f"[yellow]python context {escape(repr(args.context))} was reset[/]: "
            "its variables are gone"
        )
    if done.truncated:
        console.print("[yellow]output truncated[/]: more than the server's output limit")
    code_ = done.exit_code
    return code_ if 0 <= code_ <= 255 else 128 - code_ if code_ < 0 else 1

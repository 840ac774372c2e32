"""``agentcell exec``: run code in your cell; output streams live, the exit code is the code's."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.markup import escape

from agentcell.cli._common import Commands, connect
from agentcell.cli._output import RAW_HELP, err, untrusted
from agentcell.client import ExitEvent, StderrEvent, StdoutEvent
from agentcell.config import Settings
from agentcell.errors import InvalidRequest
from agentcell.schemas import Language

SHELL_SUFFIXES = {".sh", ".bash"}


def add_exec(groups: Commands) -> None:
    p = groups.add_parser(
        "exec", help="run code in your cell: output streams live, exit code is the code's"
    )
    p.add_argument(
        "code",
        metavar="CODE|FILE",
        help="python code (a command with --shell), or a local .py/.sh file to run; - = stdin",
    )
    p.add_argument("--shell", action="store_true", help="run CODE with bash")
    p.add_argument(
        "-c",
        "--code",
        dest="literal",
        action="store_true",
        help="CODE is code, even if a file of that name exists",
    )
    p.add_argument("--timeout", type=float, metavar="S", help="seconds (default: the server's)")
    p.add_argument(
        "--context", default="default", metavar="NAME", help="python context; variables persist"
    )
    p.add_argument("--raw", action="store_true", help=RAW_HELP)
    p.add_argument(
        "--background",
        action="store_true",
        help="keep the processes it leaves running (see agentcell ps, agentcell kill)",
    )
    p.set_defaults(handler=_exec)


def _source(args: argparse.Namespace) -> tuple[str, Language]:
    """The code to run and its language: stdin, a local file (language by its extension),
    or the argument itself."""
    shell: Language = "shell" if args.shell else "python"
    if args.code == "-":
        return sys.stdin.read(), shell
    path = Path(args.code)
    if args.literal or not path.is_file():
        return args.code, shell
    try:
        code = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"cannot read {args.code}: {exc}", hint="run a text file") from exc
    if args.shell or path.suffix in SHELL_SUFFIXES:
        return code, "shell"
    return code, "python"


def _exec(args: argparse.Namespace, settings: Settings) -> int:
    code, language = _source(args)
    done: ExitEvent | None = None
    shown = {stream: untrusted(stream, args.raw) for stream in (sys.stdout, sys.stderr)}
    with connect(args, settings) as client:
        for event in client.exec_stream(
            code, language, args.timeout, args.context, background=args.background
        ):
            if isinstance(event, StdoutEvent | StderrEvent):
                stream = sys.stdout if isinstance(event, StdoutEvent) else sys.stderr
                stream.write(shown[stream](event.data))
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

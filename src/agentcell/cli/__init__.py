"""The ``agentcell`` command line.

One argparse tree; each command group is a module that adds its parsers in an ``add_<group>``
function and sets a handler ``(args, settings) -> exit code``. Expected errors
(``AgentcellError``) print their message and hint on stderr and exit 1; progress goes to
stderr, results to stdout. ``serve`` runs the server; the commands that talk to one (users,
exec, chat, sessions, files, jobs, schedules, cell, audit) are thin over
``agentcell.client.Client`` and reach it over HTTP only (``AGENTCELL_URL``); ``image`` works on
the local Docker engine.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import httpx
import pydantic
from rich.console import Console

from agentcell import __version__
from agentcell.cli._common import Commands, Handler
from agentcell.cli._hints import cli_hint
from agentcell.cli._output import error, progress_view
from agentcell.cli.admin import add_cells, add_whoami
from agentcell.cli.audit import add_audit
from agentcell.cli.cell import add_cell
from agentcell.cli.chat import add_chat
from agentcell.cli.desktop import add_desktop
from agentcell.cli.exec import add_exec
from agentcell.cli.files import add_files
from agentcell.cli.images import add_image
from agentcell.cli.jobs import add_jobs
from agentcell.cli.network import add_network
from agentcell.cli.ports import add_ports
from agentcell.cli.processes import add_processes
from agentcell.cli.schedules import add_schedules
from agentcell.cli.serve import add_serve
from agentcell.cli.terminal import add_terminal
from agentcell.cli.users import add_users
from agentcell.config import Settings
from agentcell.errors import AgentcellError

__all__ = ["build_parser", "main", "progress_view"]

URL_HELP = "server to talk to (default: AGENTCELL_URL, else http://127.0.0.1:8000)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return handler(args, Settings.model_validate({}))
    except AgentcellError as e:
        return error(e.message, cli_hint(e))
    except httpx.InvalidURL as e:
        return error(f"invalid server URL: {e}", "set AGENTCELL_URL to http://HOST:PORT")
    except httpx.HTTPError as e:  # the client translates these; a last guard, no traceback
        return error(f"{type(e).__name__}: {e}", "")
    except pydantic.ValidationError as e:
        return error(f"invalid setting: {e}", "check the AGENTCELL_* environment variables")
    except KeyboardInterrupt:
        Console(stderr=True).print("[yellow]interrupted[/]")
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentcell", description="Self-hosted agents, each user in a private sandbox."
    )
    parser.add_argument("--url", help=URL_HELP)
    parser.add_argument("--version", action="version", version=f"agentcell {__version__}")
    groups = parser.add_subparsers(title="commands", metavar="COMMAND")
    add_serve(groups)
    add_users(groups)
    add_exec(groups)
    add_processes(groups)
    add_ports(groups)
    add_terminal(groups)
    add_desktop(groups)
    add_chat(groups)
    add_files(groups)
    add_jobs(groups)
    add_schedules(groups)
    add_cell(groups)
    add_network(groups)
    add_audit(groups)
    add_image(groups)
    add_whoami(groups)
    add_cells(groups)
    _url_everywhere(groups)
    return parser


def _url_everywhere(groups: Commands) -> None:
    """``--url`` after the command as well as before it (``agentcell exec --url URL ...``)."""
    for sub in set(groups.choices.values()):
        if not any("--url" in a.option_strings for a in sub._actions):
            sub.add_argument("--url", default=argparse.SUPPRESS, help=URL_HELP)
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                _url_everywhere(action)

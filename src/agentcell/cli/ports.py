"""``agentcell ports ls`` (what listens in your cell) and ``agentcell ports url PORT [PATH]``
(where it is reached through the server: with your key, or ``--browser`` for a link)."""

from __future__ import annotations

import argparse
from urllib.parse import urljoin

from rich.markup import escape
from rich.table import Table

from agentcell.cli._common import Commands, connect, group
from agentcell.cli._jobs_show import JSON_HELP, print_json
from agentcell.cli._output import error, out, print_table
from agentcell.config import Settings


def add_ports(groups: Commands) -> None:
    cmds = group(groups, "ports", "servers listening in your cell, reached through this server")
    ls = cmds.add_parser("ls", aliases=["list"], help="the TCP ports listening in your cell")
    ls.add_argument("--json", action="store_true", help=JSON_HELP)
    ls.set_defaults(handler=_ls)
    url = cmds.add_parser("url", help="the URL of a port of your cell")
    url.add_argument("port", metavar="PORT", type=int, help="e.g. 8080")
    url.add_argument("path", metavar="PATH", nargs="?", default="", help="e.g. index.html")
    url.add_argument(
        "--browser",
        action="store_true",
        help="a link for a browser (a short-lived token in it, no API key needed)",
    )
    url.set_defaults(handler=_url)


def _ls(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings) as client:
        ports = client.ports()
        if args.json:
            print_json(ports)
            return 0
        if not ports:
            out().print(
                "nothing listens in your cell (start a server, e.g.: agentcell exec --shell "
                "--background 'python3 -m http.server 8080 &')"
            )
            return 0
        table = Table(box=None)
        for column in ("PORT", "ADDRESS", "PID", "COMMAND", "URL"):
            table.add_column(column)
        for port in ports:
            pid = "" if port.pid is None else str(port.pid)
            url = client.port_url(port.port)
            table.add_row(str(port.port), port.address, pid, escape(port.command), url)
    print_table(table)
    return 0


def _url(args: argparse.Namespace, settings: Settings) -> int:
    if not 0 < args.port < 65536:
        return error(f"{args.port} is not a TCP port", "give a port from 1 to 65535, e.g. 8080")
    with connect(args, settings) as client:
        if not args.browser:
            print(client.port_url(args.port, args.path))
            return 0
        token = client.port_token(args.port)
        link = urljoin(client.url, token.url)
        if args.path:
            link = link.replace("/?token=", f"/{args.path.lstrip('/')}?token=", 1)
        print(link)
    return 0

"""``agentcell whoami`` (whose key this is) and, with the admin token, ``agentcell cells
ls|reap|pause|stop|rm``: every cell of the server, the idle tiers applied now, and one user's
idle cell put down now."""

from __future__ import annotations

import argparse

from rich.markup import escape
from rich.table import Table

from agentcell.cli._common import Commands, connect, group
from agentcell.cli._output import out, print_table, when
from agentcell.cli.users import find_user
from agentcell.config import Settings


def add_whoami(groups: Commands) -> None:
    p = groups.add_parser("whoami", help="the user whose API key is in AGENTCELL_API_KEY")
    p.set_defaults(handler=_whoami)


def add_cells(groups: Commands) -> None:
    cmds = group(groups, "cells", "every user's cell: list, reap idle ones (admin token)")
    ls = cmds.add_parser("ls", aliases=["list"], help="list the server's cells")
    ls.set_defaults(handler=_cells_ls)
    reap = cmds.add_parser("reap", help="pause, stop or remove idle cells now")
    reap.set_defaults(handler=_cells_reap)
    for action, name, text in (
        ("pause", "pause", "pause a user's idle cell now (its memory kept)"),
        ("stop", "stop", "stop a user's idle cell now"),
        ("remove", "rm", "remove a user's idle cell now (the workspace kept)"),
    ):
        one = cmds.add_parser(name, help=text)
        one.add_argument("user", metavar="NAME|ID")
        one.set_defaults(handler=_cells_put_down, action=action)


def _whoami(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings) as client:
        me = client.me()
    role = " (admin)" if me.admin else ""
    out().print(f"{escape(me.name)}{role}, id {escape(me.id)}")
    return 0


def _cells_ls(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings, admin=True) as client:
        cells = client.admin_cells()
    table = Table(box=None, header_style="bold")
    for column in ("OWNER", "CELL", "STATE", "ACTIVE", "LAST ACTIVE", "CREATED"):
        table.add_column(column, no_wrap=True)
    for c in cells:
        table.add_row(
            escape(c.owner or "-"),
            escape(c.cell_id),
            c.state,
            str(c.active),
            when(c.last_active_at),
            when(c.created_at),
        )
    print_table(table)
    return 0


def _cells_put_down(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings, admin=True) as client:
        user = find_user(client, args.user)
        state = client.admin_cell(user.id, args.action)
    out().print(f"the cell of {escape(user.name)} is {state}")
    return 0


def _cells_reap(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings, admin=True) as client:
        r = client.admin_reap()
    out().print(f"paused {r.paused}, stopped {r.stopped}, removed {r.removed}, died {r.died}")
    return 0

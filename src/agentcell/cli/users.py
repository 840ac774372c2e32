"""``agentcell users add|list|rm``: user accounts, with the admin token."""

from __future__ import annotations

import argparse

from rich.markup import escape
from rich.table import Table

from agentcell.cli._common import Commands, connect, group
from agentcell.cli._output import out, print_table, when
from agentcell.config import Settings
from agentcell.errors import NotFound


def add_users(groups: Commands) -> None:
    cmds = group(groups, "users", "add, list and remove users (admin token)")
    add = cmds.add_parser("add", help="add a user; prints their API key, once")
    add.add_argument("name")
    add.set_defaults(handler=_users_add)
    ls = cmds.add_parser("list", aliases=["ls"], help="list users")
    ls.set_defaults(handler=_users_list)
    rm = cmds.add_parser("rm", help="remove a user and their cell (their workspace is kept)")
    rm.add_argument("user", metavar="NAME|ID")
    rm.add_argument("--delete-workspace", action="store_true", help="delete their files too")
    rm.set_defaults(handler=_users_rm)


def _users_add(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings, admin=True) as client:
        user = client.users_add(args.name)
    console = out()
    console.print(f"user {escape(user.name)} created, id {escape(user.id)}")
    console.print(f"API key (shown only now): [bold]{escape(user.api_key)}[/]")
    console.print(f"  export AGENTCELL_API_KEY={escape(user.api_key)}")
    return 0


def _users_list(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings, admin=True) as client:
        users = client.users_list()
    table = Table(box=None, header_style="bold")
    for column in ("ID", "NAME", "KEY", "CREATED"):
        table.add_column(column, no_wrap=True)
    for user in users:
        key = f"{user.key_prefix}…" if user.key_prefix else ""
        table.add_row(user.id, user.name, key, when(user.created_at))
    print_table(table)
    return 0


def _users_rm(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings, admin=True) as client:
        found = [u for u in client.users_list() if args.user in (u.name, u.id)]
        if not found:
            raise NotFound(f"no user {args.user!r}", hint="list the users: agentcell users ls")
        user = found[0]
        client.users_rm(user.id, delete_workspace=args.delete_workspace)
    kept = "workspace deleted" if args.delete_workspace else "workspace kept"
    out().print(f"user {escape(user.name)} ({escape(user.id)}) removed ({kept})")
    return 0

"""``agentcell users add|list|rm``: user accounts, with the admin token."""

from __future__ import annotations

import argparse

from rich.markup import escape
from rich.table import Table

from agentcell.cli._common import Commands, connect, group
from agentcell.cli._output import out, print_table, when
from agentcell.client import Client
from agentcell.config import Settings
from agentcell.errors import NotFound
from agentcell.schemas import UserPublic


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
    key = cmds.add_parser("key", help="a new API key for a user (their old one stops working)")
    key.add_argument("user", metavar="NAME|ID")
    key.set_defaults(handler=_users_key)


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


def find_user(client: Client, name_or_id: str) -> UserPublic:
    found = [u for u in client.users_list() if name_or_id in (u.name, u.id)]
    if not found:
        raise NotFound(f"no user {name_or_id!r}", hint="list the users: agentcell users ls")
    return found[0]


def _users_key(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings, admin=True) as client:
        user = find_user(client, args.user)
        key = client.user_key(user.id)
    console = out()
    console.print(f"new API key of {escape(user.name)} (shown only now): [bold]{escape(key)}[/]")
    console.print("their old key and web sign-ins no longer work")
    return 0


def _users_rm(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings, admin=True) as client:
        user = find_user(client, args.user)
        client.users_rm(user.id, delete_workspace=args.delete_workspace)
    kept = "workspace deleted" if args.delete_workspace else "workspace kept"
    out().print(f"user {escape(user.name)} ({escape(user.id)}) removed ({kept})")
    return 0

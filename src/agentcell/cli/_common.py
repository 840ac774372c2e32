"""What the command groups share: the handler type, bare command groups, and the client."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, TypeAlias

from agentcell.client import Client
from agentcell.config import ClientSettings, Settings

Handler: TypeAlias = Callable[[argparse.Namespace, Settings], int]
Commands: TypeAlias = "argparse._SubParsersAction[Any]"


def group(groups: Commands, name: str, summary: str) -> Commands:
    """A command group (``agentcell NAME ...``) that prints its usage when called bare."""
    parser = groups.add_parser(name, help=summary)
    parser.set_defaults(handler=lambda _args, _settings: usage(parser))
    cmds: Commands = parser.add_subparsers(title=f"{name} commands", metavar="COMMAND")
    return cmds


def usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def connect(args: argparse.Namespace, settings: Settings, *, admin: bool = False) -> Client:
    """A client from ClientSettings; admin commands fall back to the data dir's admin token."""
    client_settings = ClientSettings()
    if not admin:
        return Client(args.url, settings=client_settings)
    token = client_settings.admin_token
    if not token:
        try:
            token = settings.admin_token_path.read_text().strip()
        except OSError:
            token = ""
    return Client(args.url, api_key="", admin_token=token, settings=client_settings)

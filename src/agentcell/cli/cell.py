"""``agentcell cell status|restart|rm``: your cell."""

from __future__ import annotations

import argparse

from rich.markup import escape
from rich.table import Table

from agentcell.cli._common import Commands, connect, group
from agentcell.cli._output import out, print_table, when
from agentcell.config import Settings
from agentcell.schemas import CellPublic


def add_cell(groups: Commands) -> None:
    cmds = group(groups, "cell", "your cell: status, restart, remove")
    cmds.add_parser("status", help="state, image, limits").set_defaults(handler=_cell_status)
    cmds.add_parser("restart", help="restart it (python contexts are lost)").set_defaults(
        handler=_cell_restart
    )
    cmds.add_parser("rm", help="remove the container; the workspace is kept").set_defaults(
        handler=_cell_rm
    )


def _cell_status(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings) as client:
        _print_cell(client.cell())
    return 0


def _cell_restart(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings) as client:
        _print_cell(client.cell_restart())
    return 0


def _cell_rm(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings) as client:
        client.cell_delete()
    out().print("cell removed; the workspace is kept")
    return 0


def _print_cell(cell: CellPublic) -> None:
    lim = cell.limits
    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for name, value in (
        ("state", cell.state),
        ("image", cell.image),
        ("network", cell.network),
        ("memory", f"{lim.memory_mb} MB"),
        ("cpus", f"{lim.cpus:g}"),
        ("pids", str(lim.pids)),
        ("/tmp", f"{lim.tmp_mb} MB"),
        ("workspace", f"{lim.workspace_mb} MB" if lim.workspace_mb else "no quota"),
        ("created", when(cell.created_at)),
        ("last active", when(cell.last_active_at)),
    ):
        table.add_row(name, escape(value))
    print_table(table)

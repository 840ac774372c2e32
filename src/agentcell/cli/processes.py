"""``agentcell ps`` and ``agentcell kill PID``: the processes ``exec --background`` kept."""

from __future__ import annotations

import argparse

from rich.markup import escape
from rich.table import Table

from agentcell.cli._common import Commands, connect
from agentcell.cli._output import out, print_table
from agentcell.config import Settings


def add_processes(groups: Commands) -> None:
    groups.add_parser(
        "ps", help="processes that background execs (exec --background) kept running"
    ).set_defaults(handler=_ps)
    p = groups.add_parser("kill", help="kill a process that ps lists, and all it started")
    p.add_argument("pid", metavar="PID", type=int, help="a pid from agentcell ps")
    p.set_defaults(handler=_kill)


def _ps(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings) as client:
        procs = client.processes()
    if not procs:
        out().print("no background processes (run one with: agentcell exec --background …)")
        return 0
    table = Table(box=None)
    for column in ("PID", "PPID", "FROM", "COMMAND"):
        table.add_column(column)
    for proc in procs:
        table.add_row(str(proc.pid), str(proc.ppid), proc.origin, escape(proc.command))
    print_table(table)
    return 0


def _kill(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings) as client:
        client.process_kill(args.pid)
    out().print(f"killed {args.pid} and everything it started")
    return 0

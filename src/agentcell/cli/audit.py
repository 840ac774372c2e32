"""``agentcell audit``: what was done, newest first (an admin sees everyone's)."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from agentcell.cli._common import Commands, connect
from agentcell.cli._output import print_table, when
from agentcell.config import Settings
from agentcell.schemas import AuditEventPublic


def add_audit(groups: Commands) -> None:
    audit = groups.add_parser("audit", help="what was done, newest first (admin: everyone's)")
    audit.add_argument("--limit", type=int, default=20, help="events per page (default: 20)")
    audit.add_argument("--before", type=int, metavar="ID", help="events older than this id")
    audit.add_argument(
        "--kind", default="", help="only one kind: egress, exec, job, file, network, secret..."
    )
    audit.set_defaults(handler=_audit)


def _audit(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings) as client:
        page = client.audit(args.limit, args.before, args.kind)
    several = len({e.user_id for e in page.events}) > 1
    table = Table(box=None, header_style="bold")
    columns = ("ID", "AT", *(("USER",) if several else ()), "ACTION", "BY", "TARGET", "OK")
    for column in columns:
        table.add_column(column, no_wrap=True)
    table.add_column("EXIT", justify="right")
    table.add_column("MS", justify="right")
    table.add_column("DETAIL", no_wrap=True, max_width=60)
    for e in page.events:
        detail = e.detail.splitlines()[0] if e.detail else ""
        row = [str(e.id), when(e.at), *((e.user_id,) if several else ())]
        row += [e.action, e.started_by, e.target, _outcome(e)]
        row += ["" if e.exit_code is None else str(e.exit_code)]
        row += ["" if e.duration_ms is None else f"{e.duration_ms:.0f}", detail]
        table.add_row(*map(escape, row))
    print_table(table)
    if page.next_before:
        Console(stderr=True).print(f"[dim]older: agentcell audit --before {page.next_before}[/]")
    return 0


def _outcome(event: AuditEventPublic) -> str:
    if event.status == "running":
        return "running"
    if event.status == "unfinished":
        return "✗ unfinished"
    return "✓" if event.ok else "✗"

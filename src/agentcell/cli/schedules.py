"""``agentcell schedules ls|show|pause|resume|rm``: jobs started later (``jobs run --at``) or
again and again (``jobs run --cron``)."""

from __future__ import annotations

import argparse

from rich.markup import escape

from agentcell.cli._common import Commands, connect, group
from agentcell.cli._jobs_show import (
    JSON_HELP,
    print_json,
    schedule_details,
    schedule_next,
    schedules_table,
)
from agentcell.cli._output import out
from agentcell.config import Settings
from agentcell.schemas import SchedulePublic

ID_HELP = "a schedule's id (agentcell schedules ls lists them)"


def add_schedules(groups: Commands) -> None:
    cmds = group(groups, "schedules", "jobs started at a time or by cron: list, pause, remove")
    ls = cmds.add_parser("ls", aliases=["list"], help="list your schedules")
    ls.add_argument("--json", action="store_true", help=JSON_HELP)
    ls.set_defaults(handler=_ls)
    for name, summary, handler in (
        ("show", "a schedule: when, next run, its last job, what it runs", _show),
        ("pause", "no more runs until it is resumed", _pause),
        ("resume", "run it again at its times", _resume),
    ):
        cmd = cmds.add_parser(name, help=summary)
        cmd.add_argument("schedule_id", metavar="ID", help=ID_HELP)
        cmd.add_argument("--json", action="store_true", help=JSON_HELP)
        cmd.set_defaults(handler=handler)
    rm = cmds.add_parser("rm", help="delete a schedule: it starts no more jobs")
    rm.add_argument("schedule_id", metavar="ID", help=ID_HELP)
    rm.set_defaults(handler=_rm)


def _ls(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings) as client:
        schedules = client.schedules_list()
    if args.json:
        print_json(schedules)
    elif not schedules:
        out().print("no schedules (make one: agentcell jobs run ... --at +10m, or --cron EXPR)")
    else:
        schedules_table(schedules)
    return 0


def _show(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings) as client:
        schedule = client.schedules_get(args.schedule_id)
    if args.json:
        print_json(schedule)
    else:
        schedule_details(schedule)
    return 0


def _pause(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings) as client:
        _changed(args, client.schedules_pause(args.schedule_id))
    return 0


def _resume(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings) as client:
        _changed(args, client.schedules_resume(args.schedule_id))
    return 0


def _changed(args: argparse.Namespace, schedule: SchedulePublic) -> None:
    if args.json:
        print_json(schedule)
    elif schedule.paused:
        out().print(f"schedule {schedule.id} paused (resume it: agentcell schedules resume ID)")
    else:
        out().print(f"schedule {schedule.id} resumed, next run {schedule_next(schedule)}")


def _rm(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings) as client:
        client.schedules_rm(args.schedule_id)
    out().print(f"schedule {escape(args.schedule_id)} deleted")
    return 0

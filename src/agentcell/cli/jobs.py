"""``agentcell jobs run|ls|status|logs|cancel|retry|rm|download``: work handed off to your cell
(DESIGN §9). A job goes on without the CLI: ``--follow`` shows its log live and ends with its
exit code, and Ctrl-C only stops following."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path, PurePosixPath
from typing import Any

from rich.markup import escape

from agentcell.cli._common import Commands, connect, group
from agentcell.cli._jobs_show import (
    JSON_HELP,
    follow,
    job_details,
    jobs_table,
    one_line,
    print_json,
    schedule_next,
    schedule_when,
    shown,
)
from agentcell.cli._output import RAW_HELP, err, out, untrusted
from agentcell.cli._when import AT_HELP, DURATION_HELP, at_time, duration
from agentcell.client import JobPublic
from agentcell.config import Settings
from agentcell.errors import InvalidRequest
from agentcell.schemas import ENDED_STATES, JobState, SchedulePublic

RUN_EXAMPLES = """examples:
  agentcell jobs run --shell 'python3 train.py' --name train --timeout 4h --follow
  agentcell jobs run --file report.py --at +10m
  agentcell jobs run --agent 'summarize the news into news.md' --cron '0 7 * * *' --tz Europe/Paris
"""
STATES = ("queued", "running", *ENDED_STATES)
SHELL_SUFFIXES = {".sh", ".bash"}
ID_HELP = "a job's id (agentcell jobs ls lists them)"
NAME_CHARS = 40  # of a name on the line that says a job started (a default name is its code)


def add_jobs(groups: Commands) -> None:
    cmds = group(groups, "jobs", "background jobs: run, list, follow, cancel, retry, download")
    _add_run(cmds)
    ls = cmds.add_parser("ls", aliases=["list"], help="list your jobs, newest first")
    ls.add_argument("--state", choices=STATES, help="only the jobs in this state")
    ls.add_argument("--limit", type=_positive, metavar="N", help="at most N jobs")
    ls.add_argument("--json", action="store_true", help=JSON_HELP)
    ls.set_defaults(handler=_ls)
    status = cmds.add_parser(
        "status", help="a job's state, exit code, reason, times, schedule and state changes"
    )
    status.add_argument("job_id", metavar="ID", help=ID_HELP)
    status.add_argument("--json", action="store_true", help=JSON_HELP)
    status.set_defaults(handler=_status)
    logs = cmds.add_parser("logs", help="a job's log; -f follows it until the job ends")
    logs.add_argument("job_id", metavar="ID", help=ID_HELP)
    logs.add_argument(
        "-f", "--follow", action="store_true", help="follow it; exit with the job's exit code"
    )
    logs.add_argument(
        "--offset", type=_offset, default=0, metavar="N", help="start at byte N (default: 0)"
    )
    logs.add_argument("--raw", action="store_true", help=RAW_HELP)
    logs.set_defaults(handler=_logs)
    cancel = cmds.add_parser("cancel", help="stop a queued or running job")
    cancel.add_argument("job_id", metavar="ID", help=ID_HELP)
    cancel.add_argument("--json", action="store_true", help=JSON_HELP)
    cancel.set_defaults(handler=_cancel)
    retry = cmds.add_parser("retry", help="run a job's work again, as a new job")
    retry.add_argument("job_id", metavar="ID", help=ID_HELP)
    _add_follow(retry)
    retry.set_defaults(handler=_retry)
    rm = cmds.add_parser("rm", help="delete a job")
    rm.add_argument("job_id", metavar="ID", help=ID_HELP)
    rm.set_defaults(handler=_rm)
    download = cmds.add_parser("download", help="download a job's output folder as a ZIP")
    download.add_argument("job_id", metavar="ID", help=ID_HELP)
    download.add_argument(
        "dest", nargs="?", metavar="DEST", help="file or folder (default: NAME.zip); - = stdout"
    )
    download.set_defaults(handler=_download)


def _add_run(cmds: Commands) -> None:
    run = cmds.add_parser(
        "run",
        help="start a job now, at a time, or on a cron schedule",
        description="Hand work off to your cell: it runs without this command, which only\n"
        "starts it (or, with --follow, shows its log until it ends).",
        epilog=RUN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    work = run.add_mutually_exclusive_group(required=True)
    work.add_argument("--shell", metavar="CMD", help="a bash command; - = stdin")
    work.add_argument("--python", metavar="CODE", help="python code; - = stdin")
    work.add_argument(
        "--file", metavar="PATH", help="a workspace file to run (.sh/.bash with bash, else python)"
    )
    work.add_argument("--agent", metavar="PROMPT", help="a task for the agent; - = stdin")
    run.add_argument("--name", help="a name to know it by (default: the server's)")
    run.add_argument(
        "--timeout", type=duration, metavar="DURATION", help=f"{DURATION_HELP} (default: server's)"
    )
    run.add_argument(
        "--output", metavar="DIR", help="its output folder in the workspace (default: jobs/ID/)"
    )
    when = run.add_mutually_exclusive_group()
    when.add_argument("--at", type=at_time, metavar="TIME", help=f"start it later: {AT_HELP}")
    when.add_argument(
        "--cron",
        metavar="EXPR",
        help="start one at every match of 'minute hour day-of-month month day-of-week'",
    )
    run.add_argument("--tz", metavar="ZONE", help="the time zone of --cron (default: UTC)")
    _add_follow(run)
    run.set_defaults(handler=_run)


def _add_follow(parser: argparse.ArgumentParser) -> None:
    shown_as = parser.add_mutually_exclusive_group()
    shown_as.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="show its log live and exit with its exit code (Ctrl-C detaches: it goes on)",
    )
    shown_as.add_argument("--json", action="store_true", help=JSON_HELP)
    parser.add_argument("--raw", action="store_true", help=RAW_HELP)


def _positive(text: str) -> int:
    number = _offset(text)
    if number == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return number


def _offset(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of 0 or more")
    return int(text)


def _spec(args: argparse.Namespace) -> dict[str, Any]:
    """The keywords of Client.jobs_run that the arguments ask for."""
    if args.tz is not None and args.cron is None:
        raise InvalidRequest(
            "--tz is the time zone of a --cron schedule",
            hint="agentcell jobs run ... --cron '0 7 * * *' --tz Europe/Paris",
        )
    if args.follow and (args.at is not None or args.cron is not None):
        raise InvalidRequest(
            "--follow needs a job that starts now",
            hint="leave out --follow; once it has started: agentcell jobs logs ID -f",
        )
    spec: dict[str, Any] = {
        "name": args.name,
        "timeout_s": args.timeout,
        "output_dir": args.output,
        "at": args.at,
        "cron": args.cron,
        "tz": args.tz,
    }
    if args.agent is not None:
        return spec | {"kind": "agent", "prompt": _text(args.agent, "--agent")}
    if args.file is not None:
        suffix = PurePosixPath(args.file).suffix
        language = "shell" if suffix in SHELL_SUFFIXES else "python"
        return spec | {"kind": "exec", "file": args.file, "language": language}
    if args.shell is not None:
        return spec | {"kind": "exec", "code": _text(args.shell, "--shell"), "language": "shell"}
    return spec | {"kind": "exec", "code": _text(args.python, "--python"), "language": "python"}


def _text(value: str, option: str) -> str:
    text = sys.stdin.read() if value == "-" else value
    if not text.strip():
        raise InvalidRequest(f"{option} is empty", hint=f"give {option} what to run")
    return text


def _run(args: argparse.Namespace, settings: Settings) -> int:
    spec = _spec(args)
    with connect(args, settings) as client:
        started = client.jobs_run(**spec)
        if args.json:
            print_json(started)
            return 0
        if isinstance(started, SchedulePublic):
            _scheduled(started)
            return 0
        _started(started, args.follow)
        return follow(client, started.id, raw=args.raw) if args.follow else 0


def _started(job: JobPublic, following: bool) -> None:
    """The job's id on stdout; while following, on stderr (stdout is the job's log then)."""
    safe = untrusted(sys.stderr if following else sys.stdout)
    name = f" {escape(safe(one_line(job.name, NAME_CHARS)))}" if job.name else ""
    retry = f" (attempt {job.attempt}, retry of {job.retry_of})" if job.retry_of else ""
    if following:
        err().print(f"[dim]job {job.id}{name} {job.state}{retry}; Ctrl-C detaches[/]")
        return
    out().print(f"job {job.id}{name} {job.state}{retry}")
    err().print(
        f"[dim]follow its log: agentcell jobs logs {job.id} -f · its state: "
        f"agentcell jobs status {job.id}[/]"
    )


def _scheduled(schedule: SchedulePublic) -> None:
    name = f" {escape(shown()(one_line(schedule.name, NAME_CHARS)))}" if schedule.name else ""
    out().print(
        f"schedule {schedule.id}{name}: {escape(schedule_when(schedule))}, "
        f"next run {schedule_next(schedule)}"
    )
    err().print(
        f"[dim]its jobs: agentcell schedules show {schedule.id} · stop it: "
        f"agentcell schedules rm {schedule.id}[/]"
    )


def _ls(args: argparse.Namespace, settings: Settings) -> int:
    state: JobState | None = args.state
    with connect(args, settings) as client:
        jobs = client.jobs_list(state, args.limit)
    if args.json:
        print_json(jobs)
    elif not jobs:
        which = f"{args.state} " if args.state else ""
        out().print(f"no {which}jobs (start one: agentcell jobs run --shell 'CMD')")
    else:
        jobs_table(jobs)
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings) as client:
        job = client.jobs_get(args.job_id)
    if args.json:
        print_json(job)
    else:
        job_details(job)
    return 0


def _logs(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings) as client:
        if args.follow:
            return follow(client, args.job_id, args.offset, args.raw)
        log = client.jobs_log(args.job_id, args.offset)
    sys.stdout.write(shown()(log.text) if not args.raw else log.text)
    sys.stdout.flush()
    return 0


def _cancel(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings) as client:
        job = client.jobs_cancel(args.job_id)
    if args.json:
        print_json(job)
    else:
        out().print(f"job {job.id} {job.state}")
    return 0


def _retry(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings) as client:
        job = client.jobs_retry(args.job_id)
        if args.json:
            print_json(job)
            return 0
        _started(job, args.follow)
        return follow(client, job.id, raw=args.raw) if args.follow else 0


def _rm(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings) as client:
        client.jobs_rm(args.job_id)
    out().print(f"job {escape(args.job_id)} deleted")
    return 0


def _download(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings) as client:
        if args.dest == "-":
            sys.stdout.flush()
            client.jobs_download(args.job_id, sys.stdout.buffer)
            sys.stdout.buffer.flush()
            return 0
        dest = Path(args.dest) if args.dest else None
        if dest is None or dest.is_dir():
            default = f"{_file_name(client.jobs_get(args.job_id))}.zip"
            dest = dest / default if dest else Path(default)
        size = client.jobs_download(args.job_id, dest)
    out().print(f"{escape(str(dest))} ({size:,} bytes)")
    return 0


def _file_name(job: JobPublic) -> str:
    """The job's name as a file name of this host (its id if nothing of it is left)."""
    name = re.sub(r"[^\w.-]+", "_", job.name).strip("._")
    return name or job.id

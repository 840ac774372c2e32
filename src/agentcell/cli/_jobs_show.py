"""How ``agentcell jobs`` and ``agentcell schedules`` show their answers: tables, a job's or a
schedule's details, JSON, and a followed log with the job's exit code."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence

from pydantic import BaseModel
from rich.markup import escape
from rich.table import Table

from agentcell.cli._output import err, print_table, untrusted, when
from agentcell.cli._when import between, took
from agentcell.client import Client, JobLogChunk, JobLogEnd, LogStreamLost
from agentcell.schemas import JobPublic, JobTemplate, SchedulePublic

SHOWN_CHARS = 80  # of a job's code or prompt, on its status line
JSON_HELP = "print the answer as JSON"


def print_json(value: BaseModel | Sequence[BaseModel]) -> None:
    """JSON on stdout; ASCII only, so that nothing in it is a control character to a terminal."""
    data = (
        value.model_dump(mode="json")
        if isinstance(value, BaseModel)
        else [v.model_dump(mode="json") for v in value]
    )
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def one_line(text: str, limit: int = SHOWN_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def shown() -> Callable[[str], str]:
    """Text of the cell's or the user's (names, code, reasons), safe for stdout."""
    return untrusted(sys.stdout)


def kind_of(job: JobPublic | JobTemplate) -> str:
    return f"{job.kind} ({job.language})" if job.kind == "exec" and job.language else job.kind


def state_of(job: JobPublic) -> str:
    return f"{job.state} ({job.exit_code})" if job.exit_code is not None else job.state


def what(job: JobPublic | JobTemplate) -> tuple[str, str]:
    """What the job runs, as a (label, text) row."""
    if job.kind == "agent":
        return "prompt", job.prompt
    if job.file:
        return "file", job.file
    return "code", job.code


def jobs_table(jobs: Sequence[JobPublic]) -> None:
    safe = shown()
    table = Table(box=None, header_style="bold")
    for column in ("ID", "NAME", "KIND", "STATE", "STARTED", "DURATION"):
        table.add_column(column, no_wrap=True, justify="right" if column == "DURATION" else "left")
    for job in jobs:
        name = safe(one_line(job.name, 40))
        row = [job.id, name, kind_of(job), state_of(job), when(job.started_at)]
        table.add_row(*map(escape, row), took(between(job.started_at, job.ended_at)))
    print_table(table)


def job_details(job: JobPublic) -> None:
    safe = shown()
    label, text = what(job)
    attempt = f"{job.attempt}" + (f" (retry of {job.retry_of})" if job.retry_of else "")
    rows = [
        ("job", job.id),
        ("name", safe(job.name)),
        ("kind", kind_of(job)),
        ("state", job.state),
        ("exit code", "" if job.exit_code is None else str(job.exit_code)),
        ("reason", safe(job.reason)),
        (label, safe(one_line(text))),
        ("output", safe(job.output_dir)),
        ("timeout", took(job.timeout_s)),
        ("attempt", attempt),
        ("schedule", job.schedule_id or ""),
        ("created", when(job.created_at)),
        ("started", when(job.started_at)),
        ("ended", when(job.ended_at)),
        ("duration", took(between(job.started_at, job.ended_at))),
        ("log", f"{job.log_bytes:,} bytes (agentcell jobs logs {job.id})"),
    ]
    _pairs([(k, v) for k, v in rows if v])
    if job.events:
        table = Table(box=None, header_style="bold", title="state changes", title_justify="left")
        for column in ("AT", "STATE", "REASON"):
            table.add_column(column, no_wrap=column != "REASON")
        for change in job.events:
            table.add_row(when(change.at), change.state, escape(safe(change.reason)))
        print_table(table)


def schedule_when(schedule: SchedulePublic) -> str:
    if schedule.kind == "cron":
        return f"cron '{schedule.cron}' {schedule.tz}"
    return f"at {when(schedule.at)}"


def schedule_next(schedule: SchedulePublic) -> str:
    if schedule.paused:
        return "paused"
    return when(schedule.next_run_at) if schedule.next_run_at else "never again"


def schedules_table(schedules: Sequence[SchedulePublic]) -> None:
    safe = shown()
    table = Table(box=None, header_style="bold")
    for column in ("ID", "NAME", "WHEN", "NEXT", "FIRES", "LAST JOB"):
        table.add_column(column, no_wrap=True, justify="right" if column == "FIRES" else "left")
    for s in schedules:
        name = safe(one_line(s.name, 40))
        row = [s.id, name, safe(schedule_when(s)), schedule_next(s), str(s.fires)]
        table.add_row(*map(escape, [*row, s.last_job_id or ""]))
    print_table(table)


def schedule_details(schedule: SchedulePublic) -> None:
    safe = shown()
    job = schedule.job
    label, text = what(job)
    skips = f"{schedule.skips}" + (
        f" (last: {schedule.last_skip_reason})" if schedule.last_skip_reason else ""
    )
    rows = [
        ("schedule", schedule.id),
        ("name", safe(schedule.name)),
        ("when", safe(schedule_when(schedule))),
        ("next run", schedule_next(schedule)),
        ("last fired", when(schedule.last_fired_at)),
        ("last job", schedule.last_job_id or ""),
        ("fires", str(schedule.fires)),
        ("skips", safe(skips) if schedule.skips else ""),
        ("created", when(schedule.created_at)),
        ("job kind", kind_of(job)),
        (label, safe(one_line(text))),
        ("timeout", took(job.timeout_s)),
        ("output", safe(job.output_dir) or "jobs/<id>/ of each job"),
    ]
    _pairs([(k, v) for k, v in rows if v])


def _pairs(rows: Sequence[tuple[str, str]]) -> None:
    table = Table(box=None, show_header=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for name, value in rows:
        table.add_row(name, escape(value))
    print_table(table)


# --- a followed log ----------------------------------------------------------------------------


def exit_status(state: str, exit_code: int | None) -> int:
    """The CLI's exit code for a job that ended: its own, as ``agentcell exec`` gives it (a
    signal N is 128+N); 1 for one that did not succeed without giving one."""
    if exit_code is None:
        return 0 if state == "succeeded" else 1
    status = exit_code if 0 <= exit_code <= 255 else 128 - exit_code if exit_code < 0 else 1
    return status if status or state == "succeeded" else 1


def follow(client: Client, job_id: str, offset: int = 0, raw: bool = False) -> int:
    """Print the job's log as it is written until the job ends; its exit code. Ctrl-C stops
    following only: the job goes on, and how to follow it again is said."""
    write = untrusted(sys.stdout, raw)
    open_line = False
    end: JobLogEnd | None = None
    try:
        for event in client.jobs_follow(job_id, offset):
            if isinstance(event, JobLogChunk):
                sys.stdout.write(write(event.text))
                sys.stdout.flush()
                offset, open_line = event.offset, not event.text.endswith("\n")
            else:
                end = event
    except KeyboardInterrupt:
        if open_line and sys.stdout.isatty():
            sys.stdout.write("\n")
        err().print(
            f"[yellow]detached[/]: job {escape(job_id)} keeps running. Follow it again: "
            f"agentcell jobs logs {escape(job_id)} -f (add --offset {offset} to go on from "
            f"here); stop it: agentcell jobs cancel {escape(job_id)}"
        )
        return 130
    except LogStreamLost as e:
        e.hint = (
            f"the job goes on; follow it again: agentcell jobs logs {job_id} -f --offset {e.offset}"
        )
        raise
    assert end is not None  # jobs_follow ends with a JobLogEnd, or raises
    if open_line and sys.stdout.isatty():
        sys.stdout.write("\n")
    _ended(client, job_id, end)
    return exit_status(end.state, end.exit_code)


def _ended(client: Client, job_id: str, end: JobLogEnd) -> None:
    """One line on stderr: how the job ended, and why when it did not succeed."""
    code = "" if end.exit_code is None else f" (exit code {end.exit_code})"
    if end.state == "succeeded":
        err().print(f"[green]✓[/] job {escape(job_id)} succeeded{code}")
        return
    reason = client.jobs_get(job_id).reason
    said = reason and reason != f"exit code {end.exit_code}"  # not twice
    why = f": {escape(untrusted(sys.stderr)(reason))}" if said else ""
    err().print(f"[red]✗[/] job {escape(job_id)} {end.state}{code}{why}")

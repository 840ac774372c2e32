"""``agentcell jobs`` and ``agentcell schedules``: what the CLI parses on its own (durations,
``--at``, argument errors, hints), then the commands against a live server with real cells
(the tests marked ``docker``; they need the server's /v1/jobs and /v1/schedules routes)."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from agentcell.cli import build_parser, main
from agentcell.cli._hints import cli_hint
from agentcell.cli._jobs_show import exit_status
from agentcell.cli._when import at_time, duration, took
from agentcell.client import Client, JobPublic
from agentcell.errors import AgentcellError, TooManyJobs
from tests.conftest import Live, ServerFactory, SettingsFactory
from tests.test_client_cli import CLIENT_ENV, assert_clean_error, run
from tests.waiting import wait_until

ENDED = {"succeeded", "failed", "cancelled", "timed_out", "interrupted"}


# --- what the CLI parses itself ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("30m", 1800),
        ("4h", 4 * 3600),
        ("1h30m", 5400),
        ("2d", 2 * 86400),
        ("1.5h", 5400),
        ("1h0m30s", 3630),
        ("45", 45),
        ("0.5", 0.5),
        (" 4H ", 4 * 3600),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert duration(text) == seconds


@pytest.mark.parametrize("text", ["4x", "", "h", "0", "0s", "-5", "1h30", "m30", "inf", "nan"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="invalid duration"):
        duration(text)


def test_at_times() -> None:
    now = datetime(2026, 5, 1, 7, 0, tzinfo=UTC)
    assert at_time("+10m", now) == now + timedelta(minutes=10)
    assert at_time("+1h30m", now) == now + timedelta(minutes=90)
    paris = timezone(timedelta(hours=2))
    assert at_time("2026-05-01T09:00+02:00") == datetime(2026, 5, 1, 9, 0, tzinfo=paris)
    assert at_time("2026-05-01T07:00Z") == now
    local = at_time("2026-05-01T07:00")  # no offset: this host's local time
    assert local.tzinfo is not None
    assert local == datetime(2026, 5, 1, 7, 0).astimezone()
    later = at_time("+5s")
    assert later.tzinfo is not None
    assert 0 < (later - datetime.now(UTC)).total_seconds() <= 5


@pytest.mark.parametrize("text", ["tomorrow", "+", "+soon", "+-5m", "07:00 tomorrow", ""])
def test_bad_at_times(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="invalid time"):
        at_time(text)


def test_took() -> None:
    assert [took(s) for s in (None, 4.21, 65, 3725, 90000)] == [
        "",
        "4.2s",
        "1m05s",
        "1h02m",
        "1d01h",
    ]


@pytest.mark.parametrize(
    ("state", "exit_code", "status"),
    [
        ("succeeded", 0, 0),
        ("failed", 3, 3),
        ("failed", -9, 137),  # killed by signal 9, as a shell says it
        ("failed", 300, 1),
        ("succeeded", None, 0),  # an agent job
        ("failed", None, 1),
        ("cancelled", None, 1),
        ("timed_out", 0, 1),  # it did not succeed, whatever its code
        ("interrupted", None, 1),
    ],
)
def test_exit_status(state: str, exit_code: int | None, status: int) -> None:
    assert exit_status(state, exit_code) == status


def _fails_to_parse(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_argument_errors(capsys: pytest.CaptureFixture[str]) -> None:
    err = _fails_to_parse(capsys, "jobs", "run", "--name", "x")
    assert "one of the arguments --shell --python --file --agent is required" in err
    err = _fails_to_parse(capsys, "jobs", "run", "--shell", "ls", "--python", "1")
    assert "not allowed with argument" in err
    err = _fails_to_parse(capsys, "jobs", "run", "--shell", "ls", "--timeout", "4x")
    assert "argument --timeout: invalid duration '4x': use e.g. 90s, 30m, 4h, 1h30m" in err
    err = _fails_to_parse(capsys, "jobs", "run", "--shell", "ls", "--at", "soon")
    assert "argument --at: invalid time 'soon'" in err
    err = _fails_to_parse(
        capsys, "jobs", "run", "--shell", "ls", "--at", "+1m", "--cron", "* * * * *"
    )
    assert "not allowed with argument" in err
    err = _fails_to_parse(capsys, "jobs", "run", "--shell", "ls", "--follow", "--json")
    assert "not allowed with argument" in err
    err = _fails_to_parse(capsys, "jobs", "logs", "j_1", "--offset", "-1")
    assert "argument --offset" in err
    err = _fails_to_parse(capsys, "jobs", "ls", "--state", "sleeping")
    assert "invalid choice: 'sleeping'" in err


def test_argument_clashes_are_errors_with_a_hint(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Caught before any request: no server is needed (none listens at this URL)."""
    monkeypatch.setenv("AGENTCELL_URL", "http://127.0.0.1:9")
    code, out, err = run(capsys, "jobs", "run", "--shell", "ls", "--tz", "Europe/Paris")
    assert (code, out) == (1, "")
    assert_clean_error(err)
    assert "--tz is the time zone of a --cron schedule" in err
    assert "hint: agentcell jobs run ... --cron '0 7 * * *' --tz Europe/Paris" in err
    code, _, err = run(capsys, "jobs", "run", "--shell", "ls", "--at", "+1m", "--follow")
    assert code == 1
    assert "--follow needs a job that starts now" in err
    code, _, err = run(capsys, "jobs", "run", "--shell", " ")
    assert code == 1
    assert "--shell is empty" in err


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                if name in helps:  # not an alias
                    assert helps[name], f"agentcell {' '.join((*path, name))} has no help"
                    yield (*path, name)
                    yield from _commands(sub, (*path, name))


def test_every_jobs_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    commands = [c for c in _commands(build_parser()) if c[0] in ("jobs", "schedules")]
    assert ("jobs", "run") in commands
    assert ("schedules", "resume") in commands
    for command in commands:
        with pytest.raises(SystemExit) as exited:
            main([*command, "--help"])
        assert exited.value.code == 0
        assert f"usage: agentcell {' '.join(command)}" in capsys.readouterr().out


# The server's hints for schedules (agentcell.jobs.when); the end-to-end test below checks them.
ZONE_HINT = "name an IANA time zone, e.g. UTC, Europe/Paris, America/New_York"
CRON_HINT = (
    "a cron expression has 5 fields: minute hour day-of-month month day-of-week, "
    "e.g. '0 7 * * *' for every day at 07:00"
)


def test_the_jobs_hints_in_cli_words() -> None:
    """The server's hints for jobs name what to send; the CLI names its options and commands."""
    zone = cli_hint(AgentcellError("unknown time zone 'Mars/Olympus'", hint=ZONE_HINT))
    assert zone == "give --tz an IANA time zone, e.g. UTC, Europe/Paris, America/New_York"
    cron = cli_hint(AgentcellError("bad cron expression", hint=CRON_HINT))
    assert cron.endswith("e.g. --cron '0 7 * * *' for every day at 07:00")
    busy = TooManyJobs("you have 20 jobs running and queued", retry_after_s=5)
    assert "agentcell jobs cancel ID" in cli_hint(busy)
    missing = AgentcellError("no job 'j_1'", hint="list your jobs to see their ids")
    assert cli_hint(missing) == "list your jobs to see their ids: agentcell jobs ls"
    ended = AgentcellError("it has ended", hint="see its state and log; retry it to run it again")
    assert "agentcell jobs retry ID" in cli_hint(ended)
    past = AgentcellError("in the past", hint="give a time in the future")
    assert cli_hint(past) == "give --at a time in the future, e.g. --at +10m"


# --- against a live server (needs the server's /v1/jobs and /v1/schedules routes) ---------------


@pytest.fixture
def key(server: Live, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh user, whose key the CLI finds in AGENTCELL_API_KEY."""
    return _user(server, monkeypatch, "jobber")


def _user(live: Live, monkeypatch: pytest.MonkeyPatch, name: str) -> str:
    for env in CLIENT_ENV:
        monkeypatch.delenv(env, raising=False)
    with live.admin() as admin:
        api_key = admin.users_add(name).api_key
    monkeypatch.setenv("AGENTCELL_URL", live.url)
    monkeypatch.setenv("AGENTCELL_API_KEY", api_key)
    return api_key


def _id(out: str, kind: str = "job") -> str:
    found = re.search(rf"^{kind} (\S+)", out, re.M)
    assert found, out
    return found[1]


def _ended(client: Client, job_id: str, timeout_s: float = 60) -> JobPublic:
    wait_until(f"job {job_id} ends", lambda: client.jobs_get(job_id).state in ENDED, timeout_s)
    return client.jobs_get(job_id)


LINES = "for i in 1 2 3; do echo line $i; sleep 0.2; done"


@pytest.mark.docker
def test_run_follow_streams_the_log_and_exits_with_the_jobs_code(
    key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ("jobs", "run", "--shell", f"{LINES}; exit 3", "--name", "three", "--timeout", "1m")
    code, out, err = run(capsys, *argv, "--follow")
    assert (code, out) == (3, "line 1\nline 2\nline 3\n"), err  # stdout is the log only
    job_id = _id(err)
    assert "three" in err
    assert f"✗ job {job_id} failed (exit code 3)" in err
    with Client(api_key=key) as client:
        job = client.jobs_get(job_id)
    assert (job.name, job.timeout_s, job.language) == ("three", 60, "shell")

    code, out, err = run(capsys, "jobs", "run", "--python", "print(6*7)", "-f")
    assert (code, out) == (0, "42\n"), err
    assert "✓ job" in err


@pytest.mark.docker
def test_ctrl_c_detaches_and_the_job_goes_on(key: str) -> None:
    agentcell = str(Path(sys.executable).with_name("agentcell"))
    code = "echo started; sleep 3; echo finished"
    argv = [agentcell, "jobs", "run", "--shell", code, "--follow"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as cli:
        assert cli.stdout is not None
        assert cli.stdout.readline() == "started\n"  # following: the log streams
        cli.send_signal(signal.SIGINT)
        out, err = cli.communicate(timeout=30)
    assert cli.returncode == 130, err
    assert out == ""
    assert "Traceback" not in err
    job_id = _id(err)
    assert f"detached: job {job_id} keeps running" in err
    assert f"agentcell jobs logs {job_id} -f" in err
    with Client(api_key=key) as client:
        assert client.jobs_get(job_id).state in ("queued", "running")
        job = _ended(client, job_id)
        assert job.state == "succeeded"
        assert client.jobs_log(job_id).text == "started\nfinished\n"


@pytest.mark.docker
def test_logs_from_an_offset_and_followed_after_the_end(
    key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "jobs", "run", "--shell", "echo out; echo err >&2; exit 2")
    assert code == 0
    job_id = _id(out)
    assert re.match(rf"job {job_id} .*(queued|running)\n", out)  # named after its code
    with Client(api_key=key) as client:
        _ended(client, job_id)
    assert run(capsys, "jobs", "logs", job_id)[:2] == (0, "out\nerr\n")
    assert run(capsys, "jobs", "logs", job_id, "--offset", "4")[:2] == (0, "err\n")
    assert run(capsys, "jobs", "logs", job_id, "-f")[:2] == (2, "out\nerr\n")
    assert run(capsys, "jobs", "logs", job_id, "-f", "--offset", "8")[:2] == (2, "")


@pytest.mark.docker
def test_ls_status_cancel_retry_rm(key: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "jobs", "run", "--shell", "sleep 300", "--name", "sleeper")
    assert code == 0, err
    job_id = _id(out)
    with Client(api_key=key) as client:
        wait_until("it runs", lambda: client.jobs_get(job_id).state == "running")
    code, out, _ = run(capsys, "jobs", "ls")
    assert code == 0
    assert re.search(rf"{job_id}\s+sleeper\s+exec \(shell\)\s+running", out), out
    for column in ("ID", "NAME", "KIND", "STATE", "STARTED", "DURATION"):
        assert column in out
    assert job_id in run(capsys, "jobs", "ls", "--state", "running")[1]
    assert "no succeeded jobs" in run(capsys, "jobs", "ls", "--state", "succeeded")[1]
    listed = json.loads(run(capsys, "jobs", "ls", "--json")[1])
    assert [j["id"] for j in listed] == [job_id]

    code, out, _ = run(capsys, "jobs", "status", job_id)
    assert code == 0
    assert re.search(r"state\s+running", out), out
    assert "sleep 300" in out
    assert "state changes" in out
    assert json.loads(run(capsys, "jobs", "status", job_id, "--json")[1])["state"] == "running"

    code, out, _ = run(capsys, "jobs", "cancel", job_id)
    assert (code, out) == (0, f"job {job_id} cancelled\n")
    code, _, err = run(capsys, "jobs", "cancel", job_id)  # it has ended: 409
    assert code == 1
    assert_clean_error(err)
    code, out, _ = run(capsys, "jobs", "status", job_id)
    assert re.search(r"state\s+cancelled", out), out
    assert out.count("cancelled") >= 2  # and among the state changes

    code, out, err = run(capsys, "jobs", "retry", job_id, "--json")
    assert code == 0, err
    retried = json.loads(out)
    assert (retried["attempt"], retried["retry_of"]) == (2, job_id)
    assert run(capsys, "jobs", "cancel", retried["id"])[0] == 0

    assert run(capsys, "jobs", "rm", job_id)[:2] == (0, f"job {job_id} deleted\n")
    code, _, err = run(capsys, "jobs", "status", job_id)
    assert code == 1
    assert_clean_error(err)
    assert "agentcell jobs ls" in err  # the hint, in CLI words
    assert "/v1/" not in err


@pytest.mark.docker
def test_retry_follow_and_run_a_workspace_file(
    key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with Client(api_key=key) as client:
        client.files_put("tools/count.sh", b"echo counted $((6 * 7)); exit 4\n")
    code, out, err = run(capsys, "jobs", "run", "--file", "tools/count.sh", "--follow")
    assert (code, out) == (4, "counted 42\n"), err
    job_id = _id(err)
    code, out, err = run(capsys, "jobs", "retry", job_id, "--follow")
    assert (code, out) == (4, "counted 42\n"), err
    assert f"(attempt 2, retry of {job_id})" in err


@pytest.mark.docker
def test_download_the_output_folder(
    key: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert key
    monkeypatch.chdir(tmp_path)
    make = "mkdir -p out/sub && echo result > out/sub/result.txt && echo made"
    argv = ("jobs", "run", "--shell", make, "--output", "out", "--name", "my run", "-f")
    code, out, err = run(capsys, *argv)
    assert (code, out) == (0, "made\n"), err
    job_id = _id(err)

    code, out, err = run(capsys, "jobs", "download", job_id)
    assert code == 0, err
    assert out.startswith("my_run.zip (")  # named after the job
    with zipfile.ZipFile(tmp_path / "my_run.zip") as z:
        [name] = [n for n in z.namelist() if n.endswith("result.txt")]
        assert z.read(name) == b"result\n"
    (tmp_path / "into").mkdir()
    assert run(capsys, "jobs", "download", job_id, "into")[0] == 0
    assert zipfile.is_zipfile(tmp_path / "into" / "my_run.zip")
    assert run(capsys, "jobs", "download", job_id, "a.zip")[0] == 0
    assert zipfile.is_zipfile(tmp_path / "a.zip")


@pytest.mark.docker
def test_schedules_ls_show_pause_resume_rm(key: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert key
    argv = ("jobs", "run", "--shell", "echo hi", "--name", "daily")
    code, out, err = run(capsys, *argv, "--cron", "0 7 * * *", "--tz", "Europe/Paris")
    assert code == 0, err
    schedule_id = _id(out, "schedule")
    assert f"schedule {schedule_id} daily: cron '0 7 * * *' Europe/Paris, next run 20" in out

    code, out, _ = run(capsys, "schedules", "ls")
    assert code == 0
    assert re.search(rf"{schedule_id}\s+daily\s+cron '0 7 \* \* \*' Europe/Paris\s+20", out), out
    code, out, _ = run(capsys, "schedules", "show", schedule_id)
    assert code == 0
    assert re.search(r"next run\s+20", out), out
    assert "echo hi" in out
    assert run(capsys, "schedules", "pause", schedule_id)[:2] == (
        0,
        f"schedule {schedule_id} paused (resume it: agentcell schedules resume ID)\n",
    )
    assert re.search(rf"{schedule_id}.*paused", run(capsys, "schedules", "ls")[1])
    assert json.loads(run(capsys, "schedules", "show", schedule_id, "--json")[1])["paused"]
    code, out, _ = run(capsys, "schedules", "resume", schedule_id)
    assert code == 0
    assert out.startswith(f"schedule {schedule_id} resumed, next run 20")
    assert run(capsys, "schedules", "rm", schedule_id)[0] == 0
    code, _, err = run(capsys, "schedules", "show", schedule_id)
    assert code == 1
    assert_clean_error(err)
    assert "no schedules" in run(capsys, "schedules", "ls")[1]


@pytest.mark.docker
def test_a_job_at_a_time_starts_then(key: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "jobs", "run", "--shell", "echo later", "--at", "+2s")
    assert code == 0, err
    schedule_id = _id(out, "schedule")
    with Client(api_key=key) as client:
        wait_until("its job starts", lambda: bool(client.jobs_list()), 60)
        [job] = client.jobs_list()
        assert job.schedule_id == schedule_id
        assert _ended(client, job.id).state == "succeeded"
        assert client.jobs_log(job.id).text == "later\n"


@pytest.mark.docker
def test_a_bad_cron_or_zone_shows_the_servers_message_and_a_cli_hint(
    key: str, capsys: pytest.CaptureFixture[str], server: Live
) -> None:
    auth = {"Authorization": f"Bearer {key}"}
    for schedule, option in (
        ({"cron": "every day"}, "--cron"),
        ({"cron": "0 7 * * *", "tz": "Mars/Olympus"}, "--tz"),
    ):
        body = {"kind": "exec", "code": "echo hi", "schedule": schedule}
        answer = httpx.post(f"{server.url}/v1/jobs", json=body, headers=auth, timeout=60)
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        argv = ["jobs", "run", "--shell", "echo hi", "--cron", schedule["cron"]]
        argv += ["--tz", schedule["tz"]] if "tz" in schedule else []
        code, out, err = run(capsys, *argv)
        assert (code, out) == (1, "")
        assert_clean_error(err)
        assert f"error: {error['message']}" in err
        assert f"hint: {cli_hint(AgentcellError('', hint=error['hint']))}" in err
        assert option in err.split("hint:")[1]  # it names the option to fix


@pytest.mark.docker
def test_another_users_job_is_not_found(
    server: Live, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _user(server, monkeypatch, "alice")
    code, out, _ = run(capsys, "jobs", "run", "--shell", "sleep 60")
    job_id = _id(out)
    code, out, _ = run(capsys, "jobs", "run", "--shell", "echo", "--cron", "0 7 * * *")
    schedule_id = _id(out, "schedule")

    _user(server, monkeypatch, "bob")
    for argv in (
        ("jobs", "status", job_id),
        ("jobs", "logs", job_id),
        ("jobs", "logs", job_id, "-f"),
        ("jobs", "cancel", job_id),
        ("jobs", "retry", job_id),
        ("jobs", "download", job_id, "x.zip"),
        ("jobs", "rm", job_id),
        ("schedules", "show", schedule_id),
        ("schedules", "pause", schedule_id),
        ("schedules", "rm", schedule_id),
    ):
        code, out, err = run(capsys, *argv)
        assert (code, out) == (1, ""), argv
        assert_clean_error(err)
        assert "not found" in err or "no job" in err or "no schedule" in err, (argv, err)
    assert "no jobs" in run(capsys, "jobs", "ls")[1]
    assert "no schedules" in run(capsys, "schedules", "ls")[1]


@pytest.mark.docker
def test_too_many_jobs_says_what_to_do(
    make_server: ServerFactory,
    make_settings: SettingsFactory,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with make_server(make_settings(jobs_per_user_max=1)) as live:
        _user(live, monkeypatch, "busy")
        assert run(capsys, "jobs", "run", "--shell", "sleep 60")[0] == 0
        code, out, err = run(capsys, "jobs", "run", "--shell", "sleep 60")
        assert (code, out) == (1, "")
        assert_clean_error(err)
        assert "agentcell jobs cancel ID" in err
        with Client(api_key=os.environ["AGENTCELL_API_KEY"]) as client:
            with pytest.raises(TooManyJobs) as refused:
                client.jobs_run(code="sleep 60", language="shell")
            assert refused.value.status_code == 429
            assert refused.value.retry_after_s > 0
            for job in client.jobs_list():
                client.jobs_cancel(job.id)

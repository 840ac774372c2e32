"""Jobs through the HTTP API, on a live server, real cells and a real store: exec jobs detached
in the cell (logs, follow, cancel, artifacts), agent jobs with a scripted model, the queue's
fairness and limits, schedules, and work-aware idle."""

from __future__ import annotations

import asyncio
import io
import json
import time
import zipfile
from collections.abc import Iterator
from typing import Any

import docker
import httpx
import pytest
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models.function import AgentInfo

from agentcell.client._sse import SSEParser
from agentcell.sandbox.docker.backend import LABEL_OWNER
from agentcell.store import Store
from tests.api.test_sessions import add_user, assert_error, delegating
from tests.conftest import Live, ServerFactory, SettingsFactory
from tests.scripted import Scripted, text
from tests.waiting import wait_until

pytestmark = pytest.mark.docker

SSE = {"Accept": "text/event-stream"}
ENDED = {"succeeded", "failed", "cancelled", "timed_out", "interrupted"}


def submit(http: httpx.Client, **body: Any) -> dict[str, Any]:
    made = http.post("/v1/jobs", json={"kind": "exec", "language": "shell", **body})
    assert made.status_code == 201, made.text
    return dict(made.json())


def job(http: httpx.Client, job_id: str) -> dict[str, Any]:
    got = http.get(f"/v1/jobs/{job_id}")
    assert got.status_code == 200, got.text
    return dict(got.json())


def ended(http: httpx.Client, job_id: str, timeout_s: float = 60) -> dict[str, Any]:
    wait_until(f"job {job_id} ends", lambda: job(http, job_id)["state"] in ENDED, timeout_s)
    return job(http, job_id)


def follow(
    http: httpx.Client, job_id: str, **headers: str
) -> list[tuple[str, str, dict[str, Any]]]:
    """Every SSE event of the job's followed log: (event, id, data)."""
    parser, found = SSEParser(), []
    with http.stream("GET", f"/v1/jobs/{job_id}/logs", headers={**SSE, **headers}) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if event := parser.feed(line):
                found.append((event.event, event.id, json.loads(event.data)))
    return found


def in_cell(http: httpx.Client, code: str) -> str:
    ran = http.post("/v1/cell/exec", json={"language": "shell", "code": code})
    assert ran.status_code == 200, ran.text
    return str(ran.json()["stdout"])


@pytest.fixture
def alice(chat_server: Live) -> Iterator[httpx.Client]:
    with add_user(chat_server, "alice") as http:
        yield http


def test_an_exec_job_runs_detached_and_keeps_its_log(alice: httpx.Client) -> None:
    made = submit(alice, code="echo out; echo err >&2; exit 3", name="three")
    assert made["object"] == "job"
    assert made["state"] in ("queued", "running")
    assert made["output_dir"] == f"jobs/{made['id']}"
    done = ended(alice, made["id"])
    assert (done["state"], done["exit_code"], done["reason"]) == ("failed", 3, "exit code 3")
    assert [e["state"] for e in done["events"]] == ["queued", "running", "failed"]
    log = alice.get(f"/v1/jobs/{made['id']}/logs")
    assert log.text == "out\nerr\n"
    assert log.headers["X-Log-Offset"] == str(len(b"out\nerr\n"))
    assert alice.get(f"/v1/jobs/{made['id']}/logs", params={"offset": 4}).text == "err\n"
    listed = alice.get("/v1/jobs", params={"state": "failed"}).json()["jobs"]
    assert [j["id"] for j in listed] == [made["id"]]
    python = submit(
        alice, language="python", code="import os; print(os.environ['AGENTCELL_JOB_ID'])"
    )
    assert ended(alice, python["id"])["state"] == "succeeded"
    assert alice.get(f"/v1/jobs/{python['id']}/logs").text == f"{python['id']}\n"


def test_two_followers_and_a_resume_by_last_event_id(alice: httpx.Client) -> None:
    code = "for i in 1 2 3 4 5; do echo line $i; sleep 0.2; done; echo é"
    made = submit(alice, code=code)
    first, second = follow(alice, made["id"]), follow(alice, made["id"])
    for events in (first, second):
        text_ = "".join(d["text"] for e, _, d in events if e == "log")
        assert text_ == "".join(f"line {i}\n" for i in range(1, 6)) + "é\n"
        assert events[-1][0] == "end"
        assert events[-1][2]["state"] == "succeeded"
        assert events[-1][2]["offset"] == len(text_.encode())
    ids = [int(i) for e, i, _ in first if e == "log"]
    assert ids == sorted(ids)
    middle = next(d for e, _, d in first if e == "log" and "line 3" in d["text"])
    rest = follow(alice, made["id"], **{"Last-Event-ID": str(middle["offset"])})
    resumed = "".join(d["text"] for e, _, d in rest if e == "log")
    assert resumed == "".join(f"line {i}\n" for i in range(4, 6)) + "é\n"


def test_cancel_kills_a_tree_that_forked_and_called_setsid(alice: httpx.Client) -> None:
    code = (
        "setsid sh -c 'sleep 1001 & sleep 1002' & "
        "(sleep 1003 &) ; "
        "nohup sleep 1004 >/dev/null 2>&1 & "
        "echo started; sleep 1005"
    )
    made = submit(alice, code=code, timeout_s=600)
    wait_until(
        "the job has started", lambda: alice.get(f"/v1/jobs/{made['id']}/logs").text == "started\n"
    )
    assert in_cell(alice, "pgrep -c -f '^sleep 100[1-5]$' || true").strip() == "5"
    started = time.monotonic()
    cancelled = alice.post(f"/v1/jobs/{made['id']}/cancel")
    took = time.monotonic() - started
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == "cancelled"
    assert in_cell(alice, "pgrep -f '^sleep 100[1-5]$' || echo none").strip() == "none", took
    again = alice.post(f"/v1/jobs/{made['id']}/cancel")
    assert_error(again, 409, "conflict")
    assert job(alice, made["id"])["state"] == "cancelled"


def test_a_timeout_ends_the_job_as_timed_out(alice: httpx.Client) -> None:
    made = submit(alice, code="echo begin; sleep 30", timeout_s=1)
    done = ended(alice, made["id"])
    assert done["state"] == "timed_out", done
    assert "timeout of 1 s" in done["reason"]
    assert in_cell(alice, "pgrep -f '^sleep 30$' || echo none").strip() == "none"


def test_artifacts_are_the_output_folder_as_a_zip_without_links(alice: httpx.Client) -> None:
    code = (
        'cd "$AGENTCELL_OUTPUT" && echo data > result.csv && mkdir -p plots && '
        "echo png > plots/a.png && ln -s /etc/passwd leak"
    )
    made = submit(alice, code=code)
    assert ended(alice, made["id"])["state"] == "succeeded"
    got = alice.get(f"/v1/jobs/{made['id']}/artifacts")
    assert got.status_code == 200, got.text
    assert got.headers["content-type"] == "application/zip"
    names = sorted(zipfile.ZipFile(io.BytesIO(got.content)).namelist())
    assert [n for n in names if not n.endswith("/")] == ["plots/a.png", "result.csv"]
    named = submit(alice, code="echo hi > out/x.txt", output_dir="out")
    assert ended(alice, named["id"])["state"] == "succeeded"
    got = alice.get(f"/v1/jobs/{named['id']}/artifacts")
    assert zipfile.ZipFile(io.BytesIO(got.content)).read("x.txt") == b"hi\n"
    # Deleting a job takes its log and its default folder; a folder the user named stays.
    assert alice.delete(f"/v1/jobs/{made['id']}").status_code == 204
    assert alice.delete(f"/v1/jobs/{named['id']}").status_code == 204
    assert_error(alice.get(f"/v1/jobs/{made['id']}"), 404, "not_found")
    assert (
        in_cell(alice, f"ls jobs/{made['id']} 2>&1 >/dev/null | wc -l; cat out/x.txt") == "1\nhi\n"
    )


def test_bad_input_is_refused_and_nothing_is_made(alice: httpx.Client) -> None:
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"kind": "sorcery", "code": "x"}, 422, "invalid_request"),
        ({"kind": "exec"}, 400, "invalid_request"),
        ({"kind": "exec", "code": "x", "file": "y.py"}, 400, "invalid_request"),
        ({"kind": "exec", "code": "x", "output_dir": "../../etc"}, 400, "invalid_path"),
        ({"kind": "exec", "code": "x", "output_dir": "/etc"}, 400, "invalid_path"),
        ({"kind": "exec", "code": "x", "timeout_s": 10**9}, 400, "invalid_request"),
        ({"kind": "exec", "code": "x", "schedule": {"cron": "61 * * * *"}}, 400, "invalid_request"),
        ({"kind": "exec", "code": "x", "schedule": {"cron": "* * *"}}, 400, "invalid_request"),
        (
            {"kind": "exec", "code": "x", "schedule": {"cron": "0 7 * * *", "tz": "Mars/Base"}},
            400,
            "invalid_request",
        ),
        (
            {"kind": "exec", "code": "x", "schedule": {"at": "2001-01-01T00:00:00Z"}},
            400,
            "invalid_request",
        ),
        (
            {"kind": "exec", "code": "x", "schedule": {"at": "2099-01-01T00:00:00"}},
            400,
            "invalid_request",
        ),
    ]
    for body, status, code in cases:
        refused = alice.post("/v1/jobs", json=body)
        error = assert_error(refused, status, code)
        assert error["message"], body
    assert alice.get("/v1/jobs").json()["jobs"] == []
    assert alice.get("/v1/schedules").json()["schedules"] == []
    assert_error(alice.get("/v1/jobs/j_0000000000000000"), 404, "not_found")
    assert_error(alice.post("/v1/jobs/j_0000000000000000/cancel"), 404, "not_found")


def test_another_users_jobs_are_not_found(chat_server: Live) -> None:
    with add_user(chat_server, "owner") as owner, add_user(chat_server, "other") as other:
        mine = submit(owner, code="echo mine > secret.txt; cat secret.txt", output_dir="private")
        ended(owner, mine["id"])
        for method, path in (
            ("GET", ""),
            ("GET", "/logs"),
            ("GET", "/artifacts"),
            ("POST", "/cancel"),
            ("POST", "/retry"),
            ("DELETE", ""),
        ):
            assert_error(other.request(method, f"/v1/jobs/{mine['id']}{path}"), 404, "not_found")
        with other.stream("GET", f"/v1/jobs/{mine['id']}/logs", headers=SSE) as r:
            assert r.status_code == 404
        assert other.get("/v1/jobs").json()["jobs"] == []
        assert job(owner, mine["id"])["state"] == "succeeded"  # the other's delete did nothing


def test_retry_starts_a_new_attempt(alice: httpx.Client) -> None:
    first = submit(alice, code="test -f again || { touch again; exit 1; }")
    assert ended(alice, first["id"])["state"] == "failed"
    retried = alice.post(f"/v1/jobs/{first['id']}/retry")
    assert retried.status_code == 201, retried.text
    second = retried.json()
    assert (second["attempt"], second["retry_of"]) == (2, first["id"])
    assert ended(alice, second["id"])["state"] == "succeeded"


def test_over_the_limit_is_429_with_retry_after(
    make_server: ServerFactory, make_settings: SettingsFactory
) -> None:
    settings = make_settings(jobs_per_user_max=2, jobs_running_per_user=1)
    with make_server(settings) as live, add_user(live, "greedy") as http:
        for _ in range(2):
            submit(http, code="sleep 30", timeout_s=60)
        over = http.post("/v1/jobs", json={"kind": "exec", "code": "true"})
        assert_error(over, 429, "too_many_jobs")
        assert int(over.headers["Retry-After"]) > 0

        def states() -> list[str]:
            return sorted(j["state"] for j in http.get("/v1/jobs").json()["jobs"])

        wait_until("one of them runs", lambda: "running" in states())
        assert states() == ["queued", "running"]  # one running at a time for this user


def test_queued_jobs_start_round_robin_between_users(
    make_server: ServerFactory, make_settings: SettingsFactory
) -> None:
    settings = make_settings(jobs_running_max=1, jobs_running_per_user=1)
    with make_server(settings) as live:
        users = {name: add_user(live, name) for name in ("ann", "bob", "cat")}
        try:
            gate = submit(
                users["ann"], code="while [ ! -f go ]; do sleep 0.05; done", timeout_s=120
            )
            wait_until("the gate runs", lambda: job(users["ann"], gate["id"])["state"] == "running")
            made = [
                (name, submit(http, code="true")["id"])
                for name, http in users.items()
                for _ in range(3)
            ]
            in_cell(users["ann"], "touch go")
            for name, job_id in made:
                assert ended(users[name], job_id)["state"] == "succeeded"
            started = sorted(
                (job(users[name], job_id)["started_at"], name) for name, job_id in made
            )
            # ann's gate started last: bob, then cat, then ann, in every round.
            assert [name for _, name in started] == ["bob", "cat", "ann"] * 3
        finally:
            for http in users.values():
                http.close()


def test_a_schedule_at_a_time_fires_once(alice: httpx.Client) -> None:
    at = time.time() + 2
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + "Z"
    made = alice.post(
        "/v1/jobs",
        json={"kind": "exec", "language": "shell", "code": "echo fired", "schedule": {"at": iso}},
    )
    assert made.status_code == 201, made.text
    schedule = made.json()
    assert (schedule["object"], schedule["kind"]) == ("schedule", "at")
    sid = schedule["id"]

    def fired() -> bool:
        return bool(alice.get(f"/v1/schedules/{sid}").json()["last_job_id"])

    wait_until("the schedule fires", fired)
    after = alice.get(f"/v1/schedules/{sid}").json()
    assert (after["fires"], after["next_run_at"]) == (1, None)
    done = ended(alice, after["last_job_id"])
    assert (done["state"], done["schedule_id"]) == ("succeeded", sid)
    assert alice.get(f"/v1/jobs/{done['id']}/logs").text == "fired\n"


def test_a_cron_schedule_pauses_resumes_and_is_deleted(alice: httpx.Client) -> None:
    made = alice.post(
        "/v1/jobs",
        json={
            "kind": "exec",
            "code": "print(1)",
            "name": "daily",
            "schedule": {"cron": "0 7 * * *", "tz": "Europe/Paris"},
        },
    )
    assert made.status_code == 201, made.text
    schedule = made.json()
    assert schedule["next_run_at"].endswith(("05:00:00Z", "06:00:00Z"))  # 07:00 in Paris
    assert schedule["job"]["language"] == "python"
    sid = schedule["id"]
    paused = alice.post(f"/v1/schedules/{sid}/pause").json()
    assert paused["paused"] is True
    resumed = alice.post(f"/v1/schedules/{sid}/resume").json()
    assert (resumed["paused"], resumed["next_run_at"]) == (False, schedule["next_run_at"])
    assert [s["id"] for s in alice.get("/v1/schedules").json()["schedules"]] == [sid]
    assert alice.delete(f"/v1/schedules/{sid}").status_code == 204
    assert_error(alice.get(f"/v1/schedules/{sid}"), 404, "not_found")


def test_an_agent_job_runs_the_coordinator_and_logs_its_events(
    scripted: Scripted, alice: httpx.Client
) -> None:
    scripted.script = delegating("print(6 * 7)", answer="It is 42.")
    made = alice.post("/v1/jobs", json={"kind": "agent", "prompt": "what is 6*7?"})
    assert made.status_code == 201, made.text
    done = ended(alice, made.json()["id"])
    assert done["state"] == "succeeded", done
    log = alice.get(f"/v1/jobs/{done['id']}/logs").text
    assert "[coordinator → coder]" in log
    assert "run_python" in log
    assert "42" in log
    assert "It is 42." in log
    out = done["output_dir"]
    events = [json.loads(line) for line in in_cell(alice, f"cat {out}/events.jsonl").splitlines()]
    assert events[0]["event"] == "agent" or events[0]["event"] in ("tool_call", "text")
    assert events[-1]["event"] == "done"
    assert in_cell(alice, f"cat {out}/answer.md") == "It is 42."
    followed = follow(alice, done["id"])
    assert followed[-1][2]["state"] == "succeeded"


def test_an_agent_job_is_interrupted_by_a_server_stop_and_can_be_retried(
    make_server: ServerFactory, make_settings: SettingsFactory
) -> None:
    settings = make_settings()

    async def slow(_messages: list[ModelMessage], _info: AgentInfo) -> ModelResponse:
        await asyncio.sleep(3600)
        return text("never")

    scripted = Scripted(slow)
    with make_server(settings, scripted.install) as live, add_user(live, "alice") as http:
        key = http.headers["Authorization"]
        made = http.post("/v1/jobs", json={"kind": "agent", "prompt": "think hard"}).json()
        wait_until("the model is asked", lambda: bool(scripted.seen))
    scripted.script = lambda _m, _i: text("done now")
    auth = {"Authorization": key}
    with (
        make_server(settings, scripted.install) as live,
        httpx.Client(base_url=live.url, headers=auth, timeout=60) as http,
    ):
        after = job(http, made["id"])
        assert after["state"] == "interrupted", after
        assert "server stop" in after["reason"]
        retried = http.post(f"/v1/jobs/{made['id']}/retry").json()
        assert ended(http, retried["id"])["state"] == "succeeded"


def test_a_running_job_keeps_its_cell_from_being_paused(
    make_server: ServerFactory, make_settings: SettingsFactory
) -> None:
    settings = make_settings(idle_pause_s=0.3, reap_interval_s=0.1, pool_size=0)
    with make_server(settings) as live, add_user(live, "alice") as http:
        made = submit(http, code="sleep 2; echo awake")
        wait_until("it runs", lambda: http.get("/v1/cell").json()["state"] == "running")
        states = set()
        while job(http, made["id"])["state"] == "running":
            states.add(http.get("/v1/cell").json()["state"])
            time.sleep(0.1)
        assert states == {"running"}
        assert http.get(f"/v1/jobs/{made['id']}/logs").text == "awake\n"
        wait_until(
            "idle again, it is paused", lambda: http.get("/v1/cell").json()["state"] == "paused"
        )


def test_metrics_count_jobs_by_state_and_queue_wait(alice: httpx.Client, chat_server: Live) -> None:
    made = submit(alice, code="true")
    ended(alice, made["id"])
    metrics = httpx.get(f"{chat_server.url}/metrics").text
    assert 'agentcell_jobs{state="succeeded"} 1.0' in metrics
    assert 'agentcell_job_queue_wait_seconds_count{kind="exec"} 1.0' in metrics
    actions = [e["action"] for e in alice.get("/v1/audit").json()["events"]]
    assert {"job.create", "job.end"} <= set(actions)


def test_deleting_a_user_with_a_running_job_leaves_no_cell_behind(
    chat_server: Live, docker_client: docker.DockerClient
) -> None:
    admin = {"Authorization": f"Bearer {chat_server.admin_token}"}
    with add_user(chat_server, "leaving") as http:
        made = submit(http, code="echo on; sleep 300")
        wait_until("it runs", lambda: http.get(f"/v1/jobs/{made['id']}/logs").text == "on\n")
        me = http.get("/v1/me").json()["id"]
    gone = httpx.delete(f"{chat_server.url}/v1/users/{me}", headers=admin, timeout=60)
    assert gone.status_code == 204, gone.text
    label = {"label": f"{LABEL_OWNER}={me}"}
    time.sleep(1)  # a watch that brought the cell back would have done so by now
    assert docker_client.containers.list(all=True, filters=label) == []


def test_an_agent_job_left_running_by_a_killed_server_is_interrupted_at_start(
    make_server: ServerFactory, make_settings: SettingsFactory
) -> None:
    """What a server killed mid-turn leaves in the store: a running agent job of its own."""
    settings = make_settings()
    with make_server(settings) as live, add_user(live, "kim") as http:
        key = http.headers["Authorization"]
        user_id = http.get("/v1/me").json()["id"]

    async def leave_running() -> str:
        async with await Store.from_settings(settings) as store:
            job = await store.add_job(
                user_id,
                name="think",
                kind="agent",
                language=None,
                code="",
                file="",
                prompt="think",
                output_dir="",
                timeout_s=60,
            )
            claimed = await store.set_job_state(
                user_id, job.id, "running", "", expect={"queued"}, node=settings.instance
            )
            assert claimed is not None
            return job.id

    job_id = asyncio.run(leave_running())
    auth = {"Authorization": key}
    with (
        make_server(settings) as live,
        httpx.Client(base_url=live.url, headers=auth, timeout=60) as http,
    ):
        after = job(http, job_id)
        assert after["state"] == "interrupted", after
        assert "retry" in after["reason"]

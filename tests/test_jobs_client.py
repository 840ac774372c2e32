"""Jobs and schedules from the Python clients: the follow's state machine on its own, then both
clients against a live server with real cells (the tests marked ``docker``; they need the
server's /v1/jobs and /v1/schedules routes), and a follow that resumes after its connection
is cut by a real TCP relay in between."""

from __future__ import annotations

import contextlib
import io
import json
import socket
import threading
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from agentcell.client import (
    AsyncClient,
    Client,
    JobLogChunk,
    JobLogEnd,
    JobPublic,
    LogStreamLost,
    SchedulePublic,
)
from agentcell.client._http import Api, raise_for
from agentcell.client._jobs import JobSpec
from agentcell.client._sse import LogFollow
from agentcell.errors import AgentcellError, Conflict, InvalidRequest, NotFound, TooManyJobs
from tests.conftest import Live
from tests.waiting import wait_until

ENDED = {"succeeded", "failed", "cancelled", "timed_out", "interrupted"}


# --- pieces ------------------------------------------------------------------------------------


def _lines(*events: tuple[str, dict[str, object]]) -> list[str]:
    lines = [": heartbeat", ""]
    for name, data in events:
        lines += [
            f"event: {name}",
            f"id: {data.get('offset', '')}",
            f"data: {json.dumps(data)}",
            "",
        ]
    return lines


def test_log_follow_passes_each_byte_on_once() -> None:
    follow = LogFollow(offset=0, retries=2)
    first = _lines(("log", {"text": "a\n", "offset": 2}), ("log", {"text": "bc", "offset": 4}))
    got = [e for line in first if (e := follow.feed(line))]
    assert got == [JobLogChunk(text="a\n", offset=2), JobLogChunk(text="bc", offset=4)]
    assert follow.offset == 4
    assert follow.dropped(None) == pytest.approx(0.2)  # a clean end before the job's: again

    follow.connected()  # a server that resends what was passed on already: dropped
    again = _lines(
        ("log", {"text": "bc", "offset": 4}),
        ("log", {"text": "d\n", "offset": 6}),
        ("end", {"state": "failed", "exit_code": 3, "offset": 6}),
        ("log", {"text": "late", "offset": 10}),
    )
    got = [e for line in again if (e := follow.feed(line))]
    assert got == [
        JobLogChunk(text="d\n", offset=6),
        JobLogEnd(state="failed", exit_code=3, offset=6),
    ]
    assert follow.end is not None


def test_log_follow_retries_dropped_connections_then_gives_up() -> None:
    follow = LogFollow(offset=7, retries=3)
    cut = AgentcellError("the connection failed")
    cut.__cause__ = httpx.ReadError("reset")
    assert [follow.dropped(cut) for _ in range(3)] == pytest.approx([0.2, 0.4, 0.8])
    with pytest.raises(LogStreamLost) as lost:
        follow.dropped(cut)
    assert lost.value.offset == 7
    assert "offset 7" in lost.value.hint

    follow = LogFollow(offset=0, retries=3)  # text in between: the count starts again
    follow.dropped(cut)
    follow.feed("event: log")
    follow.feed('data: {"text": "x", "offset": 1}')
    follow.feed("")
    assert follow.dropped(cut) == pytest.approx(0.2)
    answer = NotFound("no job 'j_1'")  # an answer, not a dropped connection: raised at once
    with pytest.raises(NotFound):
        follow.dropped(answer)
    follow.feed("event: error")
    follow.feed('data: {"code": "executor_error", "message": "the cell went away"}')
    with pytest.raises(AgentcellError, match="the cell went away"):
        follow.feed("")


def test_job_spec_bodies() -> None:
    assert JobSpec(code="ls", language="shell").body() == {
        "kind": "exec",
        "code": "ls",
        "language": "shell",
    }
    agent = JobSpec("agent", prompt="p", name="n", timeout_s=60, output_dir="out")
    assert agent.body() == {
        "kind": "agent",
        "prompt": "p",
        "name": "n",
        "timeout_s": 60,
        "output_dir": "out",
    }
    cron = JobSpec(file="a.py", cron="0 7 * * *", tz="Europe/Paris").body()
    assert cron["schedule"] == {"cron": "0 7 * * *", "tz": "Europe/Paris"}
    at = datetime(2026, 5, 1, 7, 0)  # naive: this host's local time, sent with its offset
    sent = JobSpec(code="ls", at=at).body()["schedule"]["at"]
    assert datetime.fromisoformat(sent) == at.astimezone()
    assert JobSpec(code="ls", at="2026-05-01T07:00Z").body()["schedule"] == {
        "at": "2026-05-01T07:00Z"
    }
    with pytest.raises(InvalidRequest, match="not both"):
        JobSpec(code="ls", at=at, cron="* * * * *").body()
    with pytest.raises(InvalidRequest, match="time zone"):
        JobSpec(code="ls", tz="UTC").body()


def test_too_many_jobs_carries_its_retry_after() -> None:
    body = {"error": {"code": "too_many_jobs", "message": "20 jobs", "hint": "wait"}}
    answer = httpx.Response(429, json=body, headers={"Retry-After": "7"})
    with pytest.raises(TooManyJobs) as refused:
        raise_for(answer, Api.jobs_get("j_1"))
    assert (refused.value.retry_after_s, refused.value.status_code) == (7, 429)
    assert refused.value.hint == "wait"


# --- a TCP relay whose connections a test can cut ----------------------------------------------


class Relay:
    """Loopback TCP in front of the server: ``cut()`` closes every connection through it, as a
    network that drops them does; ``connections`` counts those made."""

    def __init__(self, upstream: str) -> None:
        url = httpx.URL(upstream)
        self.upstream = (url.host, url.port or 80)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.connections = 0
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            up = socket.create_connection(self.upstream)
            with self._lock:
                self.connections += 1
                self._open += [down, up]
            for a, b in ((down, up), (up, down)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        with self._lock:
            sockets, self._open = self._open, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept (close alone does not)
        self.listener.close()
        self.cut()


@pytest.fixture
def key(server: Live) -> str:
    with server.admin() as admin:
        return admin.users_add("jobs").api_key


@pytest.fixture
def relay(server: Live) -> Iterator[Relay]:
    relay = Relay(server.url)
    yield relay
    relay.close()


def _ended(client: Client, job_id: str) -> JobPublic:
    wait_until(f"job {job_id} ends", lambda: client.jobs_get(job_id).state in ENDED, 60)
    return client.jobs_get(job_id)


COUNT = "for i in $(seq 1 20); do echo line $i; sleep 0.1; done"
COUNTED = "".join(f"line {i}\n" for i in range(1, 21))


# --- against a live server (needs the server's /v1/jobs and /v1/schedules routes) ---------------


@pytest.mark.docker
def test_sync_client_jobs(server: Live, key: str) -> None:
    with Client(server.url, key) as client:
        job = client.jobs_run(code="echo out; echo err >&2; exit 3", language="shell", name="three")
        assert isinstance(job, JobPublic)
        assert (job.name, job.kind, job.language) == ("three", "exec", "shell")
        events = list(client.jobs_follow(job.id))
        *chunks, end = events
        assert all(isinstance(c, JobLogChunk) for c in chunks)
        assert "".join(c.text for c in chunks if isinstance(c, JobLogChunk)) == "out\nerr\n"
        assert end == JobLogEnd(state="failed", exit_code=3, offset=8)
        assert client.jobs_log(job.id) == JobLogChunk(text="out\nerr\n", offset=8)
        assert client.jobs_log(job.id, offset=4) == JobLogChunk(text="err\n", offset=8)
        assert [j.id for j in client.jobs_list(state="failed")] == [job.id]
        assert client.jobs_list(state="running") == []
        got = client.jobs_get(job.id)
        assert (got.state, got.exit_code) == ("failed", 3)
        assert [e.state for e in got.events] == ["queued", "running", "failed"]
        with pytest.raises(Conflict):
            client.jobs_cancel(job.id)  # it has ended
        again = client.jobs_retry(job.id)
        assert (again.attempt, again.retry_of) == (2, job.id)

        long = client.jobs_run(code="sleep 300", language="shell", timeout_s=600)
        assert isinstance(long, JobPublic)
        assert client.jobs_cancel(long.id).state == "cancelled"

        made = client.jobs_run(
            code="import os; os.makedirs('out', exist_ok=True); open('out/r.txt', 'w').write('r')",
            language="python",
            output_dir="out",
        )
        assert _ended(client, made.id).state == "succeeded"
        zipped = io.BytesIO()
        assert client.jobs_download(made.id, zipped) > 0
        with zipfile.ZipFile(zipped) as z:
            [name] = [n for n in z.namelist() if n.endswith("r.txt")]
            assert z.read(name) == b"r"

        client.jobs_rm(made.id)
        with pytest.raises(NotFound):
            client.jobs_get(made.id)
        with pytest.raises(NotFound):
            list(client.jobs_follow(made.id))  # an answer: not retried


@pytest.mark.docker
def test_sync_client_schedules(server: Live, key: str) -> None:
    with Client(server.url, key) as client:
        daily = client.jobs_run(code="echo hi", language="shell", cron="0 7 * * *", tz="Asia/Tokyo")
        assert isinstance(daily, SchedulePublic)
        assert (daily.kind, daily.cron, daily.tz, daily.paused) == (
            "cron",
            "0 7 * * *",
            "Asia/Tokyo",
            False,
        )
        assert daily.next_run_at is not None
        assert daily.job.code == "echo hi"
        later = datetime.now(UTC) + timedelta(hours=1)
        once = client.jobs_run(code="echo once", language="shell", at=later)
        assert isinstance(once, SchedulePublic)
        assert once.kind == "at"
        assert once.at is not None
        assert abs((once.at - later).total_seconds()) < 1
        assert {s.id for s in client.schedules_list()} == {daily.id, once.id}
        assert client.schedules_get(daily.id).id == daily.id
        assert client.schedules_pause(daily.id).paused
        assert not client.schedules_resume(daily.id).paused
        client.schedules_rm(daily.id)
        with pytest.raises(NotFound):
            client.schedules_get(daily.id)
        with pytest.raises(InvalidRequest):  # the server refuses what cron is not
            client.jobs_run(code="echo", language="shell", cron="every day")


@pytest.mark.docker
async def test_async_client_jobs(server: Live, key: str) -> None:
    async with AsyncClient(server.url, key) as client:
        job = await client.jobs_run(code=COUNT, language="shell")
        assert isinstance(job, JobPublic)
        events = [e async for e in client.jobs_follow(job.id)]
        assert "".join(e.text for e in events if isinstance(e, JobLogChunk)) == COUNTED
        assert isinstance(events[-1], JobLogEnd)
        assert events[-1].state == "succeeded"
        assert (await client.jobs_log(job.id, 8)).text == COUNTED[8:]
        assert [j.id for j in await client.jobs_list()] == [job.id]
        assert (await client.jobs_get(job.id)).exit_code == 0
        retried = await client.jobs_retry(job.id)
        assert (await client.jobs_cancel(retried.id)).state == "cancelled"
        assert await client.jobs_download(job.id, io.BytesIO()) > 0
        await client.jobs_rm(job.id)
        with pytest.raises(NotFound):
            await client.jobs_get(job.id)
        schedule = await client.jobs_run(code="echo", language="shell", cron="*/5 * * * *")
        assert isinstance(schedule, SchedulePublic)
        assert (await client.schedules_pause(schedule.id)).paused
        assert not (await client.schedules_resume(schedule.id)).paused
        assert [s.id for s in await client.schedules_list()] == [schedule.id]
        assert (await client.schedules_get(schedule.id)).cron == "*/5 * * * *"
        await client.schedules_rm(schedule.id)
        assert await client.schedules_list() == []


@pytest.mark.docker
def test_another_users_job_is_not_found(server: Live, key: str) -> None:
    with server.admin() as admin:
        other = admin.users_add("other").api_key
    with Client(server.url, key) as owner:
        job = owner.jobs_run(code="sleep 60", language="shell")
        schedule = owner.jobs_run(code="echo", language="shell", cron="0 7 * * *")
    with Client(server.url, other) as stranger:
        for call in (
            lambda: stranger.jobs_get(job.id),
            lambda: stranger.jobs_log(job.id),
            lambda: list(stranger.jobs_follow(job.id)),
            lambda: stranger.jobs_cancel(job.id),
            lambda: stranger.jobs_retry(job.id),
            lambda: stranger.jobs_download(job.id, io.BytesIO()),
            lambda: stranger.jobs_rm(job.id),
            lambda: stranger.schedules_get(schedule.id),
            lambda: stranger.schedules_pause(schedule.id),
            lambda: stranger.schedules_rm(schedule.id),
        ):
            with pytest.raises(NotFound) as missing:
                call()
            assert missing.value.status_code == 404
        assert stranger.jobs_list() == []
        assert stranger.schedules_list() == []
    with Client(server.url, key) as owner:
        assert owner.jobs_cancel(job.id).state == "cancelled"


@pytest.mark.docker
def test_follow_resumes_after_a_dropped_connection(key: str, relay: Relay) -> None:
    with Client(relay.url, key) as client:
        job = client.jobs_run(code=COUNT, language="shell")
        text, cuts = "", 0
        for event in client.jobs_follow(job.id):
            if isinstance(event, JobLogChunk):
                text += event.text
                if cuts < 2 and text.count("\n") >= 5 * (cuts + 1):
                    relay.cut()  # mid-stream, twice
                    cuts += 1
            else:
                end = event
    assert text == COUNTED  # nothing lost, nothing twice
    assert end.state == "succeeded"
    assert end.offset == len(COUNTED)
    assert relay.connections >= 3  # the POST and the follow (one connection), two reconnections


@pytest.mark.docker
async def test_async_follow_resumes_after_a_dropped_connection(key: str, relay: Relay) -> None:
    async with AsyncClient(relay.url, key) as client:
        job = await client.jobs_run(code=COUNT, language="shell")
        text, cut = "", False
        async for event in client.jobs_follow(job.id):
            if isinstance(event, JobLogChunk):
                text += event.text
                if not cut and "line 8" in text:
                    relay.cut()
                    cut = True
    assert text == COUNTED
    assert relay.connections >= 2  # and one reconnection


@pytest.mark.docker
def test_follow_gives_up_when_the_server_stays_away(server: Live, key: str, relay: Relay) -> None:
    with Client(relay.url, key) as client:
        job = client.jobs_run(code="echo first; sleep 300", language="shell", timeout_s=600)
        follow = client.jobs_follow(job.id, retries=2)
        first = next(follow)
        assert first == JobLogChunk(text="first\n", offset=6)
        relay.close()  # nothing listens there any more
        with pytest.raises(LogStreamLost) as lost:
            next(follow)
        assert lost.value.offset == len("first\n")
        assert "not reachable" in lost.value.message
    with Client(server.url, key) as client:
        assert client.jobs_get(job.id).state == "running"  # the job is not affected
        client.jobs_cancel(job.id)

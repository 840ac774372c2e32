"""Clients that stall or vanish, with real raw sockets: a stream nobody reads, a body that
trickles in, a JSON exec whose caller hangs up. The server cuts each off and the cell's work
stops (checked from the cell itself), so the cell can go idle again."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import Live, ServerFactory, SettingsFactory

pytestmark = pytest.mark.docker

DEADLINE_S = 60.0


@pytest.fixture
def live(make_server: ServerFactory, make_settings: SettingsFactory) -> Iterator[Live]:
    settings = make_settings(
        stream_send_timeout_s=2,
        body_timeout_s=2,
        body_min_rate_bytes_s=1000,
        output_limit_bytes=256 * 2**20,
        max_upload_bytes=2**20,
    )
    with make_server(settings) as server:
        yield server


@pytest.fixture
def key(live: Live) -> str:
    admin = {"Authorization": f"Bearer {live.admin_token}"}
    with httpx.Client(base_url=live.url, timeout=60) as http:
        key: str = http.post("/v1/users", json={"name": "flaky"}, headers=admin).json()["api_key"]
        warm = http.post("/v1/cell/exec", json={"code": "1"}, headers=_auth(key))
        assert warm.status_code == 200
    return key


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _raw(live: Live, head: str, body: bytes = b"", rcvbuf: int = 0) -> socket.socket:
    """A socket that has sent ``head`` (the request line and headers) and ``body``."""
    url = urlsplit(live.url)
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect((url.hostname, url.port))
    sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
    return sock


def _exec_head(key: str, body: bytes, accept: str) -> str:
    return (
        "POST /v1/cell/exec HTTP/1.1\nHost: test\n"
        f"Authorization: Bearer {key}\nAccept: {accept}\n"
        f"Content-Type: application/json\nContent-Length: {len(body)}\n"
    )


def _poll(what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {DEADLINE_S:g} s: {what}")
        time.sleep(0.1)


def _cell_active(live: Live) -> int:
    with live.admin() as admin:
        return sum(c.active for c in admin.admin_cells() if c.owner)


def _exists(http: httpx.Client, key: str, path: str) -> bool:
    return http.get("/v1/files", params={"path": path}, headers=_auth(key)).status_code == 200


def test_a_stream_whose_client_stops_reading_is_closed_and_its_exec_stopped(
    live: Live, key: str
) -> None:
    code = (
        "import sys\nopen('/workspace/flooding', 'w').close()\n"
        "while True:\n    sys.stdout.write('x' * 65536)\n"
    )
    body = json.dumps({"code": code, "timeout_s": 600}).encode()
    sock = _raw(live, _exec_head(key, body, "text/event-stream"), body, rcvbuf=4096)
    try:
        assert sock.recv(12).startswith(b"HTTP/1.1 200")  # and then never read again
        with httpx.Client(base_url=live.url, timeout=60) as http:
            _poll("the flood starts", lambda: _exists(http, key, "flooding"))
            _poll("the stalled stream stops counting as activity", lambda: not _cell_active(live))
            after = http.post("/v1/cell/exec", json={"code": "print('free')"}, headers=_auth(key))
            assert after.status_code == 200, after.text
            assert after.json()["stdout"] == "free\n"
            events = http.get("/v1/audit", headers=_auth(key)).json()["events"]
        flood = next(e for e in events if e["action"] == "exec" and "flooding" in e["detail"])
        assert flood["ok"] is False
        assert "the caller went away" in flood["detail"]
    finally:
        sock.close()


def test_a_slow_upload_gets_408_and_writes_nothing(live: Live, key: str) -> None:
    size = 100
    head = (
        "PUT /v1/files/raw?path=slow.txt HTTP/1.1\nHost: test\n"
        f"Authorization: Bearer {key}\nContent-Length: {size}\n"
    )
    sock = _raw(live, head)
    stop = threading.Event()

    def trickle() -> None:  # one byte every half second: 2 bytes/s, below the 1000 asked
        for _ in range(size):
            if stop.wait(0.5):
                return
            try:
                sock.sendall(b"x")
            except OSError:
                return

    sender = threading.Thread(target=trickle)
    sender.start()
    try:
        sock.settimeout(DEADLINE_S)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            assert chunk, f"the server closed without answering: {answer!r}"
            answer += chunk
        head_part, _, rest = answer.partition(b"\r\n\r\n")
        assert head_part.startswith(b"HTTP/1.1 408"), head_part
        assert b"connection: close" in head_part.lower()
        while chunk := sock.recv(65536):
            rest += chunk
        error = json.loads(rest)["error"]
        assert error["code"] == "request_timeout"
        assert "1000 bytes/s" in error["message"]
        assert "nothing was written" in error["message"]
    finally:
        stop.set()
        sender.join()
        sock.close()
    with httpx.Client(base_url=live.url, timeout=60) as http:
        listing = http.get("/v1/files", params={"path": "."}, headers=_auth(key)).json()
    assert [e["name"] for e in listing["entries"]] == []


def test_a_json_exec_whose_client_hangs_up_stops_its_code(live: Live, key: str) -> None:
    code = (
        "import time\nopen('/workspace/started', 'w').close()\ntime.sleep(120)\n"
        "open('/workspace/finished', 'w').close()\n"
    )
    body = json.dumps({"code": code, "timeout_s": 600}).encode()
    sock = _raw(live, _exec_head(key, body, "application/json"), body)
    with httpx.Client(base_url=live.url, timeout=60) as http:
        try:
            _poll("the code starts", lambda: _exists(http, key, "started"))
        finally:
            sock.close()  # hang up before any answer
        _poll("the abandoned exec stops counting as activity", lambda: not _cell_active(live))
        # The same context answers at once: the sleeping code is gone, not queued ahead.
        after = http.post("/v1/cell/exec", json={"code": "print('next')"}, headers=_auth(key))
        assert after.status_code == 200, after.text
        assert after.json()["stdout"] == "next\n"
        assert not _exists(http, key, "finished")
        events = http.get("/v1/audit", headers=_auth(key)).json()["events"]
    gone = next(e for e in events if e["action"] == "exec" and "started" in e["detail"])
    assert "the caller went away" in gone["detail"]

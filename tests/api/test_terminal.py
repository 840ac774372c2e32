"""The terminal (DESIGN §11) on a live server with real cells: a shell over the WebSocket
``/v1/cell/terminal`` that has a tty, resizes, is interrupted by Ctrl-C and says its exit code;
a reload reattaches to the same shell; browser tokens; another user's view; bad input; a flood
the browser does not read; and an open terminal keeping the cell from being paused."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.api.test_sessions import add_user, assert_error
from tests.conftest import Live, ServerFactory, SettingsFactory
from tests.waiting import wait_until

pytestmark = pytest.mark.docker
READ_TIMEOUT_S = 30.0


@pytest.fixture
def live(make_server: ServerFactory) -> Iterator[Live]:
    with make_server() as server:
        yield server


@pytest.fixture
def alice(live: Live) -> Iterator[httpx.Client]:
    with add_user(live, "alice") as http:
        yield http


@pytest.fixture
def bob(live: Live) -> Iterator[httpx.Client]:
    with add_user(live, "bob") as http:
        yield http


def open_terminal(live: Live, http: httpx.Client | None, query: str = "") -> ClientConnection:
    headers = {"Authorization": http.headers["Authorization"]} if http else {}
    url = live.url.replace("http://", "ws://") + "/v1/cell/terminal" + query
    return connect(
        url, additional_headers=headers, max_size=None, open_timeout=60, ping_interval=None
    )


def ready(ws: ClientConnection) -> dict[str, object]:
    first = json.loads(ws.recv(timeout=READ_TIMEOUT_S))
    assert first["type"] == "ready", first
    return dict(first)


def read_until(ws: ClientConnection, pattern: str) -> bytes:
    """Output up to a match of ``pattern``; text messages (JSON) are not output."""
    seen, found, start = bytearray(), re.compile(pattern.encode()), 0
    deadline = time.monotonic() + READ_TIMEOUT_S
    while not found.search(seen, start):
        start = max(0, len(seen) - 256)  # a flood is searched once, not again and again
        message = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
        assert isinstance(message, bytes), f"a text message while reading output: {message}"
        seen += message
    return bytes(seen)


def next_text(ws: ClientConnection) -> dict[str, object]:
    while isinstance(message := ws.recv(timeout=READ_TIMEOUT_S), bytes):
        pass
    return dict(json.loads(message))


def closed_with(ws: ClientConnection) -> int:
    """The close code the server ends with, after whatever output was still coming."""
    with pytest.raises(ConnectionClosed) as closed:
        read_forever(ws)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


def read_forever(ws: ClientConnection) -> None:
    while True:
        ws.recv(timeout=READ_TIMEOUT_S)


def exit_message(ws: ClientConnection) -> dict[str, object]:
    """Read output until the exit message; then the server closes normally."""
    deadline = time.monotonic() + READ_TIMEOUT_S
    while True:
        message = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
        if isinstance(message, str):
            body = dict(json.loads(message))
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=READ_TIMEOUT_S)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1000
            return body


def test_a_shell_over_a_websocket(live: Live, alice: httpx.Client) -> None:
    with open_terminal(live, alice, "?cols=80&rows=24") as ws:
        hello = ready(ws)
        assert (hello["cols"], hello["rows"]) == (80, 24)
        # Arithmetic in the commands: what is matched is the output, not the echoed input.
        ws.send(b"tty; stty size; echo t-$((1+1))\n")
        seen = read_until(ws, r"t-2")
        assert re.search(rb"/dev/pts/\d+", seen)
        assert re.search(rb"24 80\r?\n", seen)
        ws.send(json.dumps({"type": "resize", "cols": 100, "rows": 30}))
        ws.send(json.dumps({"type": "input", "data": "stty size; echo r-$((2+2))\n"}))
        assert re.search(rb"30 100\r?\n", read_until(ws, r"r-4"))
        ws.send(b"sleep 60; echo not-interrupted-$((3+3))\n")
        time.sleep(0.5)
        ws.send(b"\x03")
        ws.send(b"ls /sys/class/net; echo alive-$((4+4))\n")
        after = read_until(ws, r"alive-8")
        assert b"not-interrupted-6" not in after
        assert re.search(rb"[\r\n]lo\r?\n", after)  # the cell has only loopback
        ws.send(json.dumps({"type": "resize", "cols": "wide"}))
        error = next_text(ws)  # the prompt's output may come first
        assert error["type"] == "error"
        assert "resize" in error["hint"]
        ws.send(b"exit 3\n")
        assert exit_message(ws) == {"type": "exit", "code": 3}
    assert alice.get("/v1/cell/terminals").json() == []  # an exited terminal is forgotten
    audit = [e["action"] for e in alice.get("/v1/audit").json()["events"]]
    assert {"terminal.open", "terminal.close"} <= set(audit)


def test_a_reload_reattaches_to_the_same_shell(live: Live, alice: httpx.Client) -> None:
    with open_terminal(live, alice) as ws:
        session = ready(ws)["session"]
        ws.send(b"cd /tmp; echo mark-$((6*7))\n")
        read_until(ws, r"mark-42")
    wait_until(  # the server sees the WebSocket go a moment after the client closed it
        "detached",
        lambda: (
            [(t["id"], t["attached"]) for t in alice.get("/v1/cell/terminals").json()]
            == [(session, False)]
        ),
    )
    with open_terminal(live, alice, f"?session={session}") as again:
        assert ready(again)["session"] == session
        read_until(again, r"mark-42")  # what was on screen
        again.send(b"pwd; echo same-$((1+2))\n")
        assert b"/tmp" in read_until(again, r"same-3")
        with open_terminal(live, alice, f"?session={session}") as third:
            ready(third)
            assert closed_with(again) == 4001  # taken over
            ended = alice.delete(f"/v1/cell/terminals/{session}")
            assert ended.status_code == 200
            assert ended.json()["id"] == session
            assert exit_message(third)["type"] == "exit"
    assert_error(alice.delete(f"/v1/cell/terminals/{session}"), 404, "not_found")


def test_tokens_other_users_and_bad_input(
    live: Live, alice: httpx.Client, bob: httpx.Client
) -> None:
    made = alice.post("/v1/cell/terminal-tokens").json()
    assert made["url"] == f"/v1/cell/terminal?token={made['token']}"
    with open_terminal(live, None, f"?token={made['token']}") as ws:  # a browser: no header
        session = ready(ws)["session"]
        ws.send(b"echo by-token-$((2*3))\n")
        read_until(ws, r"by-token-6")
        # Bob names alice's terminal: his cell has none of that name.
        with pytest.raises(InvalidStatus) as theirs:
            open_terminal(live, bob, f"?session={session}")
        assert theirs.value.response.status_code == 404
        assert bob.get("/v1/cell/terminals").json() == []
        assert_error(bob.delete(f"/v1/cell/terminals/{session}"), 404, "not_found")
        bobs = bob.post("/v1/cell/terminal-tokens").json()["token"]
        with pytest.raises(InvalidStatus) as by_token:
            open_terminal(live, None, f"?token={bobs}&session={session}")
        assert by_token.value.response.status_code == 404
    a_ports = alice.post("/v1/cell/port-tokens", json={"port": 8080}).json()["token"]
    refusals = {
        "": 401,  # nothing sent
        "?token=apt1.e30.AAAA": 401,  # forged
        f"?token={a_ports}": 401,  # good for a port, not for the terminal
        "?cols=0": 400,
        "?rows=٣": 400,
        "?cols=80&rows=100000": 400,
    }
    for query, status in refusals.items():
        http = alice if status == 400 else None
        with pytest.raises(InvalidStatus) as refused:
            open_terminal(live, http, query)
        assert refused.value.response.status_code == status, query
        assert json.loads(refused.value.response.body)["error"]["code"]
    admin = {"Authorization": f"Bearer {live.admin_token}"}
    url = live.url.replace("http://", "ws://") + "/v1/cell/terminal"
    with pytest.raises(InvalidStatus) as as_admin:
        connect(url, additional_headers=admin)
    assert as_admin.value.response.status_code == 403


def test_a_flood_nobody_reads_stays_bounded(live: Live, alice: httpx.Client) -> None:
    """The browser stops reading while the shell prints as fast as it can: the shell waits
    (backpressure from the WebSocket to the terminal), nothing piles up in the server."""
    with open_terminal(live, alice) as ws:
        ready(ws)
        ws.send(b"yes flood | head -c 500000000\n")
        time.sleep(1)
        before = resident_mib()
        time.sleep(3)  # not reading: the server must not take it all in meanwhile
        grown = resident_mib() - before
        ws.send(b"\x03")  # Ctrl-C, then a command of its own (^C drops the rest of a line)
        ws.send(b"echo done-$((7*6))\n")
        read_until(ws, r"done-42")  # megabytes after ^C: in flight, deflated, were small
    assert grown < 64, f"the server grew {grown} MiB while the browser did not read"


def resident_mib() -> int:
    status = Path("/proc/self/status").read_text().splitlines()  # the server runs in here
    return int(next(r for r in status if r.startswith("VmRSS:")).split()[1]) // 1024


def test_an_open_terminal_keeps_the_cell_from_being_paused(
    make_server: ServerFactory, make_settings: SettingsFactory
) -> None:
    settings = make_settings(idle_pause_s=0.3, reap_interval_s=0.1)
    with make_server(settings) as live, add_user(live, "carol") as http:
        states = set()
        with open_terminal(live, http) as ws:
            ready(ws)
            stop = time.monotonic() + 2
            while time.monotonic() < stop:
                states.add(http.get("/v1/cell").json()["state"])
                time.sleep(0.1)
            ws.send(b"echo still-$((5+5))\n")
            read_until(ws, r"still-10")
        assert states == {"running"}
        wait_until(
            "closed, the cell is paused", lambda: http.get("/v1/cell").json()["state"] == "paused"
        )

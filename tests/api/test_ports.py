"""The port relay (DESIGN §11) on a live server with real cells: a web server in the cell
(tests/api/cellserver.py, standard library only) answers through ``/v1/cell/ports/{port}/``
— GET, a 10 MB POST, a chunked stream, a WebSocket echo — while the cell has no interface
but ``lo``; what the server in the cell is (not) sent; port tokens and their cookie; another
user's view; bad input; and an open relay keeping the cell from being paused."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.api.test_sessions import add_user, assert_error
from tests.conftest import Live, ServerFactory, SettingsFactory
from tests.waiting import wait_until

pytestmark = pytest.mark.docker

PORT = 8080
SERVER = Path(__file__).with_name("cellserver.py").read_bytes()


def start_server(http: httpx.Client, port: int = PORT) -> None:
    put = http.put("/v1/files/raw", params={"path": "cellserver.py"}, content=SERVER)
    assert put.status_code == 201, put.text
    code = f"python3 cellserver.py {port} > server.log 2>&1 &"
    ran = http.post("/v1/cell/exec", json={"language": "shell", "code": code, "background": True})
    assert ran.status_code == 200, ran.text
    wait_until(
        "the server listens",
        lambda: port in [p["port"] for p in http.get("/v1/cell/ports").json()],
    )


@pytest.fixture
def live(make_server: ServerFactory) -> Iterator[Live]:
    with make_server() as server:
        yield server


@pytest.fixture
def alice(live: Live) -> Iterator[httpx.Client]:
    with add_user(live, "alice") as http:
        start_server(http)
        yield http


@pytest.fixture
def bob(live: Live) -> Iterator[httpx.Client]:
    with add_user(live, "bob") as http:
        yield http


def ws_url(live: Live, path: str) -> str:
    return live.url.replace("http://", "ws://") + path


def websocket(live: Live, http: httpx.Client, path: str, **kwargs: object) -> ClientConnection:
    auth = {"Authorization": http.headers["Authorization"]}
    return connect(ws_url(live, path), additional_headers=auth, **kwargs)  # type: ignore[arg-type]


def test_a_get_a_post_and_a_stream_go_through(alice: httpx.Client) -> None:
    hello = alice.get(f"/v1/cell/ports/{PORT}/hello")
    assert hello.status_code == 200
    assert hello.text == "hello"
    assert hello.headers["set-cookie"] == "app=1; Path=/"  # the app's own cookies come back
    body = os.urandom(10 * 1024 * 1024)
    posted = alice.post(f"/v1/cell/ports/{PORT}/echo", content=body)
    assert posted.json() == {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}

    def pieces() -> Iterator[bytes]:  # chunked both ways: no Content-Length is known
        for i in range(0, len(body), 1 << 20):
            yield body[i : i + (1 << 20)]

    chunked = alice.post(f"/v1/cell/ports/{PORT}/echo", content=pieces())
    assert chunked.json()["sha256"] == hashlib.sha256(body).hexdigest()
    arrivals = []
    with alice.stream("GET", f"/v1/cell/ports/{PORT}/stream") as streamed:
        for line in streamed.iter_lines():
            arrivals.append((time.monotonic(), line))
    assert [line for _, line in arrivals] == [f"piece {i}" for i in range(5)]
    assert arrivals[-1][0] - arrivals[0][0] > 0.3  # they came as sent, not all at the end
    missing = alice.get(f"/v1/cell/ports/{PORT}/nowhere")
    assert missing.status_code == 404  # the app's answer, passed on
    assert missing.text == "no such page: /nowhere"


def test_the_server_in_the_cell_gets_no_credentials_of_ours(alice: httpx.Client) -> None:
    cookies = {
        "agentcell_port_8080": "secret-cookie",
        "agentcell_session": "acs_the-web-pages",
        "theirs": "kept",
    }
    seen = alice.get(
        f"/v1/cell/ports/{PORT}/headers?a=1&token=apt1.x&b=2",
        headers={"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())},
    ).json()
    assert seen["target"] == "/headers?a=1&b=2"
    headers = seen["headers"]
    assert "authorization" not in headers
    assert headers["cookie"] == "theirs=kept"
    assert headers["x-forwarded-prefix"] == f"/v1/cell/ports/{PORT}"
    assert alice.headers["Authorization"].split()[1] not in json.dumps(seen)
    theirs = alice.get(f"/v1/cell/ports/{PORT}/headers?token=the-apps-own&x=%20").json()
    assert theirs["target"] == "/headers?token=the-apps-own&x=%20"  # passed on as sent
    absolute = alice.get(f"/v1/cell/ports/absolute/{PORT}/headers").json()
    assert absolute["target"] == f"/v1/cell/ports/absolute/{PORT}/headers"


def test_a_websocket_echoes_through_the_relay(live: Live, alice: httpx.Client) -> None:
    path = f"/v1/cell/ports/{PORT}/ws"
    with websocket(live, alice, path, subprotocols=["echo.v1"], max_size=None) as ws:
        assert ws.subprotocol == "echo.v1"
        ws.send("hi there")
        assert ws.recv(timeout=30) == "hi there"
        blob = os.urandom(3 * 1024 * 1024)
        ws.send(blob)
        assert ws.recv(timeout=30) == blob
        ws.send(["frag", "ments"])  # one message in two frames
        assert ws.recv(timeout=30) == "fragments"


def test_the_cell_has_only_loopback_while_relaying(live: Live, alice: httpx.Client) -> None:
    with websocket(live, alice, f"/v1/cell/ports/{PORT}/ws") as ws:
        ws.send("open")
        assert ws.recv(timeout=30) == "open"
        ran = alice.post(
            "/v1/cell/exec", json={"language": "shell", "code": "ls /sys/class/net"}
        ).json()
        assert ran["stdout"].split() == ["lo"]


def test_ports_lists_what_listens(alice: httpx.Client) -> None:
    ports = alice.get("/v1/cell/ports").json()
    mine = [p for p in ports if p["port"] == PORT]
    assert len(mine) == 1
    assert mine[0]["address"] == "127.0.0.1"
    assert "cellserver.py" in mine[0]["command"]
    assert mine[0]["url"] == f"/v1/cell/ports/{PORT}/"
    assert 3128 not in [p["port"] for p in ports]  # the egress forwarder is the executor's own


def test_a_port_token_opens_in_a_browser_as_a_cookie(live: Live, alice: httpx.Client) -> None:
    made = alice.post("/v1/cell/port-tokens", json={"port": PORT})
    assert made.status_code == 200, made.text
    token = made.json()
    preview = f"localhost:{urlsplit(live.url).port}"  # the page is at 127.0.0.1 (api/origins.py)
    assert token["url"] == f"http://{preview}/v1/cell/ports/{PORT}/?token={token['token']}"
    with httpx.Client(base_url=live.url, timeout=60, headers={"Host": preview}) as browser:
        traded = browser.get(f"/v1/cell/ports/{PORT}/hello?x=1&token={token['token']}")
        assert traded.status_code == 303
        assert traded.headers["location"] == f"/v1/cell/ports/{PORT}/hello?x=1"
        cookie = traded.headers["set-cookie"]
        assert cookie.startswith(f"agentcell_port_{PORT}=")
        for attribute in ("HttpOnly", "Path=/v1/cell/ports/", "SameSite=lax"):
            assert attribute.lower() in cookie.lower()
        assert token["token"] not in cookie  # a cookie of its own, not the URL's token
        page = browser.get(traded.headers["location"])  # the client keeps the cookie
        assert page.status_code == 200
        assert page.text == "hello"
        other_port = browser.get("/v1/cell/ports/8081/hello")
        assert_error(other_port, 401, "unauthorized")  # the cookie is of 8080 only
        assert_error(browser.get("/v1/cell/ports"), 401, "unauthorized")  # and of no API
    with connect(ws_url(live, f"/v1/cell/ports/{PORT}/ws?token={token['token']}")) as ws:
        ws.send("by token")
        assert ws.recv(timeout=30) == "by token"
    audit = alice.get("/v1/audit", params={"kind": "port"}).json()["events"]
    assert audit[0]["action"] == "port.token"
    assert audit[0]["target"] == str(PORT)


def test_pages_from_the_cell_are_sandboxed_off_the_preview_address(
    live: Live, alice: httpx.Client
) -> None:
    on_page_origin = alice.get(f"/v1/cell/ports/{PORT}/hello")
    assert on_page_origin.text == "hello"
    policy = on_page_origin.headers["content-security-policy"]
    assert policy.startswith("sandbox allow-scripts")  # an opaque origin: no cookie of ours
    streamed = alice.get(f"/v1/cell/ports/{PORT}/bytes/{2**20}")
    assert streamed.headers["content-security-policy"].startswith("sandbox")
    preview = {"Host": f"localhost:{urlsplit(live.url).port}"}
    on_preview = alice.get(f"/v1/cell/ports/{PORT}/hello", headers=preview)
    assert on_preview.text == "hello"
    assert "content-security-policy" not in on_preview.headers  # the server's own headers


def test_another_user_reaches_only_their_own_cell(
    live: Live, alice: httpx.Client, bob: httpx.Client
) -> None:
    theirs = bob.get(f"/v1/cell/ports/{PORT}/hello")
    assert_error(theirs, 502, "port_closed")  # bob's own cell, where nothing listens
    assert PORT not in [p["port"] for p in bob.get("/v1/cell/ports").json()]
    alices = alice.post("/v1/cell/port-tokens", json={"port": PORT}).json()["token"]
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(live, f"/v1/cell/ports/8081/ws?token={alices}"))
    assert refused.value.response.status_code == 401


def test_bad_ports_tokens_and_closed_ports(live: Live, alice: httpx.Client) -> None:
    for port in ("0", "65536", "http", "-1", "٣"):
        got = assert_error(alice.get(f"/v1/cell/ports/{port}/x"), 400, "invalid_request")
        assert "1 to 65535" in got["hint"]
    for bad in (0, 65536, "http"):
        refused = alice.post("/v1/cell/port-tokens", json={"port": bad})
        assert_error(refused, 422, "invalid_request")
    short = assert_error(alice.get(f"/v1/cell/ports/{PORT}/short"), 502, "relay_failed")
    assert "cut its answer short" in short["message"]
    closed = assert_error(alice.get("/v1/cell/ports/9/"), 502, "port_closed")
    assert "nothing listens" in closed["message"]
    assert "GET /v1/cell/ports" in closed["hint"]
    with httpx.Client(base_url=live.url, timeout=60) as anonymous:
        assert_error(anonymous.get(f"/v1/cell/ports/{PORT}/hello"), 401, "unauthorized")
        forged = anonymous.get(f"/v1/cell/ports/{PORT}/hello?token=apt1.e30.AAAA")
        assert_error(forged, 401, "unauthorized")
        admin = {"Authorization": f"Bearer {live.admin_token}"}
        assert_error(anonymous.get(f"/v1/cell/ports/{PORT}/", headers=admin), 403, "forbidden")
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(live, f"/v1/cell/ports/{PORT}/ws"))
    assert refused.value.response.status_code == 401
    assert b"unauthorized" in refused.value.response.body
    bare = alice.get(f"/v1/cell/ports/{PORT}", follow_redirects=False)
    assert bare.status_code in (307, 308)
    assert bare.headers["location"].endswith(f"/v1/cell/ports/{PORT}/")


def test_an_open_relay_keeps_the_cell_from_being_paused(
    make_server: ServerFactory, make_settings: SettingsFactory
) -> None:
    settings = make_settings(idle_pause_s=0.3, reap_interval_s=0.1)
    with make_server(settings) as live, add_user(live, "carol") as http:
        start_server(http)
        states = set()
        with websocket(live, http, f"/v1/cell/ports/{PORT}/ws") as ws:
            stop = time.monotonic() + 2
            while time.monotonic() < stop:
                states.add(http.get("/v1/cell").json()["state"])
                time.sleep(0.1)
            ws.send("still here")
            assert ws.recv(timeout=30) == "still here"
        assert states == {"running"}
        wait_until(
            "closed, the cell is paused", lambda: http.get("/v1/cell").json()["state"] == "paused"
        )
        # A request through the relay wakes it again.
        assert http.get(f"/v1/cell/ports/{PORT}/hello").text == "hello"


def test_requests_share_kept_alive_connections(alice: httpx.Client) -> None:
    def accepted() -> int:
        return int(alice.get(f"/v1/cell/ports/{PORT}/connections").text)

    before = accepted()
    for _ in range(20):
        assert alice.get(f"/v1/cell/ports/{PORT}/hello").text == "hello"
    assert accepted() - before <= 2  # one connection, kept between requests
    # The server restarts: the kept connection is dead, and a new one is made, unnoticed.
    restart = "pkill -f '^python3 cellserver'; sleep 0.2; python3 cellserver.py 8080 >log 2>&1 &"
    body = {"language": "shell", "code": restart, "background": True}
    assert alice.post("/v1/cell/exec", json=body).status_code == 200
    wait_until(
        "it listens again", lambda: alice.get(f"/v1/cell/ports/{PORT}/hello").text == "hello"
    )
    assert accepted() <= 3


def test_many_requests_at_once(alice: httpx.Client) -> None:
    failures: list[str] = []

    def fetch() -> None:
        for _ in range(10):
            got = alice.get(f"/v1/cell/ports/{PORT}/hello")
            if got.text != "hello":
                failures.append(got.text)

    threads = [threading.Thread(target=fetch) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_an_http_1_0_server_answers_whole(alice: httpx.Client) -> None:
    """python3 -m http.server speaks HTTP/1.0: each answer ends with its connection."""
    serve = "python3 -m http.server 8090 --bind 127.0.0.1 >/dev/null 2>&1 &"
    body = {"language": "shell", "code": serve, "background": True}
    assert alice.post("/v1/cell/exec", json=body).status_code == 200
    wait_until(
        "it listens",
        lambda: 8090 in [p["port"] for p in alice.get("/v1/cell/ports").json()],
    )
    for _ in range(3):  # each on a new connection: none is kept after HTTP/1.0
        listing = alice.get("/v1/cell/ports/8090/")
        assert listing.status_code == 200
        assert "cellserver.py" in listing.text

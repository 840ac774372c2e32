"""Egress end to end: a live server, real cells (no interface but lo), the proxy, and a hermetic
internet in a network namespace of its own. Programs in the cell reach exactly what the policy
allows, by name and by address; secrets reach only their hosts and never the cell."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI

from agentcell.egress.build import HermeticInternet
from tests.api.test_sessions import add_user
from tests.conftest import Live, ServerFactory, SettingsFactory
from tests.egress.internet import HOST_SIDE, NETWORK, ORIGIN, Internet, internet

pytestmark = pytest.mark.docker
VALUE = "ghp_real-value-3141592653589793"
CA = "/workspace/test-ca.pem"  # the test internet's CA, for curl in the cell (tunnels end there)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Internet]:
    yield from internet(tmp_path_factory.mktemp("internet"))


@pytest.fixture
def live(
    net: Internet, make_server: ServerFactory, make_settings: SettingsFactory
) -> Iterator[Live]:
    hosts = net.hosts(
        **{
            "private.test": ["10.0.0.1"],
            "meta.test": ["169.254.169.254"],
            "mixed.test": ["127.0.0.1", ORIGIN],
            "self.test": [HOST_SIDE],
        }
    )
    test = HermeticInternet(networks=(NETWORK,), hosts=hosts, cafile=str(net.ca_pem))

    def customize(app: FastAPI) -> None:
        app.state.test_internet = test

    settings = make_settings(network_ceiling="public", egress_connections_per_user=4)
    with make_server(settings, customize) as server:
        yield server


@pytest.fixture
def alice(live: Live, net: Internet) -> Iterator[httpx.Client]:
    with add_user(live, "alice") as http:
        put = http.put(
            "/v1/files/raw", params={"path": "test-ca.pem"}, content=net.ca_pem.read_bytes()
        )
        assert put.status_code == 201
        yield http


def sh(http: httpx.Client, code: str) -> str:
    answer = http.post("/v1/cell/exec", json={"language": "shell", "code": code, "timeout_s": 30})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["stdout"]) + str(answer.json()["stderr"])


def curl(http: httpx.Client, url: str, *args: str) -> str:
    """The status and body curl gets in the cell (or its error)."""
    flags = " ".join(args)
    return sh(http, f"curl -sS --cacert {CA} -w ' [%{{http_code}}]' {flags} '{url}' 2>&1")


def policy(http: httpx.Client, **body: object) -> None:
    put = http.put("/v1/cell/network", json=body)
    assert put.status_code == 200, put.text


def test_the_policy_decides_by_name_and_changes_apply_at_once(alice: httpx.Client) -> None:
    refused = curl(alice, "http://web.test/")
    assert "policy is none" in refused
    assert refused.endswith("[403]")
    policy(alice, mode="allowlist", allow=["web.test", "*.wiki.test"], deny=["ads.wiki.test"])
    assert curl(alice, "http://web.test/hello") == "ok /hello\n [200]"
    assert curl(alice, "https://web.test/tls") == "ok /tls\n [200]"  # a tunnel, TLS end to end
    assert curl(alice, "https://en.wiki.test/") == "ok /\n [200]"
    assert "denied by your rule ads.wiki.test" in curl(alice, "http://ads.wiki.test/")
    assert "not in your allow list" in curl(alice, "http://wiki.test/")  # *. is below only
    assert "CONNECT tunnel failed, response 403" in curl(alice, "https://api.test/")
    policy(alice, mode="public")
    assert curl(alice, "https://api.test/") == "ok /\n [200]"
    events = alice.get("/v1/audit", params={"kind": "egress", "limit": 50}).json()["events"]
    allowed = [e for e in events if e["ok"]]
    assert {e["target"] for e in allowed} >= {"web.test:80", "web.test:443", "api.test:443"}
    assert all("B up" in e["detail"] and e["duration_ms"] is not None for e in events)


def test_addresses_no_policy_can_open(alice: httpx.Client) -> None:
    policy(alice, mode="public")
    for host, why in (
        ("private.test", "10.0.0.1 is a private address"),
        ("meta.test", "link-local"),
        ("self.test", "this server's own address"),
        ("169.254.169.254", "link-local"),
        ("127.0.0.2", "loopback"),  # the host's, not the cell's: NO_PROXY is cleared
    ):
        got = curl(alice, f"http://{host}/", "--noproxy ''")
        assert why in got, host
        assert got.endswith("[403]")
    # A name with a private and a public address: only the checked public one is used.
    assert curl(alice, "http://mixed.test/") == "ok /\n [200]"
    assert "port 22 is not allowed" in curl(alice, "http://web.test:22/")
    # A program that ignores the proxy has no route at all.
    raw = sh(alice, f"python3 -c \"import socket; socket.create_connection(('{ORIGIN}', 80), 3)\"")
    assert "Network is unreachable" in raw


def test_a_secret_reaches_its_host_only_and_never_the_cell(
    live: Live, alice: httpx.Client, net: Internet
) -> None:
    policy(alice, mode="allowlist", allow=["api.test", "web.test"])
    put = alice.put("/v1/secrets/API_TOKEN", json={"value": VALUE, "hosts": ["api.test"]})
    assert put.status_code == 200
    placeholder = sh(alice, "echo -n $API_TOKEN")
    assert placeholder.startswith("agentcell-secret-api-token-")
    before = len(net.received())
    # HTTPS to the secret's host: TLS ends at the proxy (the cell trusts its CA), the value goes in.
    got = sh(
        alice, 'curl -sS -H "Authorization: Bearer $API_TOKEN" "https://api.test/me?t=$API_TOKEN"'
    )
    assert got == "ok /me?t=" + VALUE + "\n"  # the origin echoes the path: the URL's value
    [seen] = net.received()[before:]
    assert seen["headers"]["authorization"] == f"Bearer {VALUE}"  # type: ignore[index]
    # Elsewhere the placeholder is refused, and nothing reaches the host.
    wrong = sh(alice, 'curl -sS -H "X-Key: $API_TOKEN" http://web.test/leak')
    assert "secret API_TOKEN may only be sent to api.test" in wrong
    assert not [r for r in net.received()[before + 1 :] if r["path"] == "/leak"]
    events = alice.get("/v1/audit", params={"kind": "egress"}).json()["events"]
    assert any("secrets put in" in e["detail"] for e in events)
    assert any("may only be sent" in e["detail"] and not e["ok"] for e in events)
    # Another user with the same placeholder text gets no value put in.
    with add_user(live, "bob") as bob:
        policy(bob, mode="allowlist", allow=["web.test"])
        sh(bob, f'curl -sS -H "X-Key: {placeholder}" http://web.test/bob')
        [bobs] = [r for r in net.received() if r["path"] == "/bob"]
        assert bobs["headers"]["x-key"] == placeholder  # type: ignore[index]
    assert VALUE not in sh(alice, "cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n'")


def test_limits_and_bytes(alice: httpx.Client) -> None:
    policy(alice, mode="allowlist", allow=["web.test"])
    got = sh(alice, "curl -sS -o /dev/null -w '%{size_download}' http://web.test/bytes/5000000")
    assert got == "5000000"
    # Four tunnels held open at once: a fifth connection is past the limit of four.
    hold = (
        "import socket, subprocess\n"
        "held = [socket.create_connection(('127.0.0.1', 3128)) for _ in range(4)]\n"
        "ask = b'CONNECT web.test:80 HTTP/1.1\\r\\nHost: web.test\\r\\n\\r\\n'\n"
        "for s in held: s.sendall(ask)\n"
        "print([s.recv(100).split()[1].decode() for s in held])\n"
        "print(subprocess.run(['curl', '-sS', '-w', ' [%{http_code}]', 'http://web.test/x'],"
        " capture_output=True, text=True).stdout)\n"
    )
    answer = alice.post("/v1/cell/exec", json={"code": hold})
    held = answer.json()["stdout"]
    assert held.startswith("['200', '200', '200', '200']"), answer.text
    assert "connections open through the proxy" in held
    assert held.endswith("[429]\n")
    events = alice.get("/v1/audit", params={"kind": "egress", "limit": 20}).json()["events"]
    downs = [int(e["detail"].split(" B down")[0].rsplit(" ", 1)[1]) for e in events if e["ok"]]
    assert max(downs) > 5_000_000  # the body and its head, counted

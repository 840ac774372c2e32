"""The network policy, the admin's rules and secrets through the HTTP API, on a live server with
real cells: what applies and where from, the ceiling, secrets that never enter the cell (only
placeholders do), the proxy's refusal as a program in the cell sees it, the egress audit, and
pip installing into the workspace. Egress to other hosts: ``tests/egress``."""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from collections.abc import Iterator

import httpx
import pytest

from tests.api.test_sessions import add_user, assert_error
from tests.conftest import Live, ServerFactory, SettingsFactory
from tests.waiting import wait_until

pytestmark = pytest.mark.docker

VALUE = "ghp_the-real-token-0123456789abcdef"


@pytest.fixture
def live(make_server: ServerFactory, make_settings: SettingsFactory) -> Iterator[Live]:
    with make_server(make_settings(secrets_per_user_max=3)) as server:
        yield server


@pytest.fixture
def alice(live: Live) -> Iterator[httpx.Client]:
    with add_user(live, "alice") as http:
        yield http


def shell(http: httpx.Client, code: str) -> dict[str, object]:
    answer = http.post("/v1/cell/exec", json={"language": "shell", "code": code})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def admin(live: Live) -> httpx.Client:
    headers = {"Authorization": f"Bearer {live.admin_token}"}
    return httpx.Client(base_url=live.url, headers=headers, timeout=60)


def test_a_policy_of_ones_own_within_the_ceiling(alice: httpx.Client) -> None:
    got = alice.get("/v1/cell/network").json()
    assert got == {
        "mode": "none",
        "allow": [],
        "deny": [],
        "source": "default",
        "ceiling": "allowlist",
        "ports": [80, 443],
    }
    mine = {"mode": "allowlist", "allow": ["*.Wikipedia.org", "api.github.com"], "deny": []}
    put = alice.put("/v1/cell/network", json=mine)
    assert put.status_code == 200, put.text
    assert put.json()["allow"] == ["*.wikipedia.org", "api.github.com"]
    assert put.json()["source"] == "user"
    assert alice.get("/v1/cell").json()["network"] == "allowlist"
    wider = assert_error(
        alice.put("/v1/cell/network", json={"mode": "public"}), 400, "invalid_request"
    )
    assert "public" in wider["message"]
    assert wider["hint"]
    bad = alice.put("/v1/cell/network", json={"mode": "allowlist", "allow": ["http://x.org/"]})
    assert_error(bad, 422, "invalid_request")
    back = alice.delete("/v1/cell/network")
    assert back.json()["source"] == "default"
    assert back.json()["mode"] == "none"


def test_the_admins_rules_apply_to_users_without_their_own(live: Live, alice: httpx.Client) -> None:
    with admin(live) as root:
        assert root.get("/v1/admin/network").json() == {
            "default": {"mode": "none", "allow": [], "deny": []},
            "ceiling": "allowlist",
            "ports": [],
        }
        rules = {
            "default": {"mode": "allowlist", "allow": ["index.example.org"], "deny": []},
            "ceiling": "public",
            "ports": [8443],
        }
        assert root.put("/v1/admin/network", json=rules).status_code == 200
        too_wide = {"default": {"mode": "public"}, "ceiling": "allowlist"}
        assert_error(root.put("/v1/admin/network", json=too_wide), 400, "invalid_request")
    got = alice.get("/v1/cell/network").json()
    assert (got["mode"], got["allow"], got["source"]) == (
        "allowlist",
        ["index.example.org"],
        "default",
    )
    assert got["ports"] == [80, 443, 8443]
    assert alice.put("/v1/cell/network", json={"mode": "public"}).status_code == 200
    with admin(live) as root:  # the ceiling lowered: alice's own public falls to it
        root.put("/v1/admin/network", json={"ceiling": "allowlist"})
    assert alice.get("/v1/cell/network").json()["mode"] == "allowlist"
    events = alice.get("/v1/audit", params={"kind": "network"}).json()["events"]
    assert [e["action"] for e in events] == ["network.set"]


def test_secrets_are_listed_without_values_and_the_cell_sees_a_placeholder(
    live: Live, alice: httpx.Client
) -> None:
    put = alice.put("/v1/secrets/GITHUB_TOKEN", json={"value": VALUE, "hosts": ["API.github.com"]})
    assert put.status_code == 200, put.text
    assert put.json()["hosts"] == ["api.github.com"]
    listed = alice.get("/v1/secrets")
    assert [s["name"] for s in listed.json()["secrets"]] == ["GITHUB_TOKEN"]
    assert VALUE not in listed.text
    assert VALUE not in put.text
    seen = shell(alice, 'echo "$GITHUB_TOKEN"')["stdout"]
    assert isinstance(seen, str)
    assert seen.strip()
    assert VALUE not in seen
    placeholder = seen.strip()
    python = alice.post(
        "/v1/cell/exec", json={"code": "import os; print(os.environ['GITHUB_TOKEN'])"}
    )
    assert python.json()["stdout"].strip() == placeholder
    job = alice.post(
        "/v1/jobs", json={"kind": "exec", "language": "shell", "code": 'echo "$GITHUB_TOKEN"'}
    ).json()
    wait_until(
        "the job ends", lambda: alice.get(f"/v1/jobs/{job['id']}").json()["state"] == "succeeded"
    )
    log = alice.get(f"/v1/jobs/{job['id']}/logs").text
    assert placeholder in log
    assert VALUE not in log
    # Nowhere in the cell: not in any process's environment, nor in any file it can read.
    hunt = shell(
        alice, f"grep -rlsF '{VALUE}' /proc/[0-9]*/environ /workspace /tmp /run; echo done"
    )
    assert hunt["stdout"] == "done\n"
    # Nor in the store's file, where it is sealed.
    database = (live.settings.data_dir / "agentcell.db").read_bytes()
    assert VALUE.encode() not in database
    # Replaced: the same placeholder (running programs hold it); deleted: gone from new execs.
    alice.put("/v1/secrets/GITHUB_TOKEN", json={"value": VALUE + "2", "hosts": ["api.github.com"]})
    assert shell(alice, 'echo "$GITHUB_TOKEN"')["stdout"].strip() == placeholder  # type: ignore[union-attr]
    assert alice.delete("/v1/secrets/GITHUB_TOKEN").status_code == 204
    assert shell(alice, 'echo "[$GITHUB_TOKEN]"')["stdout"] == "[]\n"
    assert_error(alice.delete("/v1/secrets/GITHUB_TOKEN"), 404, "not_found")
    kinds = [
        e["action"] for e in alice.get("/v1/audit", params={"kind": "secret"}).json()["events"]
    ]
    assert kinds == ["secret.delete", "secret.put", "secret.put"]


def test_bad_secrets_are_refused_with_a_reason(alice: httpx.Client) -> None:
    ok = {"value": "v", "hosts": ["a.org"]}
    assert_error(alice.put("/v1/secrets/lower", json=ok), 422, "invalid_request")
    assert_error(alice.put("/v1/secrets/PATH", json=ok), 400, "invalid_request")
    assert_error(alice.put("/v1/secrets/HTTPS_PROXY", json=ok), 400, "invalid_request")
    two_lines = {"value": "a\nb", "hosts": ["a.org"]}
    assert_error(alice.put("/v1/secrets/TOKEN", json=two_lines), 422, "invalid_request")
    assert_error(
        alice.put("/v1/secrets/TOKEN", json={"value": "v", "hosts": []}), 422, "invalid_request"
    )
    assert_error(
        alice.put("/v1/secrets/TOKEN", json={"value": "v", "hosts": ["a b"]}),
        422,
        "invalid_request",
    )
    for name in ("A", "B", "C"):
        assert alice.put(f"/v1/secrets/{name}", json=ok).status_code == 200
    assert_error(alice.put("/v1/secrets/D", json=ok), 409, "conflict")
    assert alice.put("/v1/secrets/C", json=ok).status_code == 200  # replacing one is fine


def test_another_users_secret_is_never_theirs(live: Live, alice: httpx.Client) -> None:
    alice.put("/v1/secrets/TOKEN", json={"value": VALUE, "hosts": ["a.org"]})
    with add_user(live, "bob") as bob:
        assert bob.get("/v1/secrets").json()["secrets"] == []
        assert shell(bob, 'echo "[$TOKEN]"')["stdout"] == "[]\n"
        assert_error(bob.delete("/v1/secrets/TOKEN"), 404, "not_found")
    assert [s["name"] for s in alice.get("/v1/secrets").json()["secrets"]] == ["TOKEN"]


def test_programs_go_through_the_proxy_which_says_why_it_refuses(alice: httpx.Client) -> None:
    env = shell(alice, "env | grep -i _proxy | sort")["stdout"]
    assert "HTTPS_PROXY=http://127.0.0.1:3128" in str(env)
    refused = shell(alice, "curl -sS -i https://example.com/ 2>&1; curl -sS http://example.com/")
    out = str(refused["stdout"])
    assert "403" in out
    assert "agentcell egress:" in out
    assert "agentcell network allow" in out
    events = alice.get("/v1/audit", params={"kind": "egress"}).json()["events"]
    assert {e["target"] for e in events} == {"example.com:443", "example.com:80"}
    assert not any(e["ok"] for e in events)
    assert all(e["detail"].startswith("refused") for e in events)


def _wheel(name: str, version: str, module: str) -> bytes:
    """A pure-Python wheel, made here: pip installs it without any index."""
    dist = f"{name}-{version}"
    files = {
        f"{module}.py": b"ANSWER = 42\n",
        f"{dist}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
        ),
        f"{dist}.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}.dist-info/RECORD,,")
    files[f"{dist}.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as wheel:
        for path, data in files.items():
            wheel.writestr(path, data)
    return buffer.getvalue()


def test_pip_install_user_lands_in_the_workspace_and_stays(alice: httpx.Client) -> None:
    wheel = "agentcell_probe-1.0-py3-none-any.whl"
    put = alice.put(
        "/v1/files/raw", params={"path": wheel}, content=_wheel("agentcell_probe", "1.0", "acprobe")
    )
    assert put.status_code == 201, put.text
    # The warm python context started before the user site existed: it still finds it.
    assert alice.post("/v1/cell/exec", json={"code": "print(1)"}).json()["stdout"] == "1\n"
    installed = shell(alice, f"pip install --user --no-index {wheel}")
    assert installed["exit_code"] == 0, installed
    where = alice.post(
        "/v1/cell/exec", json={"code": "import acprobe; print(acprobe.ANSWER, acprobe.__file__)"}
    )
    assert (
        where.json()["stdout"] == "42 /workspace/.local/lib/python3.11/site-packages/acprobe.py\n"
    )
    assert alice.post("/v1/cell/restart").status_code == 200
    again = alice.post("/v1/cell/exec", json={"code": "import acprobe; print(acprobe.ANSWER)"})
    assert again.json()["stdout"] == "42\n"

"""The web page's sign-in (DESIGN §12) on a live server: a key traded for an HttpOnly,
SameSite=Strict cookie and a CSRF token; changes made with the cookie need the token; sign-out,
expiry, the preview address (no sign-in there); key and admin-token rotation ending sign-ins;
one user's cookie never reaching another's things; the headers that keep a browser safe."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.api.test_sessions import add_user, assert_error
from tests.conftest import Live, ServerFactory, SettingsFactory

pytestmark = pytest.mark.docker


@contextlib.contextmanager
def sign_in(live: Live, key: str) -> Iterator[tuple[httpx.Client, str]]:
    """A browser-like client holding the session cookie, and the session's CSRF token."""
    with httpx.Client(base_url=live.url, timeout=60) as browser:
        answer = browser.post("/v1/session", json={"api_key": key})
        assert answer.status_code == 200, answer.text
        yield browser, answer.json()["csrf_token"]


@pytest.fixture
def alice_key(server: Live) -> str:
    with add_user(server, "alice") as http:
        return str(http.headers["Authorization"].split()[1])


def test_a_key_is_traded_for_a_strict_httponly_cookie(server: Live, alice_key: str) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as browser:
        answer = browser.post("/v1/session", json={"api_key": alice_key})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["me"]["name"] == "alice"
        assert not body["me"]["admin"]
        assert len(body["csrf_token"]) >= 32
        cookie = answer.headers["set-cookie"].lower()
        assert cookie.startswith("agentcell_session=acs_")
        for attribute in ("httponly", "samesite=strict", "path=/", "max-age="):
            assert attribute in cookie
        assert alice_key not in answer.text
        assert browser.get("/v1/me").json()["name"] == "alice"
        again = browser.get("/v1/session").json()  # after a reload of the page
        assert again["csrf_token"] == body["csrf_token"]
        assert again["me"]["name"] == "alice"


def test_changes_made_with_the_cookie_need_the_csrf_token(server: Live, alice_key: str) -> None:
    with sign_in(server, alice_key) as (browser, csrf):
        run = {"language": "python", "code": "print(6*7)"}
        assert_error(browser.post("/v1/cell/exec", json=run), 403, "csrf_failed")
        wrong = browser.post("/v1/cell/exec", json=run, headers={"X-CSRF-Token": "x" * 43})
        assert_error(wrong, 403, "csrf_failed")
        put = browser.put("/v1/files/raw", params={"path": "a.txt"}, content=b"no")
        assert_error(put, 403, "csrf_failed")
        assert browser.get("/v1/files", params={"path": "a.txt"}).status_code == 404
        ran = browser.post("/v1/cell/exec", json=run, headers={"X-CSRF-Token": csrf})
        assert ran.status_code == 200
        assert ran.json()["stdout"] == "42\n"


def test_a_bad_key_signs_nothing_in(server: Live) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as browser:
        refused = browser.post("/v1/session", json={"api_key": "ac_" + "x" * 43})
        assert_error(refused, 401, "unauthorized")
        assert "set-cookie" not in refused.headers
        assert_error(browser.get("/v1/session"), 401, "unauthorized")
        forged = browser.get("/v1/me", headers={"Cookie": "agentcell_session=acs_forged"})
        assert_error(forged, 401, "unauthorized")


def test_sign_out_ends_the_session(server: Live, alice_key: str) -> None:
    with sign_in(server, alice_key) as (browser, csrf):
        cookie = browser.cookies["agentcell_session"]
        assert_error(browser.delete("/v1/session"), 403, "csrf_failed")
        out = browser.delete("/v1/session", headers={"X-CSRF-Token": csrf})
        assert out.status_code == 204
        assert "agentcell_session=" in out.headers["set-cookie"]  # cleared
        stale = httpx.get(f"{server.url}/v1/me", headers={"Cookie": f"agentcell_session={cookie}"})
        assert_error(stale, 401, "unauthorized")
    actions = [
        e["action"]
        for e in httpx.get(
            f"{server.url}/v1/audit", headers={"Authorization": f"Bearer {alice_key}"}
        ).json()["events"]
    ]
    assert "signin" in actions
    assert "signout" in actions


def test_a_session_expires(make_server: ServerFactory, make_settings: SettingsFactory) -> None:
    with make_server(make_settings(session_ttl_s=1.5)) as live, add_user(live, "alice") as http:
        key = str(http.headers["Authorization"].split()[1])
        with sign_in(live, key) as (browser, _):
            assert browser.get("/v1/me").status_code == 200
            time.sleep(2)
            assert_error(browser.get("/v1/me"), 401, "unauthorized")


@pytest.mark.usefixtures("alice_key")
def test_the_admin_signs_in_with_the_admin_token(server: Live) -> None:
    with sign_in(server, server.admin_token) as (browser, csrf):
        assert browser.get("/v1/session").json()["me"]["admin"] is True
        names = [u["name"] for u in browser.get("/v1/users").json()]
        assert "alice" in names
        made = browser.post("/v1/users", json={"name": "bob"}, headers={"X-CSRF-Token": csrf})
        assert made.status_code == 201
        assert_error(browser.get("/v1/cell"), 403, "forbidden")


def test_no_sign_in_on_the_preview_address(server: Live, alice_key: str) -> None:
    port = urlsplit(server.url).port
    with httpx.Client(base_url=server.url, timeout=60) as browser:
        there = browser.post(
            "/v1/session", json={"api_key": alice_key}, headers={"Host": f"localhost:{port}"}
        )
        error = assert_error(there, 400, "invalid_request")
        assert f"http://127.0.0.1:{port}" in error["hint"]
    # A cookie of the page's address is no sign-in at the preview address.
    with sign_in(server, alice_key) as (browser, _):
        cookie = f"agentcell_session={browser.cookies['agentcell_session']}"
        elsewhere = httpx.get(
            f"{server.url}/v1/me", headers={"Cookie": cookie, "Host": f"localhost:{port}"}
        )
        assert_error(elsewhere, 401, "unauthorized")


def test_rotating_a_key_ends_the_other_sign_ins(server: Live, alice_key: str) -> None:
    with sign_in(server, alice_key) as (mine, csrf), sign_in(server, alice_key) as (other, _):
        rotated = mine.post("/v1/me/key", headers={"X-CSRF-Token": csrf})
        assert rotated.status_code == 200
        new_key = rotated.json()["api_key"]
        assert mine.get("/v1/me").status_code == 200  # the session that rotated it stays
        assert_error(other.get("/v1/me"), 401, "unauthorized")
        old = httpx.get(f"{server.url}/v1/me", headers={"Authorization": f"Bearer {alice_key}"})
        assert_error(old, 401, "unauthorized")
        new = httpx.get(f"{server.url}/v1/me", headers={"Authorization": f"Bearer {new_key}"})
        assert new.json()["name"] == "alice"


def test_the_admin_rotates_a_users_key_and_the_admin_token(server: Live, alice_key: str) -> None:
    admin = {"Authorization": f"Bearer {server.admin_token}"}
    with (
        sign_in(server, alice_key) as (alice, _),
        httpx.Client(base_url=server.url, timeout=60, headers=admin) as http,
    ):
        alice_id = alice.get("/v1/me").json()["id"]
        assert http.post(f"/v1/users/{alice_id}/key").status_code == 200
        assert_error(alice.get("/v1/me"), 401, "unauthorized")
        token = http.post("/v1/admin/token").json()["api_key"]
        assert_error(http.get("/v1/users"), 401, "unauthorized")
        assert server.settings.admin_token_path.read_text().strip() == token
        fresh = httpx.get(f"{server.url}/v1/users", headers={"Authorization": f"Bearer {token}"})
        assert fresh.status_code == 200


def test_an_admin_token_from_the_settings_is_not_rotated(
    make_server: ServerFactory, make_settings: SettingsFactory
) -> None:
    with make_server(make_settings(admin_token="adm_" + "s" * 40)) as live:
        refused = httpx.post(
            f"{live.url}/v1/admin/token", headers={"Authorization": f"Bearer {live.admin_token}"}
        )
        assert "AGENTCELL_ADMIN_TOKEN" in assert_error(refused, 409, "conflict")["message"]


@pytest.fixture
def two_browsers(server: Live) -> Iterator[tuple[httpx.Client, str, httpx.Client, str]]:
    keys = []
    for name in ("alice", "bob"):
        with add_user(server, name) as http:
            keys.append(str(http.headers["Authorization"].split()[1]))
    with (
        sign_in(server, keys[0]) as (alice, alice_csrf),
        sign_in(server, keys[1]) as (bob, bob_csrf),
    ):
        yield alice, alice_csrf, bob, bob_csrf


def test_a_cookie_reaches_only_its_users_things(
    two_browsers: tuple[httpx.Client, str, httpx.Client, str],
) -> None:
    alice, alice_csrf, bob, bob_csrf = two_browsers
    put = alice.put(
        "/v1/files/raw",
        params={"path": "diary.txt"},
        content=b"mine",
        headers={"X-CSRF-Token": alice_csrf},
    )
    assert put.status_code == 201
    chat = alice.post("/v1/sessions", json={"title": "t"}, headers={"X-CSRF-Token": alice_csrf})
    assert chat.status_code == 201
    assert_error(bob.get("/v1/files/raw", params={"path": "diary.txt"}), 404, "not_found")
    assert_error(bob.get(f"/v1/sessions/{chat.json()['id']}"), 404, "not_found")
    assert bob.get("/v1/sessions").json() == [] or all(
        s["id"] != chat.json()["id"] for s in bob.get("/v1/sessions").json()
    )
    # Bob's CSRF token with Bob's cookie changes Bob's cell; it is no use with Alice's cookie.
    swapped = alice.post(
        "/v1/cell/exec", json={"code": "print(1)"}, headers={"X-CSRF-Token": bob_csrf}
    )
    assert_error(swapped, 403, "csrf_failed")


def test_answers_carry_headers_that_keep_a_browser_safe(server: Live, alice_key: str) -> None:
    headers = {"Authorization": f"Bearer {alice_key}"}
    with httpx.Client(base_url=server.url, timeout=60, headers=headers) as http:
        http.put("/v1/files/raw", params={"path": "x.html"}, content=b"<script>1</script>")
        for answer in (http.get("/v1/me"), http.get("/v1/files/raw", params={"path": "x.html"})):
            policy = answer.headers["content-security-policy"]
            assert "default-src 'none'" in policy
            assert "sandbox" in policy
            assert answer.headers["x-content-type-options"] == "nosniff"
            assert answer.headers["referrer-policy"] == "no-referrer"

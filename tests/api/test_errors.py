"""One JSON error shape for every failure, and bad input that touches nothing."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Live

pytestmark = pytest.mark.docker


@pytest.fixture
def user(server: Live) -> Iterator[httpx.Client]:
    admin = {"Authorization": f"Bearer {server.admin_token}"}
    with httpx.Client(base_url=server.url, timeout=60) as http:
        key = http.post("/v1/users", json={"name": "erin"}, headers=admin).json()["api_key"]
        http.headers["Authorization"] = f"Bearer {key}"
        yield http


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, str]:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"]
    assert sorted(body["error"]) == ["code", "hint", "message"]
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return dict(body["error"])


def test_the_error_shape_is_the_same_for_every_kind_of_failure(
    server: Live, user: httpx.Client
) -> None:
    anon = httpx.Client(base_url=server.url)
    assert_error(anon.get("/v1/me"), 401, "unauthorized")
    assert_error(anon.get("/v1/nowhere"), 404, "not_found")
    assert_error(anon.patch("/v1/me"), 405, "method_not_allowed")
    assert_error(user.get("/v1/users"), 403, "forbidden")
    assert_error(user.post("/v1/cell/exec", json={"code": ""}), 422, "invalid_request")
    assert_error(user.post("/v1/cell/exec", json={"code": "1", "bogus": 1}), 422, "invalid_request")
    assert_error(user.post("/v1/cell/exec", content=b"{not json"), 422, "invalid_request")
    assert_error(user.get("/v1/files/raw", params={"path": "missing"}), 404, "not_found")
    err = assert_error(
        user.get("/v1/files/raw", params={"path": "../etc/passwd"}), 400, "invalid_path"
    )
    assert err["hint"]
    anon.close()


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "a/../../x", "a\x00b", "..", "./../x"])
def test_bad_paths_are_refused_and_touch_nothing(user: httpx.Client, path: str) -> None:
    assert_error(
        user.put("/v1/files/raw", params={"path": path}, content=b"x"), 400, "invalid_path"
    )
    assert_error(user.get("/v1/files/raw", params={"path": path}), 400, "invalid_path")
    assert_error(user.delete("/v1/files", params={"path": path}), 400, "invalid_path")
    assert user.get("/v1/files", params={"path": "."}).json()["entries"] == []


@pytest.mark.parametrize("path", ["n" * 256, "é" * 128, "dir/" + "x" * 300 + "/f"])
def test_names_longer_than_the_file_system_allows_are_bad_paths(
    user: httpx.Client, path: str
) -> None:
    # Found by tests/api/test_fuzz.py: these were a 502 executor_error (ENAMETOOLONG).
    assert_error(
        user.put("/v1/files/raw", params={"path": path}, content=b"x"), 400, "invalid_path"
    )
    for route in ("/v1/files", "/v1/files/raw", "/v1/files/zip"):
        assert_error(user.get(route, params={"path": path}), 400, "invalid_path")
    assert_error(user.delete("/v1/files", params={"path": path}), 400, "invalid_path")


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PATCH", "/v1/users", "GET, POST"),
        ("OPTIONS", "/v1/files", "GET, DELETE"),
        ("POST", "/v1/files/raw", "GET, PUT"),
        ("GET", "/v1/cell/exec", "POST"),
        ("PUT", "/healthz", "GET"),
    ],
)
def test_a_wrong_method_names_every_method_of_the_path(
    user: httpx.Client, method: str, path: str, allow: str
) -> None:
    # Found by tests/api/test_fuzz.py: the Allow header was dropped, then named one route's only.
    response = user.request(method, path)
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == allow


def test_the_schema_documents_the_error_shape_and_the_upload_body(server: Live) -> None:
    # Found by tests/api/test_fuzz.py: errors were undocumented (or FastAPI's 422 shape), and
    # the upload had no request body.
    spec = httpx.get(f"{server.url}/openapi.json").json()
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    error = {"$ref": "#/components/schemas/ErrorResponse"}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for status in ("4XX", "5XX"):
                documented = operation["responses"][status]["content"]["application/json"]
                assert documented["schema"] == error, f"{method.upper()} {path} {status}"
    upload = spec["paths"]["/v1/files/raw"]["put"]["requestBody"]["content"]
    assert list(upload) == ["application/octet-stream"]


def test_links_leading_outside_the_workspace_are_refused(user: httpx.Client) -> None:
    user.post(
        "/v1/cell/exec",
        json={"language": "shell", "code": "ln -s /etc/passwd pw; ln -s / root; mkfifo fifo"},
    )
    assert_error(user.get("/v1/files/raw", params={"path": "pw"}), 400, "invalid_path")
    assert_error(user.get("/v1/files/raw", params={"path": "root/etc/passwd"}), 400, "invalid_path")
    assert_error(
        user.put("/v1/files/raw", params={"path": "root/tmp/x"}, content=b"x"), 400, "invalid_path"
    )
    assert_error(user.get("/v1/files/raw", params={"path": "fifo"}), 400, "unsupported_file_type")
    zipped = user.get("/v1/files/zip", params={"path": "."})
    assert zipped.status_code == 200
    assert b"root:x:0:0" not in zipped.content


def test_oversized_upload_is_refused_and_leaves_nothing(server: Live, user: httpx.Client) -> None:
    limit = server.settings.max_upload_bytes
    declared = user.put("/v1/files/raw", params={"path": "big.bin"}, content=b"x" * (limit + 1))
    assert_error(declared, 413, "too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced as bytes arrive
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536

    streamed = user.put("/v1/files/raw", params={"path": "big.bin"}, content=chunks())
    assert_error(streamed, 413, "too_large")
    names = [e["name"] for e in user.get("/v1/files", params={"path": "."}).json()["entries"]]
    assert names == []


def test_oversized_code_and_timeouts_get_clear_4xx(server: Live, user: httpx.Client) -> None:
    code = "x = 1\n" * (server.settings.max_code_bytes // 6 + 1)
    assert_error(user.post("/v1/cell/exec", json={"code": code}), 413, "too_large")
    too_long = server.settings.exec_timeout_max_s + 1
    assert_error(
        user.post("/v1/cell/exec", json={"code": "1", "timeout_s": too_long}),
        400,
        "invalid_request",
    )
    assert_error(
        user.post("/v1/cell/exec", json={"code": "1", "timeout_s": 0}), 422, "invalid_request"
    )


def test_a_timed_out_exec_says_so(user: httpx.Client) -> None:
    r = user.post("/v1/cell/exec", json={"code": "import time; time.sleep(30)", "timeout_s": 1})
    assert r.status_code == 200
    assert r.json()["timed_out"] is True


def test_a_wrong_token_is_neither_a_key_nor_the_admin_token(server: Live) -> None:
    with httpx.Client(base_url=server.url) as http:
        wrong = {"Authorization": "Bearer adm_not-the-token"}
        err = assert_error(http.get("/v1/users", headers=wrong), 401, "unauthorized")
    assert "neither a valid API key nor the admin token" in err["message"]
    assert "admin_token" in err["hint"]


def test_malformed_json_says_where_in_words(user: httpx.Client) -> None:
    body = b'{"code": "print(1)",\n  "language": shell}'
    err = assert_error(user.post("/v1/cell/exec", content=body), 422, "invalid_request")
    assert err["message"] == (
        "the request body is not valid JSON: Expecting value at line 2, column 15"
    )
    assert "JSON object" in err["hint"]

"""The admin's hand on cells: every cell with its memory (read from its cgroup), and one idle
cell paused, stopped or removed now — the workspace kept, the owner's next call waking or
recreating it; a cell at work is left alone (409)."""

from __future__ import annotations

import threading

import docker
import httpx
import pytest

from tests.api.test_sessions import add_user, assert_error
from tests.conftest import Live

pytestmark = pytest.mark.docker


def cells(live: Live) -> dict[str, dict[str, object]]:
    admin = {"Authorization": f"Bearer {live.admin_token}"}
    listed = httpx.get(f"{live.url}/v1/admin/cells", headers=admin, timeout=60).json()
    return {str(c["owner"]): c for c in listed}


def act(live: Live, method: str, path: str) -> httpx.Response:
    admin = {"Authorization": f"Bearer {live.admin_token}"}
    return httpx.request(method, f"{live.url}{path}", headers=admin, timeout=60)


def test_the_admin_pauses_stops_and_removes_an_idle_cell(
    server: Live, docker_client: docker.DockerClient
) -> None:
    with add_user(server, "alice") as alice:
        me = alice.get("/v1/me").json()["id"]
        alice.put("/v1/files/raw", params={"path": "kept.txt"}, content=b"still here")
        assert alice.post("/v1/cell/exec", json={"code": "x = 41"}).status_code == 200
        row = cells(server)[me]
        assert row["state"] == "running"
        assert isinstance(row["memory_bytes"], int)
        assert 1 << 20 < row["memory_bytes"] < 512 << 20
        container = docker_client.containers.get(str(row["container_id"]))

        paused = act(server, "POST", f"/v1/admin/cells/{me}/pause")
        assert paused.json() == {"owner": me, "state": "paused"}
        container.reload()
        assert container.status == "paused"
        assert cells(server)[me]["memory_bytes"] is None  # read for running cells only
        thawed = alice.post("/v1/cell/exec", json={"code": "print(x + 1)"}).json()
        assert thawed["stdout"] == "42\n"  # its memory was kept

        assert act(server, "POST", f"/v1/admin/cells/{me}/stop").json()["state"] == "stopped"
        container.reload()
        assert container.status == "exited"
        again = alice.post("/v1/cell/exec", json={"language": "shell", "code": "cat kept.txt"})
        assert again.json()["stdout"] == "still here"

        assert act(server, "POST", f"/v1/admin/cells/{me}/remove").json()["state"] == "removed"
        with pytest.raises(docker.errors.NotFound):
            container.reload()
        fresh = alice.post("/v1/cell/exec", json={"language": "shell", "code": "cat kept.txt"})
        assert fresh.json()["stdout"] == "still here"  # a new cell, the same workspace
        audit = act(server, "GET", "/v1/audit").json()["events"]
        admin_actions = [e["detail"] for e in audit if e["action"] == "cell.admin"]
        assert sorted(admin_actions) == ["pause", "remove", "stop"]


def test_a_cell_at_work_is_left_alone(server: Live) -> None:
    with add_user(server, "alice") as alice:
        me = alice.get("/v1/me").json()["id"]
        alice.post("/v1/cell/exec", json={"code": "1"})
        started = threading.Event()

        def work() -> None:
            started.set()
            alice.post("/v1/cell/exec", json={"language": "shell", "code": "sleep 3"})

        worker = threading.Thread(target=work)
        worker.start()
        started.wait()
        for _ in range(50):
            if cells(server)[me]["active"]:
                break
        refused = act(server, "POST", f"/v1/admin/cells/{me}/stop")
        worker.join()
        assert "working" in assert_error(refused, 409, "conflict")["message"]


def test_no_cell_is_404_and_only_the_admin_may(server: Live) -> None:
    assert_error(act(server, "POST", "/v1/admin/cells/u_nobody/pause"), 404, "not_found")
    with add_user(server, "alice") as alice:
        me = alice.get("/v1/me").json()["id"]
        assert_error(alice.post(f"/v1/admin/cells/{me}/pause"), 403, "forbidden")
        assert_error(alice.post(f"/v1/admin/cells/{me}/remove"), 403, "forbidden")


def test_a_user_sees_their_cells_usage(server: Live) -> None:
    with add_user(server, "alice") as alice:
        before = alice.get("/v1/cell").json()
        assert before["memory_bytes"] is None  # no cell yet
        alice.post("/v1/cell/exec", json={"code": "1"})
        running = alice.get("/v1/cell").json()
        assert 1 << 20 < running["memory_bytes"] < running["limits"]["memory_mb"] << 20
        used = running["workspace_bytes"]
        assert isinstance(used, int)  # the tests run as root: workspaces are volumes of their own
        write = "head -c 4M /dev/urandom > big.bin && sync"
        assert (
            alice.post("/v1/cell/exec", json={"language": "shell", "code": write}).json()[
                "exit_code"
            ]
            == 0
        )
        grown = alice.get("/v1/cell").json()["workspace_bytes"]
        assert grown - used >= 4 << 20
        assert grown < running["limits"]["workspace_mb"] << 20

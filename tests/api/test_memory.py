"""The server's memory stays bounded when execs flood stdout and are answered as JSON: the JSON
answer keeps at most json_output_limit_bytes (the server holds it whole), streams get more."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Live, ServerFactory, SettingsFactory
from tests.memory import Peak, rss

pytestmark = pytest.mark.docker

MiB = 2**20
PARALLEL = 5
BOUND = 100 * MiB
FLOOD = "import sys\nfor _ in range(64):\n    sys.stdout.write('x' * (1 << 20))\n"
# The clients run in another process, so that only the server's memory is in ours.
CLIENTS = """
import asyncio, sys, httpx
async def main(url, key, n, code):
    async with httpx.AsyncClient(base_url=url, timeout=300) as http:
        calls = [http.post('/v1/cell/exec', json={'code': code, 'context': f'c{i}'},
                           headers={'Authorization': f'Bearer {key}'}) for i in range(n)]
        for r in await asyncio.gather(*calls):
            assert r.status_code == 200, r.text[:300]
            assert r.json()['truncated'], 'the flood should reach the limit'
asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))
"""


@pytest.fixture
def flooder(make_server: ServerFactory, make_settings: SettingsFactory) -> Iterator[Live]:
    settings = make_settings(limits={"memory_mb": 512, "pids": 256})
    with make_server(settings) as live:
        yield live


def test_parallel_json_floods_keep_the_server_bounded(flooder: Live) -> None:
    admin = {"Authorization": f"Bearer {flooder.admin_token}"}
    with httpx.Client(base_url=flooder.url, timeout=120) as http:
        key = http.post("/v1/users", json={"name": "flood"}, headers=admin).json()["api_key"]
        warm = http.post(
            "/v1/cell/exec", json={"code": "1"}, headers={"Authorization": f"Bearer {key}"}
        )
        assert warm.status_code == 200
    limit = flooder.settings.json_output_limit_bytes
    run = [sys.executable, "-c", CLIENTS, flooder.url, key, str(PARALLEL), FLOOD]
    before = rss()
    with Peak() as peak:
        done = subprocess.run(run, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    grown = peak.value - before
    # Each answer is held a few times over (pieces, joined text, JSON): about 40 MiB for five
    # at the 4 MiB default; answers of 16 MiB (the stream limit) took 210 MiB.
    assert grown < BOUND, f"grew {grown / MiB:.0f} MiB (JSON limit {limit / MiB:g} MiB)"

"""Cancel soon after submit, through the API: the job is "running" once the dispatcher claims
it, before its start reaches the cell (which may still be being made). Whenever the cancel
comes, it answers at once with the job cancelled, and nothing of the job runs afterwards."""

from __future__ import annotations

import contextlib
import random
import time

import httpx
import pytest

from tests.api.test_jobs import in_cell, job, submit
from tests.api.test_sessions import add_user
from tests.conftest import Live

pytestmark = pytest.mark.docker

ROUNDS = 10
WAIT_S = 0.5  # the longest pause between submit and cancel


def test_a_cancel_soon_after_submit_answers_at_once_and_leaves_nothing(server: Live) -> None:
    rng = random.Random(0)
    with contextlib.ExitStack() as stack:
        made: list[tuple[httpx.Client, str]] = []
        for round_ in range(ROUNDS):
            if round_ % 2 == 0:  # a new user: the cancel may come while their cell is made
                http = stack.enter_context(add_user(server, f"user{round_}"))
            job_id = submit(http, code="sleep 60")["id"]
            time.sleep(0 if round_ < 2 else rng.uniform(0, WAIT_S))
            started = time.monotonic()
            cancelled = http.post(f"/v1/jobs/{job_id}/cancel")
            took = time.monotonic() - started
            assert cancelled.status_code == 200, cancelled.text
            assert cancelled.json()["state"] == "cancelled", cancelled.json()
            assert took < 1.0, f"round {round_}: the cancel took {took:.2f} s"
            made.append((http, job_id))
        for http, job_id in made:  # and it stays cancelled: it is not started afterwards
            assert job(http, job_id)["state"] == "cancelled"
            log = http.get(f"/v1/jobs/{job_id}/logs").text  # empty: it never reached its cell
            assert log in ("", "agentcell: cancelled\n"), log
            assert in_cell(http, "pgrep -fx 'sleep 60' || true") == ""

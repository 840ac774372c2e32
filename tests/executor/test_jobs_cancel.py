"""Cancel at any moment of a job's start: right after JobStart answers, the holder may not have
started bash yet (it sets up its session and the subreaper first), so a single kill found
nothing and the cancel waited for the whole job. Each cancel must answer within the brief's 1 s,
with the job cancelled and all of its tree dead; the executor must answer the next request."""

from __future__ import annotations

import asyncio
import random
import secrets
import signal
import time

from agentcell.executor.client import ExecutorClient
from agentcell.executor.protocol import JobStart
from tests.executor.test_executor import sh
from tests.executor.test_jobs import _close_contexts, _forget_jobs, jid, log_of, workdir

__all__ = ["_close_contexts", "_forget_jobs"]  # autouse here too

ROUNDS = 30
JITTER_S = 0.05
GUARD_S = 10.0  # a wedged cancel fails the case instead of hanging it


async def test_cancel_right_after_start_kills_it_all(executor: ExecutorClient) -> None:
    d = await workdir(executor)
    marker = f"agentcell-marker-{secrets.token_hex(4)}"
    # As the dispatcher's command: a folder made, then bash exec'd, with a child of its own.
    code = f"mkdir -p -- out && exec bash -c '(exec -a {marker} sleep 60) & exec sleep 60'"
    rng = random.Random(0)
    slowest = 0.0
    for _ in range(ROUNDS):
        job_id = jid()
        await executor.start_job(JobStart(job_id, code, cwd=d))
        await asyncio.sleep(rng.uniform(0, JITTER_S) if rng.random() < 0.7 else 0)
        started = time.monotonic()
        async with asyncio.timeout(GUARD_S):
            info = await executor.cancel_job(job_id)
        slowest = max(slowest, time.monotonic() - started)
        assert (info.state, info.cancelled, info.exit_code) == ("exited", True, -signal.SIGKILL)
        assert (await log_of(executor, job_id)).endswith(b"agentcell: cancelled\n")
    left = await executor.exec(sh(f"pgrep -f '[{marker[0]}]{marker[1:]}' || true", cwd=d))
    assert left.stdout == "", left
    assert slowest < 1.0, f"the slowest cancel took {slowest:.2f} s"

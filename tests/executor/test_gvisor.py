"""A cell under gVisor (runsc) in a private engine: what works today. The shared executor cases
do not run here yet: under this machine's runsc (Debian's 2022 release, ptrace platform) an
out-of-memory kill takes the whole sandbox down, and timeouts, stream hang-ups and process-tree
kills fail (see the README's gVisor paragraph)."""

from __future__ import annotations

import pytest

from agentcell.executor.protocol import Exec
from tests.executor.conftest import DockerExecutor

pytestmark = [pytest.mark.docker, pytest.mark.slow]


async def test_a_gvisor_cell_runs_python_shell_and_files(gvisor_executor: DockerExecutor) -> None:
    client = gvisor_executor.client
    assert (await client.exec(Exec("x = 41"))).exit_code == 0
    assert (await client.exec(Exec("print(x + 1)"))).stdout == "42\n"
    kernel = await client.exec(Exec("uname -r; id -u", language="shell"))
    assert kernel.exit_code == 0, kernel.stderr
    await client.write("note.txt", b"hi")
    assert await client.read_bytes("note.txt", 1024) == b"hi"
    inside = await client.exec(Exec("print(open('/workspace/note.txt').read())"))
    assert inside.stdout == "hi\n"

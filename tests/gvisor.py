"""gVisor for tests: a private engine with runsc registered (the machine's engine is never
reconfigured), and the strict xfails of cases that a gVisor cell fails by a limit of runsc.

A case marked ``@pytest.mark.gvisor_xfail(reason=..., raises=...)`` runs as usual in other cells;
in a gVisor cell it is ``xfail(strict=True)`` with that reason: it must fail, and in that way."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.engines import PrivateEngine, private_engine

RUNSC = "/usr/bin/runsc"
# As scripts/setup registers it. Cells have no network (runsc refuses Docker's "none" netns unless
# told); the executor binds its socket on a host mount, which gVisor allows only with
# --host-uds=create.
RUNSC_RUNTIME = {"path": RUNSC, "runtimeArgs": ["--network=none", "--host-uds=create"]}


@contextlib.contextmanager
def runsc_engine(image: str) -> Iterator[PrivateEngine]:
    """A private engine holding ``image``, with runsc registered and able to run it."""
    if not Path(RUNSC).exists():
        pytest.skip(
            f"gVisor cells need {RUNSC}: scripts/setup installs it as root on Debian/Ubuntu "
            "(the runsc package), or see https://gvisor.dev/docs/user_guide/install/"
        )
    with private_engine(image, {"runtimes": {"runsc": RUNSC_RUNTIME}}) as engine:
        with contextlib.closing(engine.client()) as client:
            try:
                client.containers.run(image, ["true"], entrypoint=[], runtime="runsc",
                                      network_mode="none", remove=True)  # fmt: skip
            except docker.errors.DockerException as exc:
                pytest.skip(f"runsc cannot run containers here: {exc}")
        yield engine


def apply_xfails(request: pytest.FixtureRequest) -> None:
    """Make the case's gvisor_xfail marks strict xfails (called where the cell is gVisor's)."""
    for mark in request.node.iter_markers("gvisor_xfail"):
        request.applymarker(pytest.mark.xfail(strict=True, **mark.kwargs))

"""gVisor for tests: a private engine with runsc registered (the machine's engine is never
reconfigured), and the strict xfails of cases that a gVisor cell fails by a limit of runsc.

A case marked ``@pytest.mark.gvisor_xfail(reason=..., raises=...)`` runs as usual in other cells;
in a gVisor cell it is ``xfail(strict=True)`` with that reason: it must fail, and in that way
(``run=False`` passes through, for a case not to be run there at all)."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator

import docker
import pytest

from tests.engines import PrivateEngine, private_engine

RUNSC = shutil.which("runsc")
# As scripts/setup registers it. Cells have no network (runsc refuses Docker's "none" netns unless
# told); the executor binds its socket on a host mount, which gVisor allows only with
# --host-uds=create.
RUNSC_ARGS = ["--network=none", "--host-uds=create"]

# What a gVisor cell does not do, under Debian's runsc (release 20221219, ptrace platform); the
# README's gVisor section lists the same.
OOM_KILLS_THE_SANDBOX = (
    "runsc: a gVisor cell's memory limit is the host's memory cgroup, in which the whole sandbox "
    "is one process (the Sentry holds all of the cell's memory), so the host's OOM killer kills "
    "the sandbox, not the process that ran out"
)
FORK_BOMB_KILLS_THE_SANDBOX = (
    "runsc (ptrace platform): the host's pids limit counts gVisor's own threads, a stub process "
    "per cell process with a thread per Sentry thread; a fork bomb reaches it inside the Sentry, "
    "which panics (google/gvisor#2490), and the whole cell dies"
)
# Every fork bomb in a gVisor cell shows the limit above; one case runs it, the others are not run:
# now and then the dying sandbox stalls runsc, and the engine with it, for a minute or two.
ANOTHER_FORK_BOMB = {
    "reason": FORK_BOMB_KILLS_THE_SANDBOX + " (not run: the first fork-bomb case shows it)",
    "run": False,
}
NO_SUBREAPER = (
    "runsc refuses PR_SET_CHILD_SUBREAPER (EINVAL; google/gvisor#2323): an orphan goes to PID 1, "
    "out of the executor's tree, and one in a session of its own (setsid) outlives its exec"
)
NO_CPU_QUOTA = (
    "runsc mounts no cgroup files in the cell (and with --cgroupfs shows no CPU quota), so the "
    "cell's CPU cap cannot be read: thread counts follow the host's cores"
)
NO_OCI_SECCOMP = (
    "runsc loads the cell's seccomp profile inside the sandbox only with --oci-seccomp, which "
    "breaks thread creation in this release; the Sentry's own filter guards the host, and "
    "/proc/self/status has no NoNewPrivs line (prctl says it is set)"
)
IO_URING_IN_THE_SENTRY = (
    "runsc: io_uring is the Sentry's own, not the host kernel's, and the cell's seccomp profile "
    "that denies it is not loaded inside the sandbox"
)
NO_SIGNALS_FROM_KEYS = (
    "runsc: in a terminal, Ctrl-C is a plain character (echoed as \\x03, no SIGINT reaches the "
    "foreground job), although the terminal is set up as stty sane has it"
)
TERMINALS_KILL_THE_SANDBOX = (
    "runsc (ptrace platform): 16 terminals at once (a holder and an interactive bash each) took "
    "the cell down (seen once; likely the pids limit, which counts gVisor's threads, as with "
    "fork bombs); not run"
)
SOCKET_STAYS = (
    "runsc: the cell cannot unlink its control socket (a host socket under --host-uds: EPERM), "
    "so no link can be planted in its place"
)


@contextlib.contextmanager
def runsc_engine(image: str) -> Iterator[PrivateEngine]:
    """A private engine holding ``image``, with runsc registered and able to run it."""
    if RUNSC is None:
        pytest.skip(
            "gVisor cells need runsc: scripts/setup installs it when run as root on Debian (the "
            "runsc package); elsewhere see https://gvisor.dev/docs/user_guide/install/"
        )
    runtime = {"path": RUNSC, "runtimeArgs": RUNSC_ARGS}
    with private_engine(image, {"runtimes": {"runsc": runtime}}) as engine:
        with contextlib.closing(engine.client()) as client:
            try:
                client.containers.run(image, ["true"], entrypoint=[], runtime="runsc",
                                      network_mode="none", remove=True)  # fmt: skip
            except docker.errors.DockerException as exc:
                pytest.skip(f"runsc cannot run containers here: {exc}")
        yield engine


@pytest.fixture(scope="session")
def runsc_engine_url(minimal_image: str) -> Iterator[str]:
    """One engine with runsc for the session's gVisor cells (a cell per module), by its URL."""
    with runsc_engine(minimal_image) as engine:
        yield engine.url


def apply_xfails(request: pytest.FixtureRequest) -> None:
    """Make the case's gvisor_xfail marks xfails, strict unless the mark says ``strict=False``
    (called where the cell is gVisor's)."""
    for mark in request.node.iter_markers("gvisor_xfail"):
        request.applymarker(pytest.mark.xfail(**{"strict": True, **mark.kwargs}))

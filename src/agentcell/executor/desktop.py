"""The live desktop (DESIGN §11): an X display (Xvfb) and a VNC server on it (x11vnc), bound to
the cell's loopback, started on demand, in the full image. Standard library only.

Both run under one holder (holder.py) for the cell's life, or until killed; the browser agent's
Chromium opens its windows on the display when it finds the display's socket (browser.py), and
the host reaches the VNC server through the port relay. Their output goes to DESKTOP_LOG.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from typing import Any

from . import protocol as p
from .conn import Conn, Fail
from .holder import fork_holder, read_status
from .ports import PROC_NET, read_listeners
from .procs import watch_exit
from .terminals import Runner

Handler = Callable[[Any, Conn], Awaitable[None]]
DESKTOP_LOG = "/tmp/agentcell-desktop.log"
X_SOCKET = f"/tmp/.X11-unix/X{p.DESKTOP_DISPLAY}"
PROGRAMS = ("Xvfb", "x11vnc")
# Xvfb first, x11vnc once the display's socket is there; x11vnc -localhost: 127.0.0.1 only.
SCRIPT = f"""exec >{DESKTOP_LOG} 2>&1
Xvfb :{p.DESKTOP_DISPLAY} -screen 0 {p.DESKTOP_SIZE[0]}x{p.DESKTOP_SIZE[1]}x24 -nolisten tcp &
for _ in $(seq 200); do [ -S {X_SOCKET} ] && break; sleep 0.05; done
exec x11vnc -display :{p.DESKTOP_DISPLAY} -rfbport {p.DESKTOP_VNC_PORT} -localhost -shared \\
  -forever -nopw -quiet -noxdamage
"""


class Desktop:
    def __init__(self, executor: Runner) -> None:
        self.executor = executor
        self.holder: asyncio.Future[int] | None = None  # done once the desktop's holder exited
        self.starting = asyncio.Lock()

    def handlers(self) -> dict[type[p.Message], Handler]:
        return {p.DesktopStart: self.start}

    async def start(self, _req: p.DesktopStart, conn: Conn) -> None:
        async with self.starting:
            if not self.running():
                await self.launch()
        width, height = p.DESKTOP_SIZE
        display = f":{p.DESKTOP_DISPLAY}"
        conn.write(p.DesktopInfo(display, p.DESKTOP_VNC_PORT, width, height).encode())

    def running(self) -> bool:
        return self.holder is not None and not self.holder.done() and vnc_listens()

    async def launch(self) -> None:
        missing = [name for name in PROGRAMS if shutil.which(name) is None]
        if missing:
            raise Fail(
                "invalid_request",
                f"this cell's image has no desktop ({' and '.join(missing)} missing): "
                "the full image has one",
            )
        executor = self.executor
        argv = [executor.shell, "-c", SCRIPT]
        pid, out_r, err_r, status_r = await executor.fork(
            lambda: fork_holder(argv, executor.root, executor.base_env)
        )
        for fd in (out_r, err_r):  # the script sends its output to DESKTOP_LOG
            os.close(fd)
        executor.holders.add(pid)
        held = self.holder = watch_exit(pid)
        held.add_done_callback(lambda _: executor.forget(pid))
        status = read_status(status_r)
        deadline = time.monotonic() + p.DESKTOP_START_S
        while not vnc_listens():
            if status.done() or time.monotonic() > deadline:
                executor.kill_shell(pid)
                raise Fail("executor_error", f"the desktop did not start: {log_tail()}")
            await asyncio.sleep(0.05)


def vnc_listens() -> bool:
    return any(
        port == p.DESKTOP_VNC_PORT
        for path, family in PROC_NET
        for _, port, _ in read_listeners(path, family)
    )


def log_tail() -> str:
    try:
        with open(DESKTOP_LOG, errors="replace") as log:
            return " | ".join(log.read().strip().splitlines()[-5:]) or "it printed nothing"
    except OSError:
        return "it printed nothing"

"""A python context: one long-lived process that runs the code the executor server sends.

Standard library only. The process is a fork of the server (zygote.py), which calls ``serve``
once the process is set up: stdin is /dev/null, stdout and stderr are pipes the server reads,
and ``CONTROL_FD`` is a socket to the server. Requests arrive there as JSON lines
``{"code", "cwd", "env"}``. Like a notebook, the globals persist between runs and the value of a
final expression is printed. After each run the kernel flushes stdout and stderr, then answers
``{"exit_code": n}``: everything the code printed is in the pipes before the answer is sent.
``{"reap": true, "spare": [pids], "everything": bool}`` asks it to reap the leftovers the server
killed, or every dead child (a kernel is a subreaper: the orphans of what its code starts are its
children). Before a timeout's SIGINT the
server sends ``TIMEOUT``, so that the kernel stops the code without a KeyboardInterrupt traceback.
"""

from __future__ import annotations

import ast
import io
import json
import linecache
import os
import signal
import site
import socket
import sys
import traceback
import types
from typing import Any

from .tree import reap_dead

CONTROL_FD = 3
TIMEOUT = b'{"timeout":true}\n'
KEEP_SOURCES = 200  # cells whose source stays in linecache, for tracebacks
HIDDEN_FILES = {__file__, ast.parse.__code__.co_filename}  # frames not shown in tracebacks


class TimedOut(KeyboardInterrupt):
    """The exec's time is up: the server says so; no traceback is shown."""


class Kernel:
    def __init__(self, control: socket.socket) -> None:
        main = types.ModuleType("__main__")  # pickle and multiprocessing look classes up here
        self.previous_main = sys.modules.get("__main__")  # kept alive: the server's own code
        sys.modules["__main__"] = main
        self.globals: dict[str, Any] = main.__dict__
        self.count = 0
        self.running = False
        self.cwd = ""
        self.control = control
        self.pid = os.getpid()

    def on_sigint(self, _signum: int, _frame: Any) -> None:
        # An interrupt that arrives between two runs must not hit the kernel's own code.
        if self.running:
            raise TimedOut if self.timed_out() else KeyboardInterrupt

    def timed_out(self) -> bool:
        """Take the server's TIMEOUT note, if one waits (never in a fork of the user's code)."""
        if os.getpid() != self.pid:
            return False
        try:
            note = self.control.recv(len(TIMEOUT), socket.MSG_DONTWAIT | socket.MSG_PEEK)
        except OSError:
            return False
        if note != TIMEOUT:
            return False
        self.control.recv(len(TIMEOUT), socket.MSG_DONTWAIT)
        return True

    def prepare(self, cwd: str, env: dict[str, str]) -> None:
        os.environ.update(env)
        user_site_on_path()
        if cwd != self.cwd:  # a chdir made by the code lasts while the requested cwd stays put
            os.chdir(cwd)
            self.cwd = cwd

    def run(self, code: str) -> int:
        try:
            self.running = True
            try:
                self.execute(code)
            finally:
                self.running = False
        except SystemExit as exc:
            return exit_code(exc)
        except TimedOut:
            return 124
        except BaseException as exc:  # noqa: BLE001 - the user's code may raise anything
            show(exc)
            return 1
        return 0

    def execute(self, code: str) -> None:
        self.count += 1
        name = f"<cell {self.count}>"
        linecache.cache[name] = (len(code), None, code.splitlines(keepends=True), name)
        linecache.cache.pop(f"<cell {self.count - KEEP_SOURCES}>", None)
        tree = ast.parse(code, name)
        last = tree.body[-1] if tree.body else None
        if isinstance(last, ast.Expr):
            tree.body.pop()
        exec(compile(tree, name, "exec", dont_inherit=True), self.globals)
        if isinstance(last, ast.Expr):
            expr = ast.Expression(last.value)
            value = eval(compile(expr, name, "eval", dont_inherit=True), self.globals)
            if value is not None:
                sys.stdout.write(repr(value) + "\n")


def exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    sys.stderr.write(f"{exc.code}\n")
    return 1


def show(exc: BaseException) -> None:
    """Print the traceback without the kernel's own frames."""
    te = traceback.TracebackException(type(exc), exc, exc.__traceback__)
    te.stack = traceback.StackSummary.from_list(
        [frame for frame in te.stack if frame.filename not in HIDDEN_FILES]
    )
    sys.stderr.writelines(te.format())


def flush() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except Exception:  # noqa: BLE001, S110 - the code may have closed or replaced them
            pass


def open_stdio() -> None:
    """Fresh sys.stdin/stdout/stderr on fds 0, 1 and 2, as ``python3 -u`` makes them, except that
    stdout and stderr are line buffered, as on a terminal: one write per line, not per call."""
    for name, fd in (("stdin", 0), ("stdout", 1), ("stderr", 2)):
        old = getattr(sys, f"__{name}__", None)
        encoding = getattr(old, "encoding", None) or "utf-8"
        errors = getattr(old, "errors", None) or ("backslashreplace" if fd == 2 else "strict")
        raw = io.FileIO(fd, "r" if fd == 0 else "w", closefd=False)
        stream = io.TextIOWrapper(
            io.BufferedReader(raw) if fd == 0 else raw,
            encoding,
            errors,
            newline="\n",
            line_buffering=fd != 0,
        )
        setattr(sys, f"__{name}__", stream)
        setattr(sys, name, stream)


def serve(cwd: str) -> None:
    """The kernel's loop; returns when the server hangs up."""
    control = socket.socket(fileno=CONTROL_FD)
    requests = control.makefile("rb")
    kernel = Kernel(control)
    kernel.cwd = cwd  # the process starts there
    signal.signal(signal.SIGINT, kernel.on_sigint)
    while True:
        try:
            line = requests.readline()
        except KeyboardInterrupt:
            continue
        if not line:
            return  # the server is gone
        if line == TIMEOUT:
            continue  # too late: the code had ended
        req = json.loads(line)
        if req.get("reap"):
            reaped = reap_dead(req.get("spare", []), everything=req.get("everything", False))
            control.sendall(json.dumps({"reaped": reaped}).encode() + b"\n")
            continue
        try:
            kernel.prepare(req["cwd"], req["env"])
        except OSError as exc:
            sys.stderr.write(f"cannot change to {req['cwd']}: {exc.strerror}\n")
        code = kernel.run(req["code"])
        flush()
        if os.getpid() != kernel.pid:
            os._exit(code)  # a fork of the kernel (os.fork in the code) ran off its end
        control.sendall(json.dumps({"exit_code": code}).encode() + b"\n")


def user_site_on_path() -> None:
    """``pip install --user`` made the user site (under PYTHONUSERBASE, in the workspace) after
    this process started, when Python leaves a missing one out of sys.path: put it there."""
    base = os.environ.get("PYTHONUSERBASE")
    if not base or site.ENABLE_USER_SITE is False:
        return
    # Computed here, not by site: this process was forked from the executor, whose site
    # module read its environment, without PYTHONUSERBASE, when it started.
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    user_site = os.path.join(base, "lib", version, "site-packages")
    if user_site not in sys.path and os.path.isdir(user_site):
        site.addsitedir(user_site)

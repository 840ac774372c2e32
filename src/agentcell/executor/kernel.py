"""A python context: one long-lived process that runs the code the executor server sends.

Standard library only; started by server.py as ``python3 kernel.py CONTROL_FD``. Requests
arrive as JSON lines ``{"code", "cwd", "env"}`` on the control socket. Like a notebook, the
globals persist between runs and the value of a final expression is printed. After each run
the kernel flushes stdout and stderr (pipes the server reads), then answers
``{"exit_code": n}``: everything the code printed is in the pipes before the answer is sent.
"""

import ast
import io
import json
import linecache
import os
import signal
import socket
import sys
import traceback
import types
from typing import Any

KEEP_SOURCES = 200  # cells whose source stays in linecache, for tracebacks
HIDDEN_FILES = {__file__, ast.parse.__code__.co_filename}  # frames not shown in tracebacks


class Kernel:
    def __init__(self) -> None:
        main = types.ModuleType("__main__")  # pickle and multiprocessing look classes up here
        sys.modules["__main__"] = main
        self.globals: dict[str, Any] = main.__dict__
        self.count = 0
        self.running = False
        self.cwd = ""

    def on_sigint(self, _signum: int, _frame: Any) -> None:
        # An interrupt that arrives between two runs must not hit the kernel's own code.
        if self.running:
            raise KeyboardInterrupt

    def prepare(self, cwd: str, env: dict[str, str]) -> None:
        os.environ.update(env)
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


def raise_oom_score() -> None:
    """Make the OOM killer prefer this process over the server (raising it needs no privilege)."""
    try:
        fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
        try:
            os.write(fd, b"500")
        finally:
            os.close(fd)
    except OSError:
        pass


def main() -> None:
    fd = int(sys.argv[1])
    os.set_inheritable(fd, False)  # the code's own subprocesses must not hold the control socket
    control = socket.socket(fileno=fd)
    requests = control.makefile("rb")
    raise_oom_score()
    for stream in (sys.stdout, sys.stderr):  # as on a terminal: one write per line, not per call
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(line_buffering=True, write_through=False)
    sys.path[0] = ""  # imports from the working directory, not from the executor's own directory
    kernel = Kernel()
    signal.signal(signal.SIGINT, kernel.on_sigint)
    while True:
        try:
            line = requests.readline()
        except KeyboardInterrupt:
            continue
        if not line:
            return  # the server is gone
        req = json.loads(line)
        try:
            kernel.prepare(req["cwd"], req["env"])
        except OSError as exc:
            sys.stderr.write(f"cannot change to {req['cwd']}: {exc.strerror}\n")
        code = kernel.run(req["code"])
        flush()
        control.sendall(json.dumps({"exit_code": code}).encode() + b"\n")


if __name__ == "__main__":
    main()

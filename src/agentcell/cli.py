"""The ``agentcell`` command line.

One argparse tree; each command group adds its parsers in an ``_add_<group>`` function and
sets a handler ``(args, settings) -> exit code``. Expected errors (``AgentcellError``) print
their message and hint on stderr and exit 1; progress goes to stderr, results to stdout.
``serve`` runs the server; the commands that talk to one (users, exec, files, cell, audit) are
thin over ``agentcell.client.Client`` and reach it over HTTP only (``AGENTCELL_URL``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import typing
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
import pydantic
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from agentcell import __version__
from agentcell.api.auth import admin_token_path
from agentcell.api.schemas import CellPublic
from agentcell.client import Client, ExitEvent, StderrEvent, StdoutEvent
from agentcell.config import ClientSettings, ImageProfile, Settings
from agentcell.errors import AgentcellError, DockerUnavailable, InvalidRequest
from agentcell.sandbox.base import ProgressEvent, ProgressHook

Handler = Callable[[argparse.Namespace, Settings], int]
PROFILES: tuple[str, ...] = typing.get_args(ImageProfile)
MESSAGE_WIDTH = 90


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return handler(args, Settings.model_validate({}))
    except AgentcellError as e:
        return _error(e.message, e.hint)
    except httpx.InvalidURL as e:
        return _error(f"invalid server URL: {e}", "set AGENTCELL_URL to http://HOST:PORT")
    except httpx.HTTPError as e:  # the client translates these; a last guard, no traceback
        return _error(f"{type(e).__name__}: {e}", "")
    except pydantic.ValidationError as e:
        return _error(f"invalid setting: {e}", "check the AGENTCELL_* environment variables")
    except KeyboardInterrupt:
        Console(stderr=True).print("[yellow]interrupted[/]")
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentcell", description="Self-hosted agents, each user in a private sandbox."
    )
    parser.add_argument(
        "--url", help="server to talk to (default: AGENTCELL_URL, else http://127.0.0.1:8000)"
    )
    groups = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_serve(groups)
    _add_users(groups)
    _add_exec(groups)
    _add_files(groups)
    _add_cell(groups)
    _add_audit(groups)
    _add_image(groups)
    return parser


def _error(message: str, hint: str) -> int:
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    err.print(f"[bold red]error:[/] {escape(message)}")
    if hint:
        err.print(f"[yellow]hint:[/] {escape(hint)}")
    return 1


def _out() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _print_table(table: Table) -> None:
    console = Console()
    (console if console.is_terminal else Console(width=200)).print(table)


def _group(
    groups: argparse._SubParsersAction[Any], name: str, summary: str
) -> argparse._SubParsersAction[Any]:
    """A command group (``agentcell NAME ...``) that prints its usage when called bare."""
    parser = groups.add_parser(name, help=summary)
    parser.set_defaults(handler=lambda _args, _settings: _usage(parser))
    cmds: argparse._SubParsersAction[Any] = parser.add_subparsers(
        title=f"{name} commands", metavar="COMMAND"
    )
    return cmds


# --- agentcell serve ----------------------------------------------------------------------------


def _add_serve(groups: argparse._SubParsersAction[Any]) -> None:
    serve = groups.add_parser("serve", help="run the server (API v1)")
    serve.add_argument("--host", help="address to listen on (default: AGENTCELL_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: AGENTCELL_PORT, 8000)")
    serve.add_argument("--data-dir", type=Path, help="default: AGENTCELL_DATA_DIR")
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace, _settings: Settings) -> int:
    import uvicorn

    from agentcell.api.app import create_app
    from agentcell.api.auth import ensure_admin_token

    given = {"host": args.host, "port": args.port, "data_dir": args.data_dir}
    settings = Settings.model_validate({k: v for k, v in given.items() if v is not None})
    token, created = ensure_admin_token(settings)
    _first_screen(settings, token, created)
    logging.basicConfig(level=logging.INFO, format="%(levelname)-9s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")
    return 0


def _first_screen(settings: Settings, token: str, created: bool) -> None:
    host = "127.0.0.1" if settings.host in ("", "0.0.0.0", "::") else settings.host
    url = f"http://{f'[{host}]' if ':' in host else host}:{settings.port}"
    out = _out()
    out.print(f"[bold]agentcell {__version__}[/] on [bold cyan]{escape(url)}[/]")
    out.print(f"data dir     {escape(str(settings.data_dir))}")
    steps = []
    if settings.admin_token:
        out.print("admin token  from AGENTCELL_ADMIN_TOKEN")
    else:
        path = admin_token_path(settings)
        out.print(f"admin token  in {escape(path)} (mode 0600)")
        if created:
            out.print(f"             new, shown this once: [bold]{escape(token)}[/]")
        value = token if created else f"$(cat {path})"
        steps.append(f"export AGENTCELL_ADMIN_TOKEN={value}")
    if url != ClientSettings.model_fields["url"].default:
        steps.append(f"export AGENTCELL_URL={url}")
    steps += [
        "agentcell users add alice",
        "export AGENTCELL_API_KEY=<the key it prints>",
        "agentcell exec 'print(6*7)'",
    ]
    out.print("\nnext, in another terminal:")
    for step in steps:
        out.print(f"  {escape(step)}")
    out.print()


# --- client commands: users, exec, files, cell, audit -------------------------------------------


def _client(args: argparse.Namespace, settings: Settings, *, admin: bool = False) -> Client:
    """A client from ClientSettings; admin commands fall back to the data dir's admin token."""
    client_settings = ClientSettings()
    if not admin:
        return Client(args.url, settings=client_settings)
    token = client_settings.admin_token
    if not token:
        try:
            token = Path(admin_token_path(settings)).read_text().strip()
        except OSError:
            token = ""
    return Client(args.url, api_key="", admin_token=token, settings=client_settings)


def _add_users(groups: argparse._SubParsersAction[Any]) -> None:
    cmds = _group(groups, "users", "add, list and remove users (admin token)")
    add = cmds.add_parser("add", help="add a user; prints their API key, once")
    add.add_argument("name")
    add.set_defaults(handler=_users_add)
    ls = cmds.add_parser("list", aliases=["ls"], help="list users")
    ls.set_defaults(handler=_users_list)
    rm = cmds.add_parser("rm", help="remove a user and their cell (their workspace is kept)")
    rm.add_argument("user_id", metavar="ID")
    rm.add_argument("--delete-workspace", action="store_true", help="delete their files too")
    rm.set_defaults(handler=_users_rm)


def _users_add(args: argparse.Namespace, settings: Settings) -> int:
    with _client(args, settings, admin=True) as client:
        user = client.users_add(args.name)
    out = _out()
    out.print(f"user {escape(user.name)} created, id {escape(user.id)}")
    out.print(f"API key (shown only now): [bold]{escape(user.api_key)}[/]")
    out.print(f"  export AGENTCELL_API_KEY={escape(user.api_key)}")
    return 0


def _users_list(args: argparse.Namespace, settings: Settings) -> int:
    with _client(args, settings, admin=True) as client:
        users = client.users_list()
    table = Table(box=None, header_style="bold")
    for column in ("ID", "NAME", "KEY", "CREATED"):
        table.add_column(column, no_wrap=True)
    for user in users:
        key = f"{user.key_prefix}…" if user.key_prefix else ""
        table.add_row(user.id, user.name, key, _when(user.created_at))
    _print_table(table)
    return 0


def _users_rm(args: argparse.Namespace, settings: Settings) -> int:
    with _client(args, settings, admin=True) as client:
        client.users_rm(args.user_id, delete_workspace=args.delete_workspace)
    kept = "workspace deleted" if args.delete_workspace else "workspace kept"
    _out().print(f"user {escape(args.user_id)} removed ({kept})")
    return 0


def _add_exec(groups: argparse._SubParsersAction[Any]) -> None:
    p = groups.add_parser(
        "exec", help="run code in your cell: output streams live, exit code is the code's"
    )
    p.add_argument("code", metavar="CODE", help="python code (a command with --shell); - = stdin")
    p.add_argument("--shell", action="store_true", help="run CODE with bash")
    p.add_argument("--timeout", type=float, metavar="S", help="seconds (default: the server's)")
    p.add_argument(
        "--context", default="default", metavar="NAME", help="python context; variables persist"
    )
    p.set_defaults(handler=_exec)


def _exec(args: argparse.Namespace, settings: Settings) -> int:
    code = sys.stdin.read() if args.code == "-" else args.code
    language = "shell" if args.shell else "python"
    done: ExitEvent | None = None
    with _client(args, settings) as client:
        for event in client.exec_stream(code, language, args.timeout, args.context):
            if isinstance(event, StdoutEvent | StderrEvent):
                stream = sys.stdout if isinstance(event, StdoutEvent) else sys.stderr
                stream.write(event.data)
                stream.flush()
            else:
                done = event
    assert done is not None  # exec_stream ends with an ExitEvent, or raises
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    if done.timed_out:
        err.print(f"[yellow]timed out[/] after {done.duration_ms / 1000:.1f} s")
    if done.truncated:
        err.print("[yellow]output truncated[/]: more than the server's output limit")
    code_ = done.exit_code
    return code_ if 0 <= code_ <= 255 else 128 - code_ if code_ < 0 else 1


def _add_files(groups: argparse._SubParsersAction[Any]) -> None:
    cmds = _group(groups, "files", "list, get, put, remove and zip files of your workspace")
    ls = cmds.add_parser("ls", help="list a folder")
    ls.add_argument("path", nargs="?", default=".", metavar="PATH")
    ls.set_defaults(handler=_files_ls)
    get = cmds.add_parser("get", help="download a file")
    get.add_argument("path", metavar="PATH")
    get.add_argument("dest", nargs="?", metavar="DEST", help="file or folder; - = stdout")
    get.set_defaults(handler=_files_get)
    put = cmds.add_parser("put", help="upload a file (parent folders are created)")
    put.add_argument("src", metavar="SRC", help="a local file; - = stdin")
    put.add_argument("path", nargs="?", metavar="PATH", help="default: the name of SRC")
    put.set_defaults(handler=_files_put)
    rm = cmds.add_parser("rm", help="delete a file, or a folder with -r")
    rm.add_argument("path", metavar="PATH")
    rm.add_argument("-r", "--recursive", action="store_true", help="delete a folder and its files")
    rm.set_defaults(handler=_files_rm)
    zip_ = cmds.add_parser("zip", help="download a folder as a ZIP")
    zip_.add_argument("path", nargs="?", default=".", metavar="PATH")
    zip_.add_argument("dest", nargs="?", metavar="DEST", help="default: NAME.zip; - = stdout")
    zip_.set_defaults(handler=_files_zip)


def _files_ls(args: argparse.Namespace, settings: Settings) -> int:
    with _client(args, settings) as client:
        listing = client.files_list(args.path)
    table = Table(box=None, header_style="bold")
    table.add_column("TYPE")
    table.add_column("SIZE", justify="right")
    table.add_column("MODIFIED", no_wrap=True)
    table.add_column("NAME", no_wrap=True)
    for e in sorted(listing.entries, key=lambda e: (e.type != "dir", e.name)):
        name = f"{e.name}/" if e.type == "dir" else e.name
        table.add_row(e.type, f"{e.size:,}", _when(e.modified_at), escape(name))
    _print_table(table)
    return 0


def _download(args: argparse.Namespace, settings: Settings, fetch: str, default_name: str) -> int:
    with _client(args, settings) as client:
        save = client.files_zip if fetch == "zip" else client.files_download
        if args.dest == "-":
            sys.stdout.flush()
            save(args.path, sys.stdout.buffer)
            sys.stdout.buffer.flush()
            return 0
        dest = Path(args.dest or default_name)
        if dest.is_dir():
            dest = dest / default_name
        size = save(args.path, dest)
    _out().print(f"{escape(str(dest))} ({size:,} bytes)")
    return 0


def _files_get(args: argparse.Namespace, settings: Settings) -> int:
    return _download(args, settings, "raw", PurePosixPath(args.path).name or "download")


def _files_zip(args: argparse.Namespace, settings: Settings) -> int:
    name = PurePosixPath(args.path).name
    return _download(args, settings, "zip", f"{name or 'workspace'}.zip")


def _files_put(args: argparse.Namespace, settings: Settings) -> int:
    if args.src == "-":
        if not args.path:
            raise InvalidRequest("files put - needs a PATH", hint="agentcell files put - notes.txt")
        data: Any = sys.stdin.buffer
        target = args.path
    else:
        data = Path(args.src)
        if not data.is_file():
            raise InvalidRequest(
                f"{args.src} is not a file", hint="files put uploads one file; zip a folder first"
            )
        target = args.path or data.name
        target += data.name if target.endswith("/") else ""
    with _client(args, settings) as client:
        written = client.files_put(target, data)
    _out().print(f"{escape(written.path)} ({written.size:,} bytes)")
    return 0


def _files_rm(args: argparse.Namespace, settings: Settings) -> int:
    with _client(args, settings) as client:
        client.files_rm(args.path, recursive=args.recursive)
    _out().print(f"removed {escape(args.path)}")
    return 0


def _add_cell(groups: argparse._SubParsersAction[Any]) -> None:
    cmds = _group(groups, "cell", "your cell: status, restart, remove")
    cmds.add_parser("status", help="state, image, limits").set_defaults(handler=_cell_status)
    cmds.add_parser("restart", help="restart it (python contexts are lost)").set_defaults(
        handler=_cell_restart
    )
    cmds.add_parser("rm", help="remove the container; the workspace is kept").set_defaults(
        handler=_cell_rm
    )


def _cell_status(args: argparse.Namespace, settings: Settings) -> int:
    with _client(args, settings) as client:
        _print_cell(client.cell())
    return 0


def _cell_restart(args: argparse.Namespace, settings: Settings) -> int:
    with _client(args, settings) as client:
        _print_cell(client.cell_restart())
    return 0


def _cell_rm(args: argparse.Namespace, settings: Settings) -> int:
    with _client(args, settings) as client:
        client.cell_delete()
    _out().print("cell removed; the workspace is kept")
    return 0


def _print_cell(cell: CellPublic) -> None:
    lim = cell.limits
    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for name, value in (
        ("state", cell.state),
        ("image", cell.image),
        ("network", cell.network),
        ("memory", f"{lim.memory_mb} MB"),
        ("cpus", f"{lim.cpus:g}"),
        ("pids", str(lim.pids)),
        ("/tmp", f"{lim.tmp_mb} MB"),
        ("workspace", f"{lim.workspace_mb} MB" if lim.workspace_mb else "no quota"),
        ("created", _when(cell.created_at)),
        ("last active", _when(cell.last_active_at)),
    ):
        table.add_row(name, escape(value))
    _print_table(table)


def _add_audit(groups: argparse._SubParsersAction[Any]) -> None:
    audit = groups.add_parser("audit", help="what was done, newest first (admin: everyone's)")
    audit.add_argument("--limit", type=int, default=20, help="events per page (default: 20)")
    audit.add_argument("--before", type=int, metavar="ID", help="events older than this id")
    audit.set_defaults(handler=_audit)


def _audit(args: argparse.Namespace, settings: Settings) -> int:
    with _client(args, settings) as client:
        page = client.audit(args.limit, args.before)
    several = len({e.user_id for e in page.events}) > 1
    table = Table(box=None, header_style="bold")
    for column in ("ID", "AT", *(("USER",) if several else ()), "ACTION", "TARGET", "OK"):
        table.add_column(column, no_wrap=True)
    table.add_column("EXIT", justify="right")
    table.add_column("MS", justify="right")
    table.add_column("DETAIL", no_wrap=True, max_width=60)
    for e in page.events:
        detail = e.detail.splitlines()[0] if e.detail else ""
        row = [str(e.id), _when(e.at), *((e.user_id,) if several else ())]
        row += [e.action, e.target, "✓" if e.ok else "✗"]
        row += ["" if e.exit_code is None else str(e.exit_code)]
        row += ["" if e.duration_ms is None else f"{e.duration_ms:.0f}", detail]
        table.add_row(*map(escape, row))
    _print_table(table)
    if page.next_before:
        Console(stderr=True).print(f"[dim]older: agentcell audit --before {page.next_before}[/]")
    return 0


def _when(at: Any) -> str:
    return at.astimezone().strftime("%Y-%m-%d %H:%M:%S") if at else ""


# --- agentcell image ... -----------------------------------------------------------------------


def _add_image(groups: argparse._SubParsersAction[Any]) -> None:
    image = groups.add_parser("image", help="build and list sandbox images")
    image.set_defaults(handler=lambda _args, _settings: _usage(image))
    cmds = image.add_subparsers(title="image commands", metavar="COMMAND")

    build = cmds.add_parser("build", help="build a sandbox image (skipped when up to date)")
    build.add_argument("--profile", choices=PROFILES, help="default: AGENTCELL_IMAGE_PROFILE")
    build.add_argument("--force", action="store_true", help="rebuild all, root fs included")
    build.add_argument(
        "--base",
        choices=("auto", "stock", "debootstrap"),
        default="auto",
        help="stock debian:bookworm-slim + apt, or a debootstrap root fs (root only); "
        "auto: stock when present or pullable",
    )
    build.add_argument("--mirror", help="Debian archive for debootstrap (default: apt sources)")
    build.add_argument("--cache-dir", type=Path, help="where root fs tarballs are kept")
    build.set_defaults(handler=_image_build)

    ls = cmds.add_parser("ls", help="list agentcell images")
    ls.set_defaults(handler=_image_ls)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


@contextmanager
def _docker(settings: Settings) -> Iterator[Any]:
    import docker
    import docker.errors

    try:
        if settings.docker_host:
            client = docker.DockerClient(base_url=settings.docker_host)
        else:
            client = docker.from_env()
    except docker.errors.DockerException as e:
        raise DockerUnavailable(f"cannot reach the Docker engine: {e}") from e
    try:
        try:
            client.ping()
        except (docker.errors.DockerException, OSError) as e:
            raise DockerUnavailable(f"cannot reach the Docker engine: {e}") from e
        yield client
    finally:
        client.close()


def _image_build(args: argparse.Namespace, settings: Settings) -> int:
    from agentcell.sandbox.docker.images import ensure_image

    profile = args.profile or settings.image_profile
    mirror = args.mirror or settings.debian_mirror or None
    with _docker(settings) as client, progress_view() as hook:
        tag = ensure_image(
            client,
            profile,
            hook,
            force=args.force,
            base=args.base,
            mirror=mirror,
            cache_dir=args.cache_dir,
        )
    print(tag)
    return 0


def _image_ls(_args: argparse.Namespace, settings: Settings) -> int:
    from agentcell.sandbox.docker.images import list_images

    with _docker(settings) as client:
        images = list_images(client)
    table = Table(box=None, header_style="bold")
    table.add_column("PROFILE")
    table.add_column("TAG", no_wrap=True)
    table.add_column("SIZE", justify="right")
    table.add_column("CREATED")
    for image in images:
        created = image.created.replace("T", " ")[:16]
        table.add_row(image.profile, image.tag, f"{image.size / 1e6:,.0f} MB", created)
    _print_table(table)
    return 0


# --- progress rendering ------------------------------------------------------------------------


@contextmanager
def progress_view(console: Console | None = None) -> Iterator[ProgressHook]:
    """A ProgressHook that renders on stderr: on a terminal, a live line per step (spinner,
    bar and count when the total is known, elapsed time, last message) and a check mark when
    the step ends; otherwise one plain line per event (logs, CI)."""
    console = console or Console(stderr=True)
    if not console.is_terminal:
        yield lambda e: console.print(
            f"{e.step}: {e.message}", markup=False, highlight=False, soft_wrap=True
        )
        return
    columns = (
        SpinnerColumn(),
        TextColumn("[bold cyan]{task.fields[step]:<12}"),
        BarColumn(bar_width=20),
        TextColumn("{task.fields[count]:>7}"),
        TimeElapsedColumn(),
        TextColumn("{task.description}", markup=False),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        view = _StepView(bar, console)
        yield view.update
        view.finish()


class _StepView:
    """One live task per step; a finished step leaves a check mark and its duration."""

    def __init__(self, bar: Progress, console: Console) -> None:
        self.bar, self.console = bar, console
        self.step: str | None = None
        self.task: TaskID | None = None
        self.started = 0.0
        self.message = ""

    def update(self, event: ProgressEvent) -> None:
        if event.step != self.step:
            self.finish()
            self.step, self.started = event.step, time.monotonic()
            self.task = self.bar.add_task("", total=None, step=event.step, count="")
        assert self.task is not None
        self.message = " ".join(event.message.split())[:MESSAGE_WIDTH]
        count = f"{event.done}/{event.total}" if event.total else ""
        self.bar.update(self.task, description=self.message, completed=event.done or 0, count=count)
        if event.total:
            self.bar.update(self.task, total=event.total)

    def finish(self) -> None:
        if self.task is None or self.step is None:
            return
        self.bar.remove_task(self.task)
        if self.step != "done":
            took = f"{time.monotonic() - self.started:.0f} s"
            note = self.message if self.step == "cached" else took
            self.console.print(f"[green]✓[/] {escape(self.step)} [dim]{escape(note)}[/]")
        self.task = self.step = None

"""The ``agentcell`` command line.

One argparse tree; each command group adds its parsers in an ``_add_<group>`` function and
sets a handler ``(args, settings) -> exit code``. Expected errors (``AgentcellError``) print
their message and hint on stderr and exit 1; progress goes to stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import time
import typing
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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

from agentcell.config import ImageProfile, Settings
from agentcell.errors import AgentcellError, DockerUnavailable
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
        err = Console(stderr=True)
        err.print(f"[bold red]error:[/] {escape(e.message)}", highlight=False)
        if e.hint:
            err.print(f"[yellow]hint:[/] {escape(e.hint)}", highlight=False)
        return 1
    except KeyboardInterrupt:
        Console(stderr=True).print("[yellow]interrupted[/]")
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentcell", description="Self-hosted agents, each user in a private sandbox."
    )
    groups = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_image(groups)
    return parser


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
    console = Console()
    (console if console.is_terminal else Console(width=200)).print(table)
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

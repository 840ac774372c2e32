"""``agentcell image build|ls|prune``: sandbox images on the local Docker engine."""

from __future__ import annotations

import argparse
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.table import Table

from agentcell.cli._common import Commands, group
from agentcell.cli._output import print_table, progress_view
from agentcell.config import ImageProfile, Settings
from agentcell.errors import DockerUnavailable

PROFILES: tuple[str, ...] = typing.get_args(ImageProfile)


def add_image(groups: Commands) -> None:
    cmds = group(groups, "image", "build and list sandbox images")
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

    prune = cmds.add_parser(
        "prune", help="remove old sandbox and base images that no container uses"
    )
    prune.add_argument("--dry-run", action="store_true", help="list them, remove nothing")
    prune.set_defaults(handler=_image_prune)


@contextmanager
def _docker(settings: Settings) -> Iterator[Any]:
    import docker

    from agentcell.sandbox.docker.errors import translated

    with translated("connect to the engine"):
        if settings.docker_host:
            client = docker.DockerClient(base_url=settings.docker_host)
        else:
            client = docker.from_env()
    try:
        with translated("ping the engine", DockerUnavailable):
            client.ping()
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
    print_table(table)
    return 0


def _image_prune(args: argparse.Namespace, settings: Settings) -> int:
    from agentcell.sandbox.docker.prune import prune_images

    with _docker(settings) as client:
        keep = {settings.image} if settings.image else set()
        pruned = prune_images(client, keep=keep, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for p in pruned:
        print(f"{verb} {p.image_id[7:19]} {' '.join(p.tags) or '<dangling>'}")
    total = sum(p.size for p in pruned) / 1e6
    print(f"{verb} {len(pruned)} images, {total:,.0f} MB")
    return 0

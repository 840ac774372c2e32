"""``prune_images``: remove our old sandbox and base images (a rebuild leaves the previous
ones behind, dangling: gigabytes), keeping every image that is current for a profile, that a
container uses (running or not), that the caller names, or that a kept image is built on."""

from __future__ import annotations

from dataclasses import dataclass

import docker
import docker.errors

from agentcell.sandbox.docker.errors import translated
from agentcell.sandbox.docker.images import (
    LABEL_PROFILE,
    base_tag,
    image_tag,
)
from agentcell.sandbox.docker.profiles import load_profile, profile_names


@dataclass(frozen=True)
class Pruned:
    image_id: str
    tags: tuple[str, ...]
    size: int


def current_tags() -> set[str]:
    """The tags this agentcell builds now, for every profile (sandbox and base)."""
    return {image_tag(p) for p in profile_names()} | {
        base_tag(load_profile(p)) for p in profile_names()
    }


def prune_images(
    client: docker.DockerClient,
    *,
    keep: set[str] | frozenset[str] = frozenset(),
    dry_run: bool = False,
    label: str | None = None,
) -> list[Pruned]:
    """Remove our images that nothing needs; ``keep``: more tags or ids to keep (e.g. the
    configured ``AGENTCELL_IMAGE``); ``label``: only images that also carry this label."""
    kept_refs = current_tags() | set(keep)
    with translated("list images"):
        filters = {"label": [LABEL_PROFILE, *([label] if label else [])]}
        ours = client.images.list(filters=filters)
        used = {c.attrs.get("Image", "") for c in client.containers.list(all=True)}
    removed: list[Pruned] = []
    for image in ours:
        refs = {image.id, image.short_id, *image.tags}
        if refs & kept_refs or image.id in used:
            continue
        if not dry_run and not _remove(client, image.id):
            continue
        removed.append(Pruned(image.id, tuple(image.tags), int(image.attrs.get("Size", 0))))
    return removed


def _remove(client: docker.DockerClient, image_id: str) -> bool:
    """Whether the image went; one still needed (a parent of a kept image, or used meanwhile)
    stays, and that is no error."""
    with translated(f"remove image {image_id}"):
        try:
            client.images.remove(image_id, noprune=False)
        except docker.errors.APIError as e:
            if e.status_code == 409:
                return False
            raise
    return True

"""Sandbox images, built without a registry when there is none.

The recipe is ``image/Dockerfile``, a profile (``image/profiles/<name>.toml``: Debian packages
and pip requirements) and the executor files copied in. The tag carries a hash of all of it,
so an unchanged recipe is never rebuilt. The base is a stock ``debian:bookworm-slim`` when
Docker has it or can pull it (the Dockerfile then installs the Debian packages with apt);
otherwise a root fs made on the host by ``debootstrap --include=<packages>``, cached as a
tarball keyed by its package list and imported as ``agentcell-base:<profile>-<hash>``. Wheels
are always downloaded by the host's pip and installed offline, so a cell never needs the
network or a CA bundle it does not have.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import re
import sys
import tempfile
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import docker
import docker.errors

from agentcell.errors import ImageBuildFailed
from agentcell.executor.protocol import CONTROL_DIR, SOCKET_NAME, WORKSPACE
from agentcell.progress import ProgressEvent, ProgressHook, no_progress
from agentcell.sandbox.base import CELL_UID
from agentcell.sandbox.docker.errors import translated
from agentcell.sandbox.docker.profiles import Profile, load_profile
from agentcell.sandbox.docker.rootfs import (
    ROOTFS_RECIPE,
    STOCK_BASE,
    TAIL_LINES,
    host_arch,
    make_rootfs,
    run_streaming,
)

DATA_DIR = Path(__file__).parent / "image"
DOCKERFILE = DATA_DIR / "Dockerfile"
EXECUTOR_DIR = Path(__file__).resolve().parents[2] / "executor"
HOST_ONLY_EXECUTOR_FILES = frozenset({"client.py"})  # the host's side: never in the image
# The image's CMD (the Dockerfile gets it from here) and, with more flags, what a cell runs.
EXECUTOR_COMMAND = (
    "python3", "-m", "executor.server",
    "--socket", f"{CONTROL_DIR}/{SOCKET_NAME}", "--workspace", WORKSPACE,
)  # fmt: skip


def executor_files() -> tuple[str, ...]:
    """The executor modules the image gets: every ``executor/*.py`` but the host-only ones."""
    names = (path.name for path in EXECUTOR_DIR.glob("*.py"))
    return tuple(sorted(n for n in names if n not in HOST_ONLY_EXECUTOR_FILES))


EXECUTOR_FILES = executor_files()  # as of import; every recipe looks again
REPOSITORY = "agentcell-sandbox"
BASE_REPOSITORY = "agentcell-base"
LABEL_PROFILE = "agentcell.image.profile"
LABEL_INPUTS = "agentcell.image.inputs"
LABEL_KIND = "agentcell.image.kind"
PYTHON_VERSION = "3.11"  # Debian 12's python3: the wheels must match it
PULL_TIMEOUT_S = 20

BaseChoice = Literal["auto", "stock", "debootstrap"]


@dataclass(frozen=True)
class ImageInfo:
    tag: str
    kind: str  # "sandbox" or "base"
    profile: str
    image_id: str
    size: int  # bytes
    created: str  # ISO 8601, as Docker reports it


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "agentcell" / "images"


def _digest(parts: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for name in sorted(parts):
        h.update(f"{name}\0{len(parts[name])}\0".encode())
        h.update(parts[name])
    return h.hexdigest()[:12]


def _recipe(profile: Profile) -> dict[str, bytes]:
    """Every input of the image, by its path in the build context (read once: what we hash
    is what we build, even while someone edits the executor)."""
    spec = {"profile": dataclasses.asdict(profile), "python": PYTHON_VERSION, "uid": CELL_UID}
    files = {
        "Dockerfile": DOCKERFILE.read_bytes() + f"CMD {json.dumps(EXECUTOR_COMMAND)}\n".encode(),
        "profile.json": json.dumps(spec, sort_keys=True).encode(),
    }
    for name in executor_files():
        with contextlib.suppress(FileNotFoundError):
            files[f"executor/{name}"] = (EXECUTOR_DIR / name).read_bytes()
    return files


def image_tag(profile: str) -> str:
    """``agentcell-sandbox:<profile>-<hash12>`` for the recipe as it is now."""
    return f"{REPOSITORY}:{profile}-{_digest(_recipe(load_profile(profile)))}"


def base_tag(profile: Profile) -> str:
    """The imported root fs depends on its package list and the root fs recipe only."""
    parts = {
        "debian": "\n".join(sorted(profile.debian)).encode(),
        "drop": "\n".join(sorted(profile.drop)).encode(),
        "recipe": ROOTFS_RECIPE,
    }
    return f"{BASE_REPOSITORY}:{profile.name}-{_digest(parts)}"


def _docker_errors(action: str) -> contextlib.AbstractContextManager[None]:
    """Image work the engine refuses is a failed build."""
    return translated(action, ImageBuildFailed, hint="see the Docker daemon's message above")


def _image_exists(client: docker.DockerClient, ref: str) -> bool:
    with _docker_errors(f"inspect {ref}"):
        try:
            client.images.get(ref)
        except docker.errors.ImageNotFound:
            return False
    return True


def ensure_image(
    client: docker.DockerClient,
    profile: str,
    progress: ProgressHook = no_progress,
    *,
    force: bool = False,
    base: BaseChoice = "auto",
    mirror: str | None = None,
    cache_dir: Path | None = None,
) -> str:
    """The tag of the profile's image, built first only when it is missing (or ``force``)."""
    tag = image_tag(profile)
    if not force and _image_exists(client, tag):
        progress(ProgressEvent("cached", f"{tag} is up to date"))
        return tag
    return build_image(
        client, profile, progress, force=force, base=base, mirror=mirror, cache_dir=cache_dir
    )


def build_image(
    client: docker.DockerClient,
    profile: str,
    progress: ProgressHook = no_progress,
    *,
    force: bool = False,
    base: BaseChoice = "auto",
    mirror: str | None = None,
    cache_dir: Path | None = None,
) -> str:
    """Build the profile's image; ``force`` also remakes the root fs and skips Docker's cache.

    ``base``: ``stock`` needs debian:bookworm-slim (present or pullable) and apt in the build;
    ``debootstrap`` makes the root fs on the host (root only); ``auto`` tries them in order.
    ``mirror``: Debian archive for debootstrap; default: the host's apt sources.
    """
    prof = load_profile(profile)
    files = _recipe(prof)
    tag = f"{REPOSITORY}:{profile}-{_digest(files)}"
    cache = cache_dir or default_cache_dir()
    with _build_lock(cache / f"{profile}.lock", progress):
        if not force and _image_exists(client, tag):  # another process built it meanwhile
            progress(ProgressEvent("cached", f"{tag} is up to date"))
            return tag
        base_ref, apt_args = _choose_base(client, prof, progress, base, force, mirror, cache)
        with tempfile.TemporaryDirectory(prefix="agentcell-build-") as tmp:
            ctx = Path(tmp)
            _write_context(ctx, files)
            _download_wheels(prof, ctx / "wheels", progress)
            args = {"BASE_IMAGE": base_ref, "CELL_UID": str(CELL_UID), **apt_args}
            labels = {LABEL_KIND: "sandbox", LABEL_PROFILE: profile, LABEL_INPUTS: _digest(files)}
            _docker_build(client, ctx, tag, args, labels, progress, nocache=force)
    progress(ProgressEvent("done", tag))
    return tag


@contextlib.contextmanager
def _build_lock(path: Path, progress: ProgressHook) -> Iterator[None]:
    """One build per profile at a time on this machine (CLI, server and tests may race)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(ProgressEvent("wait", f"another build holds {path}; waiting for it"))
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _write_context(ctx: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (ctx / name).parent.mkdir(parents=True, exist_ok=True)
        (ctx / name).write_bytes(data)
    (ctx / "wheels").mkdir(exist_ok=True)
    (ctx / "wheels" / ".keep").touch()


def _choose_base(
    client: docker.DockerClient,
    prof: Profile,
    progress: ProgressHook,
    base: BaseChoice,
    force: bool,
    mirror: str | None,
    cache: Path,
) -> tuple[str, dict[str, str]]:
    """(base image, build args for the Debian packages still to install with apt)."""
    if base != "debootstrap" and _stock_base_available(client, progress):
        return STOCK_BASE, {
            "DEBIAN_PACKAGES": " ".join(prof.debian),
            "DEBIAN_DROP": " ".join(prof.drop),
        }
    if base == "stock":
        raise ImageBuildFailed(
            f"{STOCK_BASE} is neither present nor pullable",
            hint=f"docker pull {STOCK_BASE}, or docker load it from a saved copy, "
            "or build with --base debootstrap",
        )
    return _rootfs_base(client, prof, progress, force, mirror, cache), {}


def _stock_base_available(
    client: docker.DockerClient, progress: ProgressHook, ref: str = STOCK_BASE
) -> bool:
    """Whether the stock base is here, or could be pulled. Progress shows a "pull" step only
    for what Docker really pulls; trying a registry that does not answer is the "base" step's."""
    if _image_exists(client, ref):
        return True
    progress(ProgressEvent("base", f"trying to pull {ref}"))
    repo, _, tag = ref.rpartition(":")
    saved = client.api.timeout
    client.api.timeout = PULL_TIMEOUT_S  # per read: a blackholed registry fails fast
    try:
        for event in client.api.pull(repo, tag=tag, stream=True, decode=True):
            if "error" in event:
                raise docker.errors.APIError(event["error"])
            step = "pull" if event.get("id") else "base"  # layer events: a real download
            progress(ProgressEvent(step, f"{event.get('id', '')} {event.get('status', '')}"))
    except (docker.errors.DockerException, OSError) as e:
        reason = getattr(e, "explanation", None) or e
        progress(ProgressEvent("base", f"cannot pull {ref} ({reason}); using debootstrap"))
        return False
    finally:
        client.api.timeout = saved
    return True


def _rootfs_base(
    client: docker.DockerClient,
    prof: Profile,
    progress: ProgressHook,
    force: bool,
    mirror: str | None,
    cache: Path,
) -> str:
    tag = base_tag(prof)
    if not force and _image_exists(client, tag):
        progress(ProgressEvent("base", f"{tag} is up to date"))
        return tag
    tarball = cache / "rootfs" / f"{tag.replace(':', '-')}.tar"
    if force or not tarball.is_file():
        make_rootfs(prof, tarball, progress, mirror=mirror)
        for stale in tarball.parent.glob(f"{BASE_REPOSITORY}-{prof.name}-*.tar"):
            if stale != tarball:  # an older package list of this profile
                stale.unlink(missing_ok=True)
    else:
        progress(ProgressEvent("base", f"reusing cached root fs {tarball}"))
    _import(client, tarball, tag, prof.name, progress)
    return tag


def _import(
    client: docker.DockerClient, tarball: Path, tag: str, profile: str, progress: ProgressHook
) -> None:
    repo, name = tag.split(":")
    size_mb = tarball.stat().st_size / 2**20
    progress(ProgressEvent("import", f"docker import {tarball.name} ({size_mb:.0f} MiB) as {tag}"))
    changes = [
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        f"LABEL {LABEL_KIND}=base {LABEL_PROFILE}={profile}",
        'CMD ["bash"]',
    ]
    with _docker_errors(f"import {tarball}"):
        client.api.import_image_from_file(str(tarball), repository=repo, tag=name, changes=changes)
    progress(ProgressEvent("import", f"imported {tag}"))


def _pip_platforms() -> list[str]:
    """manylinux tags a wheel may carry to run on Debian 12 (glibc 2.36) on this machine."""
    arch = host_arch()
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(36, 16, -1)]
    tags.append(f"manylinux2014_{arch}")
    if arch == "x86_64":
        tags += ["manylinux2010_x86_64", "manylinux1_x86_64"]
    return tags


def _download_wheels(prof: Profile, dest: Path, progress: ProgressHook) -> None:
    if not prof.pip:
        return
    py = PYTHON_VERSION.replace(".", "")
    cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-input"]
    cmd += ["--only-binary=:all:", "--python-version", PYTHON_VERSION, "--implementation", "cp"]
    cmd += ["--abi", f"cp{py}", "--abi", "abi3", "--abi", "none", "-d", str(dest)]
    for tag in _pip_platforms():
        cmd += ["--platform", tag]
    progress(ProgressEvent("pip download", " ".join(prof.pip)))
    code, tail = run_streaming([*cmd, *prof.pip], "pip download", progress)
    if code != 0:
        raise ImageBuildFailed(
            f"pip download {' '.join(prof.pip)} failed (exit {code}):\n" + "\n".join(tail),
            hint="check that the host's pip reaches a package index (pip config list), "
            f"and that wheels exist for CPython {PYTHON_VERSION} on {host_arch()}",
        )


_STEP = re.compile(r"^Step (\d+)/(\d+) :")


def _docker_build(
    client: docker.DockerClient,
    ctx: Path,
    tag: str,
    buildargs: dict[str, str],
    labels: dict[str, str],
    progress: ProgressHook,
    *,
    nocache: bool,
) -> None:
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    done: int | None = None
    total: int | None = None
    with _docker_errors(f"build {tag}"):
        stream = client.api.build(
            path=str(ctx), tag=tag, buildargs=buildargs, labels=labels, rm=True, forcerm=True,
            pull=False, nocache=nocache, decode=True,
            # Steps that need no apt need no network (and then no bridge on the engine either).
            network_mode=None if buildargs.get("DEBIAN_PACKAGES") else "none",
        )  # fmt: skip
        for chunk in stream:
            if "error" in chunk:
                raise ImageBuildFailed(
                    f"docker build of {tag} failed: {chunk['error'].strip()}\n" + "\n".join(tail),
                    hint="the lines above are the end of the build log; fix the step that failed",
                )
            for line in str(chunk.get("stream", "")).splitlines():
                if not line.strip():
                    continue
                tail.append(line)
                if m := _STEP.match(line):
                    done, total = int(m[1]) - 1, int(m[2])
                progress(ProgressEvent("build", line, done, total))


def list_images(client: docker.DockerClient) -> list[ImageInfo]:
    """Our images (sandbox and base), newest first."""
    found: list[ImageInfo] = []
    with _docker_errors("list images"):
        images = client.images.list(filters={"label": LABEL_PROFILE})
    for img in images:
        labels = img.labels or {}
        for tag in img.tags:
            repo = tag.split(":", 1)[0]
            if repo not in (REPOSITORY, BASE_REPOSITORY):
                continue
            kind = "base" if repo == BASE_REPOSITORY else "sandbox"
            size = int(img.attrs.get("Size", 0))
            created = str(img.attrs.get("Created", ""))
            found.append(ImageInfo(tag, kind, labels.get(LABEL_PROFILE, ""), img.short_id, size,
                                   created))  # fmt: skip
    return sorted(found, key=lambda i: i.created, reverse=True)

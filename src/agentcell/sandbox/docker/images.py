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
import fnmatch
import hashlib
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import docker
import docker.errors

from agentcell.errors import DockerUnavailable, ImageBuildFailed, InvalidRequest
from agentcell.sandbox.base import ProgressEvent, ProgressHook, no_progress

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).parent / "image"
DOCKERFILE = DATA_DIR / "Dockerfile"
PROFILES_DIR = DATA_DIR / "profiles"
EXECUTOR_DIR = Path(__file__).resolve().parents[2] / "executor"
EXECUTOR_FILES = ("__init__.py", "protocol.py", "server.py", "kernel.py")
REPOSITORY = "agentcell-sandbox"
BASE_REPOSITORY = "agentcell-base"
LABEL_PROFILE = "agentcell.image.profile"
LABEL_INPUTS = "agentcell.image.inputs"
LABEL_KIND = "agentcell.image.kind"
STOCK_BASE = "debian:bookworm-slim"
PYTHON_VERSION = "3.11"  # Debian 12's python3: the wheels must match it
PULL_TIMEOUT_S = 20
TAIL_LINES = 25

BaseChoice = Literal["auto", "stock", "debootstrap"]


@dataclass(frozen=True)
class Profile:
    name: str
    debian: tuple[str, ...]  # Debian 12 packages
    pip: tuple[str, ...]  # pip requirements, installed from wheels
    drop: tuple[str, ...] = ()  # Debian packages purged after install (unneeded hard deps)


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


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))


def load_profile(name: str) -> Profile:
    path = PROFILES_DIR / f"{name}.toml"
    if not path.is_file():
        raise InvalidRequest(
            f"unknown image profile {name!r}", hint=f"choose one of: {', '.join(profile_names())}"
        )
    data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    lists = {key: list(data.get(key, [])) for key in ("debian", "pip", "drop")}
    if parent := data.get("extends"):
        base = load_profile(parent)
        lists = {key: [*getattr(base, key), *lists[key]] for key in lists}
    unique = {key: tuple(dict.fromkeys(values)) for key, values in lists.items()}
    return Profile(name, unique["debian"], unique["pip"], unique["drop"])


def _digest(parts: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for name in sorted(parts):
        h.update(f"{name}\0{len(parts[name])}\0".encode())
        h.update(parts[name])
    return h.hexdigest()[:12]


def _recipe(profile: Profile) -> dict[str, bytes]:
    """Every input of the image, by its path in the build context (read once: what we hash
    is what we build, even while someone edits the executor)."""
    spec = {"profile": dataclasses.asdict(profile), "python": PYTHON_VERSION}
    files = {
        "Dockerfile": DOCKERFILE.read_bytes(),
        "profile.json": json.dumps(spec, sort_keys=True).encode(),
    }
    for name in EXECUTOR_FILES:
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


@contextlib.contextmanager
def _docker_errors(what: str) -> Iterator[None]:
    try:
        yield
    except docker.errors.APIError as e:
        raise ImageBuildFailed(
            f"{what}: {e.explanation or e}", hint="see the Docker daemon's message above"
        ) from e
    except (docker.errors.DockerException, OSError) as e:
        raise DockerUnavailable(f"{what}: cannot talk to Docker ({e})") from e


def _image_exists(client: docker.DockerClient, ref: str) -> bool:
    with _docker_errors(f"inspecting {ref}"):
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
            args = {"BASE_IMAGE": base_ref, **apt_args}
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


def _stock_base_available(client: docker.DockerClient, progress: ProgressHook) -> bool:
    if _image_exists(client, STOCK_BASE):
        return True
    progress(ProgressEvent("pull", f"trying to pull {STOCK_BASE}"))
    repo, tag = STOCK_BASE.split(":")
    saved = client.api.timeout
    client.api.timeout = PULL_TIMEOUT_S  # per read: a blackholed registry fails fast
    try:
        for event in client.api.pull(repo, tag=tag, stream=True, decode=True):
            if "error" in event:
                raise docker.errors.APIError(event["error"])
            progress(ProgressEvent("pull", f"{event.get('id', '')} {event.get('status', '')}"))
    except (docker.errors.DockerException, OSError) as e:
        reason = getattr(e, "explanation", None) or e
        progress(ProgressEvent("pull", f"cannot pull {STOCK_BASE} ({reason}); using debootstrap"))
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
    with _docker_errors(f"docker import of {tarball}"):
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
    with _docker_errors(f"docker build of {tag}"):
        stream = client.api.build(
            path=str(ctx), tag=tag, buildargs=buildargs, labels=labels, rm=True, forcerm=True,
            pull=False, nocache=nocache, decode=True,
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
    with _docker_errors("listing images"):
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


# --- the root fs, made on the host ---------------------------------------------------------

SUITE = "bookworm"
ROOTFS_RECIPE = b"1"  # bump when make_rootfs changes what a root fs holds
_SLIM = (  # (directory, pattern): what a cell never needs
    ("var/lib/apt/lists", "*"), ("var/cache/apt", "*.bin"), ("var/cache/apt/archives", "*.deb"),
    ("var/log", "*.log"), ("var/log/apt", "*"), ("var/cache/debconf", "*-old"),
    ("var/lib/dpkg", "*-old"), ("usr/share/man", "*"), ("usr/share/info", "*"),
    ("usr/share/locale", "*"), ("usr/share/lintian", "*"), ("dev", "*"),
)  # fmt: skip
_HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
_ONE_LINE = re.compile(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+(.+)$")
_SCHEMES = ("http://", "https://", "ftp://", "file:")


def host_arch() -> str:
    return platform.machine()


def debian_mirror(etc_apt: Path = Path("/etc/apt")) -> str:
    """The host's Debian archive that serves bookworm main, from its apt sources."""
    one_line = [etc_apt / "sources.list", *sorted((etc_apt / "sources.list.d").glob("*.list"))]
    for path in one_line:
        if path.is_file() and (uri := _one_line_uri(path.read_text(errors="replace"))):
            return uri
    for path in sorted((etc_apt / "sources.list.d").glob("*.sources")):
        if uri := _deb822_uri(path.read_text(errors="replace")):
            return uri
    raise ImageBuildFailed(
        f"found no Debian archive for {SUITE} main in the host's apt sources ({etc_apt})",
        hint="name one: agentcell image build --mirror <URI of a Debian archive>",
    )


def _one_line_uri(text: str) -> str | None:
    for line in text.splitlines():
        m = _ONE_LINE.match(line.split("#", 1)[0])
        if m and m[2] == SUITE and "main" in m[3].split() and m[1].startswith(_SCHEMES):
            return m[1]
    return None


def _deb822_uri(text: str) -> str | None:
    for stanza in re.split(r"\n[ \t]*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0] in " \t" and key:
                fields[key] += " " + line.strip()
                continue
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        uris = [u for u in fields.get("uris", "").split() if u.startswith(_SCHEMES)]
        wanted = (
            "deb" in fields.get("types", "").split()
            and SUITE in fields.get("suites", "").split()
            and "main" in fields.get("components", "").split()
            and fields.get("enabled", "yes").lower() != "no"
        )
        if wanted and uris:
            return uris[0]
    return None


def run_streaming(cmd: list[str], step: str, progress: ProgressHook) -> tuple[int, list[str]]:
    """Run ``cmd``, reporting each output line as ``step``; return its exit code and tail."""
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    env = {**os.environ, "LC_ALL": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", env=env
    ) as proc:
        for raw in proc.stdout or ():
            if line := raw.rstrip():
                tail.append(line)
                progress(ProgressEvent(step, line))
    return proc.returncode, list(tail)


def make_rootfs(
    profile: Profile,
    tarball: Path,
    progress: ProgressHook = no_progress,
    *,
    mirror: str | None = None,
) -> None:
    """debootstrap a minbase bookworm with the profile's packages; save it, slimmed, as
    ``tarball``."""
    _check_can_debootstrap(profile.name)
    uri = mirror or debian_mirror()
    tarball.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".rootfs-", dir=tarball.parent))
    try:
        target, packed = work / "root", work / "rootfs.tar"
        _debootstrap(profile.debian, target, uri, progress)
        if left := _unmount_below(target):
            raise ImageBuildFailed(f"cannot unmount {', '.join(left)}", hint="unmount them")
        _purge(target, profile.drop, progress)
        _slim(target)
        progress(ProgressEvent("tar", f"packing the root fs into {tarball}"))
        tar = ["tar", "--numeric-owner", "--one-file-system", "-C", str(target), "-cf", str(packed)]
        code, tail = run_streaming([*tar, "."], "tar", progress)
        if code != 0:
            raise ImageBuildFailed("tar of the root fs failed:\n" + "\n".join(tail))
        packed.replace(tarball)
    finally:
        if left := _unmount_below(work):  # never delete through a mount (debootstrap binds /dev)
            log.warning("left %s in place: %s are still mounted", work, left)
        else:
            shutil.rmtree(work, ignore_errors=True)


def _check_can_debootstrap(profile: str) -> None:
    if os.geteuid() != 0:
        cli = shutil.which("agentcell") or "agentcell"
        raise ImageBuildFailed(
            f"{STOCK_BASE} is not available to Docker, and making a root fs with debootstrap "
            "needs root",
            hint=f"build the image once as root: sudo {cli} image build --profile {profile} "
            f"(later runs reuse it); or make the stock base available: docker pull {STOCK_BASE}"
            f" (or docker load -i a saved copy)",
        )
    if shutil.which("debootstrap") is None:
        raise ImageBuildFailed(
            f"{STOCK_BASE} is not available to Docker, and debootstrap is not installed",
            hint=f"apt-get install debootstrap, or docker pull {STOCK_BASE}",
        )


def _debootstrap(packages: Sequence[str], target: Path, uri: str, progress: ProgressHook) -> None:
    cmd = ["debootstrap", "--variant=minbase", "--components=main"]
    cmd += [f"--include={','.join(packages)}", SUITE, str(target), uri]
    progress(ProgressEvent("debootstrap", f"{SUITE} from {uri}: {' '.join(packages)} + deps"))
    code, tail = run_streaming(cmd, "debootstrap", progress)
    if code == 0:
        return
    logged = _tail_file(target / "debootstrap" / "debootstrap.log")
    raise ImageBuildFailed(
        f"debootstrap failed (exit {code}); its last lines:\n"
        + "\n".join(tail)
        + ("\n--- end of debootstrap.log:\n" + "\n".join(logged) if logged else ""),
        hint=f"check that {uri} serves Debian {SUITE} (or pass --mirror URI) and that every "
        "package of the profile exists there; debootstrap does not pick providers of virtual "
        "packages, so list one in the profile (e.g. dbus-x11 for dbus-session-bus)",
    )


def _purge(root: Path, packages: Sequence[str], progress: ProgressHook) -> None:
    """Purge unneeded hard dependencies (compilers, -dev packages) from the new root fs."""
    if not packages:
        return
    progress(ProgressEvent("purge", f"dropping {len(packages)} packages nothing at run time needs"))
    cmd = ["chroot", str(root), "dpkg", "--purge", "--force-depends", *packages]
    code, tail = run_streaming(cmd, "purge", progress)
    if code != 0:
        raise ImageBuildFailed("dpkg --purge in the new root fs failed:\n" + "\n".join(tail))


def _tail_file(path: Path, lines: int = TAIL_LINES) -> list[str]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


def _unmount_below(path: Path) -> list[str]:
    """Lazily unmount everything mounted under ``path``; return what stays mounted."""

    def below() -> list[str]:
        prefix = str(path.resolve()) + "/"
        mounts = Path("/proc/self/mounts").read_text().splitlines()
        points = [m.split()[1].replace("\\040", " ") for m in mounts if len(m.split()) > 1]
        return sorted((p for p in points if p.startswith(prefix)), reverse=True)

    for point in below():
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
    return below()


def _slim(root: Path) -> None:
    """Drop apt lists, caches, docs (copyright kept), logs and device nodes; forget the host."""
    for rel, pattern in _SLIM:
        for entry in _entries(root, rel):
            if fnmatch.fnmatch(entry.name, pattern):
                _remove(entry)
    for doc in _entries(root, "usr/share/doc"):
        for entry in _entries(root, f"usr/share/doc/{doc.name}"):
            if entry.name != "copyright":
                _remove(entry)
    for rel, text in (("etc/hostname", ""), ("etc/resolv.conf", ""), ("etc/hosts", _HOSTS)):
        (root / rel).unlink(missing_ok=True)
        (root / rel).write_text(text)


def _entries(root: Path, rel: str) -> list[Path]:
    """Entries of ``root/rel``, if it is a real directory inside ``root`` (no symlinks out)."""
    where = root / rel
    inside = where.resolve().is_relative_to(root.resolve())
    if where.is_symlink() or not where.is_dir() or not inside:
        return []
    return [Path(e.path) for e in os.scandir(where)]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)

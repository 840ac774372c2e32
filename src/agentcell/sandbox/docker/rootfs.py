"""The root fs of a debootstrap base, made on the host when Docker has no stock Debian image.

``make_rootfs`` finds a Debian archive (``--mirror`` or the host's apt sources), runs
``debootstrap --variant=minbase --include=<packages>`` into a scratch directory, purges the
profile's unneeded hard dependencies, slims the tree and packs it as a tarball for
``docker import``. Needs root and the host's debootstrap.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import platform
import re
import shutil
import subprocess
import tempfile
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from agentcell.errors import ImageBuildFailed
from agentcell.progress import ProgressEvent, ProgressHook, no_progress
from agentcell.sandbox.docker.profiles import Profile

log = logging.getLogger(__name__)

STOCK_BASE = "debian:bookworm-slim"
TAIL_LINES = 25

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

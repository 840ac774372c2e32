"""Archives unpacked into a workspace folder (``Extract``), by the executor inside the cell. The
same cases run on the host-run server and in a real cell (the ``executor`` fixture); archives
are made here, in memory, with zipfile and tarfile, hostile ones by hand."""

from __future__ import annotations

import asyncio
import io
import os
import secrets
import stat
import struct
import tarfile
import time
import zipfile
from collections.abc import Callable

import pytest

from agentcell.errors import (
    ArchiveTooLarge,
    Conflict,
    InvalidArchive,
    InvalidRequest,
    PathNotFound,
    UnsafeArchive,
)
from agentcell.executor.client import ExecutorClient
from agentcell.executor.protocol import CHUNK_BYTES, Exec, Extract

BLOB = os.urandom(CHUNK_BYTES + 4321)  # more than one frame, and not compressible
FILES = {
    "a.txt": b"alpha\n",
    "sub/b.txt": b"beta\n",
    "sub/deeper/c.bin": BLOB,
    "run.sh": b"#!/bin/sh\necho ran\n",
}


def fresh() -> str:
    return f"x{secrets.token_hex(4)}"


def sh(code: str) -> Exec:
    return Exec(code, "shell")


def make_zip(
    files: dict[str, bytes], *, folders: tuple[str, ...] = (), method: int = zipfile.ZIP_DEFLATED
) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name in folders:
            zf.writestr(zipfile.ZipInfo(name), b"")
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 2, 3, 4, 6))
            info.external_attr = (stat.S_IFREG | (0o755 if name.endswith(".sh") else 0o644)) << 16
            info.compress_type = method
            zf.writestr(info, data)
    return buf.getvalue()


def tar_member(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mtime = kind, size, 1_600_000_000
    info.mode = 0o755 if name.endswith(".sh") else 0o644
    return info


def make_tar(
    files: dict[str, bytes],
    *,
    folders: tuple[str, ...] = (),
    extra: tuple[tarfile.TarInfo, ...] = (),
    compression: str = "gz",
) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=f"w:{compression}") as tf:
        for name in folders:
            tf.addfile(tar_member(name, tarfile.DIRTYPE))
        for name, data in files.items():
            tf.addfile(tar_member(name, size=len(data)), io.BytesIO(data))
        for member in extra:
            tf.addfile(member)
    return buf.getvalue()


async def nothing_left(executor: ExecutorClient, d: str) -> None:
    """The folder was never made, and no staging folder is left at the workspace's top."""
    with pytest.raises(PathNotFound):
        await executor.list(d)
    names = [e.name for e in await executor.list(".")]
    assert not [n for n in names if n.startswith(".extract-")], names


FORMATS: dict[str, Callable[[dict[str, bytes], tuple[str, ...]], bytes]] = {
    "zip": lambda files, folders: make_zip(files, folders=folders),
    "zip-stored": lambda files, folders: make_zip(
        files, folders=folders, method=zipfile.ZIP_STORED
    ),
    "tar": lambda files, folders: make_tar(files, folders=folders, compression=""),
    "tar.gz": lambda files, folders: make_tar(files, folders=folders, compression="gz"),
    "tar.bz2": lambda files, folders: make_tar(files, folders=folders, compression="bz2"),
    "tar.xz": lambda files, folders: make_tar(files, folders=folders, compression="xz"),
}


@pytest.mark.parametrize("fmt", list(FORMATS))
async def test_an_archive_unpacks_with_its_folders(executor: ExecutorClient, fmt: str) -> None:
    d = fresh()
    archive = FORMATS[fmt](FILES, ("empty/", "sub/"))
    done = await executor.extract(Extract(f"{d}/out/"), archive)
    assert (done.path, done.entries, done.size) == (f"{d}/out", 6, sum(map(len, FILES.values())))
    for name, data in FILES.items():
        assert await executor.read_bytes(f"{d}/out/{name}") == data
    listing = {(e.name, e.type) for e in await executor.list(f"{d}/out")}
    assert listing == {("a.txt", "file"), ("run.sh", "file"), ("sub", "dir"), ("empty", "dir")}
    modes = "import os\nfor n in ('a.txt', 'run.sh'): print(oct(os.stat(n).st_mode & 0o777))"
    ran = await executor.exec(
        Exec(modes + "\nprint(int(os.stat('a.txt').st_mtime))", cwd=d + "/out")
    )
    assert ran.stdout.split()[:2] == ["0o644", "0o755"], ran  # the executable bit is kept
    if fmt.startswith("tar"):
        assert ran.stdout.split()[2] == "1600000000"  # and the archive's times
    assert (await executor.exec(sh(f"{d}/out/run.sh"))).stdout == "ran\n"
    names = [e.name for e in await executor.list(".")]
    assert not [n for n in names if n.startswith(".extract-")]


async def test_files_are_replaced_and_folders_merged(executor: ExecutorClient) -> None:
    d = fresh()
    await executor.write(f"{d}/a.txt", b"old")
    await executor.write(f"{d}/sub/kept.txt", b"kept")
    done = await executor.extract(Extract(d), make_zip({"a.txt": b"new", "sub/b.txt": b"b"}))
    assert (done.entries, done.size) == (2, 4)
    assert await executor.read_bytes(f"{d}/a.txt") == b"new"
    assert await executor.read_bytes(f"{d}/sub/kept.txt") == b"kept"
    assert await executor.read_bytes(f"{d}/sub/b.txt") == b"b"


def link_tar(kind: bytes, name: str = "link", target: str = "/etc/passwd") -> bytes:
    member = tar_member(name, kind)
    member.linkname = target
    return make_tar({"good.txt": b"would be written"}, extra=(member,))


def zip_with_mode(mode: int, name: str = "special") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("good.txt", b"would be written")
        info = zipfile.ZipInfo(name)
        info.create_system = 3
        info.external_attr = mode << 16
        zf.writestr(info, b"/etc/passwd")
    return buf.getvalue()


UNSAFE = {
    "dotdot": (make_tar({"good.txt": b"x", "../evil": b"x"}), "entry '../evil' escapes the folder"),
    "dotdot-inside": (make_zip({"good.txt": b"x", "a/../../evil": b"x"}), "'a/../../evil' escapes"),
    "absolute": (make_zip({"good.txt": b"x", "/tmp/evil": b"x"}), "'/tmp/evil' is an absolute"),
    "symlink-tar": (link_tar(tarfile.SYMTYPE), "entry 'link' is a symbolic link"),
    "symlink-zip": (zip_with_mode(stat.S_IFLNK | 0o777), "entry 'special' is a symbolic link"),
    "hardlink": (link_tar(tarfile.LNKTYPE, target="good.txt"), "entry 'link' is a hard link"),
    "fifo": (link_tar(tarfile.FIFOTYPE, "pipe", ""), "entry 'pipe' is a FIFO"),
    "char-device": (link_tar(tarfile.CHRTYPE, "null", ""), "entry 'null' is a device"),
    "block-device": (link_tar(tarfile.BLKTYPE, "sda", ""), "entry 'sda' is a device"),
    "device-zip": (zip_with_mode(stat.S_IFCHR | 0o666), "entry 'special' is a device"),
}


@pytest.mark.parametrize("case", list(UNSAFE))
async def test_unsafe_entries_are_refused_and_nothing_is_written(
    executor: ExecutorClient, case: str
) -> None:
    archive, words = UNSAFE[case]
    d = fresh()
    with pytest.raises(UnsafeArchive) as refused:
        await executor.extract(Extract(f"{d}/out"), archive)
    assert words in refused.value.message
    await nothing_left(executor, d)


def zeros_zip(size: int) -> bytes:
    return make_zip({"fine.txt": b"fine", "zeros.bin": bytes(size)})


async def test_a_zip_bomb_is_refused(executor: ExecutorClient) -> None:
    d = fresh()
    bomb = zeros_zip(8 * 1024 * 1024)  # about 8 KiB packed: 1000-fold
    assert len(bomb) < 20_000
    with pytest.raises(ArchiveTooLarge, match=r"entry 'zeros.bin' unpacks to 8.0 MiB from .*-fold"):
        await executor.extract(Extract(f"{d}/out"), bomb)
    await nothing_left(executor, d)
    gz = make_tar({"zeros.bin": bytes(8 * 1024 * 1024)})  # a tar: the stream as a whole
    with pytest.raises(ArchiveTooLarge, match="the archive unpacks to 8.0 MiB"):
        await executor.extract(Extract(f"{d}/out"), gz)
    await nothing_left(executor, d)
    done = await executor.extract(Extract(f"{d}/out", max_ratio=0), bomb)  # 0: no ratio check
    assert done.size == 8 * 1024 * 1024 + 4


async def test_past_the_size_or_entry_limit_is_refused(executor: ExecutorClient) -> None:
    d = fresh()
    many = {f"f{i}.txt": b"x" for i in range(6)}
    for archive in (make_zip(many), make_tar(many)):
        with pytest.raises(ArchiveTooLarge, match=r"more than 5\b.*\(the limit\)"):
            await executor.extract(Extract(f"{d}/out", max_entries=5), archive)
        await nothing_left(executor, f"{d}/out")
        assert (await executor.extract(Extract(f"{d}/ok", max_entries=6), archive)).entries == 6
    big = {"first.txt": b"x" * 600, "second.txt": b"y" * 600}
    for archive in (make_zip(big), make_tar(big, compression="")):
        with pytest.raises(ArchiveTooLarge, match="more than 1000 bytes unpacked.*'second.txt'"):
            await executor.extract(Extract(f"{d}/out", max_bytes=1000), archive)
        await nothing_left(executor, f"{d}/out")


def lying_zip(data: bytes, says: int) -> bytes:
    """A ZIP whose headers (local and central) say its one entry unpacks to ``says`` bytes."""
    raw = bytearray(make_zip({"liar.bin": data}))
    for signature, at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = raw.index(signature)
        struct.pack_into("<I", raw, start + at, says)
    return bytes(raw)


async def test_a_header_that_lies_about_its_size_is_caught_writing(
    executor: ExecutorClient,
) -> None:
    d = fresh()
    liar = lying_zip(os.urandom(200_000), 1000)  # passes the limit by its headers
    with pytest.raises(InvalidArchive, match="entry 'liar.bin'"):
        await executor.extract(Extract(f"{d}/out", max_bytes=100_000), liar)
    await nothing_left(executor, d)


@pytest.mark.parametrize(
    "body", [b"", b"just some text, not an archive\n" * 100, os.urandom(10_000)]
)
async def test_what_is_no_archive_is_refused(executor: ExecutorClient, body: bytes) -> None:
    d = fresh()
    with pytest.raises(InvalidArchive, match="neither a ZIP nor a tar"):
        await executor.extract(Extract(f"{d}/out"), body)
    await nothing_left(executor, d)


async def test_a_damaged_archive_is_refused(executor: ExecutorClient) -> None:
    d = fresh()
    whole = make_tar({"a.txt": b"a", "b.bin": BLOB})
    with pytest.raises(InvalidArchive, match="damaged"):
        await executor.extract(Extract(f"{d}/out"), whole[: len(whole) // 2])
    await nothing_left(executor, d)
    clash = make_tar({"a": b"file"}, folders=("a/",))
    with pytest.raises(InvalidArchive, match="'a' as a file and as a folder"):
        await executor.extract(Extract(f"{d}/out"), clash)
    await nothing_left(executor, d)


async def test_what_is_in_the_way_in_the_folder_is_a_conflict(executor: ExecutorClient) -> None:
    d = fresh()
    await executor.write(f"{d}/x", b"a file")
    await executor.exec(sh(f"mkdir -p {d}/dir && ln -s /etc {d}/link"))
    for name, words in (
        (
            "x/inner.txt",
            "entry 'x/inner.txt' needs 'x' as a folder, but in the folder it is a file",
        ),
        ("dir", "entry 'dir' needs 'dir' as a file, but in the folder it is a folder"),
        (
            "link/passwd",
            "entry 'link/passwd' needs 'link' as a folder, but in the folder it is a symbolic link",
        ),
        ("link", "entry 'link' needs 'link' as a file, but in the folder it is a symbolic link"),
    ):
        with pytest.raises(Conflict) as refused:
            await executor.extract(Extract(d), make_zip({"new.txt": b"n", name: b"in the way"}))
        assert words in refused.value.message
    names = sorted(e.name for e in await executor.list(d))
    assert names == ["dir", "link", "x"]  # nothing was added, nothing replaced
    assert await executor.read_bytes(f"{d}/x") == b"a file"


async def test_the_target_must_be_a_folder_in_the_workspace(executor: ExecutorClient) -> None:
    d = fresh()
    await executor.write(f"{d}/file", b"f")
    with pytest.raises(InvalidRequest, match="not a folder"):
        await executor.extract(Extract(f"{d}/file"), make_zip({"a": b"a"}))
    with pytest.raises(InvalidRequest, match="not a folder"):
        await executor.extract(Extract(f"{d}/file/below"), make_zip({"a": b"a"}))
    done = await executor.extract(Extract("."), make_zip({f"{d}/top.txt": b"t"}))
    assert done.path == "."
    assert await executor.read_bytes(f"{d}/top.txt") == b"t"


async def test_a_large_archive_streams_in(executor: ExecutorClient) -> None:
    """Many frames in, many files out, in time (a guard, not a measure)."""
    d = fresh()
    files = {f"part{i:03d}/data.bin": os.urandom(64 * 1024) for i in range(100)}
    archive = make_tar(files, compression="")
    started = time.monotonic()
    done = await executor.extract(Extract(f"{d}/big"), archive)
    assert (done.entries, done.size) == (100, 100 * 64 * 1024)
    assert time.monotonic() - started < 120
    assert await executor.read_bytes(f"{d}/big/part042/data.bin") == files["part042/data.bin"]


async def test_closing_a_python_context_meanwhile_leaves_the_unpacking_alone(
    executor: ExecutorClient,
) -> None:
    """Closing a context sweeps the server's children that no one owns: the unpacker is owned."""
    d = fresh()
    archive = make_tar({f"f{i:04d}.txt": b"x" for i in range(3000)}, compression="")
    task = asyncio.create_task(executor.extract(Extract(d), archive))
    closes = 0
    while not task.done():
        await executor.close_context(f"gone{closes}")
        closes += 1
    assert (await task).entries == 3000
    assert closes > 1

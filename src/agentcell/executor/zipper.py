"""Write a ZIP of a folder to stdout: ``python3 -I zipper.py FOLDER [MAX_BYTES]``.

The server runs this as its own process (so a large folder never stalls the server's loop), as
the cell's user. Only regular files and directories go in: links are never followed and FIFOs,
sockets and devices are skipped, so a ZIP never holds anything from outside the workspace.
Standard library only, and no imports from the package: it runs as a plain script.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import time
import zipfile
from typing import IO

EPOCH_1980 = (1980, 1, 1, 0, 0, 0)  # the earliest time a ZIP entry can carry


def _info(arcname: str, mtime: float) -> zipfile.ZipInfo:
    stamp = max(tuple(time.gmtime(mtime)[:6]), EPOCH_1980)
    info = zipfile.ZipInfo(arcname, date_time=stamp)  # type: ignore[arg-type]
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def _add_file(zf: zipfile.ZipFile, path: str, arcname: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return  # a link (ELOOP), gone meanwhile, or unreadable
    with os.fdopen(fd, "rb") as src:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return
        info = _info(arcname, st.st_mtime)
        info.external_attr = (stat.S_IMODE(st.st_mode) | stat.S_IFREG) << 16
        with zf.open(info, "w", force_zip64=True) as dst:
            shutil.copyfileobj(src, dst, 1024 * 1024)


def zip_tree(root: str, out: IO[bytes]) -> None:
    with zipfile.ZipFile(out, "w", compresslevel=6) as zf:
        for folder, dirs, files in os.walk(root, followlinks=False):
            rel = os.path.relpath(folder, root)
            prefix = "" if rel == "." else rel + "/"
            dirs[:] = sorted(d for d in dirs if not os.path.islink(os.path.join(folder, d)))
            if prefix and not dirs and not files:
                zf.writestr(_info(prefix, os.lstat(folder).st_mtime), b"")
            for name in sorted(files):
                _add_file(zf, os.path.join(folder, name), prefix + name)


def total_size(root: str) -> int:
    """The bytes the regular files under root hold, as zip_tree would take them in."""
    total = 0
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))]
        for name in files:
            try:
                st = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


TOO_LARGE = 3  # the exit code when the files add up to more than the limit asked


if __name__ == "__main__":
    limit = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    if limit and total_size(sys.argv[1]) > limit:
        sys.exit(TOO_LARGE)
    zip_tree(sys.argv[1], sys.stdout.buffer)

"""``agentcell files ls|get|put|extract|rm|zip``: the files of your workspace."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path, PurePosixPath
from typing import Any

from rich.markup import escape
from rich.table import Table

from agentcell.cli._common import Commands, connect, group
from agentcell.cli._output import RAW_HELP, out, print_table, untrusted, when
from agentcell.config import Settings
from agentcell.errors import InvalidRequest


def add_files(groups: Commands) -> None:
    cmds = group(groups, "files", "list, get, put, unpack, remove and zip files of your workspace")
    ls = cmds.add_parser("ls", help="list a folder")
    ls.add_argument("path", nargs="?", default=".", metavar="PATH")
    ls.add_argument("--raw", action="store_true", help=RAW_HELP)
    ls.set_defaults(handler=_files_ls)
    get = cmds.add_parser("get", help="download a file")
    get.add_argument("path", metavar="PATH")
    get.add_argument("dest", nargs="?", metavar="DEST", help="file or folder; - = stdout")
    get.set_defaults(handler=_files_get)
    put = cmds.add_parser("put", help="upload a file (parent folders are created)")
    put.add_argument("src", metavar="SRC", help="a local file; - = stdin")
    put.add_argument("path", nargs="?", metavar="PATH", help="default: the name of SRC")
    put.set_defaults(handler=_files_put)
    extract = cmds.add_parser(
        "extract",
        help="upload a ZIP or tar (.tar, .tar.gz, .tar.bz2, .tar.xz) and unpack it into a folder "
        "(made if missing; files there are replaced)",
    )
    extract.add_argument("archive", metavar="ARCHIVE", help="a local archive; - = stdin")
    extract.add_argument(
        "folder", nargs="?", default=".", metavar="FOLDER", help="default: the workspace"
    )
    extract.set_defaults(handler=_files_extract)
    rm = cmds.add_parser("rm", help="delete a file, or a folder with -r")
    rm.add_argument("path", metavar="PATH")
    rm.add_argument("-r", "--recursive", action="store_true", help="delete a folder and its files")
    rm.set_defaults(handler=_files_rm)
    zip_ = cmds.add_parser("zip", help="download a folder as a ZIP")
    zip_.add_argument("path", nargs="?", default=".", metavar="PATH")
    zip_.add_argument("dest", nargs="?", metavar="DEST", help="default: NAME.zip; - = stdout")
    zip_.set_defaults(handler=_files_zip)


def _files_ls(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings) as client:
        listing = client.files_list(args.path)
    shown = untrusted(sys.stdout, args.raw)  # names are the cell's: ESC in one is not obeyed
    table = Table(box=None, header_style="bold")
    table.add_column("TYPE")
    table.add_column("SIZE", justify="right")
    table.add_column("MODIFIED", no_wrap=True)
    table.add_column("NAME", no_wrap=True)
    for e in sorted(listing.entries, key=lambda e: (e.type != "dir", e.name)):
        name = f"{e.name}/" if e.type == "dir" else e.name
        table.add_row(e.type, f"{e.size:,}", when(e.modified_at), escape(shown(name)))
    print_table(table)
    return 0


def _download(args: argparse.Namespace, settings: Settings, fetch: str, default_name: str) -> int:
    with connect(args, settings) as client:
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
    out().print(f"{escape(str(dest))} ({size:,} bytes)")
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
    with connect(args, settings) as client:
        written = client.files_put(target, data)
    out().print(f"{escape(written.path)} ({written.size:,} bytes)")
    return 0


def _files_extract(args: argparse.Namespace, settings: Settings) -> int:
    archive: Any = sys.stdin.buffer if args.archive == "-" else Path(args.archive)
    if isinstance(archive, Path) and not archive.is_file():
        raise InvalidRequest(
            f"{args.archive} is not a file", hint="agentcell files extract data.zip [FOLDER]"
        )
    with connect(args, settings) as client:
        done = client.files_extract(archive, args.folder)
    out().print(f"{escape(done.path)}: {done.entries:,} entries, {done.bytes:,} bytes")
    return 0


def _files_rm(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings) as client:
        client.files_rm(args.path, recursive=args.recursive)
    out().print(f"removed {escape(args.path)}")
    return 0

"""``agentcell serve``: run the server, after a first screen that says what to do next."""

from __future__ import annotations

import argparse
import contextlib
import logging
import shutil
import socket
import sys
from pathlib import Path

from rich.markup import escape

from agentcell import __version__
from agentcell.cli._common import Commands
from agentcell.cli._output import error, out
from agentcell.config import ClientSettings, Settings


def add_serve(groups: Commands) -> None:
    serve = groups.add_parser("serve", help="run the server (API v1)")
    serve.add_argument("--host", help="address to listen on (default: AGENTCELL_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: AGENTCELL_PORT, 8000)")
    serve.add_argument("--data-dir", type=Path, help="default: AGENTCELL_DATA_DIR")
    serve.add_argument(
        "--access-log",
        action="store_true",
        help="log every HTTP request (off: /metrics counts them and the audit log keeps what "
        "users did, and a line per request costs the hot path a good part of its time)",
    )
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace, _settings: Settings) -> int:
    import uvicorn

    from agentcell.api.app import create_app
    from agentcell.api.auth import ensure_admin_token

    given = {"host": args.host, "port": args.port, "data_dir": args.data_dir}
    settings = Settings.model_validate({k: v for k, v in given.items() if v is not None})
    sock = _listen(settings)  # first: a busy port must fail before anything is made
    if sock is None:
        return 1
    with sock:
        token, created = ensure_admin_token(settings)
        _first_screen(settings, token, created)
        logging.basicConfig(level=logging.INFO, format="%(levelname)-9s %(name)s: %(message)s")
        config = uvicorn.Config(create_app(settings), log_level="info", access_log=args.access_log)
        # uvicorn re-raises Ctrl-C after its clean shutdown; uvicorn.run swallows it too
        with contextlib.suppress(KeyboardInterrupt):
            uvicorn.Server(config).run(sockets=[sock])
    return 0


def _listen(settings: Settings) -> socket.socket | None:
    """The listening socket, or None after saying why it cannot be had."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        error(
            f"cannot listen on {settings.host} port {settings.port}: {exc.strerror or exc}",
            "is another agentcell serve running there? choose another port with --port "
            "or AGENTCELL_PORT",
        )
        return None
    return sock


def command_name() -> str:
    """How to run this CLI from another terminal: ``agentcell`` when that is what PATH finds,
    else the full path of the one running now (e.g. ``.venv/bin/agentcell``)."""
    running = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    found = shutil.which("agentcell")
    if running is not None and running.name == "agentcell":
        if found and Path(found).resolve() == running:
            return "agentcell"
        return str(running)
    return "agentcell" if found else f"{sys.executable} -m agentcell.cli"


def _first_screen(settings: Settings, token: str, created: bool) -> None:
    host = "127.0.0.1" if settings.host in ("", "0.0.0.0", "::") else settings.host
    url = f"http://{f'[{host}]' if ':' in host else host}:{settings.port}"
    console = out()
    console.print(f"[bold]agentcell {__version__}[/] on [bold cyan]{escape(url)}[/]")
    console.print(f"data dir     {escape(str(settings.data_dir))}")
    steps = []
    if settings.admin_token:
        console.print("admin token  from AGENTCELL_ADMIN_TOKEN")
    else:
        path = str(settings.admin_token_path)
        console.print(f"admin token  in {escape(path)} (mode 0600)")
        if created:
            console.print(f"             new, shown this once: [bold]{escape(token)}[/]")
        value = token if created else f"$(cat {path})"
        steps.append(f"export AGENTCELL_ADMIN_TOKEN={value}")
    if url != ClientSettings.model_fields["url"].default:
        steps.append(f"export AGENTCELL_URL={url}")
    cli = command_name()
    steps += [
        f"{cli} users add alice",
        "export AGENTCELL_API_KEY=<the key it prints>",
        f"{cli} exec 'print(6*7)'",
    ]
    console.print("\nnext, in another terminal:")
    for step in steps:
        console.print(f"  {escape(step)}")
    console.print()

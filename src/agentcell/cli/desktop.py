"""``agentcell desktop``: start the live desktop of your cell (full image) and print the link
that watches it in a browser (view only until you take control); ``agentcell jupyter``: start
JupyterLab there and print the link that opens it."""

from __future__ import annotations

import argparse
from urllib.parse import urljoin

from agentcell.cli._common import Commands, connect
from agentcell.cli._jobs_show import JSON_HELP, print_json
from agentcell.config import Settings


def add_desktop(groups: Commands) -> None:
    p = groups.add_parser("desktop", help="the live desktop of your cell: a link to watch it")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(handler=_desktop)
    p = groups.add_parser("jupyter", help="JupyterLab in your cell: start it, print its link")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(handler=_jupyter)


def _desktop(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings) as client:
        desktop = client.desktop()
        if args.json:
            print_json(desktop)
        else:
            print(f"{client.url}{desktop.url}")
    return 0


def _jupyter(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings) as client:
        jupyter = client.jupyter()
        if args.json:
            print_json(jupyter)
        else:
            print(urljoin(client.url, jupyter.browser_url))
    return 0

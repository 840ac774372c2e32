"""``agentcell network show|allow|deny|forget|mode|reset|admin`` (what your cell may reach through
the egress proxy) and ``agentcell secrets set|ls|rm`` (values put into requests to their hosts;
the cell holds a placeholder)."""

from __future__ import annotations

import argparse
import getpass
import sys

from rich.markup import escape
from rich.table import Table

from agentcell.cli._common import Commands, connect, group
from agentcell.cli._jobs_show import JSON_HELP, print_json
from agentcell.cli._output import error, out
from agentcell.config import Settings
from agentcell.schemas import NETWORK_MODES, AdminNetwork, CellNetwork, NetworkPolicy, host_pattern

HOST_HELP = "a host name, or *.domain for every name below it"


def add_network(groups: Commands) -> None:
    cmds = group(groups, "network", "what your cell may reach: show, allow, deny hosts")
    show = cmds.add_parser("show", help="your policy as it applies now")
    show.add_argument("--json", action="store_true", help=JSON_HELP)
    show.set_defaults(handler=_show)
    for name, summary, handler in (
        ("allow", "let the cell reach these hosts (switches mode none to allowlist)", _allow),
        ("deny", "never let the cell reach these hosts, whatever else allows them", _deny),
        ("forget", "drop these hosts from your allow and deny lists", _forget),
    ):
        cmd = cmds.add_parser(name, help=summary)
        cmd.add_argument("hosts", nargs="+", metavar="HOST", help=HOST_HELP)
        cmd.set_defaults(handler=handler)
    mode = cmds.add_parser("mode", help="none: nothing; allowlist: your allowed hosts; public: all")
    mode.add_argument("mode", choices=NETWORK_MODES)
    mode.set_defaults(handler=_mode)
    reset = cmds.add_parser("reset", help="back to the admin's default policy")
    reset.set_defaults(handler=_reset)
    admin = cmds.add_parser("admin", help="(admin) the default policy, the ceiling, extra ports")
    admin.add_argument("--ceiling", choices=NETWORK_MODES, help="the widest mode users may set")
    admin.add_argument("--default-mode", choices=NETWORK_MODES, help="users' default mode")
    admin.add_argument("--default-allow", nargs="*", metavar="HOST", help="default allow list")
    admin.add_argument("--default-deny", nargs="*", metavar="HOST", help="default deny list")
    admin.add_argument("--ports", nargs="*", type=int, metavar="PORT", help="besides 80 and 443")
    admin.add_argument("--json", action="store_true", help=JSON_HELP)
    admin.set_defaults(handler=_admin)

    secrets = group(groups, "secrets", "values the proxy puts into requests to their hosts")
    put = secrets.add_parser("set", help="store a secret (its value read from stdin)")
    put.add_argument("name", metavar="NAME", help="its env var in the cell, e.g. GITHUB_TOKEN")
    put.add_argument(
        "--hosts", nargs="+", required=True, metavar="HOST", help="where it may be sent"
    )
    put.set_defaults(handler=_secret_set)
    ls = secrets.add_parser("ls", aliases=["list"], help="your secrets' names and hosts")
    ls.add_argument("--json", action="store_true", help=JSON_HELP)
    ls.set_defaults(handler=_secret_ls)
    rm = secrets.add_parser("rm", help="delete a secret")
    rm.add_argument("name", metavar="NAME")
    rm.set_defaults(handler=_secret_rm)


def _show(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings) as client:
        network = client.network()
    if args.json:
        print_json(network)
    else:
        _print(network)
    return 0


def _change(args: argparse.Namespace, settings: Settings, edit: str) -> int:
    try:
        hosts = [host_pattern(h) for h in args.hosts]
    except ValueError as e:
        return error(str(e), "give names like example.com or *.example.com")
    with connect(args, settings) as client:
        current = client.network()
        allow, deny = list(current.allow), list(current.deny)
        if edit == "allow":
            allow += hosts
            deny = [h for h in deny if h not in hosts]
        elif edit == "deny":
            deny += hosts
            allow = [h for h in allow if h not in hosts]
        else:
            allow = [h for h in allow if h not in hosts]
            deny = [h for h in deny if h not in hosts]
        mode = "allowlist" if edit == "allow" and current.mode == "none" else current.mode
        _print(client.network_set(NetworkPolicy(mode=mode, allow=allow, deny=deny)))
    return 0


def _allow(args: argparse.Namespace, settings: Settings) -> int:
    return _change(args, settings, "allow")


def _deny(args: argparse.Namespace, settings: Settings) -> int:
    return _change(args, settings, "deny")


def _forget(args: argparse.Namespace, settings: Settings) -> int:
    return _change(args, settings, "forget")


def _mode(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings) as client:
        current = client.network()
        policy = NetworkPolicy(mode=args.mode, allow=current.allow, deny=current.deny)
        _print(client.network_set(policy))
    return 0


def _reset(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings) as client:
        _print(client.network_reset())
    return 0


def _print(network: CellNetwork) -> None:
    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    source = "yours" if network.source == "user" else "the admin's default"
    table.add_row("mode", f"{network.mode} ({source}; the admin allows up to {network.ceiling})")
    table.add_row("allow", escape(" ".join(network.allow)) or "-")
    table.add_row("deny", escape(" ".join(network.deny)) or "-")
    table.add_row("ports", " ".join(map(str, network.ports)))
    out().print(table)
    if network.mode == "none":
        out().print("[dim]the cell reaches no host; allow some: agentcell network allow HOST[/]")


def _admin(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings, admin=True) as client:
        network = client.admin_network()
        default = network.default
        changes = {
            "mode": args.default_mode,
            "allow": args.default_allow,
            "deny": args.default_deny,
        }
        if any(v is not None for v in changes.values()):
            fields = {k: v for k, v in changes.items() if v is not None}
            default = NetworkPolicy.model_validate({**default.model_dump(), **fields})
        if default != network.default or args.ceiling or args.ports is not None:
            network = client.admin_network_set(
                AdminNetwork(
                    default=default,
                    ceiling=args.ceiling or network.ceiling,
                    ports=network.ports if args.ports is None else args.ports,
                )
            )
    if args.json:
        print_json(network)
    else:
        d = network.default
        out().print(
            f"ceiling {network.ceiling}; default {d.mode}"
            f" allow {escape(' '.join(d.allow)) or '-'} deny {escape(' '.join(d.deny)) or '-'};"
            f" ports 80 443 {' '.join(map(str, network.ports))}".rstrip()
        )
    return 0


def _secret_set(args: argparse.Namespace, settings: Settings) -> int:
    if sys.stdin.isatty():
        value = getpass.getpass(f"value of {args.name} (not shown): ")
    else:
        value = sys.stdin.read().rstrip("\r\n")
    if not value:
        return error("no value given", f"pipe it in: agentcell secrets set {args.name} --hosts ...")
    with connect(args, settings) as client:
        secret = client.secrets_set(args.name, value, args.hosts)
    out().print(
        f"secret {secret.name} stored; programs in your cell see a placeholder in "
        f"${secret.name}, sent as the value only to {escape(' '.join(secret.hosts))}"
    )
    return 0


def _secret_ls(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings) as client:
        secrets = client.secrets()
    if args.json:
        print_json(secrets)
    elif not secrets:
        out().print("no secrets (store one: agentcell secrets set NAME --hosts HOST < file)")
    else:
        table = Table(box=None)
        for column in ("name", "hosts", "updated"):
            table.add_column(column)
        for s in secrets:
            table.add_row(
                s.name, escape(" ".join(s.hosts)), s.updated_at.strftime("%Y-%m-%d %H:%M")
            )
        out().print(table)
    return 0


def _secret_rm(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings) as client:
        client.secrets_rm(args.name)
    out().print(f"secret {args.name} deleted")
    return 0

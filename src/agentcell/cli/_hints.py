"""Hints in the CLI's words. The server's hints speak HTTP (``GET /v1/sessions``, the
``Authorization`` header, ``/docs``), right for API clients; the CLI shows the command to
run instead (or the option to give). Phrases the server's hints use, translated; a test keeps
this list complete."""

from __future__ import annotations

from agentcell.errors import AgentcellError

PHRASES = {
    "list your sessions: GET /v1/sessions": "list your sessions: agentcell sessions ls",
    "see /docs for the request schema": "see agentcell COMMAND --help",
    "send the header 'Authorization: Bearer <your API key>'": (
        "set AGENTCELL_API_KEY to your key (the admin makes one: agentcell users add NAME)"
    ),
    "send the admin token": (
        "set AGENTCELL_ADMIN_TOKEN (the server's first screen shows it), or run the command "
        "on the server's host, where the data dir holds it"
    ),
    "use a user's API key for this": "set AGENTCELL_API_KEY to a user's key",
    "send some text to ask the agent": 'agentcell chat "what to ask"',
    "slow down: retry after the number of seconds in the Retry-After header": (
        "slow down: retry in a few seconds"
    ),
    # jobs and schedules (the server's hints name no command; the CLI's do)
    "list your jobs: GET /v1/jobs": "list your jobs: agentcell jobs ls",
    "list your jobs to see their ids": "list your jobs to see their ids: agentcell jobs ls",
    "list your schedules: GET /v1/schedules": "list your schedules: agentcell schedules ls",
    "see what listens: GET /v1/cell/ports": "see what listens: agentcell ports ls",
    "list the cells: GET /v1/admin/cells": "list the cells: agentcell cells ls",
    "list your terminals: GET /v1/cell/terminals": "list your terminals: agentcell terminals ls",
    "list your secrets to see names": "list your secrets: agentcell secrets ls",
    "or cancel one, then submit again": (
        "or cancel one (agentcell jobs ls, agentcell jobs cancel ID), then run it again"
    ),
    "e.g. '0 7 * * *' for every day at 07:00": "e.g. --cron '0 7 * * *' for every day at 07:00",
    "name an IANA time zone, e.g.": "give --tz an IANA time zone, e.g.",
    "give a time in the future": "give --at a time in the future, e.g. --at +10m",
    "give a shorter timeout": "give a shorter --timeout",
    "write the program to a file in the workspace and run the file": (
        "put the program in a file (agentcell files put prog.py) and run it: "
        "agentcell jobs run --file prog.py"
    ),
    "delete a schedule you no longer need, then create this one": (
        "delete a schedule you no longer need (agentcell schedules ls, agentcell schedules rm "
        "ID), then run this one again"
    ),
    "retry it once it has ended, or cancel it": (
        "agentcell jobs retry ID once it has ended, or agentcell jobs cancel ID"
    ),
    "see its state and log; retry it to run it again": (
        "see its state and log (agentcell jobs status ID, agentcell jobs logs ID); run it "
        "again: agentcell jobs retry ID"
    ),
}


def cli_hint(error: AgentcellError) -> str:
    """The error's hint, with every HTTP phrase of the server's replaced by a CLI command."""
    hint = error.hint
    for phrase, words in PHRASES.items():
        hint = hint.replace(phrase, words)
    return hint

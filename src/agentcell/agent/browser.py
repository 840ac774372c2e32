"""The browser's tools: ``fetch`` (a page as readable text, by a small standard-library script run
inside the cell) and a headless Chromium driven by Playwright *inside the cell*, kept alive across
calls in the session's browser context (only the ``full`` image has Chromium and Playwright).

Everything runs in the cell, so a cell without network reaches nothing but its own loopback.
"""

from __future__ import annotations

import json
import secrets
import shlex
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from pydantic_ai import ModelRetry, RunContext, ToolFailed

from agentcell.agent.tools import OUTPUT_BYTES, AgentDeps, describe, fixable, trim
from agentcell.executor.desktop import X_SOCKET
from agentcell.executor.protocol import DESKTOP_DISPLAY, DESKTOP_SIZE

MARK = "\x1eagentcell:"  # starts the line that carries a script's JSON answer
# What Chromium says when the egress proxy refuses a connection (or there is none).
PROXY_REFUSALS = ("ERR_TUNNEL_CONNECTION_FAILED", "ERR_PROXY_CONNECTION_FAILED")
PAGE_BYTES = 5 * 1024 * 1024

FETCH_SCRIPT = r"""
import html.parser, json, sys, urllib.error, urllib.request

SKIP = {"script", "style", "noscript", "template", "svg", "head"}
BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section",
         "article", "header", "footer", "pre", "table", "ul", "ol", "blockquote", "title"}

class Text(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.out, self.skip, self.title, self.in_title = [], 0, "", False
    def handle_starttag(self, tag, attrs):
        if tag in SKIP: self.skip += 1
        if tag == "title": self.in_title = True
        if tag in BLOCK: self.out.append("\n")
    def handle_endtag(self, tag):
        if tag in SKIP and self.skip: self.skip -= 1
        if tag == "title": self.in_title = False
        if tag in BLOCK: self.out.append("\n")
    def handle_data(self, data):
        if self.in_title: self.title += data
        elif not self.skip: self.out.append(data)
    def text(self):
        lines = (" ".join(line.split()) for line in "".join(self.out).splitlines())
        return "\n".join(line for line in lines if line)

def answer(**fields):
    print("\x1eagentcell:" + json.dumps(fields))

url, limit = sys.argv[1], int(sys.argv[2])
try:
    request = urllib.request.Request(url, headers={"User-Agent": "agentcell-fetch/1"})
    with urllib.request.urlopen(request, timeout=30) as r:
        raw, ctype = r.read(limit), r.headers.get_content_type()
        charset, status, final = r.headers.get_content_charset() or "utf-8", r.status, r.geturl()
    body = raw.decode(charset, "replace")
    title = ""
    if "html" in ctype:
        parser = Text()
        parser.feed(body)
        title, body = " ".join(parser.title.split()), parser.text()
    answer(ok=True, status=status, url=final, type=ctype, title=title, text=body)
except urllib.error.HTTPError as e:
    if e.headers.get("X-Agentcell-Egress") == "refused":  # the egress proxy said no, and why
        answer(ok=False, refused=True, error=e.read(2000).decode("utf-8", "replace").strip())
    else:
        answer(ok=False, error=f"HTTP {e.code} {e.reason}")
except (urllib.error.URLError, OSError) as e:
    reason = getattr(e, "reason", e)
    # A refused CONNECT: http.client gives the proxy's status line, which holds its reason.
    refused = "Tunnel connection failed: 403" in str(reason)
    answer(ok=False, network=True, refused=refused, error=f"{type(reason).__name__}: {reason}")
except Exception as e:
    answer(ok=False, error=f"{type(e).__name__}: {e}")
"""

# Defined in the browser context on every call (cheap); the browser and page live in its globals.
BROWSER_SETUP = (
    r"""
import importlib.util as _ac_util, json as _ac_json, os as _ac_os

def _ac_page(navigating=False):
    # On the live desktop's display when it is open (the user watches), else headless; a
    # browser that is not where it should be is started again before a navigation.
    g = globals()
    headful = _ac_os.path.exists("@X_SOCKET@")
    browser = g.get("_ac_browser")
    if navigating and browser is not None and g.get("_ac_headful") != headful:
        browser.close()
        browser = None
    page = g.get("_ac_page_obj")
    if browser is not None and page is not None and not page.is_closed():
        return page
    if browser is None or not browser.is_connected():
        from playwright.sync_api import sync_playwright
        g["_ac_pw"] = g.get("_ac_pw") or sync_playwright().start()
        proxy = _ac_os.environ.get("HTTPS_PROXY")  # the cell's egress forwarder
        flags = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
        browser = g["_ac_browser"] = g["_ac_pw"].chromium.launch(
            executable_path="/usr/bin/chromium",
            headless=not headful,
            args=flags + (["--window-position=0,0", "--window-size=@SIZE@"] if headful else []),
            env={**_ac_os.environ, "DISPLAY": "@DISPLAY@"} if headful else None,
            proxy={"server": proxy, "bypass": "localhost,127.0.0.1"} if proxy else None,
        )
        g["_ac_headful"] = headful
    page = g["_ac_page_obj"] = browser.new_page(no_viewport=headful)
    return page

def _ac_where(page, **more):
    return {"url": page.url, "title": page.title(), **more}

def _ac_open(url):
    page = _ac_page(navigating=True)
    response = page.goto(url, wait_until="load", timeout=30000)
    return _ac_where(page, status=response.status if response else None)

def _ac_read_text():
    page = _ac_page()
    return _ac_where(page, text=page.inner_text("body"))

def _ac_click(selector):
    page = _ac_page()
    page.click(selector, timeout=10000)
    page.wait_for_load_state("load", timeout=10000)
    return _ac_where(page)

def _ac_type(selector, text):
    page = _ac_page()
    page.fill(selector, text, timeout=10000)
    return _ac_where(page)

def _ac_screenshot(path):
    page = _ac_page()
    folder = _ac_os.path.dirname(path)
    if folder:
        _ac_os.makedirs(folder, exist_ok=True)
    page.screenshot(path=path, full_page=True)
    return _ac_where(page, path=path, bytes=_ac_os.path.getsize(path))

def _ac_call(name, *args):
    if not (_ac_os.path.exists("/usr/bin/chromium") and _ac_util.find_spec("playwright")):
        result = {"ok": False, "missing": True}
    else:
        try:
            result = {"ok": True, **globals()["_ac_" + name](*args)}
        except Exception as exc:
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    print("\x1eagentcell:" + _ac_json.dumps(result))
""".replace("@X_SOCKET@", X_SOCKET)
    .replace("@DISPLAY@", f":{DESKTOP_DISPLAY}")
    .replace("@SIZE@", f"{DESKTOP_SIZE[0]},{DESKTOP_SIZE[1]}")
)


def no_network(url: str, why: str) -> str:
    return (
        f"cannot fetch {url}: {why}. The cell reaches other hosts only through agentcell's "
        "egress proxy, and only those the user's network policy allows. Tell the user: "
        "`agentcell network show` shows it, `agentcell network allow HOST` allows a host "
        "(within what the admin permits). Pages served inside the cell (127.0.0.1) still work."
    )


NO_CHROMIUM = (
    "headless Chromium is not available in this cell: its image has no Chromium/Playwright "
    "(the `minimal` profile). The operator can switch to the `full` image "
    "(agentcell image build --profile full, then AGENTCELL_IMAGE_PROFILE=full). "
    "Use fetch to read pages as text meanwhile."
)


def answer_of(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.split("\n")):  # not splitlines: it splits at \x1e too
        if line.startswith(MARK):
            data = json.loads(line[len(MARK) :])
            return data if isinstance(data, dict) else None
    return None


def web_content(url: str, text: str) -> str:
    """Text from the web, marked as such for the model: between tags that carry a boundary
    drawn at random for this call, which the page cannot know, so it cannot close the block
    early and write outside it. The agents' instructions say such content is data."""
    boundary = secrets.token_hex(8)
    return (
        f'<untrusted-web-content boundary="{boundary}" source={json.dumps(url)}>\n'
        f'{text}\n</untrusted-web-content boundary="{boundary}">'
    )


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ModelRetry(f"{url!r} is not an http(s) URL")
    return parts.hostname


async def fetch(ctx: RunContext[AgentDeps], url: str) -> str:
    """Fetch a web page (or any http/https URL) and return its readable text and title.

    Args:
        url: the full URL, starting with http:// or https://.
    """
    deps = ctx.deps
    _check_url(url)
    command = (
        f"python3 - {shlex.quote(url)} {PAGE_BYTES} <<'AGENTCELL_FETCH'\n"
        f"{FETCH_SCRIPT}\nAGENTCELL_FETCH\n"
    )
    with fixable():
        result = await deps.cell.exec(command, "shell", output_limit=OUTPUT_BYTES * 8, env={})
    data = answer_of(result.stdout)
    if data is None:
        detail = trim(result.stderr or result.stdout, 2000) or describe(result, 2000)
        raise ToolFailed(f"fetching {url} failed: {detail}")
    if not data["ok"]:
        if data.get("refused") or data.get("network"):
            raise ToolFailed(no_network(url, data["error"]))
        raise ToolFailed(f"fetching {url} failed: {data['error']}")
    head = f"{data['url']} (HTTP {data['status']}, {data['type']})"
    title = f"title: {data['title']}\n\n" if data["title"] else ""
    return head + "\n" + web_content(data["url"], title + trim(data["text"], deps.output_chars))


async def _browse(ctx: RunContext[AgentDeps], op: str, *args: str) -> dict[str, Any]:
    deps = ctx.deps
    code = f"{BROWSER_SETUP}\n_ac_call({op!r}, {', '.join(repr(a) for a in args)})\n"
    with fixable():
        # background: Chromium lives on in the browser's own context between calls (the page
        # is kept); without it, every exec's end would kill it.
        result = await deps.cell.exec(
            code,
            "python",
            context=deps.browser_context,
            output_limit=OUTPUT_BYTES * 8,
            env={},
            background=True,
        )
    data = answer_of(result.stdout)
    if data is None:
        detail = trim(result.stderr or result.stdout, 2000) or f"exit code {result.exit_code}"
        if result.timed_out:
            detail = "the browser did not answer in time and was stopped"
        raise ModelRetry(f"the browser failed: {detail}")
    if data.get("missing"):
        raise ToolFailed(NO_CHROMIUM)
    if not data["ok"]:
        if op == "open" and any(refusal in data["error"] for refusal in PROXY_REFUSALS):
            raise ToolFailed(no_network(args[0], "the egress proxy refused the connection"))
        raise ModelRetry(f"{op} failed: {data['error']}")
    return data


def _where(data: dict[str, Any], text: str = "") -> str:
    """Where the browser is; the page's title (and ``text``) marked as the web's."""
    body = f"title: {data['title']}" + (f"\n\n{text}" if text else "")
    return f"page: {data['url']}\n" + web_content(data["url"], body)


async def open_page(ctx: RunContext[AgentDeps], url: str) -> str:
    """Open a URL in the headless browser (one page, kept between calls).

    Args:
        url: the full URL, starting with http:// or https://.
    """
    _check_url(url)
    data = await _browse(ctx, "open", url)
    return f"opened, HTTP {data['status']}; {_where(data)}"


async def read_text(ctx: RunContext[AgentDeps]) -> str:
    """The visible text of the page open in the browser."""
    data = await _browse(ctx, "read_text")
    return _where(data, trim(data["text"], ctx.deps.output_chars))


async def click(ctx: RunContext[AgentDeps], selector: str) -> str:
    """Click an element of the open page.

    Args:
        selector: a Playwright selector, e.g. "#submit", "text=Next" or "button:has-text('Go')".
    """
    data = await _browse(ctx, "click", selector)
    return f"clicked {selector}; {_where(data)}"


async def type_text(ctx: RunContext[AgentDeps], selector: str, text: str) -> str:
    """Fill an input field of the open page with text (replacing what it held).

    Args:
        selector: a Playwright selector of the input, e.g. "#q" or "input[name=email]".
        text: the text to put in.
    """
    data = await _browse(ctx, "type", selector, text)
    return f"typed into {selector}; {_where(data)}"


async def screenshot(ctx: RunContext[AgentDeps], path: str = "screenshot.png") -> str:
    """Save a PNG screenshot of the open page into the workspace.

    Args:
        path: where to save it, relative to /workspace.
    """
    clean = PurePosixPath(path)
    if clean.is_absolute() or ".." in clean.parts or not clean.name:
        raise ModelRetry("path must be a file path relative to /workspace, without '..'")
    data = await _browse(ctx, "screenshot", str(clean))
    return f"saved a screenshot of {data['url']} to {data['path']} ({data['bytes']} bytes)"


BROWSER_TOOLS = (fetch, open_page, read_text, click, type_text, screenshot)

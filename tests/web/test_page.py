"""The web page (DESIGN §12) in real Chromium (Debian's, driven by Playwright) against a live
server with real cells: sign-in, a chat turn streamed from a scripted model (delegation
folded), files dropped, previewed and downloaded, a terminal, a second user who sees none of
the first's things, payloads that must not run (a model's answer, an uploaded SVG), the CSRF
token. Each view's screenshot is kept as a test artifact."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models.function import AgentInfo

from tests.api.test_ports import PORT, start_server
from tests.api.test_sessions import add_user
from tests.conftest import Live
from tests.scripted import Scripted, call, returned, role, text

pytestmark = [pytest.mark.docker, pytest.mark.slow]
ARTIFACTS = Path(os.environ.get("AGENTCELL_TEST_ARTIFACTS", "/tmp/agentcell-test-artifacts"))
XSS = (
    "Done. <img src=x onerror=\"window.pwned='img'\"><script>window.pwned='script'</script>"
    "[click](javascript:window.pwned='link') <svg onload=\"window.pwned='svg'\"></svg> **bold**"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is missing on the host: scripts/setup installs it")
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield launched
        launched.close()


def key_of(http: httpx.Client) -> str:
    return str(http.headers["Authorization"].split()[1])


@pytest.fixture
def alice(chat_server: Live) -> Iterator[httpx.Client]:
    with add_user(chat_server, "alice") as http:
        yield http


SignIn = Callable[[str], Page]


@pytest.fixture
def sign_in(browser: Browser, chat_server: Live) -> Iterator[SignIn]:
    """Sign a new browser context in with a key; its page fails the test on a script error."""
    contexts = []

    def open_page(key: str) -> Page:
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        contexts.append(context)
        page = context.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on(
            "console",
            lambda m: (
                m.type == "error"
                and "Content Security Policy" in m.text
                and problems.append(m.text)
            ),
        )
        page.problems = problems  # type: ignore[attr-defined]
        page.goto(chat_server.url + "/")
        page.get_by_label("API key").fill(key)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_selector("#who-name")
        return page

    yield open_page
    for context in contexts:
        context.close()


def shot(page: Page, name: str) -> None:
    (ARTIFACTS / "web").mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web" / f"{name}.png"), full_page=True)


def no_problems(page: Page) -> None:
    assert page.problems == []  # type: ignore[attr-defined]
    assert page.evaluate("window.pwned") is None


def test_signing_in_shows_who_and_keeps_the_key_nowhere(
    sign_in: SignIn, alice: httpx.Client
) -> None:
    page = sign_in(key_of(alice))
    assert page.inner_text("#who").startswith("Signed in as")
    assert page.inner_text("#who-name") == "alice"
    kept = page.evaluate(
        "JSON.stringify([location.href, document.cookie, {...localStorage}, {...sessionStorage}])"
    )
    assert key_of(alice) not in kept
    assert "agentcell_session" not in kept  # HttpOnly: no script of the page can read it
    page.reload()  # the cookie signs the page in again
    page.wait_for_selector("#who-name")
    page.click("#sign-out")
    page.wait_for_selector("#api-key")
    shot(page, "sign-in")
    no_problems(page)


def delegated_with_markdown(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    if role(info) == "coordinator":
        if not returned(messages):
            return call("delegate_coder", task="compute 6*7")
        return text("The answer is **42**, computed in your cell.\n\n- one\n- two")
    if not returned(messages):
        return call("run_python", code="print(6*7)")
    return text("it printed 42")


def test_a_chat_turn_streams_with_its_delegation_folded(
    sign_in: SignIn, alice: httpx.Client, scripted: Scripted
) -> None:
    scripted.script = delegated_with_markdown
    page = sign_in(key_of(alice))
    page.fill("#chat-input", "what is 6*7?")
    page.keyboard.press("Enter")
    page.wait_for_selector(".message.assistant.finished", timeout=120_000)
    answer = page.locator(".message.assistant").last
    assert answer.locator("strong").inner_text() == "42"
    assert answer.locator("li").count() == 2
    coder = answer.locator("details.agent[data-agent=coder]")
    assert coder.count() == 1
    assert coder.get_attribute("open") is None  # folded once the coder answered
    coder.locator("> summary").click()
    tool = coder.locator("details.tool")
    tool.locator("> summary").click()
    assert "42" in tool.locator("pre.result").inner_text()
    shot(page, "chat")
    page.reload()  # the history shows the same turn
    page.wait_for_selector(".message.assistant.finished strong")
    assert page.locator(".message.assistant strong").inner_text() == "42"
    no_problems(page)


def test_a_script_in_a_models_answer_does_not_run(
    sign_in: SignIn, alice: httpx.Client, scripted: Scripted
) -> None:
    scripted.script = lambda _messages, _info: text(XSS)
    page = sign_in(key_of(alice))
    page.fill("#chat-input", "show me something")
    page.click("#chat-send")
    page.wait_for_selector(".message.assistant.finished strong", timeout=60_000)
    page.wait_for_timeout(300)  # an onerror would have fired by now
    log = page.inner_html("#chat-log")
    assert "<script" not in log
    assert "onerror" not in log
    assert "javascript:" not in log
    no_problems(page)


def test_a_link_to_a_page_of_the_cell_opens_on_the_preview_address(
    sign_in: SignIn, chat_server: Live, alice: httpx.Client, scripted: Scripted
) -> None:
    start_server(alice)
    scripted.script = lambda _m, _i: text(f"See [the app](/v1/cell/ports/{PORT}/hello?x=1).")
    page = sign_in(key_of(alice))
    page.fill("#chat-input", "show me the app")
    page.click("#chat-send")
    page.wait_for_selector("a[data-port]")
    with page.context.expect_page() as opened:
        page.click("a[data-port]")
    tab = opened.value
    tab.wait_for_url(lambda url: "/hello" in url and "token" not in url)
    port = urlsplit(chat_server.url).port
    assert tab.url == f"http://localhost:{port}/v1/cell/ports/{PORT}/hello?x=1"  # token traded
    assert tab.inner_text("body") == "hello"
    no_problems(page)


def drop_files(page: Page, files: dict[str, str]) -> None:
    """Drop files on the files view as a user's drag and drop does."""
    page.evaluate(
        """(files) => {
          const data = new DataTransfer();
          for (const [name, body] of Object.entries(files)) data.items.add(new File([body], name));
          const zone = document.getElementById("file-drop");
          for (const type of ["dragenter", "dragover", "drop"]) {
            const options = {dataTransfer: data, bubbles: true, cancelable: true};
            zone.dispatchEvent(new DragEvent(type, options));
          }
        }""",
        files,
    )


def test_files_drop_preview_download_and_a_folder(
    sign_in: SignIn, alice: httpx.Client, tmp_path: Path
) -> None:
    page = sign_in(key_of(alice))
    page.click("#nav a[data-view=files]")
    page.wait_for_selector("#file-list")
    drop_files(page, {"dropped.txt": "hello from a drop\n", "table.csv": 'a,b\n1,"x,y"\n'})
    page.wait_for_selector("button[data-path='table.csv']")
    assert alice.get("/v1/files/raw", params={"path": "dropped.txt"}).text == "hello from a drop\n"
    page.click("button[data-path='dropped.txt']")
    page.wait_for_selector("#file-text")
    assert page.inner_text("#file-text").strip() == "hello from a drop"
    page.click("button[data-path='table.csv']")
    page.wait_for_selector("#file-csv")
    assert page.locator("#file-csv td").all_inner_texts() == ["1", "x,y"]
    with page.expect_download() as download:
        page.click("button[aria-label='Download dropped.txt']")
    assert Path(download.value.path()).read_text() == "hello from a drop\n"
    folder = tmp_path / "site"
    (folder / "css").mkdir(parents=True)
    (folder / "index.html").write_text("<h1>site</h1>")
    (folder / "css" / "a.css").write_text("h1 {}")
    page.set_input_files("#folder-input", str(folder))
    page.wait_for_selector("button[data-path='site']")
    assert alice.get("/v1/files/raw", params={"path": "site/css/a.css"}).text == "h1 {}"
    shot(page, "files")
    no_problems(page)


def test_an_uploaded_svg_or_html_never_runs_in_the_page(
    sign_in: SignIn, alice: httpx.Client
) -> None:
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40" onload="top.pwned=1">'
        "<script>top.pwned=2</script><circle cx='20' cy='20' r='15' fill='red'/></svg>"
    )
    alice.put("/v1/files/raw", params={"path": "evil.svg"}, content=svg.encode())
    html = "<script>top.pwned=3</script><img src=x onerror='top.pwned=4'>"
    alice.put("/v1/files/raw", params={"path": "evil.html"}, content=html.encode())
    alice.put("/v1/files/raw", params={"path": "evil.md"}, content=html.encode())
    page = sign_in(key_of(alice))
    page.goto(page.url.split("#")[0] + "#/files")
    page.click("button[data-path='evil.svg']")
    page.wait_for_selector("#file-image")
    page.click("button[data-path='evil.html']")
    page.wait_for_selector("#file-text")
    assert "<script>" in page.inner_text("#file-text")  # shown as its source
    page.click("button[data-path='evil.md']")
    page.wait_for_selector("#file-preview .markdown")
    page.wait_for_timeout(300)
    assert "<script" not in page.inner_html("#file-preview")
    no_problems(page)


def test_a_job_shows_its_log_live_and_is_cancelled(sign_in: SignIn, alice: httpx.Client) -> None:
    page = sign_in(key_of(alice))
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#nav a[data-view=jobs]")
    page.wait_for_selector("main[data-ready=jobs]")
    page.select_option("#job-language", "shell")
    page.fill("#job-code", "for i in 1 2 3; do echo line $i; sleep 1; done; mkdir -p out")
    page.click("#job-submit")
    page.wait_for_selector("#job-log")
    page.wait_for_function(
        "() => document.querySelector('#job-log').innerText.includes('line 1')", timeout=60_000
    )
    early = page.inner_text("#job-log")
    assert "line 3" not in early  # followed live, not read at the end
    page.wait_for_selector("#job-state .state-succeeded", timeout=60_000)
    assert "line 3" in page.inner_text("#job-log")
    shot(page, "job")
    page.click("#job-back")
    page.wait_for_selector("main[data-ready=jobs]")
    page.select_option("#job-language", "shell")
    page.fill("#job-code", "echo sleeping; sleep 300")
    page.click("#job-submit")
    page.wait_for_selector("#job-state .state-running", timeout=60_000)
    page.click("#job-cancel")
    page.wait_for_selector("#job-state .state-cancelled", timeout=60_000)
    jobs = alice.get("/v1/jobs").json()["jobs"]
    assert sorted(j["state"] for j in jobs) == ["cancelled", "succeeded"]
    no_problems(page)


def test_a_terminal_runs_a_command(sign_in: SignIn, alice: httpx.Client) -> None:
    page = sign_in(key_of(alice))
    page.click("#nav a[data-view=terminal]")
    page.wait_for_selector("#terminal-status:text('connected')", timeout=60_000)
    page.keyboard.type("echo $((6*7)) > t.txt; echo the answer is $((6*7))\n")
    page.wait_for_function(
        "() => document.querySelector('#terminal .xterm-rows').innerText.includes('answer is 42')"
    )
    assert alice.get("/v1/files/raw", params={"path": "t.txt"}).text == "42\n"
    shot(page, "terminal")
    no_problems(page)


def test_another_user_sees_none_of_the_first_users_things(
    sign_in: SignIn, chat_server: Live, alice: httpx.Client
) -> None:
    alice.put("/v1/files/raw", params={"path": "alice-only.txt"}, content=b"private")
    chat = alice.post("/v1/sessions", json={"title": "alice's chat"}).json()["id"]
    job = {"kind": "exec", "language": "shell", "code": "echo alice-job", "name": "alice-job"}
    assert alice.post("/v1/jobs", json=job).status_code == 201
    first = sign_in(key_of(alice))
    first.wait_for_selector(f"button[data-session='{chat}']")
    with add_user(chat_server, "bob") as bob:
        page = sign_in(key_of(bob))
        assert page.inner_text("#who-name") == "bob"
        page.wait_for_selector("main[data-ready=chat]")
        assert page.locator("button[data-session]").count() == 0
        page.click("#nav a[data-view=files]")
        page.wait_for_selector("main[data-ready=files]")
        assert "alice-only.txt" not in page.inner_text("#file-list")
        page.click("#nav a[data-view=jobs]")
        page.wait_for_selector("main[data-ready=jobs]")
        assert "alice-job" not in page.inner_text("main")
        seen = page.evaluate(
            """async (id) => [
              (await fetch(`/v1/sessions/${id}`)).status,
              (await fetch('/v1/files/raw?path=alice-only.txt')).status,
              (await (await fetch('/v1/me')).json()).name,
            ]""",
            chat,
        )
        assert seen == [404, 404, "bob"]
        no_problems(page)


def test_a_change_without_the_csrf_token_is_refused(sign_in: SignIn, alice: httpx.Client) -> None:
    page = sign_in(key_of(alice))
    answer = page.evaluate(
        """async () => {
          const r = await fetch('/v1/files/raw?path=forged.txt', {method: 'PUT', body: 'x'});
          return [r.status, (await r.json()).error.code];
        }"""
    )
    assert answer == [403, "csrf_failed"]
    assert alice.get("/v1/files", params={"path": "forged.txt"}).status_code == 404
    no_problems(page)


def test_every_view_renders(sign_in: SignIn, chat_server: Live, alice: httpx.Client) -> None:
    page = sign_in(key_of(alice))
    for view in ("chat", "files", "jobs", "cell", "network", "desktop"):
        page.click(f"#nav a[data-view={view}]")
        page.wait_for_selector(f"main[data-ready={view}]", timeout=60_000)
        shot(page, f"view-{view}")
    phone = page.context.browser.new_page(viewport={"width": 390, "height": 844})  # type: ignore[union-attr]
    phone.goto(chat_server.url + "/")
    phone.wait_for_selector("#api-key")
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot(phone, "phone-sign-in")
    phone.close()
    admin = sign_in(chat_server.admin_token)
    assert admin.inner_text("#who-name") == "admin"
    alice_id = alice.get("/v1/me").json()["id"]
    for view, shows in (("users", alice_id), ("cells", "MiB"), ("audit", "signin")):
        admin.click(f"#nav a[data-view={view}]")
        admin.wait_for_selector(f"main[data-ready={view}]")
        admin.wait_for_function(
            "(text) => document.querySelector('main').innerText.includes(text)", arg=shows
        )
        shot(admin, f"admin-{view}")
    no_problems(page)
    no_problems(admin)


def test_the_api_reference_renders_offline(browser: Browser, chat_server: Live) -> None:
    context = browser.new_context()
    elsewhere: list[str] = []
    context.on(  # what came back from anywhere but this server (ReDoc's logo link: blocked)
        "response",
        lambda response: (
            None
            if response.url.startswith((chat_server.url, "data:", "blob:"))
            else elsewhere.append(response.url)
        ),
    )
    page = context.new_page()
    for path, rendered in (("/docs", ".opblock"), ("/redoc", "[data-section-id]")):
        page.goto(chat_server.url + path)
        page.wait_for_selector(rendered)
        assert page.locator(rendered).count() > 20  # every operation is there
        shot(page, path.strip("/"))
    assert elsewhere == []
    context.close()

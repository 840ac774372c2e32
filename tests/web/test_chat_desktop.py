"""In the full image, the chat shows the live desktop beside the turn while the browser agent
works: the viewer in a frame of the page, its canvas drawing the agent's Chromium."""

from __future__ import annotations

import pytest

from tests.agent.conftest import full_image  # noqa: F401 - a fixture
from tests.api.test_desktop import (  # noqa: F401 - a fixture
    RED_ON_CANVAS,
    desktop_server,
    the_browser_agent_opens_a_red_page,
)
from tests.api.test_sessions import add_user
from tests.conftest import Live
from tests.scripted import Scripted
from tests.web.test_page import SignIn, browser, key_of, shot, sign_in  # noqa: F401 - fixtures

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture
def chat_server(desktop_server: Live) -> Live:  # noqa: F811 - the page's fixtures use this name
    return desktop_server


@pytest.mark.timeout(3600)
def test_the_desktop_shows_beside_the_chat_while_the_browser_agent_works(
    sign_in: SignIn,  # noqa: F811
    desktop_server: Live,  # noqa: F811
    scripted: Scripted,
) -> None:
    with add_user(desktop_server, "alice") as http:
        the_browser_agent_opens_a_red_page(http, scripted)
        page = sign_in(key_of(http))
        page.fill("#chat-input", "open my page")
        page.click("#chat-send")
        frame = page.wait_for_selector("#chat-desktop-frame", timeout=120_000)
        viewer = frame.content_frame()
        assert viewer is not None
        viewer.wait_for_selector("#screen canvas", timeout=60_000)
        # The browser agent worked on the desktop's display from its first page: its red page
        # is drawn on the viewer's canvas, beside the chat.
        viewer.wait_for_function(RED_ON_CANVAS, timeout=120_000)
        page.wait_for_selector(".message.assistant.finished", timeout=300_000)
        shot(page, "chat-with-desktop")
        assert page.problems == []  # type: ignore[attr-defined]

"""The admin page at {base_url}comms/, driven in Debian's Chromium against a real server.

Every test leaves a light and a dark screenshot under $COMM_EXT_SCREENSHOTS (or a temporary
folder, printed in the test output) for a person to look at.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest
from authorizers import ReadOnlyAuthorizer
from chromium import BROWSER_TIMEOUT, needs_browser
from jupyter_server.auth import Authorizer
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from waiting import wait_for
from wsclient import KernelWS

HOSTILE = "<img src=x onerror=alert(1)>"


class NoEventsAuthorizer(Authorizer):
    """May do anything but subscribe to the server's event stream."""

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        return resource != "events"


@pytest.fixture
def authorizer() -> type[Authorizer] | None:
    """The server's Authorizer class (parametrize to change it); None keeps the default."""
    return None


@pytest.fixture
def jp_server_config(jp_server_config: Any, authorizer: type[Authorizer] | None) -> Any:
    if authorizer is not None:
        jp_server_config.ServerApp.authorizer_class = authorizer
    return jp_server_config


class Page:
    """The comms page in a browser tab, with what it did that it should not have."""

    def __init__(self, tab: Any, shots: Path, name: str) -> None:
        self.tab = tab
        self.shots = shots
        self.name = name
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        tab.on("dialog", self._on_dialog)
        tab.on("pageerror", lambda e: self.errors.append(str(e)))

    async def _on_dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        await dialog.dismiss()

    def row(self, comm_id: str) -> Any:
        return self.tab.locator(f'#comms tr[data-comm-id="{comm_id}"]')

    async def confirm(self, expected: str, meanwhile: Awaitable[Any] | None = None) -> None:
        """Answer the confirmation that says `expected`: OK, after `meanwhile` if given."""
        dialog = self.tab.locator("dialog#confirm")
        await dialog.wait_for(state="visible")
        assert expected in await dialog.locator("#confirm-text").text_content()
        if meanwhile is not None:
            await meanwhile
        await dialog.locator("#confirm-ok").click()

    async def snap(self, step: str = "") -> None:
        """A light and a dark full-page screenshot."""
        stem = f"{self.name}{'-' + step if step else ''}"
        for scheme in ("light", "dark"):
            await self.tab.emulate_media(color_scheme=scheme)
            await self.tab.screenshot(path=self.shots / f"{stem}-{scheme}.png", full_page=True)
        await self.tab.emulate_media(color_scheme="light")


@pytest.fixture
def open_page(
    browser: Any,
    jp_serverapp: Any,
    http_server_client: Any,
    jp_http_port: int,
    jp_base_url: str,
    screenshots: Path,
) -> Any:
    """Open the page with the server's token in the URL, as `jupyter server` prints it."""
    token = jp_serverapp.identity_provider.token
    pages: list[Page] = []

    async def open_(name: str, status: str = "Live", token_in_url: bool = True) -> Page:
        """`token_in_url=False`: log in with the token once, then use the cookie and XSRF."""
        context = await browser.new_context(viewport={"width": 1300, "height": 800})
        context.set_default_timeout(BROWSER_TIMEOUT)
        tab = await context.new_page()
        page = Page(tab, screenshots, name)
        pages.append(page)
        url = f"http://127.0.0.1:{jp_http_port}{jp_base_url}comms/"
        await tab.goto(f"{url}?token={token}")
        if not token_in_url:
            await tab.goto(url)
            assert tab.url == url
        await tab.locator("#live-status", has_text=status).wait_for()
        return page

    yield open_
    for page in pages:
        assert page.dialogs == [], f"the page opened dialogs: {page.dialogs}"
        assert page.errors == [], f"the page raised: {page.errors}"


async def open_comms(ws: KernelWS, fetch_json: Any, *targets: str) -> list[str]:
    """Open comms from the kernel side; their ids, in order, once the REST API lists them."""
    names = json.dumps(list(targets))
    var = f"_comms_{uuid.uuid4().hex}"
    await ws.execute(
        f"from comm import create_comm\n{var} = [create_comm(target_name=t) for t in {names}]"
    )
    opened = [
        await ws.recv(lambda m: m["header"]["msg_type"] == "comm_open", timeout=30) for _ in targets
    ]
    ids = [m["content"]["comm_id"] for m in opened]

    async def listed() -> bool:
        models = await fetch_json("api", "comms")
        return set(ids) <= {m["comm_id"] for m in models}

    await wait_for(listed, timeout=20, what=f"GET /api/comms to list {targets}")
    return ids


async def kernel_comms(ws: KernelWS) -> dict[str, Any]:
    """What the kernel itself says it holds (comm_info_request, as a frontend asks)."""
    request = await ws.send("comm_info_request", {})
    msg_id = request["header"]["msg_id"]
    reply = await ws.recv(
        lambda m: (
            m["header"]["msg_type"] == "comm_info_reply"
            and m["parent_header"].get("msg_id") == msg_id
        )
    )
    return reply["content"]["comms"]


async def api_comm(fetch_json: Any, comm_id: str) -> dict:
    return await fetch_json("api", "comms", comm_id)


async def connect(start_kernel: Any, jp_ws_fetch: Any) -> tuple[str, KernelWS]:
    kernel_id = await start_kernel()
    return kernel_id, await KernelWS.connect(jp_ws_fetch, kernel_id)


# -- without a browser ---------------------------------------------------------------------


async def test_page_needs_login(
    http_server_client: Any, jp_http_port: int, jp_base_url: str
) -> None:
    client = AsyncHTTPClient()
    for path in ("comms/", "comms/static/main.js"):
        url = f"http://127.0.0.1:{jp_http_port}{jp_base_url}{path}"
        response = await client.fetch(url, follow_redirects=False, raise_error=False)
        assert response.code == 302, path
        assert response.headers["Location"].startswith(f"{jp_base_url}login?next="), path


async def test_page_knows_base_url_and_sets_xsrf_cookie(jp_fetch: Any, jp_base_url: str) -> None:
    response = await jp_fetch("comms/")
    html = response.body.decode()
    assert f'<meta name="jupyter-base-url" content="{jp_base_url}">' in html
    assert f'src="{jp_base_url}comms/static/main.js"' in html
    assert "_xsrf=" in response.headers.get("Set-Cookie", "")
    script = await jp_fetch("comms", "static", "main.js")
    assert "javascript" in script.headers["Content-Type"]


async def test_only_the_pages_own_files_are_served(jp_fetch: Any) -> None:
    # an editable install serves ui/ as it is: the Lab extension's sources are next to it
    for parts in (("lab", "package.json"), ("hub", "index.html"), ("..", "pyproject.toml")):
        with pytest.raises(HTTPClientError) as refused:
            await jp_fetch("comms", "static", *parts)
        assert refused.value.code == 404, parts


@pytest.mark.parametrize("authorizer", [ReadOnlyAuthorizer])
async def test_page_is_readable_by_read_only_user(jp_fetch: Any) -> None:
    assert (await jp_fetch("comms/")).code == 200


# -- in the browser ------------------------------------------------------------------------


@needs_browser
async def test_lists_comm_opened_in_kernel(
    open_page, start_kernel, jp_ws_fetch, fetch_json
) -> None:
    kernel_id, ws = await connect(start_kernel, jp_ws_fetch)
    (comm_id,) = await open_comms(ws, fetch_json, "probe")
    page = await open_page("lists")
    row = page.row(comm_id)
    await row.wait_for()
    cells = await row.locator("td").all_text_contents()
    model = await api_comm(fetch_json, comm_id)
    # target, model (none: not a widget), origin, id
    assert cells[1:5] == ["probe", "", model["origin"], comm_id[:8]]
    messages = model["messages"]
    assert cells[7:9] == [str(messages["to_kernel"]), str(messages["from_kernel"])]
    group = page.tab.locator("#comms tr.kernel", has_text=kernel_id[:8])
    assert "python3" in await group.text_content()
    await group.locator(".state-idle").wait_for()
    await group.get_by_text("1 connection").wait_for()
    await page.snap()
    ws.close()


@needs_browser
async def test_kernel_named_by_its_notebook(open_page, jp_ws_fetch, fetch_json) -> None:
    session = await fetch_json(
        "api",
        "sessions",
        method="POST",
        body=json.dumps({"path": "named.ipynb", "type": "notebook", "kernel": {"name": "python3"}}),
    )
    kernel_id = session["kernel"]["id"]
    ws = await KernelWS.connect(jp_ws_fetch, kernel_id)
    (comm_id,) = await open_comms(ws, fetch_json, "in.a.notebook")
    page = await open_page("named")
    await page.row(comm_id).wait_for()
    group = page.tab.locator("#comms tr.kernel", has_text=kernel_id[:8])
    assert await group.locator(".kernel-name").text_content() == "named.ipynb"
    assert "python3" in await group.text_content()
    options = await page.tab.locator("#filter-kernel option").all_text_contents()
    assert "named.ipynb" in options
    await page.snap()
    ws.close()


@needs_browser
async def test_recently_closed_hides_frontend_internal_comms(
    open_page, start_kernel, jp_ws_fetch, fetch_json
) -> None:
    _, ws = await connect(start_kernel, jp_ws_fetch)
    control, mine = await open_comms(ws, fetch_json, "jupyter.widget.control", "a.user.widget")
    await ws.execute(
        "from comm import get_comm_manager\n"
        "for c in list(get_comm_manager().comms.values()): c.close()"
    )

    async def both_closed() -> bool:
        models = await fetch_json("api", "comms", params={"status": "closed"})
        return {control, mine} <= {m["comm_id"] for m in models}

    await wait_for(both_closed, timeout=20, what="both comms in the closed history")
    page = await open_page("closed-internal")
    closed = page.tab.locator("#closed")
    await closed.locator(f'tr[data-comm-id="{mine}"]').wait_for()
    assert await closed.locator(f'tr[data-comm-id="{control}"]').count() == 0
    assert "1 frontend-internal hidden" in await page.tab.locator("#closed-count").text_content()
    await page.tab.get_by_label("Show frontend-internal comms").check()
    await closed.locator(f'tr[data-comm-id="{control}"]').wait_for()
    assert await page.tab.locator("#closed-count").text_content() == ""
    await page.snap()
    ws.close()


@needs_browser
async def test_shows_new_comm_without_reload(
    open_page, start_kernel, jp_ws_fetch, fetch_json
) -> None:
    _, ws = await connect(start_kernel, jp_ws_fetch)
    page = await open_page("new")
    await page.tab.locator("#empty").wait_for()
    await page.snap("empty")
    await page.tab.evaluate("window.notReloaded = true")
    (comm_id,) = await open_comms(ws, fetch_json, "arrives.later")
    await page.row(comm_id).wait_for()
    assert await page.tab.evaluate("window.notReloaded") is True
    assert await page.tab.locator("#empty").is_hidden()
    await page.snap("arrived")
    ws.close()


@needs_browser
@pytest.mark.parametrize("authorizer", [NoEventsAuthorizer])
async def test_polls_without_event_stream(open_page, start_kernel, jp_ws_fetch, fetch_json) -> None:
    _, ws = await connect(start_kernel, jp_ws_fetch)
    page = await open_page("polling", status="Polling")
    (comm_id,) = await open_comms(ws, fetch_json, "seen.by.polling")
    await page.row(comm_id).wait_for()
    await page.snap()
    ws.close()


@needs_browser
async def test_close_one_with_button(open_page, start_kernel, jp_ws_fetch, fetch_json) -> None:
    _, ws = await connect(start_kernel, jp_ws_fetch)
    doomed, kept = await open_comms(ws, fetch_json, "doomed", "kept")
    page = await open_page("close-one", token_in_url=False)
    await page.row(doomed).get_by_role("button", name="Close comm").click()
    await page.confirm(f"Close 1 comm: target “doomed”, id {doomed}")
    await page.row(doomed).wait_for(state="detached")
    await page.tab.locator("#notice", has_text="Closed 1 comm.").wait_for()
    closed_row = page.tab.locator(f'#closed tr[data-comm-id="{doomed}"]')
    await closed_row.wait_for()
    cells = await closed_row.locator("td").all_text_contents()
    assert cells[0] == "doomed" and cells[4] == "force-closed"
    # who closed it: their name, the username on hover
    model = await api_comm(fetch_json, doomed)
    assert model["closed_by"]
    assert cells[5] == (model.get("closed_by_name") or model["closed_by"])
    assert await closed_row.locator("td").nth(5).get_attribute("title") == model["closed_by"]
    await page.snap()
    held = await kernel_comms(ws)
    assert doomed not in held and kept in held
    assert await page.row(kept).is_visible()
    ws.close()


@needs_browser
async def test_close_selection(open_page, start_kernel, jp_ws_fetch, fetch_json) -> None:
    _, ws = await connect(start_kernel, jp_ws_fetch)
    first, second, spared = await open_comms(ws, fetch_json, "pick", "pick", "spare")
    page = await open_page("close-selection")
    for comm_id in (first, second):
        await page.row(comm_id).get_by_role("checkbox").check()
    await page.tab.get_by_role("button", name="Close 2 comms selected…").click()
    await page.confirm("Close 2 comms on 1 kernel?")
    await page.tab.locator("#notice", has_text="Closed 2 comms.").wait_for()
    for comm_id in (first, second):
        await page.row(comm_id).wait_for(state="detached")
    assert await page.tab.get_by_role("button", name="Close selected…").is_disabled()
    await page.snap()
    held = await kernel_comms(ws)
    assert spared in held and first not in held and second not in held
    ws.close()


@needs_browser
async def test_close_selection_counts_comms_closed_meanwhile(
    open_page, start_kernel, jp_ws_fetch, fetch_json
) -> None:
    """A comm of the selection closed elsewhere while the dialog is open is a 404 when the
    page closes it: counted as already closed, not a failure, and the rest are closed."""
    _, ws = await connect(start_kernel, jp_ws_fetch)
    picked = await open_comms(ws, fetch_json, "pick", "pick", "pick")
    page = await open_page("close-selection-meanwhile")
    for comm_id in picked:
        await page.row(comm_id).get_by_role("checkbox").check()
    await page.tab.get_by_role("button", name="Close 3 comms selected…").click()
    elsewhere = fetch_json("api", "comms", picked[1], method="DELETE")
    await page.confirm("Close 3 comms on 1 kernel?", meanwhile=elsewhere)
    notice = "Closed 2 comms. 1 comm had already closed."
    await page.tab.locator("#notice", has_text=notice).wait_for()
    for comm_id in picked:
        await page.row(comm_id).wait_for(state="detached")
    assert await page.tab.get_by_role("button", name="Close selected…").is_disabled()
    assert not set(picked) & set(await kernel_comms(ws))
    ws.close()


@needs_browser
async def test_bulk_close_idle(open_page, start_kernel, jp_ws_fetch, fetch_json) -> None:
    _, ws = await connect(start_kernel, jp_ws_fetch)
    stale = await open_comms(ws, fetch_json, "stale", "stale")
    # Idle past 0.1 minute (6 s), then one fresh comm that must survive.
    await wait_for(
        lambda: _idle_at_least(fetch_json, stale, 7), timeout=30, what="stale comms idle 7 s"
    )
    (fresh,) = await open_comms(ws, fetch_json, "fresh")
    page = await open_page("bulk-idle")
    await page.row(fresh).wait_for()
    await page.tab.get_by_label("Idle longer than").fill("0.1")
    await page.tab.get_by_role("button", name="Close idle…").click()
    await page.confirm("Close 2 comms idle longer than 0.1 minutes?")
    await page.tab.locator("#notice", has_text="Closed 2 comms").wait_for()
    for comm_id in stale:
        await page.row(comm_id).wait_for(state="detached")
    assert await page.row(fresh).is_visible()
    await page.snap()
    held = await kernel_comms(ws)
    assert fresh in held and not set(stale) & set(held)
    ws.close()


@needs_browser
async def test_finish_left_behind(open_page, start_kernel, jp_ws_fetch, fetch_json) -> None:
    _, ws = await connect(start_kernel, jp_ws_fetch)
    # a closed slider leaves its Layout and SliderStyle open; a second slider stays whole
    await ws.execute(
        "import ipywidgets\n"
        "gone, kept = ipywidgets.IntSlider(), ipywidgets.IntSlider()\n"
        "left = [gone.layout.comm.comm_id, gone.style.comm.comm_id]\n"
        "gone.close()"
    )

    async def left_behind() -> list[str]:
        models = await fetch_json("api", "comms", params={"status": "left_behind"})
        return [m["comm_id"] for m in models]

    await wait_for(lambda: _count_is(left_behind, 2), timeout=20, what="2 left behind")
    left = await left_behind()
    page = await open_page("finish-left-behind")
    button = page.tab.get_by_role("button", name="Finish left-behind…")
    await page.tab.locator("#summary", has_text="2 left behind").wait_for()
    await button.click()
    await page.confirm("Finish 2 left-behind models, and the models only they use?")
    await page.tab.locator("#notice", has_text="Finished 2 left-behind models.").wait_for()
    for comm_id in left:
        await page.row(comm_id).wait_for(state="detached")
    await page.snap()
    assert await left_behind() == []
    held = await kernel_comms(ws)
    assert not set(left) & set(held)
    assert len(held) == 3  # the kept slider, its layout and its style
    await wait_for(button.is_disabled, timeout=20, what="the button off with none left")
    ws.close()


async def _count_is(listing: Any, n: int) -> bool:
    return len(await listing()) == n


async def _idle_at_least(fetch_json: Any, comm_ids: list[str], seconds: float) -> bool:
    models = await fetch_json("api", "comms", params={"min_idle": str(seconds)})
    return set(comm_ids) <= {m["comm_id"] for m in models}


@needs_browser
async def test_hostile_target_is_text(open_page, start_kernel, jp_ws_fetch, fetch_json) -> None:
    _, ws = await connect(start_kernel, jp_ws_fetch)
    (comm_id,) = await open_comms(ws, fetch_json, HOSTILE)
    page = await open_page("hostile")
    row = page.row(comm_id)
    await row.wait_for()
    assert await row.locator("td").nth(1).text_content() == HOSTILE
    assert await page.tab.locator("img").count() == 0
    options = await page.tab.locator("#filter-target option").all_text_contents()
    assert HOSTILE in options
    # The confirmation quotes it as text too; Escape cancels and nothing closes.
    await row.get_by_role("button", name="Close comm").click()
    dialog = page.tab.locator("dialog#confirm")
    await dialog.wait_for(state="visible")
    assert HOSTILE in await dialog.text_content()
    await page.snap("confirm")
    await page.tab.keyboard.press("Escape")
    await dialog.wait_for(state="hidden")
    assert await row.is_visible()
    assert comm_id in await kernel_comms(ws)
    await page.snap()
    ws.close()


@needs_browser
@pytest.mark.parametrize("authorizer", [ReadOnlyAuthorizer])
async def test_read_only_user_may_look_not_close(
    open_page, start_kernel, jp_ws_fetch, fetch_json
) -> None:
    _, ws = await connect(start_kernel, jp_ws_fetch)
    (comm_id,) = await open_comms(ws, fetch_json, "look.only")
    page = await open_page("read-only")
    await page.row(comm_id).get_by_role("button", name="Close comm").click()
    await page.confirm("Close 1 comm")
    notice = page.tab.locator("#notice.error")
    await notice.wait_for()
    assert "you may look but not close" in (await notice.text_content()).lower()
    # Once refused, the page stops offering what the server will refuse.
    assert await page.row(comm_id).get_by_role("button", name="Close comm").is_disabled()
    assert await page.tab.get_by_role("button", name="Close idle…").is_disabled()
    assert (await api_comm(fetch_json, comm_id))["status"] == "open"
    assert comm_id in await kernel_comms(ws)
    await page.snap()
    ws.close()


@needs_browser
async def test_keyboard_sort_filter_select(
    open_page, start_kernel, jp_ws_fetch, fetch_json
) -> None:
    _, ws = await connect(start_kernel, jp_ws_fetch)
    ids = await open_comms(ws, fetch_json, "b.target", "a.target", "c.target")
    page = await open_page("keyboard")
    tab = page.tab
    await page.row(ids[0]).wait_for()
    target_header = tab.locator('#comms th[data-key="target"]')
    await target_header.locator("button").focus()
    await tab.keyboard.press("Enter")
    assert await target_header.get_attribute("aria-sort") == "ascending"
    targets = await tab.locator("#comms tbody tr[data-comm-id] td:nth-child(2)").all_text_contents()
    assert targets == ["a.target", "b.target", "c.target"]
    await tab.keyboard.press("Enter")
    assert await target_header.get_attribute("aria-sort") == "descending"
    # "/" jumps to the search box; the table narrows as one types.
    await tab.locator("body").press("/")
    await tab.keyboard.type("b.tar")
    await page.row(ids[1]).wait_for(state="detached")
    assert await tab.locator("#comms tbody tr[data-comm-id]").count() == 1
    # Space on a row's checkbox selects it, the bulk button counts it, focus stays put.
    box = page.row(ids[0]).get_by_role("checkbox")
    await box.focus()
    await tab.keyboard.press("Space")
    await tab.get_by_role("button", name="Close 1 comm selected…").wait_for()
    focused = await tab.evaluate("document.activeElement.dataset.focusKey")
    assert focused == f"select:{ids[0]}"
    await page.snap()
    ws.close()

"""The Comms panel in a real JupyterLab (issue 12), with the prebuilt extension as installed.

A real JupyterLab server subprocess with the extension, real ipykernel kernels running
ipywidgets, Debian's Chromium driven by Playwright. What a user sees is checked against what
the REST API says at the same time, so the panel cannot pass by showing something plausible.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from chromium import BROWSER_TIMEOUT, needs_browser
from playwright.async_api import TimeoutError as PlaywrightTimeout
from server_process import ServerProcess
from waiting import wait_for
from wsclient import execute_content


def notebook(source: str) -> str:
    return json.dumps(
        {
            "cells": [
                {
                    "cell_type": "code",
                    "execution_count": None,
                    "id": "widget",
                    "metadata": {},
                    "outputs": [],
                    "source": source,
                }
            ],
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)"}},
            "nbformat": 4,
            "nbformat_minor": 5,
        }
    )


SLIDER = "import ipywidgets\nslider = ipywidgets.IntSlider(value=7)\nslider"
BUTTON = "import ipywidgets\nipywidgets.Button(description='Press')"


class BaseUrlServer(ServerProcess):
    """A ServerProcess under a `base_url`: `url` ends with it, so every request goes under it."""

    BASE = "/under/base"

    def __init__(self, tmp: Path, args: list[str]) -> None:
        super().__init__(tmp, extension=True, args=[f"--ServerApp.base_url={self.BASE}", *args])
        self.url += self.BASE

    def sync_get(self, path: str, timeout: float = 2.0) -> int:
        # while starting up, `url` is still the root (which answers 404)
        prefix = "" if self.url.endswith(self.BASE) else self.BASE
        return super().sync_get(prefix + path, timeout)


async def open_lab(tab: Any, server: ServerProcess, path: str = "") -> None:
    """Load JupyterLab (on a notebook when `path` is given) and wait for its kernel."""
    where = f"tree/{path}" if path else ""
    await tab.goto(f"{server.url}/lab/{where}?token={server.token}")
    if path:
        await tab.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=60_000)
    else:
        await tab.locator(".jp-LabShell").wait_for(timeout=60_000)


async def run_cell(tab: Any, shows: str) -> None:
    """Run the current notebook's cell until `shows` (a selector) is in it."""
    notebook = tab.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    cell = notebook.locator(".jp-Cell .cm-content").first
    for _ in range(3):  # a run while the kernel connection settles can get lost
        await cell.click()
        await tab.keyboard.press("Control+Enter")
        try:
            await notebook.locator(shows).wait_for()
            return
        except PlaywrightTimeout:
            continue
    raise TimeoutError(f"JupyterLab did not show {shows} after three runs of the cell")


async def show_panel(tab: Any) -> Any:
    """Open the Comms panel from its sidebar tab (named by its caption) and return it."""
    sidebar_tab = tab.get_by_role("tab", name="Comms")
    if await sidebar_tab.get_attribute("aria-selected") != "true":
        await sidebar_tab.click()
    panel = tab.locator(".jp-CommsPanel")
    await panel.wait_for()
    return panel


async def kernel_of(server: ServerProcess, path: str) -> str:
    sessions = await server.get_json("/api/sessions")
    (kernel_id,) = [s["kernel"]["id"] for s in sessions if s["path"] == path]
    return kernel_id


async def open_ids(server: ServerProcess, kernel_id: str) -> set[str]:
    return {m["comm_id"] for m in await server.get_json(f"/api/comms?kernel_id={kernel_id}")}


async def shown_ids(panel: Any, kernel_id: str) -> set[str]:
    rows = panel.locator(f'[data-kernel-id="{kernel_id}"] [data-comm-id]')
    return set(await rows.evaluate_all("rows => rows.map(row => row.dataset.commId)"))


async def panel_matches_rest(panel: Any, server: ServerProcess, kernel_id: str) -> bool:
    expected = await open_ids(server, kernel_id)
    return bool(expected) and await shown_ids(panel, kernel_id) == expected


async def accept_dialog(tab: Any, title: str) -> None:
    dialog = tab.locator(".jp-Dialog")
    await dialog.get_by_text(title).wait_for()
    await dialog.locator("button.jp-mod-accept").click()
    await dialog.wait_for(state="detached")


def test_jupyterlab_lists_the_prebuilt_extension() -> None:
    """Installed from the package (no `jupyter lab build`): enabled and OK."""
    # `jupyter labextension` runs the `jupyter-labextension` next to this Python
    env = dict(
        os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    )
    out = subprocess.run(
        [sys.executable, "-m", "jupyter", "labextension", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
    )
    listing = re.sub(r"\x1b\[[0-9;]*m", "", out.stdout + out.stderr)
    assert re.search(r"jupyter-comm-ext v\S+ enabled OK \(python, jupyter_comm_ext\)", listing), (
        listing
    )


async def text_is(locator: Any, text: str) -> bool:
    return (await locator.text_content() or "").strip() == text


async def to_kernel_counts(server: ServerProcess, kernel_id: str) -> dict[str, int]:
    models = await server.get_json(f"/api/comms?kernel_id={kernel_id}")
    return {m["comm_id"]: m["messages"]["to_kernel"] for m in models}


async def panel_shows_counts(panel: Any, counts: dict[str, int]) -> bool:
    """Each of these comms' rows says it sent this many messages to the kernel."""
    for comm_id, n in counts.items():
        row = panel.locator(f'[data-comm-id="{comm_id}"] .jp-CommsPanel-traffic')
        text = await row.text_content() if await row.count() else ""
        if not (text or "").startswith(f"↑ {n} msg"):
            return False
    return True


async def run_command(tab: Any, label: str) -> None:
    """Run a command from JupyterLab's command palette by its label."""
    await tab.keyboard.press("Control+Shift+C")
    palette = tab.locator(".lm-CommandPalette")
    await palette.locator("input").fill(label)
    await palette.locator(".lm-CommandPalette-item", has_text=label).first.click()


@asynccontextmanager
async def lab_tab(browser: Any, server: ServerProcess, failed_shot: Path | None) -> Any:
    """A tab for one test; on failure a screenshot of it (if named); the server stops after."""
    tab = await browser.new_page(viewport={"width": 1280, "height": 800})
    tab.set_default_timeout(BROWSER_TIMEOUT)
    try:
        yield tab
    except BaseException:
        if failed_shot is not None:
            await tab.screenshot(path=failed_shot)
        raise
    finally:
        await tab.close()
        server.stop()


@needs_browser
@pytest.mark.timeout(300)
async def test_panel_follows_and_closes_widget_comms(
    tmp_path: Path, browser: Any, screenshots: Path
) -> None:
    (tmp_path / "slider.ipynb").write_text(notebook(SLIDER))
    (tmp_path / "button.ipynb").write_text(notebook(BUTTON))
    server = ServerProcess(tmp_path, extension=True)
    async with lab_tab(browser, server, screenshots / "lab-panel-failed.png") as tab:
        await open_lab(tab, server, "slider.ipynb")
        await run_cell(tab, ".widget-slider")
        slider_kernel = await kernel_of(server, "slider.ipynb")
        panel = await show_panel(tab)

        # the slider's comms, under the notebook's name, exactly the ones the server has
        slider_group = panel.locator(f'[data-kernel-id="{slider_kernel}"]')
        await slider_group.get_by_role("button", name="slider.ipynb", exact=True).wait_for()
        await wait_for(
            lambda: panel_matches_rest(panel, server, slider_kernel), 20, "the slider's comms"
        )
        count = len(await open_ids(server, slider_kernel))
        status = tab.locator(".jp-CommsStatus")
        await wait_for(lambda: text_is(status, f"{count} comms"), 20, "the status bar count")

        # moving the slider moves the counts (each step is a message to the kernel)
        before = await to_kernel_counts(server, slider_kernel)
        await tab.locator(".widget-slider .noUi-handle").focus()
        for _ in range(3):
            await tab.keyboard.press("ArrowRight")

        async def moved() -> dict[str, int]:
            now = await to_kernel_counts(server, slider_kernel)
            return {c: n for c, n in now.items() if n > before.get(c, 0)}

        await wait_for(moved, 20, "the slider's updates to reach the kernel")
        await wait_for(
            lambda: moved_and_shown(panel, moved), 20, "the panel to show the new counts"
        )

        # a second notebook's comms come in a group of their own
        await tab.get_by_role("tab", name="File Browser").click()
        await tab.locator(".jp-DirListing-item", has_text="button.ipynb").dblclick()
        await run_cell(tab, ".widget-button")
        button_kernel = await kernel_of(server, "button.ipynb")
        await show_panel(tab)
        button_group = panel.locator(f'[data-kernel-id="{button_kernel}"]')
        await button_group.get_by_role("button", name="button.ipynb", exact=True).wait_for()
        await wait_for(
            lambda: panel_matches_rest(panel, server, button_kernel), 20, "the button's comms"
        )
        assert not (await shown_ids(panel, slider_kernel)) & (await shown_ids(panel, button_kernel))
        await panel.screenshot(path=screenshots / "lab-panel-light.png")
        await tab.screenshot(path=screenshots / "lab-light.png")
        await run_command(tab, "Use Theme: JupyterLab Dark")
        await tab.locator('body[data-jp-theme-name="JupyterLab Dark"]').wait_for(state="attached")
        await tab.wait_for_timeout(500)  # the theme's CSS variables settle
        await panel.screenshot(path=screenshots / "lab-panel-dark.png")
        await tab.screenshot(path=screenshots / "lab-dark.png")

        # clicking a notebook's group opens that notebook
        await slider_group.get_by_role("button", name="slider.ipynb", exact=True).click()
        current = tab.locator(".jp-MainAreaWidget:not(.lm-mod-hidden) .widget-slider")
        await current.wait_for()
        await wait_for(lambda: text_is(status, f"{count} comms"), 20, "the slider's count again")

        # closing the slider's widget comms from the panel makes its view go away
        await slider_group.get_by_role(
            "button", name="Close the jupyter.widget comms of slider.ipynb"
        ).click()
        await accept_dialog(tab, "Close the jupyter.widget comms of slider.ipynb?")
        await tab.locator(".widget-slider").wait_for(state="detached")
        assert not await open_ids(server, slider_kernel)
        await slider_group.get_by_text("No open comms.").wait_for()
        await wait_for(lambda: text_is(status, "0 comms"), 20, "the status bar to say 0")

        # close one comm of the button's notebook, then a selection of one
        first, second, *rest = sorted(await open_ids(server, button_kernel))
        await button_group.get_by_role("button", name=f"Close comm {first}").click()
        await accept_dialog(tab, f"Close comm {first}?")
        await wait_for(
            lambda: panel_matches_rest(panel, server, button_kernel), 20, "one comm fewer"
        )
        assert first not in await open_ids(server, button_kernel)
        await button_group.get_by_role("checkbox", name=f"Select comm {second}").check()
        await panel.get_by_role("button", name="Close selected (1)").click()
        await accept_dialog(tab, "Close 1 selected comm?")
        await wait_for(
            lambda: panel_matches_rest(panel, server, button_kernel), 20, "the selection gone"
        )
        assert await open_ids(server, button_kernel) == set(rest)

        # "Close idle comms…" from the command palette: everything idle for 1 s and more
        await tab.wait_for_timeout(1500)
        await run_command(tab, "Close idle comms…")
        dialog = tab.locator(".jp-Dialog")
        await dialog.get_by_role("spinbutton", name="Idle minutes").fill("0.02")
        await accept_dialog(tab, "Close idle comms?")
        await panel.get_by_text(f"Closed {len(rest)} comm").wait_for()
        assert not await open_ids(server, button_kernel)
        await button_group.get_by_text("No open comms.").wait_for()


#: a slider and a box of two widgets, both shown: 3 + 10 widget models
WIDGETS = (
    "import ipywidgets as w\n"
    "slider = w.IntSlider(value=7)\n"
    "box = w.VBox([w.Button(description='Press'), w.Text()])\n"
    "display(slider, box)"
)


#: in the kernel: the ids of the widget comms its comm manager holds open
KERNEL_WIDGET_COMMS = (
    "{i for i, c in __import__('comm').get_comm_manager().comms.items()"
    " if c.target_name == 'jupyter.widget'}"
)


@needs_browser
@pytest.mark.timeout(240)
async def test_panel_names_widgets_and_finishes_what_close_leaves_behind(
    tmp_path: Path, browser: Any, screenshots: Path
) -> None:
    (tmp_path / "widgets.ipynb").write_text(notebook(WIDGETS))
    server = ServerProcess(tmp_path, extension=True)
    async with lab_tab(browser, server, screenshots / "lab-widgets-failed.png") as tab:
        await open_lab(tab, server, "widgets.ipynb")
        await run_cell(tab, ".widget-slider")
        kernel_id = await kernel_of(server, "widgets.ipynb")
        panel = await show_panel(tab)
        group = panel.locator(f'[data-kernel-id="{kernel_id}"]')
        models = {
            m["comm_id"]: m
            for m in await server.get_json(f"/api/comms?kernel_id={kernel_id}")
            if m["widget"]
        }
        (slider_id,) = [
            i for i, m in models.items() if m["widget"]["model_name"] == "IntSliderModel"
        ]
        (box_id,) = [i for i, m in models.items() if m["widget"]["model_name"] == "VBoxModel"]
        dependents = {r["comm_id"] for r in models[slider_id]["widget"]["references"]}

        # named by widget, its layout and style under it
        slider = group.locator(f'li[data-comm-id="{slider_id}"]:not(.jp-mod-dependent)')
        name = slider.locator(".jp-CommsPanel-widgetName")
        await wait_for(lambda: text_is(name, "IntSlider"), 20, "the slider named")
        assert "@jupyter-widgets/controls@" in (await name.get_attribute("title") or "")
        for comm_id in dependents:
            row = group.locator(f'li.jp-mod-dependent[data-comm-id="{comm_id}"]')
            assert await row.locator(".jp-CommsPanel-refKey").text_content() in ("layout", "style")
            names = ("Layout", "SliderStyle")
            assert await row.locator(".jp-CommsPanel-widgetName").text_content() in names

        # closed in the kernel: its layout and style are left behind, and shown so
        ws = await server.connect(kernel_id, "v1")
        try:
            # (and a second slider, open, for the screenshots)
            await ws.run("slider.close()\nkept = w.IntSlider(value=3)")
            left = group.get_by_role("group", name="Left behind in widgets.ipynb")
            finish = left.get_by_role("button", name="Finish 2 left-behind")
            await finish.wait_for()
            rows = left.locator("[data-comm-id]")
            shown = await rows.evaluate_all("rows => rows.map(row => row.dataset.commId)")
            assert set(shown) == dependents

            # the admin page says the same, and filters on it
            admin = await browser.new_page(viewport={"width": 1300, "height": 700})
            admin.set_default_timeout(BROWSER_TIMEOUT)
            await admin.goto(f"{server.url}/comms/?token={server.token}")
            await admin.locator("#summary", has_text="2 left behind").wait_for()
            await admin.locator("tr.kernel button.left-behind", has_text="2 left behind").click()
            await admin.locator("#comms tbody tr[data-comm-id]").nth(2).wait_for(state="detached")
            model_names = admin.locator("#comms td.model > span:first-child")
            assert sorted(await model_names.all_text_contents()) == ["Layout", "SliderStyle"]
            await admin.screenshot(path=screenshots / "admin-left-behind.png", full_page=True)
            await admin.close()

            await tab.set_viewport_size({"width": 1280, "height": 1000})
            await group.locator(".jp-CommsPanel-widgetName", has_text="IntSlider").wait_for()
            await panel.screenshot(path=screenshots / "panel-widgets-light.png")
            await run_command(tab, "Use Theme: JupyterLab Dark")
            dark = tab.locator('body[data-jp-theme-name="JupyterLab Dark"]')
            await dark.wait_for(state="attached")
            await tab.wait_for_timeout(500)  # the theme's CSS variables settle
            await panel.screenshot(path=screenshots / "panel-widgets-dark.png")

            # "Finish": nothing left behind, and the kernel holds none of the slider's models
            await finish.click()
            await accept_dialog(tab, "Finish 2 left-behind models of widgets.ipynb?")
            await panel.get_by_text("Finished 2 left-behind models.").wait_for()
            await left.wait_for(state="detached")
            query = f"/api/comms?status=left_behind&kernel_id={kernel_id}"
            assert await server.get_json(query) == []
            await ws.eventually(f"{KERNEL_WIDGET_COMMS}.isdisjoint({dependents | {slider_id}!r})")
            widgets = await server.get_json(f"/api/comms?kernel_id={kernel_id}")
            in_kernel = ast.literal_eval(await ws.evaluate(KERNEL_WIDGET_COMMS))
            assert in_kernel == {m["comm_id"] for m in widgets if m["widget"]}

            # closing the box offers its dependents; taking them closes the whole tree
            await group.get_by_role("button", name=f"Close comm {box_id}").first.click()
            box_tree = set(models) - dependents - {slider_id}
            offer = f"Close with {len(box_tree) - 1} dependents"
            await tab.locator(".jp-Dialog").get_by_role("checkbox", name=re.compile(offer)).check()
            await accept_dialog(tab, f"Close comm {box_id}?")
            await panel.get_by_text(f"Closed {len(box_tree)} comms.").wait_for()
            await ws.eventually(f"{KERNEL_WIDGET_COMMS}.isdisjoint({box_tree!r})")
        finally:
            ws.close()


async def moved_and_shown(panel: Any, moved: Any) -> bool:
    """The comms the slider moved show their new count of messages to the kernel."""
    return await panel_shows_counts(panel, await moved())


@needs_browser
@pytest.mark.timeout(180)
async def test_read_only_user_sees_comms_and_no_close_controls(
    tmp_path: Path, browser: Any, screenshots: Path
) -> None:
    (tmp_path / "slider.ipynb").write_text(notebook(SLIDER))
    server = ServerProcess(
        tmp_path,
        extension=True,
        args=["--ServerApp.authorizer_class=authorizers.ReadOnlyAuthorizer"],
    )
    async with lab_tab(browser, server, screenshots / "lab-read-only-failed.png") as tab:
        await open_lab(tab, server, "slider.ipynb")
        await run_cell(tab, ".widget-slider")
        kernel_id = await kernel_of(server, "slider.ipynb")
        await run_command(tab, "Show comms panel")
        panel = tab.locator(".jp-CommsPanel")
        await wait_for(lambda: panel_matches_rest(panel, server, kernel_id), 20, "the comms")
        await panel.screenshot(path=screenshots / "lab-panel-read-only.png")
        assert await panel.get_by_role("button", name=re.compile("^Close")).count() == 0
        assert await panel.get_by_role("checkbox").count() == 0
        # from the keyboard: Enter on a section's toggle collapses it, and again expands it
        toggle = panel.get_by_role("button", name="Collapse the comms of slider.ipynb")
        await toggle.focus()
        await tab.keyboard.press("Enter")
        expand = panel.get_by_role("button", name="Expand the comms of slider.ipynb")
        assert await expand.get_attribute("aria-expanded") == "false"
        assert not await shown_ids(panel, kernel_id)
        await tab.keyboard.press("Enter")  # the same button keeps the focus
        await wait_for(lambda: panel_matches_rest(panel, server, kernel_id), 20, "expanded")
        # the palette's close command is there, and disabled
        await tab.keyboard.press("Control+Shift+C")
        palette = tab.locator(".lm-CommandPalette")
        await palette.locator("input").fill("Close idle comms")
        item = palette.locator(".lm-CommandPalette-item", has_text="Close idle comms…")
        assert "lm-mod-disabled" in (await item.get_attribute("class") or "")


@needs_browser
@pytest.mark.timeout(180)
async def test_a_refused_close_is_shown_and_nothing_closes(
    tmp_path: Path, browser: Any, screenshots: Path
) -> None:
    (tmp_path / "slider.ipynb").write_text(notebook(SLIDER))
    # under a base_url: the panel's reads and its DELETE (a 403, not a 404) must find it
    server = BaseUrlServer(
        tmp_path, ["--ServerApp.authorizer_class=authorizers.CommsWriteDeniedAuthorizer"]
    )
    async with lab_tab(browser, server, screenshots / "lab-refused-failed.png") as tab:
        await open_lab(tab, server, "slider.ipynb")
        await run_cell(tab, ".widget-slider")
        kernel_id = await kernel_of(server, "slider.ipynb")
        panel = await show_panel(tab)
        await wait_for(lambda: panel_matches_rest(panel, server, kernel_id), 20, "the comms")
        comms = await open_ids(server, kernel_id)
        comm_id = min(comms)
        await panel.get_by_role("button", name=f"Close comm {comm_id}").click()
        await accept_dialog(tab, f"Close comm {comm_id}?")
        alert = panel.get_by_role("alert")
        await alert.wait_for()
        assert "403" in (await alert.text_content() or ""), await alert.text_content()
        assert await open_ids(server, kernel_id) == comms
        await tab.locator(".widget-slider").wait_for()  # the view is still there


@needs_browser
async def test_panel_says_when_the_server_extension_is_off(
    tmp_path: Path, browser: Any, screenshots: Path
) -> None:
    server = ServerProcess(tmp_path, extension=False)
    async with lab_tab(browser, server, None) as tab:
        await open_lab(tab, server)
        panel = await show_panel(tab)
        await panel.get_by_text(
            "The comms server extension is not enabled on this server."
        ).wait_for()
        await panel.screenshot(path=screenshots / "lab-panel-disabled.png")


#: 10,000 comms from a kernel no notebook uses (no frontend answers them)
MANY_COMMS = """
from comm import create_comm
many = [create_comm(target_name="probe", data={}) for _ in range(10_000)]
"""


@needs_browser
@pytest.mark.timeout(240)
async def test_panel_pages_ten_thousand_comms_of_a_kernel_without_session(
    tmp_path: Path, browser: Any, screenshots: Path
) -> None:
    server = ServerProcess(tmp_path, extension=True)
    async with lab_tab(browser, server, screenshots / "lab-10000-failed.png") as tab:
        kernel_id = await server.start_kernel()
        ws = await server.connect(kernel_id, "v1")
        # send the code and go: the server mirrors the kernel's comms with no frontend
        await ws.send("execute_request", execute_content(MANY_COMMS))
        ws.close()

        async def all_open() -> bool:
            summary = await server.get_json("/api/comms/summary")
            return summary["by_kernel"].get(kernel_id, {}).get("open") == 10_000

        await wait_for(all_open, 60, "10,000 open comms")
        await open_lab(tab, server)
        panel = await show_panel(tab)
        group = panel.locator(f'[data-kernel-id="{kernel_id}"]')
        await group.get_by_text(f"python3 · {kernel_id[:8]}").wait_for()
        more = group.get_by_role("button", name="Show 50 more (50 of 10,000 shown)")
        await more.wait_for()
        rows = group.locator("[data-comm-id]")
        assert await rows.count() == 50
        # the first page is the server's first page (opened_at, then comm_id)
        first = await server.get_json(f"/api/comms?kernel_id={kernel_id}&limit=50")
        assert await shown_ids(panel, kernel_id) == {m["comm_id"] for m in first}
        await more.click()
        await group.get_by_role("button", name="Show 50 more (100 of 10,000 shown)").wait_for()
        assert await rows.count() == 100
        await panel.screenshot(path=screenshots / "lab-panel-10000.png")


def ours(messages: list[str]) -> list[str]:
    """The console messages that come from this extension (its module, its token, its API)."""
    marks = ("jupyter-comm-ext", "@jupyterlab/statusbar", "api/comms", "Area left")
    return [m for m in messages if any(mark in m for mark in marks)]


async def console_of(browser: Any, url: str, ready: str) -> tuple[list[str], list[str]]:
    """Load `url` until `ready` (a selector) shows and the page settles: the console's
    errors and warnings (with where they come from) and the requests to the comms API."""
    tab = await browser.new_page()
    tab.set_default_timeout(BROWSER_TIMEOUT)
    messages: list[str] = []
    comms_requests: list[str] = []
    tab.on(
        "console",
        lambda m: (
            messages.append(f"{m.type}: {m.text} ({m.location.get('url')})")
            if m.type in ("error", "warning")
            else None
        ),
    )
    tab.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
    tab.on("request", lambda r: comms_requests.append(r.url) if "/api/comms" in r.url else None)
    try:
        await tab.goto(url)
        await tab.locator(ready).first.wait_for(timeout=60_000)
        await tab.wait_for_load_state("networkidle", timeout=30_000)
        await tab.wait_for_timeout(3000)  # a poll of the panel's model would come by now
    finally:
        await tab.close()
    return messages, comms_requests


@needs_browser
async def test_voila_page_loads_the_extension_without_errors(tmp_path: Path, browser: Any) -> None:
    """Voilà loads every installed labextension but has no status bar (so its shared scope
    lacks @jupyterlab/statusbar) and no sidebar: ours must neither fail nor poll there."""
    pytest.importorskip("voila")
    (tmp_path / "shown.ipynb").write_text(notebook("print('shown by voila')"))
    server = ServerProcess(tmp_path, extension=True)
    try:
        url = f"{server.url}/voila/render/shown.ipynb?token={server.token}"
        messages, requests = await console_of(browser, url, "text=shown by voila")
    finally:
        server.stop()
    assert ours(messages) == [], messages
    assert requests == []


@needs_browser
@pytest.mark.parametrize("page", ["tree", "notebooks/page.ipynb"])
async def test_notebook_7_pages_load_the_extension_without_errors(
    tmp_path: Path, browser: Any, page: str
) -> None:
    pytest.importorskip("notebook")
    (tmp_path / "page.ipynb").write_text(notebook("print('a notebook')"))
    server = ServerProcess(tmp_path, extension=True)
    try:
        url = f"{server.url}/{page}?token={server.token}"
        messages, _ = await console_of(browser, url, ".jp-DirListing, .jp-NotebookPanel")
    finally:
        server.stop()
    assert ours(messages) == [], messages

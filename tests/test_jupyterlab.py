"""Force-closing a widget's comm in a real JupyterLab makes its view go away (issue 5, 1).

JupyterLab disposes of a widget model when its comm closes, but only on a `comm_close`
that reaches it on IOPub in the kernel's session: this is the end-to-end check of that,
with JupyterLab, ipywidgets' renderer and Debian's Chromium, against a server subprocess.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chromium import BROWSER_TIMEOUT, needs_browser
from playwright.async_api import TimeoutError as PlaywrightTimeout
from server_process import ServerProcess

NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code",
            "execution_count": None,
            "id": "slider",
            "metadata": {},
            "outputs": [],
            "source": "import ipywidgets\nslider = ipywidgets.IntSlider(value=7)\nslider",
        }
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}


async def show_slider(tab: Any, server: ServerProcess) -> None:
    """Open the notebook in JupyterLab and run its cell until the slider shows."""
    await tab.goto(f"{server.url}/lab/tree/slider.ipynb?token={server.token}")
    await tab.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=60_000)
    cell = tab.locator(".jp-Notebook .jp-Cell .cm-content").first
    for _ in range(3):  # a run while the kernel connection settles can get lost
        await cell.click()
        await tab.keyboard.press("Control+Enter")
        try:
            await tab.locator(".widget-slider").wait_for()
            return
        except PlaywrightTimeout:
            continue
    raise TimeoutError("JupyterLab did not show the slider after three runs of the cell")


@needs_browser
async def test_force_close_removes_the_widget_view(
    tmp_path: Path, browser: Any, screenshots: Path
) -> None:
    (tmp_path / "slider.ipynb").write_text(json.dumps(NOTEBOOK))
    server = ServerProcess(tmp_path, extension=True)
    tab = await browser.new_page(viewport={"width": 1200, "height": 700})
    tab.set_default_timeout(BROWSER_TIMEOUT)
    try:
        await show_slider(tab, server)
        [kernel_id] = [k["id"] for k in await server.get_json("/api/kernels")]
        widgets = await server.get_json(f"/api/comms?kernel_id={kernel_id}")
        assert {m["target_name"] for m in widgets} == {"jupyter.widget"}
        await tab.screenshot(path=screenshots / "jupyterlab-slider.png")
        response = await server.fetch(
            f"/api/comms?kernel_id={kernel_id}&target_name=jupyter.widget", method="DELETE"
        )
        assert response.code == 200, response.body
        assert len(json.loads(response.body)) == len(widgets)
        await tab.locator(".widget-slider").wait_for(state="detached")
        await tab.screenshot(path=screenshots / "jupyterlab-slider-closed.png")
    finally:
        await tab.close()
        server.stop()

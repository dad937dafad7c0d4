"""A real JupyterLab slider drag, timed in the browser (issue 7, item 5's last check).

JupyterLab in Debian's Chromium (headless, driven by Playwright) opens a notebook, shows an
ipywidgets IntSlider and drags it. In the page, each update the slider sends (`comm_msg`,
method `update`) is timed until the kernel's `echo_update` arrives: the round trip a user's
drag waits for. Servers: stock jupyter_server, the extension, and the extension with
`WebsocketNodelay.enabled=False`; rounds interleaved.

Not part of `run.py` (it needs JupyterLab, from the test extra)::

    python bench/lab_slider.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

from playwright.async_api import TimeoutError as PlaywrightTimeout
from playwright.async_api import async_playwright

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.servers import KERNEL_NAME, Server, exit_on_signals  # noqa: E402

CHROMIUM = "/usr/bin/chromium"

NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code",
            "execution_count": None,
            "id": "slider",
            "metadata": {},
            "outputs": [],
            "source": "import ipywidgets\nipywidgets.IntSlider(max=1000)",
        }
    ],
    "metadata": {
        "kernelspec": {"name": KERNEL_NAME, "display_name": "bench", "language": "python"}
    },
    "nbformat": 4,
    "nbformat_minor": 5,
}

#: runs before JupyterLab's scripts: times every slider update until its echo
TIMING = """
(() => {
  const pending = [];
  window.__slider_ms = [];
  const text = (d) => (typeof d === "string" ? d : new TextDecoder().decode(d));
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (event) => {
        if (!pending.length || event.data instanceof Blob) return;
        if (text(event.data).includes("echo_update")) {
          window.__slider_ms.push(performance.now() - pending.shift());
        }
      });
    }
    send(data) {
      const t = text(data);
      if (t.includes("comm_msg") && t.includes('"update"')) pending.push(performance.now());
      return super.send(data);
    }
  };
})();
"""


async def drag(server: Server, browser: Any, moves: int) -> list[float]:
    """Open the notebook on `server`, run the cell, drag the slider; the round trips in ms."""
    with open(os.path.join(server.dir, "slider.ipynb"), "w") as f:
        json.dump(NOTEBOOK, f)
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        await page.add_init_script(TIMING)
        await page.goto(f"{server.url}/lab/tree/slider.ipynb?token={server.token}")
        editor = page.locator(".jp-Notebook .jp-Cell .cm-content").first
        handle = page.locator(".widget-slider .noUi-handle").first
        await page.get_by_text("bench | Idle").wait_for(timeout=60_000)
        for _ in range(3):  # a cell run while the kernel connection settles can get lost
            await editor.click()
            await page.keyboard.press("Control+Enter")
            try:
                await handle.wait_for(timeout=20_000)
                break
            except PlaywrightTimeout:
                continue
        else:
            raise TimeoutError(f"no slider on {server.name} after three runs of the cell")
        box = await handle.bounding_box()
        assert box is not None
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        await page.mouse.move(x, y)
        await page.mouse.down()
        for i in range(1, moves + 1):
            await page.mouse.move(x + 3 * i, y)
            await page.wait_for_timeout(50)
        await page.mouse.up()
        await page.wait_for_timeout(500)  # the last echoes
        return await page.evaluate("window.__slider_ms")
    finally:
        await page.close()


async def main(rounds: int, moves: int) -> dict[str, list[float]]:
    servers = {
        "stock": Server("lab-stock", False),
        "ext": Server("lab-ext", True),
        "ext_nagle": Server("lab-ext-nagle", True, ["--WebsocketNodelay.enabled=False"]),
    }
    samples: dict[str, list[float]] = {name: [] for name in servers}
    try:
        await asyncio.gather(*(s.start() for s in servers.values()))
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
            for r in range(rounds):
                names = list(servers)[r % 3 :] + list(servers)[: r % 3]
                for name in names:
                    samples[name] += await drag(servers[name], browser, moves)
            await browser.close()
    finally:
        await asyncio.gather(*(s.shutdown() for s in servers.values()))
    return samples


def report(samples: dict[str, list[float]]) -> None:
    print("slider drag in JupyterLab: update -> echo_update, ms (n, p50, p95)")
    for name, ms in samples.items():
        ms = sorted(ms)
        p95 = ms[int(len(ms) * 0.95)] if ms else float("nan")
        median = statistics.median(ms) if ms else float("nan")
        print(f"  {name:10s} n={len(ms):4d}  p50 {median:6.1f}  p95 {p95:6.1f}")


if __name__ == "__main__":
    exit_on_signals()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--moves", type=int, default=60)
    args = parser.parse_args()
    report(asyncio.run(main(args.rounds, args.moves)))

"""The JupyterLab Comms panel with 10,000 comms over 20 kernels, measured in the page (issue 12).

A server with the extension, 20 kernels with 500 comms each (no frontend: the server mirrors
them), JupyterLab in Debian's Chromium. In the page: how long from clicking the panel's tab
until every kernel's first page of rows is rendered, the main thread's long tasks (over
50 ms, PerformanceObserver) while the open panel keeps itself live, and what that costs in
requests. Not part of `run.py` (it needs JupyterLab, from the test extra)::

    python bench/lab_panel.py [--kernels 20] [--comms 500] [--rounds 5] [--watch 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from playwright.async_api import async_playwright

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.clients import KernelClient  # noqa: E402
from bench.servers import Server, exit_on_signals  # noqa: E402

CHROMIUM = "/usr/bin/chromium"

#: runs before JupyterLab's scripts: records every long task of the main thread
LONG_TASKS = """
performance.setResourceTimingBufferSize(100000);
window.__long = [];
new PerformanceObserver(list => {
  for (const e of list.getEntries()) window.__long.push([e.startTime, e.duration]);
}).observe({ entryTypes: ["longtask"] });
"""

#: the number of comm rows the panel renders
ROWS = "document.querySelectorAll('.jp-CommsPanel [data-comm-id]').length"


async def fill(server: Server, kernels: int, comms: int) -> None:
    """Start the kernels and have each open `comms` comms, no frontend connected."""
    for _ in range(kernels):
        client = await KernelClient.connect(server, await server.start_kernel())
        code = f"from comm import create_comm\nc = [create_comm('probe') for _ in range({comms})]"
        await client.execute(code, wait=False)
        client.close()
    deadline = time.monotonic() + 120
    while (await server.api("GET", "/api/comms/summary"))["open"] < kernels * comms:
        if time.monotonic() > deadline:
            raise TimeoutError("the comms did not all open")
        await asyncio.sleep(0.5)


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    server = await Server("lab-panel", True).start()
    try:
        await fill(server, args.kernels, args.comms)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            await page.add_init_script(LONG_TASKS)
            await page.goto(f"{server.url}/lab?token={server.token}")
            await page.locator(".jp-LabShell").wait_for(timeout=60_000)
            await page.wait_for_timeout(2000)  # JupyterLab's own start-up tasks end
            tab = page.get_by_role("tab", name="Comms")
            panel = page.locator(".jp-CommsPanel")

            async def show(visible: bool) -> None:  # the tab toggles; a workspace may restore it
                if await panel.is_visible() != visible:
                    await tab.click()
                await panel.wait_for(state="visible" if visible else "hidden")

            await show(False)
            expected = min(args.comms, 50) * args.kernels  # the panel's first page
            shown_ms = []
            for _ in range(args.rounds):
                t0 = await page.evaluate("performance.now()")
                await tab.click()
                handle = await page.wait_for_function(
                    f"{ROWS} >= {expected} && performance.now()", timeout=60_000, polling="raf"
                )
                shown_ms.append(await handle.json_value() - t0)
                await show(False)
            await show(True)
            await page.wait_for_function(f"{ROWS} >= {expected}", timeout=60_000)
            start = await page.evaluate("performance.now()")
            await page.wait_for_timeout(args.watch * 1000)
            window = await page.evaluate(
                """start => ({
                  long: window.__long.filter(([t]) => t >= start).map(([, d]) => d),
                  api: performance.getEntriesByType('resource')
                    .filter(e => e.startTime >= start && e.name.includes('/api/'))
                    .map(e => [new URL(e.name).pathname, e.duration, e.encodedBodySize]),
                  now: performance.now()
                })""",
                start,
            )
            await browser.close()
    finally:
        await server.shutdown()
    seconds = (window["now"] - start) / 1000
    comms_requests = [r for r in window["api"] if r[0].endswith("/api/comms")]
    return {
        "kernels": args.kernels,
        "comms": args.kernels * args.comms,
        "rows_rendered": expected,
        "show_ms": shown_ms,
        "watch_s": round(seconds, 1),
        "long_tasks": len(window["long"]),
        "long_task_max_ms": max(window["long"], default=0),
        "requests_per_s": round(len(window["api"]) / seconds, 1),
        "comms_pages": len(comms_requests),
        "bytes_per_s": round(sum(r[2] for r in window["api"]) / seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernels", type=int, default=20)
    parser.add_argument("--comms", type=int, default=500, help="per kernel")
    parser.add_argument("--rounds", type=int, default=5, help="panel shows to time")
    parser.add_argument("--watch", type=int, default=20, help="seconds of a live open panel")
    result = asyncio.run(measure(parser.parse_args()))
    shown = result["show_ms"]
    print(
        f"{result['comms']:,} comms over {result['kernels']} kernels, "
        f"{result['rows_rendered']:,} rows rendered\n"
        f"panel shown -> rows rendered: p50 {statistics.median(shown):.0f} ms "
        f"(min {min(shown):.0f}, max {max(shown):.0f}, {len(shown)} shows)\n"
        f"live panel, {result['watch_s']} s: {result['long_tasks']} long tasks "
        f"(max {result['long_task_max_ms']:.0f} ms), {result['requests_per_s']} requests/s, "
        f"{result['bytes_per_s']:,} B/s, {result['comms_pages']} GET /api/comms pages"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    exit_on_signals()
    main()

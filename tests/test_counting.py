"""Each of a kernel's comm messages is counted once while frontends come and go: the
watcher counts, whoever is connected, on a subscription of its own."""

from __future__ import annotations

import asyncio

from waiting import wait_for
from wsclient import KernelWS, comm_msgs, execute_content

FLOOD = """
import time
from comm import create_comm
flood = create_comm(target_name="flood")
for i in range({n}):
    flood.send({{"i": i}})
    time.sleep({pause})
"""


async def from_kernel(fetch_json, target: str) -> int | None:
    models = [m for m in await fetch_json("api", "comms") if m["target_name"] == target]
    return models[0]["messages"]["from_kernel"] if models else None


async def _counted(fetch_json, target, n):
    return await from_kernel(fetch_json, target) == n


async def test_no_message_lost_or_doubled_while_frontends_come_and_go(
    jp_serverapp, fetch_json, jp_ws_fetch, start_kernel
):
    """A flood while frontends leave and arrive under it, then more with none connected."""
    kernel_id = await start_kernel()
    frontends = [await KernelWS.connect(jp_ws_fetch, kernel_id, p) for p in ("v1", "legacy")]
    n = 2000  # over 4 s: the churn below happens while it lasts
    await frontends[0].send("execute_request", execute_content(FLOOD.format(n=n, pause=0.002)))
    await frontends[1].recv(comm_msgs(frontends[1], "comm_open"))
    for protocol in ("v1", "legacy", "v1"):  # churn while the kernel floods
        await asyncio.sleep(0.05)
        frontends.pop(0).close()
        frontends.append(await KernelWS.connect(jp_ws_fetch, kernel_id, protocol))
    last = frontends[-1]
    await last.recv(lambda m: m["content"].get("data") == {"i": n - 1}, timeout=60)
    await wait_for(lambda: _counted(fetch_json, "flood", n + 1), timeout=20, what="exact count")
    for ws in frontends:
        ws.close()
    # nobody connected: the watcher counts what comes next
    km = jp_serverapp.kernel_manager.get_kernel(kernel_id)
    client = km.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=30)
        await client.execute_interactive("for i in range(5): flood.send({'late': i})", timeout=30)
    finally:
        client.stop_channels()
    await wait_for(lambda: _counted(fetch_json, "flood", n + 6), timeout=20, what="5 more")
    await asyncio.sleep(0.3)
    assert await from_kernel(fetch_json, "flood") == n + 6

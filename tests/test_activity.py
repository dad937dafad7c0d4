"""Activity: what keeps a kernel, and the server, from their cullers.

Reads of the extension are never activity; a frontend's comm message and the kernel's answer
to it are; a comm message the kernel sends on its own (a widget timer) is not. Checked with
jupyter_server's own `last_activity` (`/api/status`, the kernel model) and its own culler.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from waiting import wait_for
from wsclient import KernelWS

from jupyter_comm_ext.handlers import handlers

#: opens a comm from the kernel, so every route has something to show
OPEN_COMM = """
from comm import create_comm
c = create_comm(target_name="probe", data={})
c.comm_id
"""


async def last_activity(fetch_json: Any) -> str:
    """The server's `last_activity`, as JupyterHub's single-user server reports it."""
    return str((await fetch_json("api", "status"))["last_activity"])


async def settled(fetch_json: Any, quiet: float = 0.5, timeout: float = 10) -> str:
    """The server's `last_activity` once it stopped moving for `quiet` seconds."""

    async def still() -> str | None:
        before = await last_activity(fetch_json)
        await asyncio.sleep(quiet)
        return before if await last_activity(fetch_json) == before else None

    return str(await wait_for(still, timeout, "the server's last_activity to settle"))


@pytest.mark.timeout(30)
async def test_reads_are_not_activity(fetch_json, jp_fetch, jp_ws_fetch, start_kernel):
    kernel_id = await start_kernel()
    ws = await KernelWS.connect(jp_ws_fetch, kernel_id)
    await ws.execute(OPEN_COMM)
    comm_id = json.loads((await ws.evaluate("c.comm_id")).replace("'", '"'))
    ws.close()
    routes = [
        ("api", "comms"),
        ("api", "comms", "summary"),
        ("api", "comms", comm_id),
        ("api", "kernels", kernel_id, "comms"),
        ("comms", ""),
        ("comms", "static", "main.js"),
        ("metrics",),
    ]
    assert len({pattern for pattern, _ in handlers}) == 4  # every route of the API is here
    before = await settled(fetch_json)
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        for route in routes:
            for params in ({}, {"no_track_activity": "1"}):
                response = await jp_fetch(*route, params=params)
                assert response.code == 200, (route, params)
        await asyncio.sleep(0.05)
    assert await last_activity(fetch_json) == before

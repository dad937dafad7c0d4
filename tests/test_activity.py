"""Activity: what keeps a kernel, and the server, from their cullers.

Reads of the extension are never activity; a frontend's comm message and the kernel's answer
to it are; a comm message the kernel sends on its own (a widget timer) is not. Checked with
jupyter_server's own `last_activity` (`/api/status`, the kernel model) and its own culler.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from traitlets.config import Config
from waiting import wait_for
from widget_timer import TIMER, drag, slider_id
from wsclient import KernelWS, execute_content

from jupyter_comm_ext.handlers import handlers
from jupyter_comm_ext.registry import parse_isoformat

#: opens a comm from the kernel, so every route has something to show
OPEN_COMM = """
from comm import create_comm
c = create_comm(target_name="probe", data={})
"""

#: jupyter_server's kernel culler, for the tests that ask for it (seconds)
IDLE, INTERVAL = 4, 1
#: a kernel is culled this long after its last activity at the latest (the kernel's own
#: shutdown takes a moment too)
CULLED_WITHIN = IDLE + 3 * INTERVAL + 3


@pytest.fixture
def cull_idle_timeout() -> int:
    """0: no culler; a test parametrizes it to turn jupyter_server's culler on."""
    return 0


@pytest.fixture
def jp_server_config(jp_server_config: Config, cull_idle_timeout: int) -> Config:
    if cull_idle_timeout:
        jp_server_config["MappingKernelManager"] = Config(
            cull_idle_timeout=cull_idle_timeout, cull_interval=INTERVAL, cull_connected=True
        )
    return jp_server_config


async def comm_id_of(ws: KernelWS, expression: str) -> str:
    return str((await ws.evaluate(expression)).strip("'"))


async def kernel_model(fetch_json: Any, kernel_id: str) -> dict[str, Any] | None:
    """The kernel's model in jupyter_server, None once it is gone (culled)."""
    kernels = await fetch_json("api", "kernels")
    return next((k for k in kernels if k["id"] == kernel_id), None)


async def gone(fetch_json: Any, kernel_id: str) -> bool:
    return await kernel_model(fetch_json, kernel_id) is None


async def comm_activity(fetch_json: Any, kernel_id: str) -> dict[str, float | None]:
    """When a kernel's comms last moved, by side, from the summary (epoch seconds)."""
    by_kernel = (await fetch_json("api", "comms", "summary"))["by_kernel"]
    return {side: parse_isoformat(t) for side, t in by_kernel[kernel_id]["comm_activity"].items()}


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


@pytest.mark.timeout(40)
async def test_reads_timers_and_force_close_are_not_activity(
    fetch_json, jp_fetch, jp_ws_fetch, start_kernel
):
    """Polling every route (asking the kernel too), a widget timer and an admin's force-close
    leave the server's last_activity where the user left it."""
    kernel_id = await start_kernel()
    ws = await KernelWS.connect(jp_ws_fetch, kernel_id)
    await ws.execute(OPEN_COMM + TIMER)
    comm_id = await comm_id_of(ws, "c.comm_id")
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
    ticks = (await comm_activity(fetch_json, kernel_id))["kernel"]
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        for route in routes:
            for params in ({}, {"no_track_activity": "1"}, {"refresh": "1"}):
                if params.get("refresh") and route[0] != "api":
                    continue
                response = await jp_fetch(*route, params=params)
                assert response.code == 200, (route, params)
        await asyncio.sleep(0.05)
    await jp_fetch("api", "comms", comm_id, method="DELETE")
    await asyncio.sleep(1)  # the kernel's answer to the close, and two more ticks
    assert (await comm_activity(fetch_json, kernel_id))["kernel"] > ticks  # it ticked
    assert await last_activity(fetch_json) == before


@pytest.mark.parametrize("cull_idle_timeout", [IDLE])
@pytest.mark.timeout(60)
async def test_kernel_culler(fetch_json, jp_ws_fetch, start_kernel):
    """jupyter_server's own culler: a kernel with only a widget timer is culled; one whose
    user moves a slider is kept while they do (its last_activity follows them) and culled
    after; a busy kernel is kept."""
    timer_only, touched, busy = [await start_kernel() for _ in range(3)]
    started = time.monotonic()
    frontends = {k: await KernelWS.connect(jp_ws_fetch, k) for k in (timer_only, touched, busy)}
    await frontends[timer_only].execute(TIMER)
    await frontends[touched].execute(TIMER)
    await frontends[busy].send("execute_request", execute_content("import time; time.sleep(60)"))
    user = frontends[touched]
    moved: list[float] = []
    # the user moves the slider every second
    dragging = asyncio.ensure_future(drag(user, await slider_id(user), 1, moved))
    try:
        await wait_for(lambda: gone(fetch_json, timer_only), CULLED_WITHIN, "the timer's cull")
        timer_culled = time.monotonic() - started
        await asyncio.sleep(INTERVAL)
        model = await kernel_model(fetch_json, touched)
        assert model is not None, "culled while the user moved its slider"
        # its last_activity follows the moves (the kernel's answer comes a moment after each)
        assert parse_isoformat(model["last_activity"]) >= moved[-2]
        times = await comm_activity(fetch_json, touched)
        assert times["user"] >= moved[-2] and times["kernel"] >= moved[-2]
    finally:
        dragging.cancel()
    stopped = time.monotonic()
    await wait_for(
        lambda: gone(fetch_json, touched),
        CULLED_WITHIN,
        "the touched kernel's cull",
    )
    culled = time.monotonic() - stopped
    print(f"timer only: culled {timer_culled:.1f} s after start; touched: {culled:.1f} s after")
    model = await kernel_model(fetch_json, busy)
    assert model is not None and model["execution_state"] == "busy"
    await fetch_json("api", "kernels", busy, "interrupt", method="POST")
    for ws in frontends.values():
        ws.close()

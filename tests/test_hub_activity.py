"""JupyterHub's idle culler against comm activity, on a real JupyterHub.

jupyterhub-idle-culler (PyPI) runs as a Hub service and stops servers whose `last_activity`
as the Hub has it is older than its timeout: what each single-user server reports every
JUPYTERHUB_ACTIVITY_INTERVAL, and what the proxy forwarded, read every
JupyterHub.last_activity_interval. A server whose only traffic is a widget timer is culled
while the comms service is polled as its Hub page does; a server whose user drags a slider
is not.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import datetime
from typing import Any

import pytest
from hub_process import CHP, SERVICE, Hub
from waiting import wait_for
from widget_timer import TIMER, drag, slider_id

pytestmark = [
    pytest.mark.skipif(
        CHP is None and not os.environ.get("CI"),
        reason="configurable-http-proxy is not installed (npm install -g configurable-http-proxy)",
    ),
    # the Hub, two servers and two kernels take ~25 s when quiet; the culls ~15 s
    pytest.mark.timeout(180),
]

#: the idle culler's timeout and period, and how often servers tell the Hub (seconds)
IDLE, EVERY, REPORT = 8, 2, 1

IDLE_CULLER = f"""
import os
c.JupyterHub.services.append({{
    "name": "idle-culler",
    "command": [
        sys.executable, "-m", "jupyterhub_idle_culler",
        "--timeout={IDLE}", "--cull-every={EVERY}",
    ],
    "environment": {{"COMMS_HUB_TEST": os.environ["COMMS_HUB_TEST"]}},
}})
c.JupyterHub.load_roles.append({{
    "name": "idle-culler",
    "services": ["idle-culler"],
    "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
}})
c.Spawner.environment["JUPYTERHUB_ACTIVITY_INTERVAL"] = "{REPORT}"
# the proxy counts every request it forwards as the server's activity, and the Hub reads it
# every last_activity_interval: the comms service asks servers directly (the proxy scope)
c.JupyterHub.last_activity_interval = {REPORT}
next(r for r in c.JupyterHub.load_roles if r["name"] == "comms-service")["scopes"].append("proxy")
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with Hub(
        tmp_path_factory.mktemp("hub"),
        ("admin", "idle", "dragger"),
        roles=[
            ("comms-admin", "admin", ["custom:comms:read", f"access:services!service={SERVICE}"])
        ],
        extra_config=IDLE_CULLER,
    ) as hub:
        yield hub


def seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def test_a_widget_timer_is_culled_a_dragged_slider_is_not(hub: Hub) -> None:
    hub.start_servers([("idle", ""), ("dragger", "")])
    kernels = {user: await hub.start_kernel(user) for user in ("idle", "dragger")}
    frontends = {user: await hub.connect(user, kernels[user]) for user in kernels}
    for ws in frontends.values():
        await ws.execute(TIMER)
    frontends["idle"].close()  # the tab is closed; the kernel's timer runs on
    user = frontends["dragger"]
    moved: list[float] = []
    dragging = asyncio.ensure_future(drag(user, await slider_id(user), 2, moved))
    left = time.monotonic()

    async def idle_culled() -> bool:
        # the comms Hub page, polling every server meanwhile
        for route in ("api/summary", "api/kernels", "api/comms"):
            await hub.api(route)
        await asyncio.sleep(0.5)
        return not hub.server("idle")

    try:
        # timeout, a cull period, two reports, and the server's own stop (its kernel's
        # shutdown): ~11 s when quiet; a loaded machine takes longer, stock never culls
        await wait_for(idle_culled, 3 * IDLE + 2 * EVERY + 2 * REPORT, "the idle server's cull")
        culled = time.monotonic() - left
        assert hub.server("dragger"), "culled while its user dragged a slider"
        assert "Asking servers through the proxy" not in hub.log()  # but directly
        summary = await hub.api("api/summary")
        (entry,) = summary["servers"]
        assert entry["user"] == "dragger"
        # the Hub sees the drags: the server's last_activity as it has it is recent
        assert seconds(entry["last_activity"]) >= moved[-1] - (2 + 2 * REPORT)
        by_kernel = entry["summary"]["by_kernel"][kernels["dragger"]]["comm_activity"]
        assert seconds(by_kernel["user"]) >= moved[-2]
        assert seconds(by_kernel["kernel"]) >= moved[-2]
    finally:
        dragging.cancel()
        user.close()
    print(f"the timer-only server was culled {culled:.1f} s after its user left")

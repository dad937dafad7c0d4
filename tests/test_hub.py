"""The JupyterHub service against a real JupyterHub.

One JupyterHub (PyPI) per module, on 127.0.0.1, with configurable-http-proxy (npm),
DummyAuthenticator and SimpleLocalProcessSpawner; the service runs as a managed Hub service
(`python -m jupyter_comm_ext.hub`), the single-user servers are jupyterhub-singleuser with
the extension, their kernels real ipykernels opening real comms.

Users: alice (two kernels), bob (his default server and one named `second`), carol (one
kernel) have comms; dave's server runs without the extension; erin's has no kernel and is
the one hung and stopped. admin holds custom:comms:write, viewer custom:comms:read, plain
only access to the service, nobody nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from chromium import BROWSER_TIMEOUT, needs_browser
from hub_process import CHP, PREFIX, SERVICE, Hub
from kernel_code import KERNEL_SAW_CLOSE, OPEN_WATCHED_COMM
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect
from waiting import wait_for
from wsclient import comm_msgs, execute_content

from jupyter_comm_ext.hub.aggregate import ON_BEHALF_HEADER

pytestmark = [
    pytest.mark.skipif(
        CHP is None and not os.environ.get("CI"),
        reason="configurable-http-proxy is not installed (npm install -g configurable-http-proxy)",
    ),
    # the first test also waits for the Hub, six servers and five kernels (~40 s when quiet)
    pytest.mark.timeout(300),
]

SERVER_TIMEOUT = 2.0
ANSWER_TIMEOUT = 4.0
USERS = ("admin", "viewer", "plain", "nobody", "alice", "bob", "carol", "dave", "erin")
#: the comms each server's kernels open: server -> one list of target names per kernel
COMMS = {
    ("alice", ""): [["probe", "probe"], ["other"]],
    ("bob", ""): [["probe"]],
    ("bob", "second"): [["probe", "probe"]],
    ("carol", ""): [["other"]],
}
SERVERS = [("alice", ""), ("bob", ""), ("bob", "second"), ("carol", ""), ("dave", ""), ("erin", "")]
NOTEBOOK = "analysis/Untitled.ipynb"  # alice's first kernel runs it (a session)
NO_EXTENSION_FOR_DAVE = """
def no_extension_for_dave(spawner):
    if spawner.user.name == "dave":
        # jupyterhub=True again: on jupyter_server < 2.15 the option replaces the singleuser
        # extension's own entry (KeyError: 'jupyterhub-singleuser' at start)
        spawner.args = [
            *spawner.args,
            "--ServerApp.jpserver_extensions=jupyter_comm_ext=False",
            "--ServerApp.jpserver_extensions=jupyterhub=True",
        ]

c.Spawner.pre_spawn_hook = no_extension_for_dave
"""


async def _open_comms(hub: Hub) -> dict[tuple[str, str], list[str]]:
    """Start the servers, a kernel per entry of COMMS, and have each open its comms."""
    kernels: dict[tuple[str, str], list[str]] = {}
    for (user, name), per_kernel in COMMS.items():
        for targets in per_kernel:
            kernel_id = await hub.start_kernel(user, name)
            ws = await hub.connect(user, kernel_id, name)
            code = "from comm import create_comm\n" + "\n".join(
                f"c{i} = create_comm(target_name={t!r})" for i, t in enumerate(targets)
            )
            await ws.execute(code)
            ws.close()
            kernels.setdefault((user, name), []).append(kernel_id)
    await hub.open_notebook("alice", kernels["alice", ""][0], NOTEBOOK)
    return kernels


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with Hub(
        tmp_path_factory.mktemp("hub"),
        USERS,
        roles=[
            ("comms-admin", "admin", ["custom:comms:write", f"access:services!service={SERVICE}"]),
            ("comms-viewer", "viewer", ["custom:comms:read", f"access:services!service={SERVICE}"]),
            ("comms-plain", "plain", [f"access:services!service={SERVICE}"]),
        ],
        service_args=[
            f"--CommsHubService.server_timeout={SERVER_TIMEOUT}",
            f"--CommsHubService.answer_timeout={ANSWER_TIMEOUT}",
            "--CommsHubService.page_size=2",  # alice's server answers in two pages
        ],
        extra_config=NO_EXTENSION_FOR_DAVE,
    ) as hub:
        hub.start_servers(SERVERS)
        hub.kernels = asyncio.run(_open_comms(hub))
        yield hub


def by_server(comms: list[dict]) -> Counter:
    return Counter((c["user"], c["server_name"]) for c in comms)


def statuses(answer: dict) -> dict[tuple[str, str], str]:
    return {(s["user"], s["server_name"]): s["status"] for s in answer["servers"]}


async def test_every_comm_of_every_server(hub: Hub) -> None:
    async def all_there() -> Any:
        answer = await hub.api("api/comms")
        return answer if len(answer["comms"]) == 7 else None

    answer = await wait_for(all_there, 20, "the 7 comms")
    assert by_server(answer["comms"]) == {
        ("alice", ""): 3,
        ("bob", ""): 1,
        ("bob", "second"): 2,
        ("carol", ""): 1,
    }
    assert Counter(c["target_name"] for c in answer["comms"]) == {"probe": 5, "other": 2}
    for comm in answer["comms"]:
        assert comm["status"] == "open" and comm["origin"] == "kernel"
        assert comm["kernel_id"] in hub.kernels[comm["user"], comm["server_name"]]
    assert statuses(answer) == {
        ("alice", ""): "ok",
        ("bob", ""): "ok",
        ("bob", "second"): "ok",
        ("carol", ""): "ok",
        ("dave", ""): "no-extension",
        ("erin", ""): "ok",
    }

    summary = await hub.api("api/summary")
    totals = summary["totals"]
    assert (totals["open"], totals["orphaned"], totals["servers"], totals["kernels"]) == (
        7,
        0,
        5,
        5,
    )
    assert totals["by_target"] == {
        "probe": {"open": 5, "orphaned": 0, "left_behind": 0},
        "other": {"open": 2, "orphaned": 0, "left_behind": 0},
    }
    assert totals["by_origin"]["kernel"] == 7
    per_server = {(s["user"], s["server_name"]): s for s in summary["servers"]}
    assert per_server["alice", ""]["summary"]["open"] == 3
    assert set(per_server["alice", ""]["summary"]["by_kernel"]) == set(hub.kernels["alice", ""])
    assert per_server["dave", ""]["status"] == "no-extension"
    assert per_server["dave", ""]["summary"] is None


async def test_filters(hub: Hub) -> None:
    async def count(query: str) -> Counter:
        return by_server((await hub.api(f"api/comms?{query}"))["comms"])

    assert await count("user=bob") == {("bob", ""): 1, ("bob", "second"): 2}
    assert await count("user=bob&server_name=second") == {("bob", "second"): 2}
    assert await count("server_name=second") == {("bob", "second"): 2}
    assert await count("user=nobody-here") == {}
    assert await count("target_name=other") == {("alice", ""): 1, ("carol", ""): 1}
    assert await count("origin=frontend") == {}
    assert await count("min_idle=3600") == {}
    # a kernel id only alice's server has: the others answer "none here", not an error
    kernel_id = hub.kernels["alice", ""][0]
    answer = await hub.api(f"api/comms?kernel_id={kernel_id}")
    assert by_server(answer["comms"]) == {("alice", ""): 2}
    assert statuses(answer)["carol", ""] == "ok"
    summary = await hub.api("api/summary?user=carol")
    assert [(s["user"], s["summary"]["open"]) for s in summary["servers"]] == [("carol", 1)]

    for query in (
        "status=bogus",
        "origin=martian",
        "min_idle=-1",
        "min_idle=soon",
        "refresh=1",
        "foo=bar",
        "limit=10",
    ):
        status, body, _ = await hub.fetch(f"{PREFIX}api/comms?{query}", user="admin")
        assert status == 400 and body["message"], (query, status, body)
    status, body, _ = await hub.fetch(f"{PREFIX}api/summary?target_name=x", user="admin")
    assert status == 400 and "target_name" in body["message"]


async def test_kernels_and_their_notebooks(hub: Hub) -> None:
    answer = await hub.api("api/kernels?user=alice")
    assert {k["kernel_id"]: k["notebook"] for k in answer["kernels"]} == {
        hub.kernels["alice", ""][0]: NOTEBOOK,
        hub.kernels["alice", ""][1]: None,
    }
    assert {(k["user"], k["server_name"], k["name"]) for k in answer["kernels"]} == {
        ("alice", "", "python3")
    }
    # the kernels route is the server's own: a server without the extension has one too
    assert statuses(await hub.api("api/kernels?user=dave")) == {("dave", ""): "ok"}
    status, body, _ = await hub.fetch(f"{PREFIX}api/kernels?status=open", user="admin")
    assert status == 400, body
    status, body, _ = await hub.fetch(f"{PREFIX}api/kernels", user="plain")
    assert status == 403, body


async def test_who_may_look_and_close(hub: Hub) -> None:
    comm_id = (await hub.api("api/comms?user=bob&server_name=second"))["comms"][0]["comm_id"]
    # viewer may look, not close
    assert len((await hub.api("api/comms", user="viewer"))["comms"]) >= 1
    for method, path in (("DELETE", f"api/comms/{comm_id}"), ("DELETE", "api/comms?user=bob")):
        status, body, _ = await hub.fetch(PREFIX + path, method, "viewer")
        assert status == 403 and "custom:comms:write" in body["message"], body
    # plain may reach the service, but neither look nor close
    for method, path in (("GET", "api/comms"), ("GET", "api/summary"), ("DELETE", "api/comms/x")):
        status, body, _ = await hub.fetch(PREFIX + path, method, "plain")
        scope = "custom:comms:write" if method == "DELETE" else "custom:comms:read"
        assert status == 403 and scope in body["message"], body
    # without access to the service, or without a token: a JSON 403, never a redirect
    for user in ("nobody", None):
        for method in ("GET", "DELETE"):
            status, body, _ = await hub.fetch(f"{PREFIX}api/comms?min_idle=0", method, user)
            assert status == 403 and "not logged in" in body["message"], (user, method, body)
    status, body, _ = await hub.fetch(f"{PREFIX}api/comms", Authorization="token not-a-real-token")
    assert status == 403, body
    # a browser without a session is sent to log in through the Hub's OAuth
    status, _, response = await hub.fetch(PREFIX)
    assert status == 302 and "/hub/api/oauth2/authorize" in response.headers["Location"]
    assert comm_id in {c["comm_id"] for c in (await hub.api("api/comms"))["comms"]}


async def test_busy_kernel_answers_promptly(hub: Hub) -> None:
    kernel_id = hub.kernels["alice", ""][1]
    ws = await hub.connect("alice", kernel_id)
    try:
        await ws.send("execute_request", execute_content("import time; time.sleep(30)"))
        await ws.recv(lambda m: m["content"].get("execution_state") == "busy", 10)
        started = time.monotonic()
        answer = await hub.api("api/comms?user=alice")
        elapsed = time.monotonic() - started
        assert elapsed < 1.5, elapsed
        assert sum(c["kernel_id"] == kernel_id for c in answer["comms"]) == 1
        assert statuses(answer) == {("alice", ""): "ok"}
    finally:
        status, _, _ = await hub.fetch(
            f"/user/alice/api/kernels/{kernel_id}/interrupt", "POST", "alice"
        )
        assert status == 204
        ws.close()


async def test_force_close_reaches_kernel_and_tab(hub: Hub) -> None:
    kernel_id = hub.kernels["carol", ""][0]
    ws = await hub.connect("carol", kernel_id)
    try:
        await ws.execute(OPEN_WATCHED_COMM.format(target="watched"))
        comm_id = json.loads((await ws.evaluate("c.comm_id")).replace("'", '"'))

        async def listed() -> bool:
            comms = (await hub.api("api/comms?target_name=watched"))["comms"]
            return [c["comm_id"] for c in comms] == [comm_id]

        await wait_for(listed, 10, "the watched comm")
        events = await websocket_connect(
            HTTPRequest(
                f"ws://127.0.0.1:{hub.port}/user/carol/api/events/subscribe",
                headers={"Authorization": f"token {hub.tokens['carol']}"},
            )
        )
        status, body, _ = await hub.fetch(f"{PREFIX}api/comms/{comm_id}", "DELETE", "admin")
        assert status == 204, body
        event = await _next_event(events, "force_closed", 10)
        assert (event["comm_id"], event["username"]) == (comm_id, f"admin via {SERVICE}")
        events.close()
        close = await ws.recv(comm_msgs(ws, "comm_close", comm_id), 10)
        assert close["channel"] == "iopub"
        await ws.eventually(KERNEL_SAW_CLOSE)
        status, model, _ = await hub.fetch(f"/user/carol/api/comms/{comm_id}", user="carol")
        assert status == 200 and model["status"] == "closed", model
        assert model["close_reason"] == "force-closed"
        assert model["closed_by"] == f"admin via {SERVICE}"
        # gone from the Hub's list; closing it again is a 404
        assert not (await hub.api("api/comms?target_name=watched"))["comms"]
        status, body, _ = await hub.fetch(f"{PREFIX}api/comms/{comm_id}", "DELETE", "admin")
        assert status == 404 and body["message"], body
    finally:
        ws.close()


async def _next_event(events: Any, action: str, timeout: float) -> dict:
    """The next comm event with `action` on a server's event stream, bounded."""
    deadline = time.monotonic() + timeout
    while True:
        frame = await asyncio.wait_for(events.read_message(), deadline - time.monotonic())
        assert frame is not None, "the event stream closed"
        event = json.loads(frame)
        if event.get("schema_id", "").endswith("jupyter_comm_ext/comm/v1") and (
            event.get("action") == action
        ):
            return event


async def test_bulk_close(hub: Hub) -> None:
    status, body, _ = await hub.fetch(f"{PREFIX}api/comms?user=bob", "DELETE", "admin")
    assert status == 400 and "at least one" in body["message"], body
    status, body, _ = await hub.fetch(
        f"{PREFIX}api/comms?user=bob&status=closed", "DELETE", "admin"
    )
    assert status == 400, body
    answer = await hub.api("api/comms?user=bob&target_name=probe", "DELETE")
    assert by_server(answer["comms"]) == {("bob", ""): 1, ("bob", "second"): 2}
    assert {c["closed_by"] for c in answer["comms"]} == {f"admin via {SERVICE}"}
    assert not (await hub.api("api/comms?user=bob"))["comms"]
    # the others' are untouched
    assert by_server((await hub.api("api/comms?target_name=probe"))["comms"]) == {("alice", ""): 2}


HOSTILE = '<img src=x onerror="window.pwned=1">'


async def _log_in(browser: Any, hub: Hub, user: str) -> Any:
    """A browser tab logged in to the Hub as `user`, on the service's page (via OAuth)."""
    context = await browser.new_context()
    page = await context.new_page()
    page.set_default_timeout(BROWSER_TIMEOUT)
    await page.goto(f"{hub.url}/hub/login?next={PREFIX}")
    await page.fill("#username_input", user)
    await page.fill("#password_input", "any")
    await page.click("#login_submit")
    await page.wait_for_url(f"{hub.url}{PREFIX}")
    await page.locator("tr.server").first.wait_for()
    return page


@needs_browser
async def test_page(hub: Hub, browser: Any, screenshots: Path) -> None:
    kernel_id = hub.kernels["alice", ""][0]
    ws = await hub.connect("alice", kernel_id)
    await ws.execute(
        f"from comm import create_comm\nhostile = create_comm(target_name={HOSTILE!r})"
    )
    ws.close()
    comm_id = await wait_for(
        lambda: _comm_with_target(hub, HOSTILE), 10, "the comm with a hostile target"
    )

    page = await _log_in(browser, hub, "admin")
    alice = page.locator('tr.server[data-server="alice/"]')
    await alice.get_by_text("ok").wait_for()
    assert "no extension" in await page.locator('tr.server[data-server="dave/"]').inner_text()
    assert "dave/(default) (no comms extension)" in await page.locator("#unreachable").inner_text()
    await page.get_by_role("button", name="Show comms of alice/(default)").click()
    row = page.locator(f'tr[data-comm-id="{comm_id}"]')
    await row.wait_for()
    group = page.locator("tr.kernel", has_text=NOTEBOOK)
    assert "3 comms" in await group.inner_text()  # two probes and the hostile one
    assert HOSTILE in await row.inner_text()
    assert await page.locator("img").count() == 0
    assert await page.evaluate("window.pwned") is None
    await page.screenshot(path=screenshots / "hub_page.png", full_page=True)

    await row.get_by_role("button", name=f"Close comm {HOSTILE} {comm_id[:8]}").click()
    await page.locator("#confirm-ok").click()
    await page.get_by_text("Closed 1 comm.").wait_for()
    await row.wait_for(state="detached")
    status, model, _ = await hub.fetch(f"/user/alice/api/comms/{comm_id}", user="alice")
    assert (status, model["status"], model["closed_by"]) == (200, "closed", "admin via comms")

    # close idle, within the filters: alice's comms with target "other", idle 0 minutes or more
    await page.fill("#filter-user", "alice")
    await page.fill("#filter-target", "other")
    await page.fill("#idle-minutes", "0")
    await page.click("#close-idle-button")
    question = page.locator("#confirm-text", has_text="idle longer than")
    await question.wait_for()  # the page counts the matches first
    assert await question.inner_text() == (
        "Close 1 comm idle longer than 0 minutes of alice with target “other”, on 1 server?"
    )
    await page.locator("#confirm-ok").click()
    await page.get_by_text("Closed 1 comm idle longer than 0 minutes").wait_for()
    left = (await hub.api("api/comms?user=alice"))["comms"]
    assert sorted(c["target_name"] for c in left) == ["probe", "probe"]

    # a viewer sees the same, and a close is refused in plain words
    viewer = await _log_in(browser, hub, "viewer")
    await viewer.get_by_role("button", name="Show comms of carol/(default)").click()
    await viewer.get_by_role("button", name="Close comm other").click()
    await viewer.locator("#confirm-ok").click()
    await viewer.get_by_text("You may look but not close").wait_for()
    assert await viewer.locator('button[aria-label^="Close comm"]:disabled').count() == 1
    assert len((await hub.api("api/comms?user=carol"))["comms"]) == 1


async def _comm_with_target(hub: Hub, target: str) -> str | None:
    comms = (await hub.api("api/comms?user=alice"))["comms"]
    return next((c["comm_id"] for c in comms if c["target_name"] == target), None)


async def test_on_behalf_of_is_a_label_only(hub: Hub) -> None:
    """The header the service sends names who asked; the server always adds who did it."""
    (comm,) = (await hub.api("api/comms?user=carol"))["comms"]
    path = f"/user/carol/api/comms/{comm['comm_id']}"
    for bad in ("", "x" * 257):
        status, body, _ = await hub.fetch(path, "DELETE", "carol", **{ON_BEHALF_HEADER: bad})
        assert status == 400 and ON_BEHALF_HEADER in body["message"], body
    status, _, _ = await hub.fetch(path, "DELETE", "carol", **{ON_BEHALF_HEADER: "mallory"})
    assert status == 204
    status, model, _ = await hub.fetch(path, user="carol")
    assert model["closed_by"] == "mallory via carol"


async def test_hung_then_stopped_server(hub: Hub) -> None:
    """A server that does not answer costs the answer its timeout, no more; a stopped
    one is not asked at all; a dead one is an error. Runs last: erin's server is stopped and
    bob's second killed after it."""
    pid = hub.server_pid("erin")
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        answer = await hub.api("api/comms")
        elapsed = time.monotonic() - started
        erin = next(s for s in answer["servers"] if s["user"] == "erin")
        assert erin["status"] == "error" and "timeout" in erin["message"], erin
        assert SERVER_TIMEOUT - 0.1 < elapsed < SERVER_TIMEOUT + 1.5, elapsed
        assert statuses(answer)["alice", ""] == "ok"
        assert by_server(answer["comms"])["alice", ""] >= 1
    finally:
        os.kill(pid, signal.SIGCONT)
    hub.stop_server("erin")
    answer = await hub.api("api/comms")
    assert ("erin", "") not in statuses(answer)
    assert statuses(answer)["alice", ""] == "ok"
    # a server that died under the Hub (which still lists it): an error, promptly
    os.kill(hub.server_pid("bob", "second"), signal.SIGKILL)
    started = time.monotonic()
    answer = await hub.api("api/comms")
    assert time.monotonic() - started < SERVER_TIMEOUT
    second = next(s for s in answer["servers"] if s["server_name"] == "second")
    assert second["status"] == "error" and second["message"], second
    assert statuses(answer)["alice", ""] == "ok"

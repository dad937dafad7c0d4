"""Failure paths: a kernel that cannot be asked, orphans, a culler that meets an error.

Each answer must still come, say what went wrong, and lose nothing; every error leaves a
line in the log.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

import pytest
from inprocess import captured, extension, found_orphans
from server_process import ServerProcess
from waiting import wait_for
from wsclient import KernelWS, comm_msgs

from jupyter_comm_ext.culler import CommCuller

OPEN_TWO = """
from comm import create_comm, get_comm_manager
comms = [create_comm(target_name=t) for t in ("x", "y")]
"""


async def test_refresh_names_the_kernels_it_could_not_ask(
    jp_serverapp, jp_fetch, fetch_json, start_kernel
):
    asked, stopped = await start_kernel(), await start_kernel()
    await wait_for(lambda: _watched(fetch_json, {asked, stopped}), what="both watched")
    pid = jp_serverapp.kernel_manager.get_kernel(stopped).provisioner.process.pid
    os.kill(pid, signal.SIGSTOP)  # a kernel that cannot answer, even on control
    try:
        r = await jp_fetch("api", "comms", params={"refresh": "1"})
        assert r.code == 200 and r.headers["X-Comms-Not-Refreshed"] == stopped
        r = await jp_fetch("api", "comms", params={"refresh": "1", "kernel_id": asked})
        assert "X-Comms-Not-Refreshed" not in r.headers
    finally:
        os.kill(pid, signal.SIGCONT)
    await wait_for(lambda: _all_refreshed(jp_fetch), what="the resumed kernel answers again")


async def _all_refreshed(jp_fetch):
    r = await jp_fetch("api", "comms", params={"refresh": "1"})
    return "X-Comms-Not-Refreshed" not in r.headers


async def _watched(fetch_json, kernel_ids):
    return kernel_ids <= set((await fetch_json("api", "comms", "summary"))["by_kernel"])


async def test_orphans_are_closed_in_the_kernel_only(
    jp_serverapp, jp_fetch, fetch_json, jp_ws_fetch, start_kernel
):
    kernel_id = await start_kernel()
    ws = await KernelWS.connect(jp_ws_fetch, kernel_id, "v1")
    await ws.execute(OPEN_TWO)
    models = await wait_for(lambda: _comms(fetch_json, 2), what="2 comms")
    # the kernel drops the frontend's close (as ipykernel 7 does for some closes sent on a
    # subshell that is deleted right after)
    await ws.execute(
        "kernel = get_ipython().kernel\nkernel.shell_handlers['comm_close'] = lambda *args: None"
    )
    orphan = next(m["comm_id"] for m in models if m["target_name"] == "x")
    await ws.send("comm_close", {"comm_id": orphan, "data": {}})
    await wait_for(lambda: _comms(fetch_json, 1), what="closed by the frontend")
    await ws.execute("kernel.shell_handlers['comm_close'] = kernel.comm_manager.comm_close")
    orphans = await found_orphans(jp_serverapp, fetch_json)
    assert [m["comm_id"] for m in orphans] == [orphan]

    # status=orphaned alone is a filter: finish every orphan in one request
    closed = await fetch_json("api", "comms", method="DELETE", params={"status": "orphaned"})
    assert [m["comm_id"] for m in closed] == [orphan]
    await ws.eventually(f"'{orphan}' not in get_comm_manager().comms")
    # the frontend closed it long ago: it is not told again
    with pytest.raises(TimeoutError):
        await ws.recv(comm_msgs(ws, "comm_close", orphan), timeout=1.0)
    assert [m["target_name"] for m in await fetch_json("api", "comms")] == ["y"]
    ws.close()


async def _comms(fetch_json, n):
    models = await fetch_json("api", "comms")
    return models if len(models) == n else None


async def test_a_bad_setting_is_named_and_the_server_runs_on_without_us(tmp_path: Path) -> None:
    """jupyter_server runs on without an extension that fails to load, and logs why: the
    error names the setting, and nothing of ours follows it (no second error when the
    server starts the extension or stops it)."""
    bad = ["--WebsocketNodelay.push_interval=x"]
    server = ServerProcess(tmp_path, extension=True, args=bad, loads=False)  # /api/comms: 404
    try:
        kernel_id = await server.start_kernel()
        ws = await server.connect(kernel_id, "v1")
        await ws.run("1 + 1", timeout=30)  # the stock relay, untouched
        ws.ws.close()
        assert (await server.fetch("/api/shutdown", "POST", "")).code == 200
        server.process.wait(30)
    finally:
        server.stop()
    log = server.log()
    assert "'push_interval' trait of a WebsocketNodelay instance expected a float" in log
    assert "jupyter_comm_ext | extension failed starting" not in log
    assert "AttributeError" not in log


def test_a_culler_interval_that_would_never_run_falls_back_to_the_default(caplog):
    caplog.set_level(logging.WARNING)
    culler = CommCuller(cull_interval=0)
    assert culler.cull_interval == CommCuller.cull_interval_default
    assert "Invalid value for 'cull_interval'" in caplog.text
    assert CommCuller(cull_interval=-5).cull_interval == CommCuller.cull_interval_default
    assert CommCuller(cull_interval=7).cull_interval == 7


async def test_a_close_that_fails_does_not_end_the_cull_pass(
    jp_serverapp, fetch_json, start_kernel, monkeypatch
):
    app = extension(jp_serverapp)
    kernel_id = await start_kernel()
    client = jp_serverapp.kernel_manager.get_kernel(kernel_id).client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=30)
        await client.execute_interactive(OPEN_TWO, timeout=30)
        models = await wait_for(lambda: _comms(fetch_json, 2), what="2 comms")
    finally:
        client.stop_channels()
    failing = models[0]["comm_id"]
    force_close = app.mirror.force_close

    async def close_or_fail(record, **kwargs):
        if record.comm_id == failing:
            raise RuntimeError("the close went wrong")
        return await force_close(record, **kwargs)

    monkeypatch.setattr(app.mirror, "force_close", close_or_fail)
    app.culler.cull_idle_timeout = 1
    app.culler.cull_connected = True
    await asyncio.sleep(1.1)
    with captured(jp_serverapp) as records:
        culled = await app.culler.cull()
    assert [r.comm_id for r in culled] == [models[1]["comm_id"]]
    (logged,) = [r for r in records if f"Could not cull comm {failing}" in r.getMessage()]
    assert logged.exc_info and "the close went wrong" in str(logged.exc_info[1])
    assert [m["comm_id"] for m in await fetch_json("api", "comms")] == [failing]

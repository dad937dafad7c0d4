"""Kernel lives: shutdown forgets, restart closes, reconcile adopts what the mirror missed."""

from __future__ import annotations

import asyncio
import os
import signal
import time

from inprocess import extension, status_of
from waiting import wait_for
from wsclient import KernelWS, comm_msgs, execute_content

OPEN = "from comm import create_comm; cs = [create_comm(target_name='t') for _ in range(2)]"


async def open_comms(jp_ws_fetch, fetch_json, kernel_id, protocol="v1"):
    ws = await KernelWS.connect(jp_ws_fetch, kernel_id, protocol)
    await ws.execute(OPEN)
    await wait_for(lambda: _open_count(fetch_json, kernel_id, 2), what="2 comms")
    return ws


async def _open_count(fetch_json, kernel_id, n):
    return len(await fetch_json("api", "comms", params={"kernel_id": kernel_id})) == n


async def test_shutdown_forgets_the_kernels_comms(jp_fetch, fetch_json, jp_ws_fetch, start_kernel):
    kernel_id = await start_kernel()
    other = await start_kernel()
    ws = await open_comms(jp_ws_fetch, fetch_json, kernel_id)
    ws_other = await open_comms(jp_ws_fetch, fetch_json, other)
    await jp_fetch("api", "kernels", kernel_id, method="DELETE")
    models = await fetch_json("api", "comms", params={"status": "all"})
    assert {m["kernel_id"] for m in models} == {other}
    code, _ = await status_of(jp_fetch, "api", "kernels", kernel_id, "comms")
    assert code == 404
    ws.close()
    ws_other.close()


async def test_rest_restart_closes_comms(jp_fetch, fetch_json, jp_ws_fetch, start_kernel):
    kernel_id = await start_kernel()
    ws = await open_comms(jp_ws_fetch, fetch_json, kernel_id, "legacy")
    await jp_fetch("api", "kernels", kernel_id, "restart", method="POST", body="{}")
    assert await fetch_json("api", "comms") == []
    closed = await fetch_json("api", "comms", params={"status": "closed"})
    assert [m["close_reason"] for m in closed] == ["kernel-restarted"] * 2
    # the mirror follows the restarted kernel
    ws.close()
    ws = await KernelWS.connect(jp_ws_fetch, kernel_id, "v1")
    await ws.execute(OPEN)
    await wait_for(lambda: _open_count(fetch_json, kernel_id, 2), what="comms after restart")
    ws.close()


async def test_auto_restart_after_the_kernel_dies(
    jp_serverapp, fetch_json, jp_ws_fetch, start_kernel
):
    kernel_id = await start_kernel()
    ws = await open_comms(jp_ws_fetch, fetch_json, kernel_id)
    km = jp_serverapp.kernel_manager.get_kernel(kernel_id)
    pid = km.provisioner.process.pid
    os.kill(pid, signal.SIGKILL)
    await wait_for(lambda: _open_count(fetch_json, kernel_id, 0), timeout=30, what="closed")
    closed = await fetch_json("api", "comms", params={"status": "closed"})
    assert {m["close_reason"] for m in closed} == {"kernel-restarted"}
    # after the automatic restart, new comms are mirrored again
    await wait_for(
        lambda: km.provisioner.process and km.provisioner.process.pid != pid,
        timeout=30,
        what="restarted",
    )
    ws.close()
    ws = await KernelWS.connect(jp_ws_fetch, kernel_id, "v1")
    await ws.execute(OPEN)
    await wait_for(
        lambda: _open_count(fetch_json, kernel_id, 2), timeout=30, what="comms after auto-restart"
    )
    ws.close()


async def test_refresh_adopts_comms_opened_before_the_mirror_watched(
    jp_serverapp, fetch_json, jp_ws_fetch, start_kernel
):
    kernel_id = await start_kernel()
    mirror = extension(jp_serverapp).mirror
    ws = await KernelWS.connect(jp_ws_fetch, kernel_id, "v1")
    await ws.execute("x = 1")
    mirror.forget_kernel(kernel_id, "test")  # as if the server had just loaded us
    await ws.execute(OPEN)
    # one request: the refresh watches the kernel and waits for its answer
    models = await fetch_json("api", "comms", params={"refresh": "1"})
    assert [m["origin"] for m in models] == ["unknown", "unknown"]
    assert {m["target_name"] for m in models} == {"t"}
    ws.close()


async def test_first_contact_with_a_running_kernel_reconciles(
    jp_serverapp, fetch_json, jp_ws_fetch, start_kernel
):
    kernel_id = await start_kernel()
    mirror = extension(jp_serverapp).mirror
    ws = await KernelWS.connect(jp_ws_fetch, kernel_id, "v1")
    mirror.forget_kernel(kernel_id, "test")
    await ws.execute(OPEN)
    # the next look at the kernels finds one not watched, watches it and asks it
    models = await wait_for(lambda: fetch_json("api", "comms"), what="adopted")
    assert [m["origin"] for m in models] == ["unknown", "unknown"]
    # and from then on follows it
    await ws.execute("cs[0].close()")
    await ws.recv(comm_msgs(ws, "comm_close"))
    await wait_for(lambda: _open_count(fetch_json, kernel_id, 1), what="one closed")
    ws.close()


async def test_waiting_for_a_stopped_watcher_is_no_error(jp_serverapp, start_kernel):
    # A frontend connecting waits for the watcher's subscription; if the watcher stops or
    # reconnects (the kernel went away or restarted) meanwhile, the frontend's websocket
    # must stay open, so the wait ends without raising.
    kernel_id = await start_kernel()
    watcher = extension(jp_serverapp).mirror.watchers[kernel_id]
    watcher.connect()
    waiting = asyncio.ensure_future(watcher.subscribed(10))
    await asyncio.sleep(0)
    watcher.connect()
    assert await waiting is True
    watcher.connect()
    waiting = asyncio.ensure_future(watcher.subscribed(10))
    watcher.close()
    assert await waiting is False


async def test_refresh_answers_while_the_kernel_is_busy(fetch_json, jp_ws_fetch, start_kernel):
    kernel_id = await start_kernel()
    ws = await open_comms(jp_ws_fetch, fetch_json, kernel_id)
    busy = await ws.send("execute_request", execute_content("import time; time.sleep(8)"))
    await ws.recv(
        lambda m: (
            m["header"]["msg_type"] == "status"
            and m["parent_header"].get("msg_id") == busy["header"]["msg_id"]
        )
    )
    started = time.monotonic()
    models = await fetch_json("api", "comms", params={"refresh": "1"})
    assert time.monotonic() - started < 6  # asked on control: no wait for the cell
    assert len(models) == 2
    ws.close()


async def test_closing_a_comm_of_a_dying_kernel_is_clean(
    jp_serverapp, jp_fetch, fetch_json, jp_ws_fetch, start_kernel
):
    kernel_id = await start_kernel()
    ws = await open_comms(jp_ws_fetch, fetch_json, kernel_id)
    comm_id = (await fetch_json("api", "comms"))[0]["comm_id"]
    km = jp_serverapp.kernel_manager.get_kernel(kernel_id)
    os.kill(km.provisioner.process.pid, signal.SIGKILL)
    code, _ = await status_of(jp_fetch, "api", "comms", comm_id, method="DELETE")
    # closed cleanly, or already closed by the restart: never a 500, never a ghost
    assert code in (204, 404)
    await wait_for(lambda: _open_count(fetch_json, kernel_id, 0), timeout=30, what="no ghost")
    assert (await fetch_json("api", "comms", comm_id))["status"] == "closed"
    ws.close()
    # let the automatic restart finish: shutting down a kernel mid-restart trips
    # jupyter_client (InvalidStateError on km.ready) in the server's cleanup
    ws = await KernelWS.connect(jp_ws_fetch, kernel_id, "v1")
    await ws.execute("1")
    ws.close()

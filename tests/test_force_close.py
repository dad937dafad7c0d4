"""Force-close: DELETE closes a comm in the kernel, in every frontend and in the mirror."""

from __future__ import annotations

import asyncio

import pytest
from inprocess import kernel_client, status_of
from kernel_code import KERNEL_SAW_CLOSE, OPEN_WATCHED_COMM
from waiting import wait_for
from wsclient import PROTOCOLS, KernelWS, comm_msgs, widget_opened


async def open_comm(ws: KernelWS, target: str = "probe") -> str:
    await ws.execute(OPEN_WATCHED_COMM.format(target=target))
    opened = await ws.recv(comm_msgs(ws, "comm_open"))
    return opened["content"]["comm_id"], opened["header"]["session"]


async def test_delete_closes_everywhere(jp_fetch, fetch_json, jp_ws_fetch, start_kernel):
    kernel_id = await start_kernel()
    frontends = [await KernelWS.connect(jp_ws_fetch, kernel_id, p) for p in PROTOCOLS]
    comm_id, kernel_session = await open_comm(frontends[0])
    await wait_for(
        lambda: fetch_json("api", "comms", params={"kernel_id": kernel_id}), what="mirrored"
    )

    code, _ = await status_of(jp_fetch, "api", "comms", comm_id, method="DELETE")
    assert code == 204

    for ws in frontends:  # every frontend is told, in the kernel's name
        close = await ws.recv(comm_msgs(ws, "comm_close", comm_id), timeout=10)
        assert close["channel"] == "iopub"
        assert close["header"]["session"] == kernel_session
        assert close["header"]["msg_type"] == "comm_close"
    await frontends[0].eventually(KERNEL_SAW_CLOSE)  # on_close ran, the kernel forgot it

    model = await fetch_json("api", "comms", comm_id)
    assert model["status"] == "closed"
    assert model["close_reason"] == "force-closed"
    assert model["closed_by"]
    assert await fetch_json("api", "comms") == []

    code, body = await status_of(jp_fetch, "api", "comms", comm_id, method="DELETE")
    assert code == 404 and "closed" in body["message"]
    code, body = await status_of(jp_fetch, "api", "comms", "no-such-comm", method="DELETE")
    assert code == 404 and body["message"]
    for ws in frontends:
        ws.close()


async def test_delete_without_frontend(jp_fetch, fetch_json, jp_serverapp, start_kernel):
    kernel_id = await start_kernel()
    async with kernel_client(jp_serverapp, kernel_id) as client:
        await client.execute_interactive(OPEN_WATCHED_COMM.format(target="probe"), timeout=30)
        models = await wait_for(lambda: fetch_json("api", "comms"), what="mirrored")
        code, _ = await status_of(jp_fetch, "api", "comms", models[0]["comm_id"], method="DELETE")
        assert code == 204
        await wait_for(lambda: _kernel_says(client, KERNEL_SAW_CLOSE), what="kernel closed")


async def _kernel_says(client, expression):
    reply = await client.execute_interactive("", user_expressions={"x": expression}, timeout=30)
    return reply["content"]["user_expressions"]["x"]["data"]["text/plain"] == "True"


async def test_delete_while_kernel_busy(jp_fetch, fetch_json, jp_ws_fetch, start_kernel):
    kernel_id = await start_kernel()
    ws = await KernelWS.connect(jp_ws_fetch, kernel_id, "v1")
    comm_id, _ = await open_comm(ws)
    await wait_for(lambda: fetch_json("api", "comms"), what="mirrored")
    busy = await ws.send("execute_request", {"code": "import time; time.sleep(4)", "silent": False})
    await ws.recv(
        lambda m: (
            m["header"]["msg_type"] == "status"
            and m["parent_header"].get("msg_id") == busy["header"]["msg_id"]
            and m["content"]["execution_state"] == "busy"
        )
    )
    code, _ = await asyncio.wait_for(
        status_of(jp_fetch, "api", "comms", comm_id, method="DELETE"), 3
    )  # answered while the cell runs
    assert code == 204
    await ws.recv(comm_msgs(ws, "comm_close", comm_id), timeout=3)
    await ws.eventually(KERNEL_SAW_CLOSE)  # queued behind the cell, then done
    ws.close()


async def test_bulk_delete(jp_fetch, fetch_json, jp_ws_fetch, start_kernel):
    kernel_id = await start_kernel()
    ws = await KernelWS.connect(jp_ws_fetch, kernel_id, "legacy")
    await ws.execute(
        "from comm import create_comm\n"
        "keep = create_comm(target_name='keep')\n"
        "stale = [create_comm(target_name='stale') for _ in range(3)]"
    )
    await wait_for(lambda: _count(fetch_json, 4), what="4 comms")

    for params, message in [
        ({}, "filter"),
        ({"target_name": "stale", "status": "closed"}, "open"),
        ({"target_name": "stale", "nope": "1"}, "nope"),
        ({"min_idle": "soon"}, "min_idle"),
    ]:
        code, body = await status_of(jp_fetch, "api", "comms", method="DELETE", params=params)
        assert code == 400 and message in body["message"], (params, body)
    assert len(await fetch_json("api", "comms")) == 4  # nothing closed by accident

    closed = await fetch_json(
        "api", "comms", method="DELETE", params={"target_name": "stale", "min_idle": "0"}
    )
    assert sorted(m["target_name"] for m in closed) == ["stale"] * 3
    assert {m["status"] for m in closed} == {"closed"}
    assert [m["target_name"] for m in await fetch_json("api", "comms")] == ["keep"]
    for _ in range(3):
        await ws.recv(comm_msgs(ws, "comm_close"), timeout=10)
    ws.close()


async def _count(fetch_json, n):
    return len(await fetch_json("api", "comms")) == n


@pytest.mark.parametrize("protocol", ["v1"])
async def test_force_close_ipywidgets_slider(
    fetch_json, jp_fetch, jp_ws_fetch, start_kernel, protocol
):
    kernel_id = await start_kernel()
    ws = await KernelWS.connect(jp_ws_fetch, kernel_id, protocol)
    await ws.execute("import ipywidgets; s = ipywidgets.IntSlider(value=3); cid = s.comm.comm_id")
    opened = await ws.recv(widget_opened(ws, "IntSliderModel"))
    comm_id = opened["content"]["comm_id"]
    assert opened["content"]["target_name"] == "jupyter.widget"
    await ws.send(
        "comm_msg",
        {
            "comm_id": comm_id,
            "data": {"method": "update", "state": {"value": 9}, "buffer_paths": []},
        },
    )
    await wait_for(lambda: _to_kernel(fetch_json, comm_id, 1), what="update counted")
    await ws.execute("assert s.value == 9")
    code, _ = await status_of(jp_fetch, "api", "comms", comm_id, method="DELETE")
    assert code == 204
    await ws.recv(comm_msgs(ws, "comm_close", comm_id), timeout=10)
    await ws.execute("from comm import get_comm_manager")
    await ws.eventually("cid not in get_comm_manager().comms")
    ws.close()


async def _to_kernel(fetch_json, comm_id, n):
    model = await fetch_json("api", "comms", comm_id)
    return model["messages"]["to_kernel"] == n


async def test_a_bulk_close_of_thousands_reaches_the_kernel(
    jp_fetch, fetch_json, jp_serverapp, start_kernel
):
    """Every comm_close of a big bulk close arrives, though the kernel is slow to read
    them: the server keeps one shell socket per kernel rather than one per close."""
    n = 2000
    kernel_id = await start_kernel()
    async with kernel_client(jp_serverapp, kernel_id) as client:
        await client.execute_interactive(
            "from comm import create_comm\n"
            f"bulk = [create_comm(target_name='bulk') for _ in range({n})]",
            timeout=60,
        )
        await wait_for(
            lambda: _open_count(fetch_json, "bulk", n), timeout=60, what=f"{n} comms mirrored"
        )
        # the kernel is busy for a while: the closes queue up on its shell meanwhile
        client.execute("import time; time.sleep(3)")
        closed = await fetch_json("api", "comms", method="DELETE", params={"target_name": "bulk"})
        assert len(closed) == n
        await wait_for(
            lambda: _kernel_says(
                client,
                "not [c for c in bulk if c.comm_id in get_ipython().kernel.comm_manager.comms]",
            ),
            timeout=60,
            what="the kernel closed every one",
        )


async def _open_count(fetch_json, target: str, n: int) -> bool:
    return len(await fetch_json("api", "comms", params={"target_name": target})) == n

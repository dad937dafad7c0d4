"""The mirror follows comms opened, used and closed on either side, on both protocols."""

from __future__ import annotations

import pytest
from kernel_code import ECHO_TARGET, OPEN_KERNEL_COMM
from waiting import wait_for
from wsclient import PROTOCOLS, KernelWS, comm_msgs, widget_opened


async def comms(fetch_json, **params):
    return await fetch_json("api", "comms", params=params)


async def one_comm(fetch_json, comm_id):
    return await fetch_json("api", "comms", comm_id)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_kernel_opened_comm_is_mirrored(fetch_json, jp_ws_fetch, start_kernel, protocol):
    kernel_id = await start_kernel()
    ws = await KernelWS.connect(jp_ws_fetch, kernel_id, protocol)
    await ws.execute(OPEN_KERNEL_COMM)
    opened = await ws.recv(comm_msgs(ws, "comm_open"))
    comm_id = opened["content"]["comm_id"]
    model = await wait_for(
        lambda: _messages_seen(fetch_json, comm_id, from_kernel=3), what="3 kernel messages"
    )
    assert model["kernel_id"] == kernel_id
    assert model["target_name"] == "probe"
    assert model["origin"] == "kernel"
    assert model["status"] == "open"
    assert model["session_id"] is None
    assert model["messages"] == {"to_kernel": 0, "from_kernel": 3}
    assert model["bytes"]["from_kernel"] > 0
    assert model["opened_at"].endswith("Z") and model["last_activity"] >= model["opened_at"]
    listed = await comms(fetch_json, kernel_id=kernel_id)
    assert [m["comm_id"] for m in listed] == [comm_id]
    ws.close()


async def _messages_seen(fetch_json, comm_id, to_kernel=None, from_kernel=None):
    from tornado.httpclient import HTTPClientError

    try:
        model = await one_comm(fetch_json, comm_id)
    except HTTPClientError:
        return None
    counts = model["messages"]
    if to_kernel is not None and counts["to_kernel"] != to_kernel:
        return None
    if from_kernel is not None and counts["from_kernel"] != from_kernel:
        return None
    return model


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_frontend_opened_comm_counts_both_ways(
    fetch_json, jp_ws_fetch, start_kernel, protocol
):
    kernel_id = await start_kernel()
    ws = await KernelWS.connect(jp_ws_fetch, kernel_id, protocol)
    await ws.execute(ECHO_TARGET)
    comm_id = "frontend-comm-1"
    await ws.send("comm_open", {"comm_id": comm_id, "target_name": "echo", "data": {}})
    for i in range(3):
        await ws.send("comm_msg", {"comm_id": comm_id, "data": {"i": i}}, buffers=[b"xyz"])
        echo = await ws.recv(comm_msgs(ws, "comm_msg", comm_id))
        assert echo["content"]["data"] == {"echo": {"i": i}}
        assert echo["buffers"] == [b"xyz"]
    model = await wait_for(lambda: _messages_seen(fetch_json, comm_id, 4, 3), what="counts")
    assert model["origin"] == "frontend"
    assert model["session_id"] == ws.session_id
    assert model["target_name"] == "echo"
    assert model["bytes"]["to_kernel"] > 3 * 3  # buffers count too
    await ws.send("comm_close", {"comm_id": comm_id, "data": {}})
    closed = await wait_for(lambda: _closed(fetch_json, comm_id), what="closed")
    assert closed["close_reason"] == "closed-by-frontend"
    assert closed["messages"]["to_kernel"] == 5
    assert comm_id not in [m["comm_id"] for m in await comms(fetch_json)]
    assert comm_id in [m["comm_id"] for m in await comms(fetch_json, status="closed")]
    ws.close()


async def _closed(fetch_json, comm_id):
    model = await one_comm(fetch_json, comm_id)
    return model if model["status"] == "closed" else None


async def test_kernel_comm_seen_without_any_frontend(fetch_json, jp_serverapp, start_kernel):
    kernel_id = await start_kernel()
    km = jp_serverapp.kernel_manager.get_kernel(kernel_id)
    client = km.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=30)
        await client.execute_interactive(OPEN_KERNEL_COMM, timeout=30)
        listed = await wait_for(lambda: comms(fetch_json, kernel_id=kernel_id), what="a comm")
        assert listed[0]["origin"] == "kernel"
        assert listed[0]["messages"]["from_kernel"] == 3
        await client.execute_interactive("c.close()", timeout=30)
        await wait_for(lambda: _none_open(fetch_json, kernel_id), what="comm closed")
    finally:
        client.stop_channels()


async def _none_open(fetch_json, kernel_id):
    return await comms(fetch_json, kernel_id=kernel_id) == []


async def test_each_message_counted_once_with_three_frontends(
    fetch_json, jp_ws_fetch, start_kernel
):
    kernel_id = await start_kernel()
    frontends = [await KernelWS.connect(jp_ws_fetch, kernel_id, p) for p in ("v1", "legacy", "v1")]
    await frontends[0].execute(OPEN_KERNEL_COMM)
    for ws in frontends:  # every frontend sees the kernel's messages ...
        opened = await ws.recv(comm_msgs(ws, "comm_open"))
    comm_id = opened["content"]["comm_id"]
    # ... and the mirror counts each once
    model = await wait_for(lambda: _messages_seen(fetch_json, comm_id, 0, 3), what="counts")
    assert model["messages"] == {"to_kernel": 0, "from_kernel": 3}
    for ws in frontends:
        ws.close()


async def test_ipywidgets_slider_counts_move(fetch_json, jp_ws_fetch, start_kernel):
    kernel_id = await start_kernel()
    ws = await KernelWS.connect(jp_ws_fetch, kernel_id, "v1")
    await ws.execute("import ipywidgets; s = ipywidgets.IntSlider(value=1)")
    opened = await ws.recv(widget_opened(ws, "IntSliderModel"))
    comm_id = opened["content"]["comm_id"]
    before = await wait_for(lambda: _messages_seen(fetch_json, comm_id, 0), what="slider")
    assert before["target_name"] == "jupyter.widget"
    for value in (5, 6, 7):
        await ws.send(
            "comm_msg",
            {
                "comm_id": comm_id,
                "data": {"method": "update", "state": {"value": value}, "buffer_paths": []},
            },
        )
    await ws.eventually("s.value == 7")
    after = await wait_for(lambda: _messages_seen(fetch_json, comm_id, 3), what="3 updates")
    assert after["bytes"]["to_kernel"] > before["bytes"]["to_kernel"]
    # the kernel answers each update with an echo_update, counted once each
    await wait_for(lambda: _messages_seen(fetch_json, comm_id, 3, 4), what="echoes")
    ws.close()


async def test_a_burst_of_comms_is_counted_exactly(fetch_json, jp_ws_fetch, start_kernel):
    """6,000 comm messages at once: the mirror misses none, even while the server is busy.

    (Frontends may: jupyter_server's per-connection IOPub socket drops past its high-water
    mark, so this test does not wait for the cell on the websocket.)
    """
    kernel_id = await start_kernel()
    ws = await KernelWS.connect(jp_ws_fetch, kernel_id, "v1")
    await ws.send(
        "execute_request",
        {
            "code": "from comm import create_comm\n"
            "burst = [create_comm(target_name='burst') for _ in range(3000)]\n"
            "for c in burst: c.send({})",
            "silent": False,
        },
    )
    models = await wait_for(lambda: _burst(fetch_json), timeout=90, what="3000 comms")
    assert {m["messages"]["from_kernel"] for m in models} == {2}
    ws.close()


async def _burst(fetch_json):
    models = await fetch_json("api", "comms", params={"target_name": "burst"})
    return (
        models
        if len(models) == 3000 and all(m["messages"]["from_kernel"] == 2 for m in models)
        else None
    )

"""Kernels behind jupyter_server's gateway client: a second, stock server is the gateway."""

from __future__ import annotations

import asyncio

import pytest
from inprocess import captured, extension
from jupyter_server.gateway.gateway_client import GatewayClient
from kernel_code import KERNEL_SAW_CLOSE, OPEN_WATCHED_COMM
from waiting import wait_for
from wsclient import KernelWS, comm_msgs


@pytest.fixture(scope="module")
def gateway(stock_server):
    """A stock jupyter_server (our extension off) that serves kernels to the server under test."""
    yield stock_server
    GatewayClient.clear_instance()  # after the last server using it cleaned up


@pytest.fixture
def jp_server_config(jp_server_config, gateway):
    GatewayClient.clear_instance()  # a singleton: the server must make one with this config
    jp_server_config.GatewayClient.url = gateway.url
    jp_server_config.GatewayClient.auth_token = gateway.token
    return jp_server_config


async def test_remote_kernel_comms_are_mirrored_and_closed(
    jp_fetch, fetch_json, jp_ws_fetch, start_kernel
):
    kernel_id = await start_kernel()
    # the gateway's connection class enforces the legacy protocol
    ws = await KernelWS.connect(jp_ws_fetch, kernel_id, "legacy")
    await ws.execute(OPEN_WATCHED_COMM.format(target="remote"))
    opened = await ws.recv(comm_msgs(ws, "comm_open"))
    comm_id = opened["content"]["comm_id"]
    (model,) = await wait_for(lambda: fetch_json("api", "comms"), what="mirrored")
    assert (model["comm_id"], model["kernel_id"]) == (comm_id, kernel_id)
    assert model["origin"] == "kernel" and model["messages"]["from_kernel"] == 1

    await ws.execute("c.send({'n': 1})")
    await ws.recv(comm_msgs(ws, "comm_msg", comm_id))
    await wait_for(lambda: _from_kernel(fetch_json, comm_id, 2), what="counted once")

    refreshed = await fetch_json("api", "comms", params={"refresh": "1"})
    assert [m["comm_id"] for m in refreshed] == [comm_id]

    await jp_fetch("api", "comms", comm_id, method="DELETE")
    close = await ws.recv(comm_msgs(ws, "comm_close", comm_id), timeout=10)
    assert close["header"]["session"] == opened["header"]["session"]
    await ws.eventually(KERNEL_SAW_CLOSE)
    assert (await fetch_json("api", "comms", comm_id))["status"] == "closed"
    ws.close()


async def _from_kernel(fetch_json, comm_id, n):
    return (await fetch_json("api", "comms", comm_id))["messages"]["from_kernel"] == n


async def test_watcher_reconnects_when_its_websocket_closes(
    jp_serverapp, fetch_json, jp_ws_fetch, start_kernel
):
    kernel_id = await start_kernel()
    ws = await KernelWS.connect(jp_ws_fetch, kernel_id, "legacy")
    await ws.execute("from comm import create_comm\nfirst = create_comm(target_name='one')")
    await wait_for(lambda: _targets(fetch_json, ["one"]), what="first comm mirrored")
    watcher = extension(jp_serverapp).mirror.watchers[kernel_id]
    with captured(jp_serverapp) as records:
        watcher._ws.close()  # as when the gateway or a proxy between drops it
        # opened while the watcher has no websocket: learnt by the reconcile that follows
        await ws.execute("second = create_comm(target_name='two')")
        await wait_for(lambda: _targets(fetch_json, ["one", "two"]), what="reconciled")
    assert any("closed; reconnecting" in r.getMessage() for r in records)
    await ws.execute("third = create_comm(target_name='three')")  # followed live again
    await wait_for(lambda: _targets(fetch_json, ["one", "three", "two"]), what="live again")
    three = next(m for m in await fetch_json("api", "comms") if m["target_name"] == "three")
    assert three["origin"] == "kernel"
    ws.close()


async def _targets(fetch_json, names):
    return sorted(m["target_name"] for m in await fetch_json("api", "comms")) == names


async def test_waiting_for_a_stopped_watcher_ends(jp_serverapp, start_kernel):
    # a frontend connecting waits for the watcher's websocket; a watcher that stops (the
    # kernel went away) or reconnects meanwhile must not hold it until the timeout
    kernel_id = await start_kernel()
    watcher = extension(jp_serverapp).mirror.watchers[kernel_id]
    watcher.connect()  # a new websocket, not open before the loop runs
    waiting = asyncio.ensure_future(watcher.subscribed(60))
    watcher.close()
    assert await asyncio.wait_for(waiting, 10) is False

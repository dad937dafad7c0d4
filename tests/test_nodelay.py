"""Kernel websocket frames do not wait for the frontend's delayed ACK.

Without this a comm round trip waits ~40 ms on Linux: bench/ measures the latency; here the
mechanism is checked (socket options and pushes), never a timing.
"""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest
from kernel_code import ECHO_TARGET
from traitlets.config import Config
from waiting import wait_for
from wsclient import PROTOCOLS, KernelWS, comm_msgs

from jupyter_comm_ext.tap import CommTap


def connection_of(jp_serverapp, kernel_id: str):
    mirror = jp_serverapp.web_app.settings["comm_mirror"]
    (connection,) = mirror.connections[kernel_id]
    return connection


def server_side_nodelay(connection) -> int:
    sock = connection.websocket_handler.ws_connection.stream.socket
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


#: many frames, faster than the server relays them: one burst, no pause between frames
FLOOD = "for i in range(2000): print(i, flush=True)"


def record(connection, name: str) -> list[int]:
    """Record each call of a connection's `name` method, then call it."""
    calls: list[int] = []
    method = getattr(connection, name)
    setattr(connection, name, lambda: (calls.append(server_side_nodelay(connection)), method()))
    return calls


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_few_frames_leave_at_once(jp_serverapp, jp_ws_fetch, start_kernel, protocol):
    """By default each frame leaves at once: a widget's round trip (status busy, the echo,
    status idle) arms no push timer and leaves TCP_NODELAY on."""
    kernel_id = await start_kernel()
    ws = await KernelWS.connect(jp_ws_fetch, kernel_id, protocol)
    connection = connection_of(jp_serverapp, kernel_id)
    assert server_side_nodelay(connection)
    await ws.execute(ECHO_TARGET)  # an execute writes more frames: it may be packed
    await ws.send("comm_open", {"comm_id": "rt", "target_name": "echo", "data": {}})
    await wait_for(lambda: connection._push_pending is None, what="the execute pushed out")
    coalesced = record(connection, "_coalesce")
    for i in range(3):
        await asyncio.sleep(0.05)  # a user's pace: each round trip its own burst
        await ws.send("comm_msg", {"comm_id": "rt", "data": {"i": i}})
        echo = await ws.recv(comm_msgs(ws, "comm_msg", "rt"))
        assert echo["content"]["data"] == {"echo": {"i": i}}
    await asyncio.sleep(0.05)  # the status idle after the echo
    assert not coalesced
    assert server_side_nodelay(connection)
    assert connection._push_pending is None
    ws.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_flood_is_packed_then_pushed(jp_serverapp, jp_ws_fetch, start_kernel, protocol):
    """In a flood Nagle packs the frames; once they stop, what it holds is pushed out and
    frames leave at once again."""
    kernel_id = await start_kernel()
    ws = await KernelWS.connect(jp_ws_fetch, kernel_id, protocol)
    connection = connection_of(jp_serverapp, kernel_id)
    coalesced, pushes = record(connection, "_coalesce"), record(connection, "_push")
    await ws.execute(FLOOD, timeout=60)
    assert coalesced, "a 2,000-frame flood never counted as one"
    await wait_for(lambda: pushes and connection._push_pending is None, what="a push")
    assert server_side_nodelay(connection)  # frames leave at once again
    assert pushes[-1] == 0  # and Nagle was packing until the push
    ws.close()


class TestNodelayForGood:
    @pytest.fixture
    def jp_server_config(self, jp_server_config: Config) -> Config:
        config = Config(jp_server_config)
        config.WebsocketNodelay.push_interval = 0
        return config

    async def test_push_interval_zero_sets_nodelay(self, jp_serverapp, jp_ws_fetch, start_kernel):
        kernel_id = await start_kernel()
        ws = await KernelWS.connect(jp_ws_fetch, kernel_id, "v1")
        connection = connection_of(jp_serverapp, kernel_id)
        assert server_side_nodelay(connection)
        await ws.execute(FLOOD, timeout=60)
        assert server_side_nodelay(connection)  # floods too: every frame left at once
        assert connection._push_pending is None
        ws.close()


class TestNodelayOff:
    """Off, by its name or by its former one (`CommTap.websocket_nodelay`, still honoured)."""

    @pytest.fixture(params=["WebsocketNodelay.enabled", "CommTap.websocket_nodelay"])
    def jp_server_config(self, request: pytest.FixtureRequest, jp_server_config: Config) -> Config:
        section, name = request.param.split(".")
        config = Config(jp_server_config)
        config[section][name] = False
        return config

    async def test_stock_behaviour_when_off(self, jp_serverapp, jp_ws_fetch, start_kernel):
        kernel_id = await start_kernel()
        ws = await KernelWS.connect(jp_ws_fetch, kernel_id, "v1")
        connection = connection_of(jp_serverapp, kernel_id)
        await ws.execute("pass")
        assert not server_side_nodelay(connection)
        assert not hasattr(connection, "_push_pending")  # the websocket is the stock one
        ws.close()


def test_former_name_warns(caplog: pytest.LogCaptureFixture) -> None:
    config = Config({"CommTap": {"websocket_push_interval": 0.01}})
    with caplog.at_level(logging.WARNING):
        tap = CommTap(config=config, log=logging.getLogger("test_nodelay"))
    assert tap.renamed_settings() == {"push_interval": 0.01}
    assert "use WebsocketNodelay.push_interval" in caplog.text

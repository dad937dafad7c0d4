"""Kernel websocket frames do not wait for the frontend's delayed ACK.

Without this a comm round trip waits ~40 ms on Linux: bench/ measures the latency; here the
mechanism is checked (socket options and pushes), never a timing.
"""

from __future__ import annotations

import socket

import pytest
from helpers import wait_for
from traitlets.config import Config
from wsclient import PROTOCOLS, KernelWS


def connection_of(jp_serverapp, kernel_id: str):
    mirror = jp_serverapp.web_app.settings["comm_mirror"]
    (connection,) = mirror.connections[kernel_id]
    return connection


def server_side_nodelay(connection) -> int:
    sock = connection.websocket_handler.ws_connection.stream.socket
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_held_frames_are_pushed_out(jp_serverapp, jp_ws_fetch, start_kernel, protocol):
    """By default Nagle stays on (frames written together leave together) and what it holds
    is pushed out shortly after."""
    kernel_id = await start_kernel()
    ws = await KernelWS.connect(jp_ws_fetch, kernel_id, protocol)
    connection = connection_of(jp_serverapp, kernel_id)
    pushes = []
    push = connection._push
    connection._push = lambda: (pushes.append(1), push())
    await ws.execute("pass")  # the relay still works
    await wait_for(lambda: pushes and connection._push_pending is None, what="a push")
    assert not server_side_nodelay(connection)  # Nagle back on after the push
    ws.close()


class TestNodelayForGood:
    @pytest.fixture
    def jp_server_config(self, jp_server_config: Config) -> Config:
        config = Config(jp_server_config)
        config.CommTap.websocket_push_interval = 0
        return config

    async def test_push_interval_zero_sets_nodelay(self, jp_serverapp, jp_ws_fetch, start_kernel):
        kernel_id = await start_kernel()
        ws = await KernelWS.connect(jp_ws_fetch, kernel_id, "v1")
        connection = connection_of(jp_serverapp, kernel_id)
        assert server_side_nodelay(connection)
        await ws.execute("pass")
        assert connection._push_pending is None  # nothing to push: every frame left at once
        ws.close()


class TestNodelayOff:
    @pytest.fixture
    def jp_server_config(self, jp_server_config: Config) -> Config:
        config = Config(jp_server_config)
        config.CommTap.websocket_nodelay = False
        return config

    async def test_stock_behaviour_when_off(self, jp_serverapp, jp_ws_fetch, start_kernel):
        kernel_id = await start_kernel()
        ws = await KernelWS.connect(jp_ws_fetch, kernel_id, "v1")
        connection = connection_of(jp_serverapp, kernel_id)
        await ws.execute("pass")
        assert not server_side_nodelay(connection)
        assert connection._push_pending is None
        ws.close()

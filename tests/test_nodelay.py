"""Kernel websockets send each frame at once (TCP_NODELAY), unless configured not to.

Without it a comm round trip waits for the frontend's delayed ACK (~40 ms on Linux):
bench/ measures the latency; here only the socket option is checked, no timing.
"""

from __future__ import annotations

import socket

import pytest
from conftest import wait_for
from traitlets.config import Config
from wsclient import PROTOCOLS, KernelWS


def server_side_nodelay(jp_serverapp, kernel_id: str) -> int:
    mirror = jp_serverapp.web_app.settings["comm_mirror"]
    (connection,) = mirror.connections[kernel_id]
    sock = connection.websocket_handler.ws_connection.stream.socket
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_kernel_websocket_has_nodelay(jp_serverapp, jp_ws_fetch, start_kernel, protocol):
    kernel_id = await start_kernel()
    ws = await KernelWS.connect(jp_ws_fetch, kernel_id, protocol)
    mirror = jp_serverapp.web_app.settings["comm_mirror"]
    await wait_for(lambda: mirror.connections.get(kernel_id), what="the connection")
    assert server_side_nodelay(jp_serverapp, kernel_id)
    await ws.execute("pass")  # the relay still works
    ws.close()


class TestNodelayOff:
    @pytest.fixture
    def jp_server_config(self, jp_server_config: Config) -> Config:
        config = Config(jp_server_config)
        config.CommMirror.websocket_nodelay = False
        return config

    async def test_nodelay_can_be_turned_off(self, jp_serverapp, jp_ws_fetch, start_kernel):
        kernel_id = await start_kernel()
        ws = await KernelWS.connect(jp_ws_fetch, kernel_id, "v1")
        mirror = jp_serverapp.web_app.settings["comm_mirror"]
        await wait_for(lambda: mirror.connections.get(kernel_id), what="the connection")
        assert not server_side_nodelay(jp_serverapp, kernel_id)
        ws.close()

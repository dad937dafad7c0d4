"""Watching kernels that live behind a gateway (jupyter_server's GatewayClient).

There is no ZMQ socket to subscribe to: the server reaches a remote kernel through the
gateway's websocket.  So the watcher opens one websocket of its own per kernel, the way
jupyter_server's GatewayWebSocketConnection does, reads IOPub from it (every message, as
JSON: the gateway cannot filter by topic, so non-comm messages cost a substring search),
and uses it to ask and tell the kernel what the ZMQ watcher does over control and shell.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from jupyter_client.jsonutil import json_default
from jupyter_client.session import Session
from jupyter_server.gateway.gateway_client import GatewayClient
from jupyter_server.utils import url_path_join
from tornado.escape import url_escape
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from .control import CommInfo, KernelUnreachable, comm_info_from_reply
from .protocol import CommMessage, from_ws_legacy


def is_remote(kernel_manager: Any) -> bool:
    """Whether a kernel is reached through a gateway rather than over ZMQ."""
    from jupyter_server.gateway.managers import GatewayKernelManager

    return isinstance(kernel_manager, GatewayKernelManager)


class GatewayKernelWatcher:
    """Follows one remote kernel's comm traffic over a websocket of its own."""

    def __init__(
        self,
        kernel_id: str,
        kernel_manager: Any,
        on_comm: Callable[[str, CommMessage], None],
        on_problem: Callable[[str, Exception], None],
        pack: Callable[[Any], bytes],
    ) -> None:
        self.kernel_id = kernel_id
        self.kernel_manager = kernel_manager
        self.on_comm = on_comm
        self.on_problem = on_problem
        self.pack = pack
        self.session = Session(username="jupyter_comm_ext")
        self.kernel_session: str | None = None
        self._ws: Any = None
        self._replies: dict[str, asyncio.Future] = {}
        self._task: asyncio.Task | None = None
        self._connected: asyncio.Future = asyncio.Future()
        self.connect()

    def connect(self) -> None:
        self.close()
        self._connected = asyncio.Future()
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        gateway = GatewayClient.instance()
        url = url_path_join(
            gateway.ws_url or "", gateway.kernels_endpoint, url_escape(self.kernel_id), "channels"
        )
        try:
            self._ws = await websocket_connect(HTTPRequest(url, **gateway.load_connection_args()))
        except Exception as e:
            self.on_problem(self.kernel_id, e)
            self._connected.set_result(False)
            return
        self._connected.set_result(True)
        while (frame := await self._ws.read_message()) is not None:
            self._on_frame(frame)

    def _on_frame(self, frame: str | bytes) -> None:
        try:
            if self._replies and isinstance(frame, str) and "comm_info_reply" in frame:
                self._on_reply(json.loads(frame))
                return
            channel, comm = from_ws_legacy(frame, self.pack)
            if comm is not None and channel == "iopub":
                if comm.session:
                    self.kernel_session = comm.session
                self.on_comm(self.kernel_id, comm)
        except Exception as e:
            self.on_problem(self.kernel_id, e)

    def _on_reply(self, msg: dict) -> None:
        future = self._replies.pop(msg.get("parent_header", {}).get("msg_id"), None)
        if future is not None and not future.done():
            future.set_result(msg)

    async def subscribed(self, timeout: float) -> bool:
        try:
            return await asyncio.wait_for(asyncio.shield(self._connected), timeout)
        except asyncio.TimeoutError:
            return False

    def _send(self, channel: str, msg_type: str, content: dict) -> dict:
        if self._ws is None:
            raise KernelUnreachable(f"no websocket to the gateway for kernel {self.kernel_id}")
        msg = self.session.msg(msg_type, content)
        msg["channel"] = channel
        self._ws.write_message(json.dumps(msg, default=json_default))
        return msg

    async def comm_info(self, timeout: float) -> CommInfo:
        await self.subscribed(timeout)
        asked_at = time.time()
        msg = self._send("control", "comm_info_request", {})
        future = self._replies[msg["header"]["msg_id"]] = asyncio.get_running_loop().create_future()
        try:
            reply = await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError as e:
            raise KernelUnreachable(f"no comm_info_reply in {timeout}s") from e
        finally:
            self._replies.pop(msg["header"]["msg_id"], None)
        return comm_info_from_reply(reply, asked_at)

    def send_comm_close(self, comm_id: str) -> None:
        self._send("shell", "comm_close", {"comm_id": comm_id, "data": {}})

    def flush(self) -> None:
        """Frames are handled as they arrive: nothing is held back."""

    def close(self) -> None:
        if self._ws is not None:
            self._ws.close()
            self._ws = None
        if self._task is not None:
            self._task.cancel()
            self._task = None
        for future in self._replies.values():
            future.cancel()
        self._replies.clear()

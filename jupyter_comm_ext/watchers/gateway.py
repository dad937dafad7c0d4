"""Watching kernels that live behind a gateway (jupyter_server's GatewayClient).

There is no ZMQ socket to subscribe to: the server reaches a remote kernel through the
gateway's websocket.  So the watcher opens one websocket of its own per kernel, the way
jupyter_server's GatewayWebSocketConnection does, reads IOPub from it (every message, as
JSON: the gateway cannot filter by topic, so non-comm messages cost a substring search),
and uses it to ask and tell the kernel what the ZMQ watcher does over control and shell.
When that websocket closes (the gateway restarted, a proxy timed it out) the watcher logs
it, reconnects with a bounded backoff, and has the mirror reconcile what it missed.
"""

from __future__ import annotations

import asyncio
import json
import logging
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

from ..control import CommInfo, comm_info_from_reply
from ..protocol import CommMessage, from_ws_legacy
from .base import KernelUnreachable, KernelWatcher

#: seconds before the first reconnection attempt, doubled after each failure up to the max
RECONNECT_DELAY = 0.5
RECONNECT_MAX_DELAY = 30.0


def is_remote(kernel_manager: Any) -> bool:
    """Whether a kernel is reached through a gateway rather than over ZMQ."""
    from jupyter_server.gateway.managers import GatewayKernelManager

    return isinstance(kernel_manager, GatewayKernelManager)


class GatewayKernelWatcher(KernelWatcher):
    """Follows one remote kernel's comm traffic over a websocket of its own."""

    def __init__(
        self,
        kernel_id: str,
        kernel_manager: Any,
        on_comm: Callable[[str, CommMessage], None],
        on_problem: Callable[[str, Exception], None],
        log: logging.Logger | logging.LoggerAdapter[Any],
        pack: Callable[[Any], bytes],
        on_reconnect: Callable[[str], None],
    ) -> None:
        super().__init__(kernel_id, kernel_manager, on_comm, on_problem, log)
        self.pack = pack
        self.on_reconnect = on_reconnect
        self.session = Session(username="jupyter_comm_ext")
        self._ws: Any = None
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._connected: asyncio.Future[bool] = asyncio.Future()
        self.connect()

    def connect(self) -> None:
        self.close()
        self._connected = asyncio.Future()
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        """Keep a websocket to the kernel open, reconnecting (backing off) when it closes."""
        delay = RECONNECT_DELAY
        while True:
            try:
                self._ws = await self._open()
            except Exception as e:
                self.log.warning(
                    "Cannot follow comms of remote kernel %s (retrying in %.1fs): %r",
                    self.kernel_id,
                    delay,
                    e,
                )
            else:
                delay = RECONNECT_DELAY
                if self._connected.done():
                    self.on_reconnect(self.kernel_id)
                else:
                    self._connected.set_result(True)
                while (frame := await self._ws.read_message()) is not None:
                    self._on_frame(frame)
                self._ws = None
                self._fail_replies("the websocket to the gateway closed")
                self.log.warning(
                    "The websocket to the gateway for kernel %s closed; reconnecting",
                    self.kernel_id,
                )
            if not self._connected.done():
                self._connected.set_result(False)
            await asyncio.sleep(delay)
            delay = min(2 * delay, RECONNECT_MAX_DELAY)

    async def _open(self) -> Any:
        gateway = GatewayClient.instance()
        url = url_path_join(
            gateway.ws_url or "", gateway.kernels_endpoint, url_escape(self.kernel_id), "channels"
        )
        args = gateway.load_connection_args()  # type: ignore[no-untyped-call]
        return await websocket_connect(HTTPRequest(url, **args))

    def _on_frame(self, frame: str | bytes) -> None:
        try:
            if self._replies and isinstance(frame, str) and "comm_info_reply" in frame:
                self._on_reply(json.loads(frame))
                return
            channel, comm = from_ws_legacy(frame, self.pack)
            if comm is not None and channel == "iopub":
                self._seen(comm)
        except Exception as e:
            self.on_problem(self.kernel_id, e)

    def _on_reply(self, msg: dict[str, Any]) -> None:
        future = self._replies.pop(msg.get("parent_header", {}).get("msg_id"), None)
        if future is not None and not future.done():
            future.set_result(msg)

    async def subscribed(self, timeout: float) -> bool:
        try:
            return await asyncio.wait_for(asyncio.shield(self._connected), timeout)
        except asyncio.TimeoutError:
            return False

    def _send(self, channel: str, msg_type: str, content: dict[str, Any]) -> dict[str, Any]:
        if self._ws is None:
            raise KernelUnreachable(f"no websocket to the gateway for kernel {self.kernel_id}")
        msg = self.session.msg(msg_type, content)
        msg["channel"] = channel
        try:
            self._ws.write_message(json.dumps(msg, default=json_default))
        except Exception as e:  # WebSocketClosedError, StreamClosedError
            raise KernelUnreachable(f"cannot reach remote kernel {self.kernel_id}: {e!r}") from e
        return msg

    def _fail_replies(self, why: str) -> None:
        for future in self._replies.values():
            if not future.done():
                future.set_exception(KernelUnreachable(why))
        self._replies.clear()

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

    def flush(self) -> int:
        """Frames are handled as they arrive: nothing is held back."""
        return 0

    def close(self) -> None:
        if not self._connected.done():  # a frontend waiting in `subscribed` goes on
            self._connected.set_result(False)
        if self._ws is not None:
            self._ws.close()
            self._ws = None
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._fail_replies(f"stopped watching kernel {self.kernel_id}")

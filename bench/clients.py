"""A lean kernel websocket client for benchmarks, speaking v1 or legacy like a frontend.

It encodes messages the way @jupyterlab/services does, and reads frames cheaply: it only
decodes the frames a benchmark asks for (so the client spends little of the machine's
two cores).  Socket options are explicit: TCP_NODELAY is on, as in every browser; a
client can also set TCP_QUICKACK after each read (a browser cannot) to take the
receiver's delayed ACK out of the picture.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

from jupyter_client.jsonutil import json_default
from jupyter_client.session import Session
from jupyter_server.services.kernels.connection.base import (
    deserialize_binary_message,
    deserialize_msg_from_ws_v1,
    serialize_msg_to_ws_v1,
)
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

V1 = "v1.kernel.websocket.jupyter.org"
PROTOCOLS = ("v1", "legacy")


def msg_type_mark(msg_type: str) -> tuple[bytes, ...]:
    """The bytes that identify a message type in a frame's JSON header.

    Kernels pack JSON compactly when orjson is installed (jupyter_client's default then),
    jupyter_server's legacy protocol re-dumps it with spaces: look for both.
    """
    return (f'"msg_type":"{msg_type}"'.encode(), f'"msg_type": "{msg_type}"'.encode())


def encode(
    session: Session, protocol: str, msg_type: str, content: dict, channel: str = "shell"
) -> bytes | str:
    """A frontend's websocket frame for one message (no buffers), as JupyterLab sends it."""
    msg = session.msg(msg_type, content)
    if protocol == "v1":
        parts = [
            json.dumps(msg[k], default=json_default).encode()
            for k in ("header", "parent_header", "metadata", "content")
        ]
        return serialize_msg_to_ws_v1(parts, channel)
    msg["channel"] = channel
    return json.dumps(msg, default=json_default)


class KernelClient:
    """One frontend connection to one kernel."""

    def __init__(self, ws: Any, protocol: str, quickack: bool) -> None:
        self.ws = ws
        self.protocol = protocol
        self.quickack = quickack
        self.session = Session(session=uuid.uuid4().hex, key=b"")
        self.sock: socket.socket = ws.stream.socket
        self.sent: list[bytes | str] = []
        self.record = False

    @classmethod
    async def connect(
        cls,
        server: Any,
        kernel_id: str,
        protocol: str = "v1",
        quickack: bool = False,
        nodelay: bool = True,
    ) -> KernelClient:
        url = f"{server.ws_url}/api/kernels/{kernel_id}/channels?session_id={uuid.uuid4().hex}"
        req = HTTPRequest(url, headers={"Authorization": f"token {server.token}"})
        ws = await asyncio.wait_for(
            websocket_connect(
                req,
                subprotocols=[V1] if protocol == "v1" else None,
                max_message_size=1 << 30,
            ),
            30,
        )
        assert (ws.selected_subprotocol == V1) == (protocol == "v1")
        ws.stream.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(nodelay))
        client = cls(ws, protocol, quickack)
        await client.execute("pass")  # wait until the kernel answers on this connection
        return client

    # -- writing -----------------------------------------------------------------------

    def encode(self, msg_type: str, content: dict, channel: str = "shell") -> bytes | str:
        return encode(self.session, self.protocol, msg_type, content, channel)

    async def send(self, msg_type: str, content: dict, channel: str = "shell") -> None:
        frame = self.encode(msg_type, content, channel)
        if self.record:
            self.sent.append(frame)
        await self.ws.write_message(frame, binary=isinstance(frame, bytes))

    async def execute(self, code: str, wait: bool = True, timeout: float = 120) -> None:
        content = {
            "code": code,
            "silent": False,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        }
        await self.send("execute_request", content)
        if wait:
            await self.read_until(msg_type_mark("execute_reply"), 1, timeout)

    # -- reading -----------------------------------------------------------------------

    async def read_frame(self, timeout: float) -> bytes | str:
        frame = await asyncio.wait_for(self.ws.read_message(), timeout)
        if frame is None:
            raise ConnectionError("websocket closed")
        if self.quickack:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        return frame

    async def read_until(
        self,
        mark: tuple[bytes, ...],
        count: int,
        timeout: float,
        accept: Callable[[bytes | str], bool] | None = None,
    ) -> float:
        """Read until `count` frames carrying `mark` (and accepted) arrived; their time."""
        smark = tuple(m.decode() for m in mark)
        deadline = time.monotonic() + timeout
        seen = 0
        while seen < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"saw {seen} of {count} {mark!r} in {timeout}s")
            frame = await self.read_frame(remaining)
            marks = mark if isinstance(frame, bytes) else smark
            hit = any(m in frame for m in marks)
            if hit and (accept is None or accept(frame)):
                seen += 1
        return time.perf_counter()

    def decode(self, frame: bytes | str) -> dict:
        if self.protocol == "v1":
            channel, parts = deserialize_msg_from_ws_v1(frame)
            keys = ("header", "parent_header", "metadata", "content")
            msg = {k: json.loads(p) for k, p in zip(keys, parts[:4], strict=True)}
            msg["channel"] = channel
            return msg
        if isinstance(frame, bytes):
            return deserialize_binary_message(frame)
        return json.loads(frame)

    async def drain(self, quiet: float = 0.3, limit: float = 10) -> int:
        """Read and drop frames until none arrives for `quiet` seconds."""
        n = 0
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            try:
                await self.read_frame(quiet)
                n += 1
            except asyncio.TimeoutError:
                break
        return n

    def close(self) -> None:
        self.ws.close()

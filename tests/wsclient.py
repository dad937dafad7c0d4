"""A real kernel websocket client for tests, speaking the v1 or the legacy protocol.

It is what a frontend is to the server: it serializes messages the way
@jupyterlab/services does and reads whatever the server relays.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from jupyter_client.jsonutil import json_default
from jupyter_client.session import Session
from jupyter_server.services.kernels.connection.base import (
    deserialize_binary_message,
    deserialize_msg_from_ws_v1,
    serialize_binary_message,
    serialize_msg_to_ws_v1,
)
from waiting import PROMPT

V1 = "v1.kernel.websocket.jupyter.org"
PROTOCOLS = ("v1", "legacy")


class KernelWS:
    """One frontend connection to one kernel."""

    def __init__(self, ws: Any, protocol: str, session_id: str) -> None:
        self.ws = ws
        self.protocol = protocol
        self.session = Session(session=session_id, key=b"")
        self.session_id = session_id
        self.received: list[dict] = []
        self.raw: list[bytes | str] = []

    @classmethod
    async def connect(cls, jp_ws_fetch: Any, kernel_id: str, protocol: str = "v1") -> KernelWS:
        session_id = uuid.uuid4().hex
        kwargs = {"subprotocols": [V1]} if protocol == "v1" else {}
        ws = await asyncio.wait_for(
            jp_ws_fetch(
                "api",
                "kernels",
                kernel_id,
                "channels",
                params={"session_id": session_id},
                **kwargs,
            ),
            30,
        )
        assert (ws.selected_subprotocol == V1) == (protocol == "v1")
        return cls(ws, protocol, session_id)

    def message(
        self, msg_type: str, content: dict, buffers: list[bytes] | None = None, **header: Any
    ) -> dict:
        msg = self.session.msg(msg_type, content)
        msg["header"].update(header)
        msg["buffers"] = buffers or []
        return msg

    def encode(self, msg: dict, channel: str) -> bytes | str:
        if self.protocol == "v1":
            parts = [
                json.dumps(msg[k], default=json_default).encode()
                for k in ("header", "parent_header", "metadata", "content")
            ]
            return serialize_msg_to_ws_v1([*parts, *msg["buffers"]], channel)
        msg = dict(msg, channel=channel)
        if msg["buffers"]:
            return serialize_binary_message(msg)
        return json.dumps({k: v for k, v in msg.items() if k != "buffers"}, default=json_default)

    async def send(
        self,
        msg_type: str,
        content: dict,
        channel: str = "shell",
        buffers: list[bytes] | None = None,
        **header: Any,
    ) -> dict:
        msg = self.message(msg_type, content, buffers, **header)
        await self.write(self.encode(msg, channel))
        return msg

    async def write(self, frame: bytes | str) -> None:
        await self.ws.write_message(frame, binary=isinstance(frame, bytes))

    def decode(self, frame: bytes | str) -> dict:
        if self.protocol == "v1":
            channel, parts = deserialize_msg_from_ws_v1(frame)
            msg = {
                k: json.loads(p)
                for k, p in zip(
                    ("header", "parent_header", "metadata", "content"), parts[:4], strict=True
                )
            }
            msg["buffers"] = parts[4:]
            msg["channel"] = channel
            return msg
        if isinstance(frame, bytes):
            return deserialize_binary_message(frame)
        return json.loads(frame)

    async def recv(self, match: Callable[[dict], bool], timeout: float = 30) -> dict:
        """The first message (already received or arriving) that `match` accepts."""
        for msg in self.received:
            if match(msg):
                self.received.remove(msg)
                return msg
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no matching message in {timeout}s")
            frame = await asyncio.wait_for(self.ws.read_message(), remaining)
            if frame is None:
                raise ConnectionError("websocket closed")
            self.raw.append(frame)
            msg = self.decode(frame)
            if match(msg):
                return msg
            self.received.append(msg)

    async def execute(self, code: str, timeout: float = 60) -> dict:
        """Run code; return the execute_reply after the kernel went idle again."""
        req = await self.send("execute_request", execute_content(code))
        msg_id = req["header"]["msg_id"]
        reply = await self.recv(lambda m: _reply_to(m, msg_id, "execute_reply"), timeout)
        await self.recv(
            lambda m: _reply_to(m, msg_id, "status") and m["content"]["execution_state"] == "idle",
            timeout,
        )
        assert reply["content"]["status"] == "ok", reply["content"]
        return reply

    async def evaluate(self, expression: str, timeout: float = 30) -> str:
        """The repr of an expression evaluated in the kernel (via user_expressions)."""
        req = await self.send(
            "execute_request",
            execute_content("", silent=True, user_expressions={"x": expression}),
        )
        msg_id = req["header"]["msg_id"]
        reply = await self.recv(lambda m: _reply_to(m, msg_id, "execute_reply"), timeout)
        result = reply["content"]["user_expressions"]["x"]
        assert result["status"] == "ok", result
        return result["data"]["text/plain"]

    async def eventually(self, expression: str, timeout: float = 20) -> None:
        """Wait until an expression is true in the kernel: messages from other sockets
        (the server's own) may be handled in any order relative to this client's."""
        deadline = time.monotonic() + timeout
        while await self.evaluate(expression) != "True":
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expression} still false after {timeout}s")
            await asyncio.sleep(0.1)

    def close(self) -> None:
        self.ws.close()


def execute_content(code: str, **overrides: Any) -> dict:
    """The content of an execute_request, as a frontend sends it."""
    content = {
        "code": code,
        "silent": False,
        "store_history": False,
        "user_expressions": {},
        "allow_stdin": False,
        "stop_on_error": True,
    }
    content.update(overrides)
    return content


def widget_opened(ws: KernelWS, model_name: str) -> Callable[[dict], bool]:
    """A matcher for the comm_open of an ipywidgets model (a slider opens a style first)."""
    is_open = comm_msgs(ws, "comm_open")
    return lambda m: is_open(m) and m["content"]["data"]["state"]["_model_name"] == model_name


def _reply_to(msg: dict, msg_id: str, msg_type: str) -> bool:
    return msg["header"]["msg_type"] == msg_type and msg["parent_header"].get("msg_id") == msg_id


def comm_msgs(ws: KernelWS, msg_type: str, comm_id: str | None = None) -> Callable[[dict], bool]:
    """A matcher for comm messages of one type (and comm id)."""

    def match(msg: dict) -> bool:
        return msg["header"]["msg_type"] == msg_type and (
            comm_id is None or msg["content"].get("comm_id") == comm_id
        )

    return match


class TolerantWS(KernelWS):
    """A frontend that files frames it cannot decode instead of raising.

    The v1 relay passes malformed kernel messages on byte for byte (that is the protocol's
    design), so a test client must not choke on them.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.undecodable: list[bytes | str] = []

    def decode(self, frame: bytes | str) -> dict:
        try:
            msg = super().decode(frame)
            msg["header"]["msg_type"]  # a dict with a header, or not a message
            return msg
        except Exception:
            self.undecodable.append(frame)
            return {"header": {"msg_type": None}, "parent_header": {}, "content": {}}

    async def run(self, code: str, timeout: float = PROMPT) -> dict:
        """Execute code and wait for the execute_reply only (on shell, not IOPub)."""
        req = await self.send("execute_request", execute_content(code))
        msg_id = req["header"]["msg_id"]
        reply = await self.recv(
            lambda m: (
                m["header"]["msg_type"] == "execute_reply"
                and m["parent_header"].get("msg_id") == msg_id
            ),
            timeout,
        )
        assert reply["content"]["status"] == "ok", reply["content"]
        return reply

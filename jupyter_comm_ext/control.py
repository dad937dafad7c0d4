"""Talking to kernels: asking what comms they hold, and telling them to close one.

Questions go on the control channel: ipykernel answers `comm_info_request` there from its
control thread, so a kernel busy in a long cell still replies.  Orders that must run the
kernel's own comm code (`comm_close`, so `on_close` callbacks run) go on shell.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from queue import Empty
from typing import Any, cast

import zmq
from jupyter_client.connect import ConnectionFileMixin
from jupyter_client.jsonutil import json_default
from jupyter_client.session import Session
from jupyter_server.services.kernels.connection.base import serialize_msg_to_ws_v1

from .protocol import V1_SUBPROTOCOL


class KernelUnreachable(RuntimeError):
    """The kernel did not answer in time, or has no channels to talk to."""


@dataclass
class CommInfo:
    """A kernel's answer to `comm_info_request`."""

    kernel_session: str | None
    comms: dict[str, dict[str, Any]] = field(default_factory=dict)
    asked_at: float = 0.0


async def _request(
    km: Any, channel: str, msg_type: str, content: dict[str, Any], timeout: float
) -> dict[str, Any]:
    """Send one request and wait for its reply on a short-lived client.

    The client gets a Session of its own: clients made by `km.client()` share the kernel
    manager's, and with it their socket identity, so the kernel would route our reply and
    another client's to whichever of the two it saw last.
    """
    session = Session(key=km.session.key, signature_scheme=km.session.signature_scheme)
    client = km.client(session=session)
    client.start_channels(
        shell=channel == "shell", iopub=False, stdin=False, hb=False, control=channel == "control"
    )
    try:
        chan = getattr(client, f"{channel}_channel")
        msg = client.session.msg(msg_type, content)
        chan.send(msg)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise KernelUnreachable(f"no {msg_type.replace('request', 'reply')} in {timeout}s")
            try:
                reply = await chan.get_msg(timeout=remaining)
            except Empty as e:
                raise KernelUnreachable(f"no reply to {msg_type} in {timeout}s") from e
            if reply.get("parent_header", {}).get("msg_id") == msg["header"]["msg_id"]:
                return cast("dict[str, Any]", reply)
    finally:
        client.stop_channels()


async def request_comm_info(km: Any, timeout: float) -> CommInfo:
    """Ask a kernel which comms it holds (on control, so a busy kernel answers)."""
    asked_at = time.time()
    return comm_info_from_reply(
        await _request(km, "control", "comm_info_request", {}, timeout), asked_at
    )


def comm_info_from_reply(reply: dict[str, Any], asked_at: float) -> CommInfo:
    """Read a `comm_info_reply`, keeping only well-formed entries."""
    content = reply.get("content")
    comms = content.get("comms") if isinstance(content, dict) else None
    if not isinstance(comms, dict):
        comms = {}
    return CommInfo(
        kernel_session=reply.get("header", {}).get("session"),
        comms={k: v for k, v in comms.items() if isinstance(k, str) and isinstance(v, dict)},
        asked_at=asked_at,
    )


def connect_shell(km: Any) -> zmq.Socket[bytes]:
    """A socket to the kernel's shell for `send_comm_close`, kept open while it is watched.

    One per kernel, not one per close: a socket made, used and closed per message connects
    anew each time and drops what it has not sent within jupyter_client's linger (1 s), which
    lost closes of a bulk close under load.  It never blocks the server: nothing bounds its
    queue, and the closes waiting in it are small.
    """
    # The plain connect_shell of jupyter_client, not the ZMQStream-returning override.
    socket: zmq.Socket[bytes] = ConnectionFileMixin.connect_shell(km)
    socket.setsockopt(zmq.SNDHWM, 0)
    return socket


def send_comm_close(km: Any, shell: zmq.Socket[bytes], comm_id: str) -> None:
    """Tell the kernel, on its main shell, that a comm is closed: its on_close callbacks run.

    Sent without a subshell id, so it reaches the main shell even when the frontend used a
    subshell that is gone.
    """
    km.session.send(shell, "comm_close", {"comm_id": comm_id, "data": {}})


def comm_close_for_frontends(kernel_session: str | None, comm_id: str) -> dict[str, Any]:
    """A `comm_close` as the kernel would publish it on IOPub.

    @jupyterlab/services drops comm messages whose header session is not the kernel's, so
    it must carry the kernel's session id.
    """
    session = Session(session=kernel_session or "", username="kernel")
    return session.msg("comm_close", {"comm_id": comm_id, "data": {}})


def write_to_frontend(connection: Any, msg: dict[str, Any], pack: Callable[[Any], bytes]) -> None:
    """Send an IOPub message down one frontend's websocket, in the protocol it speaks."""
    handler = connection.websocket_handler
    if handler is None or handler.ws_connection is None:
        return
    if handler.selected_subprotocol == V1_SUBPROTOCOL:
        frame = serialize_msg_to_ws_v1(msg, "iopub", pack)  # type: ignore[no-untyped-call]
        handler.write_message(frame, binary=True)
    else:
        handler.write_message(json.dumps(dict(msg, channel="iopub"), default=json_default))

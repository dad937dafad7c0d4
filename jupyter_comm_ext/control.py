"""Talking to kernels: asking what comms they hold, and telling them to close one.

Questions go on the control channel: ipykernel answers `comm_info_request` there from its
control thread, so a kernel busy in a long cell still replies.  Orders that must run the
kernel's own comm code (`comm_close`, so `on_close` callbacks run) go on shell.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from queue import Empty
from typing import Any


class KernelUnreachable(RuntimeError):
    """The kernel did not answer in time, or has no channels to talk to."""


@dataclass
class CommInfo:
    """A kernel's answer to `comm_info_request`."""

    kernel_session: str | None
    comms: dict[str, dict[str, Any]] = field(default_factory=dict)
    asked_at: float = 0.0


async def _request(km: Any, channel: str, msg_type: str, content: dict, timeout: float) -> dict:
    """Send one request and wait for its reply on a short-lived client."""
    client = km.client()
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
                return reply
    finally:
        client.stop_channels()


async def request_comm_info(km: Any, timeout: float) -> CommInfo:
    """Ask a kernel which comms it holds (on control, so a busy kernel answers)."""
    asked_at = time.time()
    reply = await _request(km, "control", "comm_info_request", {}, timeout)
    content = reply.get("content") or {}
    comms = content.get("comms") if isinstance(content, dict) else None
    if not isinstance(comms, dict):
        comms = {}
    return CommInfo(
        kernel_session=reply.get("header", {}).get("session"),
        comms={k: v for k, v in comms.items() if isinstance(k, str) and isinstance(v, dict)},
        asked_at=asked_at,
    )

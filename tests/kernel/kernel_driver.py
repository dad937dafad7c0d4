"""Drive real ipykernel processes over the wire, like a frontend.

Every wait is bounded: messages are awaited with timeouts, never slept for.
"""

from __future__ import annotations

import ast
import json
import os
import queue
import time
import typing as t
import uuid
from pathlib import Path

from jupyter_client.manager import KernelManager

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 15.0
EXTENSION_ARG = "--IPKernelApp.extensions=jupyter_comm_ext.kernel"


class KernelDriver:
    """A frontend's view of one kernel: shell/control requests and the iopub stream."""

    def __init__(self, km: KernelManager) -> None:
        self.km = km
        self.kc = km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)
        self.session = self.kc.session
        self.stray: list[dict[str, t.Any]] = []  # iopub messages for other parents

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)

    # iopub

    def collect(self, msg_id: str, timeout: float = TIMEOUT) -> list[dict[str, t.Any]]:
        """iopub messages caused by request ``msg_id``, up to its idle status."""
        deadline = time.monotonic() + timeout
        got: list[dict[str, t.Any]] = []
        while True:
            msg = self.kc.get_iopub_msg(timeout=max(0.01, deadline - time.monotonic()))
            if msg["parent_header"].get("msg_id") != msg_id:
                self.stray.append(msg)
                continue
            if msg["msg_type"] == "status":
                if msg["content"]["execution_state"] == "idle":
                    return got
                continue
            got.append(msg)

    def wait_iopub(
        self, pred: t.Callable[[dict[str, t.Any]], bool], timeout: float = TIMEOUT
    ) -> dict[str, t.Any]:
        """The first iopub message (stray ones first) for which ``pred`` holds."""
        for i, msg in enumerate(self.stray):
            if pred(msg):
                return self.stray.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no matching iopub message")
            try:
                msg = self.kc.get_iopub_msg(timeout=remaining)
            except queue.Empty as e:
                raise TimeoutError("no matching iopub message") from e
            if pred(msg):
                return msg
            self.stray.append(msg)

    # shell

    def execute(self, code: str, timeout: float = TIMEOUT) -> list[dict[str, t.Any]]:
        """Run ``code``; fail on error; return its non-status iopub messages."""
        msg_id = self.kc.execute(code)
        out = self.collect(msg_id, timeout)
        reply = self._reply(self.kc.get_shell_msg, msg_id, timeout)
        errors = [m["content"] for m in out if m["msg_type"] == "error"]
        assert reply["content"]["status"] == "ok", errors or reply["content"]
        return out

    def evaluate(self, expr: str, timeout: float = TIMEOUT) -> t.Any:
        """The value of a JSON-able ``expr`` in the kernel."""
        code = f"__import__('json').dumps({expr})"
        msg_id = self.kc.execute("", user_expressions={"v": code})
        self.collect(msg_id, timeout)
        reply = self._reply(self.kc.get_shell_msg, msg_id, timeout)
        value = reply["content"]["user_expressions"]["v"]
        assert value["status"] == "ok", value
        return json.loads(ast.literal_eval(value["data"]["text/plain"]))

    def stdout(self, code: str) -> str:
        return "".join(
            m["content"]["text"]
            for m in self.execute(code)
            if m["msg_type"] == "stream" and m["content"]["name"] == "stdout"
        )

    def send(
        self,
        msg_type: str,
        content: dict[str, t.Any],
        buffers: list[bytes] | None = None,
        channel: str = "shell",
        metadata: dict[str, t.Any] | None = None,
    ) -> str:
        """Send a request like a frontend would; returns its msg_id."""
        msg = self.session.msg(msg_type, content, metadata=metadata)
        if buffers:
            msg["buffers"] = buffers
        getattr(self.kc, f"{channel}_channel").send(msg)
        return msg["header"]["msg_id"]

    def request(
        self,
        msg_type: str,
        content: dict[str, t.Any],
        buffers: list[bytes] | None = None,
        metadata: dict[str, t.Any] | None = None,
    ) -> list[dict[str, t.Any]]:
        """Send on shell, return the iopub messages it caused (until idle)."""
        return self.collect(self.send(msg_type, content, buffers, metadata=metadata))

    def reply(self, msg_id: str, channel: str = "shell", timeout: float = TIMEOUT) -> dict:
        return self._reply(getattr(self.kc, f"get_{channel}_msg"), msg_id, timeout)

    @staticmethod
    def _reply(get: t.Callable[..., dict], msg_id: str, timeout: float) -> dict[str, t.Any]:
        deadline = time.monotonic() + timeout
        while True:
            msg = get(timeout=max(0.01, deadline - time.monotonic()))
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg

    # frontend-side comm helpers

    def open_comm(
        self, target_name: str, data: dict | None = None, metadata: dict | None = None
    ) -> str:
        """Open a comm from the frontend side; its iopub output is kept in ``last_open``."""
        comm_id = uuid.uuid4().hex
        content = {"comm_id": comm_id, "target_name": target_name, "data": data or {}}
        self.last_open = self.request("comm_open", content, metadata=metadata)
        return comm_id

    def comm_msg(
        self, comm_id: str, data: dict, buffers: list[bytes] | None = None
    ) -> list[dict[str, t.Any]]:
        return self.request("comm_msg", {"comm_id": comm_id, "data": data}, buffers)


def start_kernel(*extra_args: str) -> KernelDriver:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    km = KernelManager(kernel_name="python3")
    km.start_kernel(extra_arguments=list(extra_args), env=env, cwd=str(ROOT))
    return KernelDriver(km)


def of_type(msg_type: str, comm_id: str | None = None) -> t.Callable[[dict], bool]:
    """Predicate for ``wait_iopub``."""

    def pred(msg: dict) -> bool:
        if msg["msg_type"] != msg_type:
            return False
        return comm_id is None or msg["content"].get("comm_id") == comm_id

    return pred

"""Which kernels the server runs, and when that changes.

The source of truth is the kernel manager's list of kernels: a kernel is watched while it
is in the list and forgotten once it is not.  Three signals report changes promptly, and
none of them is trusted alone:
- jupyter_server's `kernel_actions` events: a kernel started, restarted or shut down
  through the server (REST, sessions, the kernel culler);
- each kernel manager's restart callbacks: an automatic restart after the kernel died,
  and "dead" when that restart failed;
- `sync()`, which every REST request and culler pass runs: it compares the list with what
  is watched, so a kernel that came or went without a signal (started before the extension
  loaded, removed by another extension) costs at most until the next request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

KERNEL_ACTIONS_SCHEMA = "https://events.jupyter.org/jupyter_server/kernel_actions/v1"


class KernelTracker:
    """Tells the mirror when to watch a kernel, when it restarted and when it is gone."""

    def __init__(
        self,
        kernel_manager: Any,
        event_logger: Any,
        *,
        on_start: Callable[[str], None],
        on_restart: Callable[[str, bool], None],
        on_gone: Callable[[str, str], None],
    ) -> None:
        self.kernel_manager = kernel_manager
        self.event_logger = event_logger
        self.on_start = on_start
        #: (kernel_id, reconnect): reconnect is True when the kernel's ports may have changed
        self.on_restart = on_restart
        self.on_gone = on_gone
        self._callbacks: dict[str, tuple[Any, dict[str, Callable[[], None]]]] = {}
        if event_logger is not None:
            event_logger.add_listener(schema_id=KERNEL_ACTIONS_SCHEMA, listener=self._on_action)

    def __contains__(self, kernel_id: str) -> bool:
        return kernel_id in self.kernel_manager

    def tracked(self) -> list[str]:
        return list(self._callbacks)

    def track(self, kernel_id: str) -> Any:
        """Follow a kernel's automatic restarts; returns its kernel manager."""
        km = self.kernel_manager.get_kernel(kernel_id)
        if kernel_id not in self._callbacks:
            callbacks = {
                "restart": lambda: self.on_restart(kernel_id, False),
                "dead": lambda: self.on_gone(kernel_id, "died"),
            }
            for event, callback in callbacks.items():
                km.add_restart_callback(callback, event)
            self._callbacks[kernel_id] = (km, callbacks)
        return km

    def untrack(self, kernel_id: str) -> None:
        km, callbacks = self._callbacks.pop(kernel_id, (None, {}))
        for event, callback in callbacks.items():
            km.remove_restart_callback(callback, event)

    def sync(self) -> None:
        """Watch every kernel in the list, forget every tracked one that left it."""
        running = set(self.kernel_manager.list_kernel_ids())
        for kernel_id in running:
            self.on_start(kernel_id)
        for kernel_id in set(self._callbacks) - running:
            self.on_gone(kernel_id, "died")

    async def _on_action(self, logger: Any, schema_id: str, data: dict[str, Any]) -> None:
        if data.get("status") != "success":
            return
        kernel_id, action = data.get("kernel_id"), data.get("action")
        if not isinstance(kernel_id, str):
            return
        if action == "start":
            await self._wait_listed(kernel_id)
            self.on_start(kernel_id)
        elif action == "restart":
            self.on_restart(kernel_id, True)
        elif action == "shutdown":
            self.on_gone(kernel_id, "shutdown")

    async def _wait_listed(self, kernel_id: str) -> None:
        """Wait (bounded) until a starting kernel is in the kernel manager's list.

        The start event fires when the kernel's own manager has started it, a moment before
        the server lists it (it does once the kernel is ready); watching must begin then,
        before any code can open a comm.  No signal marks that moment, so this polls.
        """
        deadline = time.monotonic() + self.kernel_manager.kernel_info_timeout
        while kernel_id not in self.kernel_manager and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    def close(self) -> None:
        for kernel_id in list(self._callbacks):
            self.untrack(kernel_id)
        if self.event_logger is not None:
            self.event_logger.remove_listener(
                schema_id=KERNEL_ACTIONS_SCHEMA, listener=self._on_action
            )

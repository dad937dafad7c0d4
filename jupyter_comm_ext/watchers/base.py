"""What the mirror asks of a kernel watcher, whatever carries the kernel's messages.

A watcher follows one kernel's comm traffic (what the kernel publishes, counted once however
many frontends are connected, and when none is) and talks to the kernel for the mirror:
it asks which comms the kernel holds and tells it to close one.  `iopub.py` does it over
ZMQ for local kernels, `gateway.py` over a websocket for kernels behind a gateway.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from ..control import CommInfo, KernelUnreachable
from ..protocol import CommMessage

__all__ = ["KernelUnreachable", "KernelWatcher"]


class KernelWatcher(ABC):
    """Follows one kernel's comm messages and hands them to `on_comm`.

    Every method that talks to the kernel raises `KernelUnreachable` when it cannot, and
    nothing else: callers (a REST request, a culler pass) handle one exception type.
    Unreadable messages from the kernel go to `on_problem`, never up into the event loop.
    """

    def __init__(
        self,
        kernel_id: str,
        kernel_manager: Any,
        on_comm: Callable[[str, CommMessage], None],
        on_problem: Callable[[str, Exception], None],
        log: logging.Logger | logging.LoggerAdapter[Any],
    ) -> None:
        self.kernel_id = kernel_id
        self.kernel_manager = kernel_manager
        self.on_comm = on_comm
        self.on_problem = on_problem
        self.log = log
        #: the kernel's own Session id, learnt from its messages: a comm_close the server
        #: sends to frontends on the kernel's behalf must carry it.
        self.kernel_session: str | None = None

    @abstractmethod
    def connect(self) -> None:
        """(Re)connect to the kernel: at start, and after a restart (its ports may change)."""

    @abstractmethod
    async def subscribed(self, timeout: float) -> bool:
        """Wait (bounded) until the kernel's messages reach the watcher; False on timeout."""

    @abstractmethod
    async def comm_info(self, timeout: float) -> CommInfo:
        """Ask the kernel which comms it holds (a busy kernel must still answer)."""

    @abstractmethod
    def send_comm_close(self, comm_id: str) -> None:
        """Tell the kernel a comm is closed, so its `on_close` callbacks run."""

    @abstractmethod
    def flush(self) -> int:
        """Hand over, now, the messages already received; returns how many."""

    @abstractmethod
    def close(self) -> None:
        """Stop watching (the kernel is gone, or the server stops)."""

    def _seen(self, comm: CommMessage) -> None:
        """A comm message of the kernel's: note its session, hand it on."""
        if comm.session:
            self.kernel_session = comm.session
        self.on_comm(self.kernel_id, comm)

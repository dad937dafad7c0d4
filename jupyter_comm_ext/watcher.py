"""One IOPub subscription per kernel: the source of truth for kernel-sent comm traffic.

Frontend connections each get their own copy of IOPub, so counting there would count a
message once per frontend and miss it when none is connected.  The watcher subscribes once,
and only to the `comm-` topic that ipykernel and the `comm` package publish comm messages
under, so libzmq filters every other message out before it reaches the server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import zmq
import zmq.asyncio

from .control import CommInfo, request_comm_info, send_comm_close
from .protocol import CommMessage, from_zmq


class KernelWatcher:
    """Follows one kernel's comm messages on IOPub and hands them to `on_comm`."""

    def __init__(
        self,
        kernel_id: str,
        kernel_manager: Any,
        topics: Sequence[str],
        on_comm: Callable[[str, CommMessage], None],
        on_problem: Callable[[str, Exception], None],
    ) -> None:
        self.kernel_id = kernel_id
        self.kernel_manager = kernel_manager
        self.topics = [t.encode() for t in topics]
        self.on_comm = on_comm
        self.on_problem = on_problem
        #: the kernel's own Session id, learnt from its messages: a comm_close the server
        #: sends to frontends on the kernel's behalf must carry it.
        self.kernel_session: str | None = None
        self.stream: Any = None
        self._handshake: asyncio.Future | None = None
        self.connect()

    def connect(self) -> None:
        """(Re)subscribe; after a restart the kernel's ports may have changed."""
        self.close()
        stream = self.kernel_manager.connect_iopub()
        # Unlimited: at the default high-water mark a burst of comm messages (10,000 widgets
        # opened in a loop) would be dropped while the server is busy, and miscounted.
        stream.socket.setsockopt(zmq.RCVHWM, 0)
        stream.socket.setsockopt(zmq.UNSUBSCRIBE, b"")
        for topic in self.topics:
            stream.socket.setsockopt(zmq.SUBSCRIBE, topic)
        stream.on_recv(self._on_recv)
        self.stream = stream
        # Subscribing is asynchronous: whatever the kernel publishes before the handshake
        # is lost to us. `subscribed()` tells when it is done.
        self._handshake = asyncio.ensure_future(self._await_handshake(stream.socket))

    async def _await_handshake(self, socket: zmq.Socket) -> None:
        monitor = socket.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        try:
            if isinstance(monitor, zmq.asyncio.Socket):  # else: no way to wait, go on
                await monitor.recv_multipart()
        finally:
            if not socket.closed:
                socket.disable_monitor()
            monitor.close(linger=0)

    async def subscribed(self, timeout: float) -> bool:
        """Wait (bounded) for the subscription's handshake; False on timeout."""
        try:
            await asyncio.wait_for(asyncio.shield(self._handshake), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    def _on_recv(self, msg_list: list[bytes]) -> None:
        # Never raise: pyzmq stops calling a stream's callback after it raises once.
        try:
            comm = from_zmq(msg_list)
            if comm is not None:
                if comm.session:
                    self.kernel_session = comm.session
                self.on_comm(self.kernel_id, comm)
        except Exception as e:
            self.on_problem(self.kernel_id, e)

    async def comm_info(self, timeout: float) -> CommInfo:
        """Ask the kernel which comms it holds."""
        return await request_comm_info(self.kernel_manager, timeout)

    def send_comm_close(self, comm_id: str) -> None:
        """Tell the kernel a comm is closed."""
        send_comm_close(self.kernel_manager, comm_id)

    def flush(self) -> None:
        """Handle the messages the socket already holds, now."""
        if self.stream is not None and not self.stream.closed():
            self.stream.flush()

    def close(self) -> None:
        if self._handshake is not None:
            self._handshake.cancel()
        if self.stream is not None and not self.stream.closed():
            self.stream.close()
        self.stream = None

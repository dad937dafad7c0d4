"""One IOPub subscription per kernel: the source of truth for kernel-sent comm traffic.

Frontend connections each get their own copy of IOPub, so counting there would count a
message once per frontend and miss it when none is connected.  Counting on one of them
while any is connected was tried and dropped: a frontend's socket has a high-water mark of
1000, so a burst a busy server reads late is dropped there, and what waits unread when the
frontend disconnects goes to jupyter_server's replay buffer, not through the relay
(measured: 6,330 of 100,000 comm_open counted, bench/soak.py).

The watcher subscribes to the `comm-` topic only, under which ipykernel and the `comm`
package publish comm messages, so libzmq filters every other message out before it reaches
the server.  (jupyter_server's kernel manager keeps a subscription of its own for activity
tracking; sharing it was measured and dropped: its tracker deserializes every message, so
in a burst the mirror fell behind at its pace.)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import zmq
import zmq.asyncio
from jupyter_client.connect import ConnectionFileMixin
from tornado.ioloop import IOLoop

from ..control import CommInfo, connect_shell, request_comm_info, send_comm_close
from ..protocol import SKIM_ABOVE, Buffer, CommMessage, from_zmq
from .base import KernelUnreachable, KernelWatcher

#: most messages handled per wake-up before yielding to the rest of the server
BATCH = 500
#: plain ints: pyzmq's enum members cost a conversion per use, and flush runs per frame
_RCVMORE, _NOBLOCK = int(zmq.RCVMORE), int(zmq.NOBLOCK)
#: frames received as copies: the topic, the delimiter, the signature, the header, the parent
#: header and the metadata of a message from ipykernel's IOPub; from the content on, a frame
#: is copied only if small (see `IOPubWatcher.flush`)
COPIED_FRAMES = 6


class IOPubWatcher(KernelWatcher):
    """Follows a local kernel's comm messages on a ZMQ subscription to its IOPub."""

    def __init__(
        self,
        kernel_id: str,
        kernel_manager: Any,
        on_comm: Callable[[str, CommMessage], None],
        on_problem: Callable[[str, Exception], None],
        log: logging.Logger | logging.LoggerAdapter[Any],
        topics: Sequence[str],
        queue_limit: int,
    ) -> None:
        super().__init__(kernel_id, kernel_manager, on_comm, on_problem, log)
        self.topics = [t.encode() for t in topics]
        self.queue_limit = queue_limit
        self.socket: Any = None
        #: the kernel's shell, for the comm_close of a force-close (see `control.connect_shell`)
        self._shell: zmq.Socket[bytes] | None = None
        self._queued: Any = None
        self._loop: IOLoop | None = None
        self._fd: int | None = None
        self._handshake: asyncio.Future[None] | None = None
        self.connect()

    def connect(self) -> None:
        """(Re)connect; after a restart the kernel's ports may have changed."""
        self.close()
        self._subscribe()

    def _subscribe(self) -> None:
        # The plain connect_iopub of jupyter_client, not the ZMQStream-returning override.
        socket = ConnectionFileMixin.connect_iopub(self.kernel_manager)
        # Far above the default of 1000: a burst of comm messages (10,000 widgets opened in a
        # loop) must not be dropped while the server is busy, and miscounted; bounded, so a
        # runaway kernel cannot fill the server's memory (CommMirror.iopub_queue_limit).
        socket.setsockopt(zmq.RCVHWM, self.queue_limit)
        socket.setsockopt(zmq.UNSUBSCRIBE, b"")
        for topic in self.topics:
            socket.setsockopt(zmq.SUBSCRIBE, topic)
        self.socket = socket
        # Read with plain non-blocking receives when libzmq's descriptor signals, rather
        # than awaiting the asyncio wrapper: that makes a Future and a task step per wake-up,
        # which cost as much as the rest of a widget's comm round trip through the server.
        self._queued = zmq.Socket.shadow(socket.underlying)
        self._loop = IOLoop.current()
        self._fd = self._queued.FD
        self._loop.add_handler(self._fd, self._on_readable, IOLoop.READ)
        # The descriptor is edge-triggered: it signals on new messages, not on those
        # that were queued before the handler was added.
        self._loop.add_callback(self._on_readable)
        # Subscribing is asynchronous: whatever the kernel publishes before the handshake
        # is lost to us. `subscribed()` tells when it is done.
        self._handshake = asyncio.ensure_future(self._await_handshake(socket))

    def _on_readable(self, fd: int | None = None, events: int | None = None) -> None:
        # in a flood, let the rest of the server run between batches; what is left does
        # not signal the descriptor again, so come back for it on the next turn
        if self.flush() == BATCH and self._loop is not None:
            self._loop.add_callback(self._on_readable)

    async def _await_handshake(self, socket: zmq.Socket[Any]) -> None:
        monitor = socket.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        try:
            if isinstance(monitor, zmq.asyncio.Socket):  # else: no way to wait, go on
                await monitor.recv_multipart()
        finally:
            if not socket.closed:
                socket.disable_monitor()
            monitor.close(linger=0)

    async def subscribed(self, timeout: float) -> bool:
        """Wait (bounded) for the subscription's handshake; False on timeout or once the
        watcher stopped.

        A reconnect (the kernel restarted) replaces the handshake: then wait for the new
        one. A stopped watcher is no error of the caller's: a frontend connecting at that
        moment must keep its websocket.
        """
        deadline = time.monotonic() + timeout
        while self._handshake is not None:
            handshake = self._handshake
            try:
                remaining = max(deadline - time.monotonic(), 0)
                await asyncio.wait_for(asyncio.shield(handshake), remaining)
                return True
            except asyncio.TimeoutError:
                return False
            except asyncio.CancelledError:
                if not handshake.cancelled():
                    raise  # the caller was cancelled
                if self._handshake is handshake:
                    return False  # stopped, not reconnected
        return False

    def _on_recv(self, msg_list: list[Buffer]) -> None:
        # Never raise: pyzmq stops calling a stream's callback after it raises once.
        try:
            comm = from_zmq(msg_list)
            if comm is not None:
                self._seen(comm)
        except Exception as e:
            self.on_problem(self.kernel_id, e)

    async def comm_info(self, timeout: float) -> CommInfo:
        """Ask the kernel which comms it holds (on control: a busy kernel answers)."""
        try:
            return await request_comm_info(self.kernel_manager, timeout)
        except KernelUnreachable:
            raise
        except Exception as e:  # ZMQError, no connection info: a kernel going away
            raise KernelUnreachable(f"cannot ask kernel {self.kernel_id}: {e!r}") from e

    def send_comm_close(self, comm_id: str) -> None:
        """Tell the kernel, on its main shell, that a comm is closed."""
        try:
            if self._shell is None:
                self._shell = connect_shell(self.kernel_manager)
            send_comm_close(self.kernel_manager, self._shell, comm_id)
        except Exception as e:
            raise KernelUnreachable(f"cannot tell kernel {self.kernel_id}: {e!r}") from e

    def flush(self) -> int:
        """Handle the messages already received (at most `BATCH`), now."""
        if self.socket is None or self.socket.closed:
            return 0
        # Frame by frame with bound methods, until EAGAIN: pyzmq's recv_multipart and a
        # ZMQ_EVENTS check per message cost 16 µs per 7-frame message, this 12 µs, and a
        # flood has a hundred messages per wake-up (bench: every comm message passes here).
        # The content and buffers are received without a copy, and a big one stays in
        # libzmq's memory, read through a memoryview: a 20 MB widget state costs no second
        # 20 MB, and its size is its frame's length.
        recv, more = self._queued.recv, self._queued.getsockopt
        for handled in range(BATCH):
            try:
                msg_list: list[Buffer] = [recv(_NOBLOCK)]
            except zmq.Again:
                return handled
            while more(_RCVMORE):  # the rest of a message has arrived with its first frame
                if len(msg_list) < COPIED_FRAMES:
                    msg_list.append(recv(_NOBLOCK))
                else:
                    frame = recv(_NOBLOCK, copy=False)
                    msg_list.append(frame.bytes if len(frame) <= SKIM_ABOVE else frame.buffer)
            self._on_recv(msg_list)
        return BATCH

    def close(self) -> None:
        if self._fd is not None and self._loop is not None:
            self._loop.remove_handler(self._fd)
            self._fd = None
        if self._handshake is not None:
            self._handshake.cancel()
        if self.socket is not None and not self.socket.closed:
            self.socket.close(linger=0)
        self.socket = None
        # what waits in it was meant for a kernel that is gone or restarted
        if self._shell is not None:
            self._shell.close(linger=0)
        self._shell = None

"""One IOPub subscription per kernel: the source of truth for kernel-sent comm traffic.

Frontend connections each get their own copy of IOPub, so counting there would count a
message once per frontend and miss it when none is connected.  Counting on one of them
while any is connected was tried and dropped: a frontend's socket has a high-water mark of
1000, so a burst a busy server reads late is dropped there, and what waits unread when the
frontend disconnects goes to jupyter_server's replay buffer, not through the relay
(measured: 6,330 of 100,000 comm_open counted, bench/soak.py).

jupyter_server's kernel manager already keeps one subscription per kernel, whoever is
connected, to track activity (`MappingKernelManager.start_watching_activity`).  With
`share_activity_stream` the watcher reads the same messages there, so a kernel's message is
received once by the server, not twice, and raises that subscription's high-water mark to
`queue_limit` so bursts are not dropped (which makes jupyter_server's tracker read every
message of a burst, slowly: see the trait's help).  Otherwise, and for kernel managers that
keep none, the watcher subscribes itself, to the `comm-` topic only that ipykernel and the
`comm` package publish comm messages under, so libzmq filters every other message out
before it reaches the server.
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
from zmq.eventloop.zmqstream import ZMQStream

from ..control import CommInfo, request_comm_info, send_comm_close
from ..problems import RateLimitedLog
from ..protocol import CommMessage, from_zmq
from .base import KernelUnreachable, KernelWatcher

#: most messages handled per wake-up before yielding to the rest of the server
BATCH = 500
#: seconds to wait for jupyter_server's own subscription to a starting kernel
SHARE_WAIT = 60.0
#: plain ints: pyzmq's enum members cost a conversion per use, and flush runs per frame
_RCVMORE, _NOBLOCK = int(zmq.RCVMORE), int(zmq.NOBLOCK)


class IOPubWatcher(KernelWatcher):
    """Follows a local kernel's comm messages on a ZMQ subscription to its IOPub."""

    def __init__(
        self,
        kernel_id: str,
        kernel_manager: Any,
        on_comm: Callable[[str, CommMessage], None],
        on_problem: Callable[[str, Exception], None],
        log: logging.Logger | logging.LoggerAdapter,
        topics: Sequence[str],
        queue_limit: int,
        share_activity_stream: bool = False,
    ) -> None:
        super().__init__(kernel_id, kernel_manager, on_comm, on_problem, log)
        self.topics = [t.encode() for t in topics]
        self.queue_limit = queue_limit
        self.share_activity_stream = share_activity_stream
        #: the kernel manager's activity subscription while we read it, and its own callback
        self.shared: ZMQStream | None = None
        self._stock_callback: Callable[[list[bytes]], Any] | None = None
        self._heard: asyncio.Event | None = None
        self.problems = RateLimitedLog(log)
        #: deciding which subscription to read while the kernel starts
        self._choosing: asyncio.Future | None = None
        #: our own subscription, when there is none to share
        self.socket: Any = None
        self._queued: Any = None
        self._loop: IOLoop | None = None
        self._fd: int | None = None
        self._handshake: asyncio.Future | None = None
        self.connect()

    def connect(self) -> None:
        """(Re)connect; after a restart the kernel's ports may have changed."""
        self.close()
        if not self.share_activity_stream:
            self._subscribe()
        elif (stream := self._activity_stream()) is not None:
            self._share(stream)
        else:
            self._choosing = asyncio.ensure_future(self._share_once_watched())

    async def _share_once_watched(self) -> None:
        """A starting kernel is listed before jupyter_server subscribes to it (right after
        the kernel is ready); wait for that subscription, bounded, then share it, or
        subscribe ourselves if none comes.  No signal marks the moment, so this polls."""
        deadline = time.monotonic() + SHARE_WAIT
        ready = getattr(self.kernel_manager, "ready", None)
        polls_after_ready = 5
        while (stream := self._activity_stream()) is None and time.monotonic() < deadline:
            if ready is not None and ready.done():
                polls_after_ready -= 1
                if polls_after_ready < 0:
                    break
            await asyncio.sleep(0.02)
        if stream is not None:
            self._share(stream)
        else:
            self._subscribe()

    def _activity_stream(self) -> ZMQStream | None:
        """The subscription jupyter_server keeps on this kernel's IOPub, if there is one."""
        stream = getattr(self.kernel_manager, "_activity_stream", None)
        if isinstance(stream, ZMQStream) and not stream.closed():
            return stream
        return None

    def _share(self, stream: ZMQStream) -> None:
        # A live pipe takes the new high-water mark (libzmq >= 4.2); stock's is 1000.
        stream.socket.setsockopt(zmq.RCVHWM, self.queue_limit)
        self.shared, self._stock_callback = stream, stream._recv_callback
        self._heard = asyncio.Event()
        stream.on_recv(self._on_shared)

    def _on_shared(self, msg_list: list[bytes]) -> None:
        """A message on the shared subscription: ours first (it never raises), then stock's."""
        self._on_recv(msg_list)
        self._heard.set()  # type: ignore[union-attr]
        if self._stock_callback is None:
            return
        try:
            self._stock_callback(msg_list)
        except Exception as e:
            # jupyter_server's activity tracker raises on a message it cannot read, and
            # pyzmq then stops reading the stream: the mirror would go deaf with it.
            self.problems.warning(
                "activity",
                self.kernel_id,
                "jupyter_server's activity tracker could not read a message from kernel %s: %r",
                self.kernel_id,
                e,
                exc=e,
            )

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
        if self.flush() == BATCH:
            self._loop.add_callback(self._on_readable)

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
        """Wait (bounded) for the subscription's handshake; False on timeout.

        A shared subscription is live once a message came through it: jupyter_server
        moves a kernel out of "starting" on the first status message it receives there.
        """
        if self._choosing is not None:
            started = time.monotonic()
            try:
                await asyncio.wait_for(asyncio.shield(self._choosing), timeout)
            except asyncio.TimeoutError:
                return False
            timeout -= time.monotonic() - started
        if self.shared is not None:
            if getattr(self.kernel_manager, "execution_state", "starting") != "starting":
                return True
            waiting = self._heard.wait()  # type: ignore[union-attr]
        else:
            waiting = asyncio.shield(self._handshake)
        try:
            await asyncio.wait_for(waiting, timeout)
            return True
        except asyncio.TimeoutError:
            return False

    def _on_recv(self, msg_list: list[bytes]) -> None:
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
            send_comm_close(self.kernel_manager, comm_id)
        except Exception as e:
            raise KernelUnreachable(f"cannot tell kernel {self.kernel_id}: {e!r}") from e

    def flush(self) -> int:
        """Handle the messages already received (at most `BATCH`), now."""
        if self.shared is not None:
            if self.shared is not self._activity_stream():  # replaced: restarted on new ports
                self.connect()
                return self.flush()
            return self.shared.flush(zmq.POLLIN, BATCH)
        if self.socket is None or self.socket.closed:
            return 0
        # Frame by frame with bound methods, until EAGAIN: pyzmq's recv_multipart and a
        # ZMQ_EVENTS check per message cost 16 µs per 7-frame message, this 12 µs, and a
        # flood has a hundred messages per wake-up (bench: every comm message passes here).
        recv, more = self._queued.recv, self._queued.getsockopt
        for handled in range(BATCH):
            try:
                msg_list = [recv(_NOBLOCK)]
            except zmq.Again:
                return handled
            while more(_RCVMORE):  # the rest of a message has arrived with its first frame
                msg_list.append(recv(_NOBLOCK))
            self._on_recv(msg_list)
        return BATCH

    def close(self) -> None:
        if self._choosing is not None:
            self._choosing.cancel()
            self._choosing = None
        stream, self.shared = self.shared, None
        if stream is not None and not stream.closed() and stream._recv_callback == self._on_shared:
            stream.on_recv(self._stock_callback)
        if self._fd is not None:
            self._loop.remove_handler(self._fd)
            self._fd = None
        if self._handshake is not None:
            self._handshake.cancel()
        if self.socket is not None and not self.socket.closed:
            self.socket.close(linger=0)
        self.socket = None

"""The interposer on kernel websocket connections.

We wrap whatever connection class the server is configured with (the default ZMQ one, the
gateway's, another extension's) in a subclass that peeks at each frame on its way through
and then hands it, unchanged, to the original.  The tap never changes a byte, never blocks,
and never raises into the relay: an error inside it is logged (rate-limited) and swallowed.
"""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING, Any

from tornado.ioloop import IOLoop

from . import protocol
from .protocol import V1_SUBPROTOCOL, BadFraming, MalformedMessage

if TYPE_CHECKING:
    from .mirror import CommMirror


class RateLimitedLog:
    """Log a kind of problem at most once per `interval` seconds, counting the rest.

    One client sending garbage in a loop must not flood the server log.
    """

    def __init__(self, log: Any, interval: float = 10.0) -> None:
        self.log = log
        self.interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, msg: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -self.interval) < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        suppressed = self._suppressed.pop(key, 0)
        self._last[key] = now
        if suppressed:
            msg += f" ({suppressed} similar messages suppressed)"
        self.log.warning(msg, *args)


class TapMixin:
    """Mixed in front of a kernel websocket connection class by `tap_connection_class`."""

    comm_mirror: CommMirror  # set on the generated class

    kernel_id: str
    session_id: str | None
    websocket_handler: Any
    log: Any

    @property
    def is_v1(self) -> bool:
        handler = self.websocket_handler
        return getattr(handler, "selected_subprotocol", None) == V1_SUBPROTOCOL

    #: seconds within which held frames are pushed out (0: never, or TCP_NODELAY is set)
    _push_interval: float = 0
    #: the timer that will push this websocket's held frames out (see `_push`)
    _push_pending: Any = None
    #: event-loop time of the last frame written
    _last_write: float = 0.0
    #: the connection's IOLoop (looking it up per message costs more than the rest of the tap)
    _loop: Any = None

    def connect(self) -> Any:
        mirror = self.comm_mirror
        mirror.add_connection(self)
        self._loop = IOLoop.current()
        self._push_interval = mirror.websocket_push_interval if mirror.websocket_nodelay else 0
        if mirror.websocket_nodelay and not self._push_interval:
            self._set_nodelay()
        return self.comm_mirror.when_watched(self.kernel_id, super().connect())  # type: ignore[misc]

    def _set_nodelay(self) -> None:
        """Send each websocket frame at once (see `CommMirror.websocket_nodelay`)."""
        try:
            self.websocket_handler.set_nodelay(True)
        except Exception as e:  # no open websocket (yet): leave the socket as it is
            self.comm_mirror.problems.warning("nodelay", "Could not set TCP_NODELAY: %r", e)

    def disconnect(self) -> Any:
        self.comm_mirror.remove_connection(self)
        return super().disconnect()  # type: ignore[misc]

    def handle_incoming_message(self, incoming_msg: str | bytes) -> None:
        """Peek at a frontend's frame, relay it, then mirror it if the relay took it."""
        mirror = self.comm_mirror
        try:
            channel, comm = self._read_incoming(incoming_msg)
        except Exception as e:  # malformed, or a reader bug: neither may cost the frame
            if isinstance(e, MalformedMessage) and mirror.refuses(e):
                mirror.problems.warning(
                    f"refused:{self.kernel_id}",
                    "Refused a malformed frame from session %s to kernel %s: %s",
                    self.session_id,
                    self.kernel_id,
                    e,
                )
                return
            mirror.problems.warning(
                f"unread:{self.kernel_id}",
                "Relayed a frame the comm mirror cannot read (session %s, kernel %s): %s",
                self.session_id,
                self.kernel_id,
                e,
            )
            channel, comm = None, None
        try:
            super().handle_incoming_message(incoming_msg)  # type: ignore[misc]
        except Exception as e:
            # Stock relays raise on frames they cannot parse, and tornado then drops the
            # websocket: one bad frame would cost the user their connection.
            mirror.problems.warning(
                f"relay:{self.kernel_id}",
                "Dropped a frame the kernel relay could not handle (session %s, kernel %s): %r",
                self.session_id,
                self.kernel_id,
                e,
            )
            return
        if comm is not None and channel in (None, "shell"):
            try:
                mirror.frontend_sent(self, comm)
            except Exception as e:  # the frame is relayed; a mirror bug must not drop the websocket
                mirror.problems.warning(
                    f"mirror:{self.kernel_id}",
                    "Could not mirror a comm message to kernel %s: %r",
                    self.kernel_id,
                    e,
                )

    def _read_incoming(self, frame: str | bytes) -> tuple[str | None, protocol.CommMessage | None]:
        if self.is_v1:
            if not isinstance(frame, bytes):
                raise BadFraming("text frame on the v1 binary protocol")
            return protocol.from_ws_v1(frame, protocol.v1_offsets(frame))
        return protocol.from_ws_legacy(frame, self.comm_mirror.pack)

    def handle_outgoing_message(self, *args: Any) -> None:
        """Relay a kernel message; a malformed one must not kill the ZMQ stream callback.

        pyzmq stops calling a stream's callback after it raises once, which would leave
        every connected frontend without output until it reconnects.  (The arguments are
        the wrapped class's: (stream, msg_list) for ZMQ, (message,) for the gateway's.)
        """
        try:
            super().handle_outgoing_message(*args)  # type: ignore[misc]
        except Exception as e:
            self.comm_mirror.problems.warning(
                f"outgoing:{self.kernel_id}",
                "Dropped a malformed message from kernel %s: %r",
                self.kernel_id,
                e,
            )
        if self._push_interval:
            self._last_write = self._loop.time()
            if self._push_pending is None:
                self._push_pending = self._loop.call_later(self._push_interval, self._push)

    def _push(self) -> None:
        """Send what Nagle's algorithm holds once the frames stop: setting TCP_NODELAY pushes
        pending segments, clearing it again lets the next frames coalesce (see
        `CommMirror.websocket_nodelay`).  While frames keep coming, Nagle is left to pack them.
        """
        quiet = self._loop.time() - self._last_write
        if quiet < self._push_interval:
            self._push_pending = self._loop.call_later(self._push_interval - quiet, self._push)
            return
        self._push_pending = None
        conn = self.websocket_handler.ws_connection if self.websocket_handler else None
        sock = conn.stream.socket if conn is not None and conn.stream is not None else None
        if sock is None:
            return
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
        except OSError:
            pass


def tap_connection_class(cls: type, mirror: CommMirror) -> type:
    """A subclass of `cls` that mirrors comm traffic into `mirror`."""
    if issubclass(cls, TapMixin):
        return cls
    return type(f"CommTapped{cls.__name__}", (TapMixin, cls), {"comm_mirror": mirror})

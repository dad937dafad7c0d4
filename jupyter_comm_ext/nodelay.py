"""When kernel websocket frames leave: at once for a round trip, packed for a flood.

With Nagle's algorithm on, when a kernel answers a frontend with several messages (status
busy, the reply or comm echo, status idle), the second small frame waits until the frontend
ACKs the first, and the frontend delays that ACK (40 ms on Linux): a widget's comm round
trip then takes ~45 ms instead of ~3 ms.  Browsers cannot change their ACK timing, so the
server must not wait for it.  This is a job of its own, beside the tap: it changes how the
websocket's socket sends, never what.
"""

from __future__ import annotations

import socket
from time import monotonic
from typing import Any

from tornado.ioloop import IOLoop
from traitlets import Bool, Float
from traitlets.config import LoggingConfigurable

from .problems import RateLimitedLog

#: frames a websocket writes without a pause before Nagle's algorithm may pack them (see
#: `WebsocketNodelay.push_interval`); a widget's round trip writes three (busy, echo, idle)
FLOOD_FRAMES = 4


class WebsocketNodelay(LoggingConfigurable):
    """Kernel websocket frames leave at once; only floods are packed."""

    enabled = Bool(
        True,
        config=True,
        help="""Do not let kernel websocket frames wait for the frontend's ACK (TCP_NODELAY).
        With Nagle's algorithm on, a kernel's reply of several small frames (status busy,
        the comm echo, status idle) waits for the frontend's delayed ACK: a widget's round
        trip takes ~45 ms instead of ~3 ms. See `push_interval` for floods.""",
    )

    push_interval = Float(
        0.001,
        config=True,
        help="""Seconds of quiet that end a flood. Frames leave at once while a websocket
        writes a few at a time; once it writes a few frames with no pause of this long,
        Nagle's algorithm packs the rest of the flood (less CPU than one segment per frame),
        and when the frames stop for this long, what it holds is pushed out and frames
        leave at once again. 0: TCP_NODELAY always, floods included.""",
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.problems = RateLimitedLog(self.log)

    def connection_class(self, cls: type) -> type:
        """A subclass of `cls` (a kernel websocket connection class) whose websockets send
        this way; `cls` itself when this is off."""
        if not self.enabled or issubclass(cls, NodelayMixin):
            return cls
        return type(f"Nodelay{cls.__name__}", (NodelayMixin, cls), {"nodelay": self})


class NodelayMixin:
    """Mixed in front of a kernel websocket connection class by `WebsocketNodelay`."""

    nodelay: WebsocketNodelay  # set on the generated class

    kernel_id: str
    websocket_handler: Any

    #: seconds of quiet that end a burst of frames (0: no bursts)
    _push_interval: float = 0
    #: the timer that will push this websocket's held frames out (see `_push`)
    _push_pending: Any = None
    #: time.monotonic() of the last frame written (read without the event loop's two layers
    #: of Python per frame), and frames written since the last pause
    _last_write: float = 0.0
    _burst: int = 0
    #: the connection's IOLoop (looking it up per message costs more than the rest)
    _loop: Any = None

    def connect(self) -> Any:
        self._loop = IOLoop.current()
        self._push_interval = self.nodelay.push_interval
        self._tcp_nodelay(True)
        return super().connect()  # type: ignore[misc]

    def handle_outgoing_message(self, *args: Any) -> None:
        """Relay a kernel message, then note the write: a flood's fourth frame in a row
        hands the socket to Nagle's algorithm until the frames stop."""
        super().handle_outgoing_message(*args)  # type: ignore[misc]
        if self._push_interval:
            now = monotonic()
            if now - self._last_write >= self._push_interval:
                self._burst = 0
            self._last_write = now
            self._burst += 1
            if self._burst == FLOOD_FRAMES:
                self._coalesce()

    def _coalesce(self) -> None:
        """A flood: let Nagle's algorithm pack its frames until they stop (see `_push`)."""
        if self._push_pending is None and self._tcp_nodelay(False):
            self._push_pending = self._loop.call_later(self._push_interval, self._push)

    def _push(self) -> None:
        """Once a flood's frames stop, send what Nagle's algorithm holds: setting TCP_NODELAY
        pushes pending segments, and leaves the next frames to go at once.  While frames
        keep coming, Nagle is left to pack them.
        """
        quiet = monotonic() - self._last_write
        if quiet < self._push_interval:
            self._push_pending = self._loop.call_later(self._push_interval - quiet, self._push)
            return
        self._push_pending = None
        self._tcp_nodelay(True)

    def _tcp_nodelay(self, on: bool) -> bool:
        """Set TCP_NODELAY on the websocket's socket; False if there is none (it closed)."""
        conn = self.websocket_handler.ws_connection if self.websocket_handler else None
        sock = conn.stream.socket if conn is not None and conn.stream is not None else None
        if sock is None:
            return False
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(on))
            return True
        except OSError as e:  # closing under us
            self.nodelay.problems.warning(
                "nodelay", self.kernel_id, "Could not set TCP_NODELAY: %r", e
            )
            return False

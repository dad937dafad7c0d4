"""The interposer on kernel websocket connections.

We wrap whatever connection class the server is configured with (the default ZMQ one, the
gateway's, another extension's) in a subclass that peeks at each frame on its way through
and then hands it, unchanged, to the original.  The tap never changes a byte, never blocks,
and never raises into the relay: an error inside it is logged (rate-limited) and swallowed.
"""

from __future__ import annotations

import socket
from time import monotonic
from typing import Any

from tornado.ioloop import IOLoop
from traitlets import Bool, Float, Instance
from traitlets.config import LoggingConfigurable

from . import protocol
from .problems import RateLimitedLog
from .protocol import V1_SUBPROTOCOL, BadFraming, InvalidUnicode, MalformedMessage

#: frames a websocket writes without a pause before Nagle's algorithm may pack them (see
#: `CommTap.websocket_push_interval`); a widget's round trip writes three (busy, echo, idle)
FLOOD_FRAMES = 4


class CommTap(LoggingConfigurable):
    """What the tap does to the kernel websocket path, besides mirroring it."""

    guard = Bool(
        True,
        config=True,
        help="""Refuse malformed client frames before jupyter_server parses them: v1 frames
        whose offset table does not fit the frame (which make the stock parser loop until
        memory runs out), legacy binary frames with an impossible buffer count (a 2 GB
        allocation), and comm messages whose ids are not valid Unicode (which stall
        ipykernel). Valid traffic is untouched.""",
    )

    websocket_nodelay = Bool(
        True,
        config=True,
        help="""Do not let kernel websocket frames wait for the frontend's ACK.
        With Nagle's algorithm on, when a kernel answers a frontend with several messages
        (status busy, the reply or comm echo, status idle), the second small frame waits
        until the frontend ACKs the first, and the frontend delays that ACK (40 ms on
        Linux): a widget's comm round trip then takes ~45 ms instead of ~3 ms. Browsers
        cannot change their ACK timing, so the server must not wait for it.
        See `websocket_push_interval` for how.""",
    )

    websocket_push_interval = Float(
        0.001,
        config=True,
        help="""With `websocket_nodelay`: frames leave at once (TCP_NODELAY) while a
        websocket writes a few at a time (a widget's round trip: status, echo, status);
        once it writes `FLOOD_FRAMES` frames with no pause of this many seconds, Nagle's
        algorithm packs the rest of the flood (less CPU than one segment per frame), and
        when the frames stop for this long, what it holds is pushed out and frames leave
        at once again. 0: TCP_NODELAY always, floods included.""",
    )

    mirror = Instance("jupyter_comm_ext.mirror.CommMirror")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.problems = RateLimitedLog(self.log)
        #: client frames dropped by the guard since the server started
        self.refused_frames = 0

    def refuses(self, error: MalformedMessage) -> bool:
        """Whether a frame must be dropped rather than handed to the stock relay."""
        return self.guard and isinstance(error, (BadFraming, InvalidUnicode))

    def connection_class(self, cls: type) -> type:
        """A subclass of `cls` (a kernel websocket connection class) that goes through this tap."""
        if issubclass(cls, TapMixin):
            return cls
        # the mirror as a plain attribute: a trait's lookup costs more than what the
        # mirror then does with a message
        attrs = {"comm_tap": self, "comm_mirror": self.mirror}
        return type(f"CommTapped{cls.__name__}", (TapMixin, cls), attrs)


class TapMixin:
    """Mixed in front of a kernel websocket connection class by `CommTap.connection_class`."""

    comm_tap: CommTap  # set on the generated class, and its mirror
    comm_mirror: Any

    kernel_id: str
    session_id: str | None
    websocket_handler: Any
    log: Any

    #: whether the websocket speaks v1, and the ids its comm messages are filed under:
    #: learnt on its first frame (see `_learn`)
    _v1: bool | None = None
    _kernel_id: str = ""
    _session_id: str | None = None

    #: seconds of quiet that end a burst of frames (0: no bursts, or TCP_NODELAY is off)
    _push_interval: float = 0
    #: the timer that will push this websocket's held frames out (see `_push`)
    _push_pending: Any = None
    #: time.monotonic() of the last frame written (the event loop's clock, read without
    #: two layers of Python per frame), and frames written since the last pause
    _last_write: float = 0.0
    _burst: int = 0
    #: the connection's IOLoop (looking it up per message costs more than the rest of the tap)
    _loop: Any = None

    def connect(self) -> Any:
        tap = self.comm_tap
        self.comm_mirror.add_connection(self)
        self._loop = IOLoop.current()
        if tap.websocket_nodelay:
            self._push_interval = tap.websocket_push_interval
            self._tcp_nodelay(True)
        return self.comm_mirror.when_watched(self, super().connect())  # type: ignore[misc]

    def disconnect(self) -> Any:
        self.comm_mirror.remove_connection(self)
        return super().disconnect()  # type: ignore[misc]

    def _learn(self) -> None:
        """Look up, once, what is fixed before a websocket's first frame (the subprotocol is
        chosen in the handshake, the ids before `connect`): per frame, these lookups through
        tornado's and jupyter_server's properties and traits cost as much as reading it."""
        subprotocol = getattr(self.websocket_handler, "selected_subprotocol", None)
        self._kernel_id, self._session_id = self.kernel_id, self.session_id
        self._v1 = subprotocol == V1_SUBPROTOCOL  # last: if a lookup raised, learn again

    def handle_incoming_message(self, incoming_msg: str | bytes) -> None:
        """Peek at a frontend's frame, relay it, then mirror it if the relay took it."""
        tap = self.comm_tap
        try:
            if self._v1 is None:
                self._learn()
            channel, comm = self._read_incoming(incoming_msg)
        except Exception as e:  # malformed, or a reader bug: neither may cost the frame
            if isinstance(e, MalformedMessage) and tap.refuses(e):
                tap.refused_frames += 1
                tap.problems.warning(
                    "refused",
                    self.kernel_id,
                    "Refused a malformed frame from session %s to kernel %s: %s",
                    self.session_id,
                    self.kernel_id,
                    e,
                )
                return
            tap.problems.warning(
                "unread",
                self.kernel_id,
                "Relayed a frame the comm mirror cannot read (session %s, kernel %s): %s",
                self.session_id,
                self.kernel_id,
                e,
                exc=None if isinstance(e, MalformedMessage) else e,
            )
            channel, comm = None, None
        try:
            super().handle_incoming_message(incoming_msg)  # type: ignore[misc]
        except Exception as e:
            # Stock relays raise on frames they cannot parse, and tornado then drops the
            # websocket: one bad frame would cost the user their connection.  What stock
            # raises is about the frame, not a bug of ours: one line, no traceback.
            tap.problems.warning(
                "relay",
                self.kernel_id,
                "Dropped a frame the kernel relay could not handle (session %s, kernel %s): %r",
                self.session_id,
                self.kernel_id,
                e,
            )
            return
        if comm is not None and channel in (None, "shell"):
            try:
                self.comm_mirror.frontend_sent(self._kernel_id, self._session_id, comm)
            except Exception as e:  # the frame is relayed; a mirror bug must not drop the websocket
                tap.problems.warning(
                    "mirror",
                    self.kernel_id,
                    "Could not mirror a comm message to kernel %s: %r",
                    self.kernel_id,
                    e,
                    exc=e,
                )

    def _read_incoming(self, frame: str | bytes) -> tuple[str | None, protocol.CommMessage | None]:
        if self._v1:
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
            self.comm_tap.problems.warning(
                "outgoing",
                self.kernel_id,
                "Dropped a malformed message from kernel %s: %r",
                self.kernel_id,
                e,
            )
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
        pushes pending segments, and leaves the next frames to go at once (see
        `CommTap.websocket_nodelay`).  While frames keep coming, Nagle is left to pack them.
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
            self.comm_tap.problems.warning(
                "nodelay", self.kernel_id, "Could not set TCP_NODELAY: %r", e
            )
            return False

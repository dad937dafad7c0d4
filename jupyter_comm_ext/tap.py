"""The interposer on kernel websocket connections, and the guard in front of the relay.

We wrap whatever connection class the server is configured with (the default ZMQ one, the
gateway's, another extension's) in a subclass that peeks at each frame on its way through
and then hands it, unchanged, to the original.  The tap never changes a byte, never blocks,
and never raises into the relay: an error inside it is logged (rate-limited) and swallowed.
The guard is the one exception to "unchanged": a frame that would break the stock relay or
the kernel is refused (`CommTap.guard`).
"""

from __future__ import annotations

from typing import Any

from traitlets import Bool, Float, Instance, observe
from traitlets.config import LoggingConfigurable

from . import protocol
from .problems import RateLimitedLog
from .protocol import V1_SUBPROTOCOL, BadFraming, InvalidUnicode, MalformedMessage

#: the settings that moved to `WebsocketNodelay`, by their new names
RENAMED = {"websocket_nodelay": "enabled", "websocket_push_interval": "push_interval"}


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

    websocket_nodelay = Bool(True, config=True, help="Deprecated: use `WebsocketNodelay.enabled`.")
    websocket_push_interval = Float(
        0.001, config=True, help="Deprecated: use `WebsocketNodelay.push_interval`."
    )

    mirror = Instance("jupyter_comm_ext.mirror.CommMirror")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.problems = RateLimitedLog(self.log)
        #: client frames dropped by the guard since the server started
        self.refused_frames = 0

    @observe(*RENAMED)
    def _renamed(self, change: dict[str, Any]) -> None:
        self.log.warning(
            "CommTap.%s is deprecated: use WebsocketNodelay.%s",
            change["name"],
            RENAMED[change["name"]],
        )

    def renamed_settings(self) -> dict[str, Any]:
        """The deprecated settings given, under their `WebsocketNodelay` names."""
        return {
            RENAMED[name]: getattr(self, name) for name in RENAMED if name in self.config.CommTap
        }

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

    def connect(self) -> Any:
        self.comm_mirror.add_connection(self)
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

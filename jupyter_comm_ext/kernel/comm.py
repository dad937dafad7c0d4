"""The kernel end of a comm: opens, sends to and closes its frontend peer."""

from __future__ import annotations

import contextlib
import time
import typing as t
import uuid
from collections import OrderedDict
from datetime import datetime, timezone

if t.TYPE_CHECKING:
    from .manager import CommManager

MessageType = dict[str, t.Any]
MaybeDict = dict[str, t.Any] | None
BuffersType = list[bytes | memoryview] | None
CommCallback = t.Callable[[MessageType], None]


def iso_utc(timestamp: float) -> str:
    """Format like jupyter_server's ``last_activity``: ``2026-11-24T10:00:00.000000Z``."""
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _request_id(data: t.Any) -> str | None:
    """The id of an RPC-style payload ``{"content": {"id": ...}}``, used for reply routing."""
    if isinstance(data, dict):
        content = data.get("content")
        if isinstance(content, dict):
            request_id = content.get("id")
            if isinstance(request_id, str):
                return request_id
    return None


class Comm:
    """Kernel side of a comm, with ipykernel's API plus introspection counters.

    ``primary=True`` (the default) means the kernel opens the comm: the constructor
    publishes ``comm_open``. The manager creates ``primary=False`` comms for
    frontend-opened ones.
    """

    # Per-request subshell routing table is bounded so unanswered requests cannot leak.
    _MAX_PENDING_REPLIES = 1024

    def __init__(
        self,
        target_name: str | None = None,
        data: MaybeDict = None,
        metadata: MaybeDict = None,
        buffers: BuffersType = None,
        *,
        comm_id: str | None = None,
        primary: bool = True,
        target_module: str | None = None,
        manager: CommManager | None = None,
    ) -> None:
        self._closed = True  # first, so __del__ is safe if anything below raises
        self.comm_id = comm_id or uuid.uuid4().hex
        self.target_name = target_name or "comm"
        self.target_module = target_module
        self.primary = primary
        self.topic = f"comm-{self.comm_id}".encode("ascii")
        self.manager = manager if manager is not None else _default_manager()
        self.origin = "kernel" if primary else "frontend"
        self.opened_at = self.last_activity = time.time()
        self.to_kernel = 0
        self.from_kernel = 0
        self._msg_callback: CommCallback | None = None
        self._close_callback: CommCallback | None = None
        self._reply_subshell_id: str | None = None
        self._reply_subshell_ids: OrderedDict[str, str | None] = OrderedDict()
        if primary:
            self.open(data, metadata, buffers)
        else:
            self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Comm {self.target_name!r} {self.comm_id} {state}>"

    @property
    def kernel(self) -> t.Any:
        """The object that owns the session and iopub socket (the ipykernel Kernel)."""
        return self.manager.kernel

    # publishing

    def open(
        self, data: MaybeDict = None, metadata: MaybeDict = None, buffers: BuffersType = None
    ) -> None:
        """Open the frontend side; registered first so an immediate reply finds us."""
        self.manager.register_comm(self)
        self._closed = False
        try:
            self._publish(
                "comm_open",
                data,
                metadata,
                buffers,
                target_name=self.target_name,
                target_module=self.target_module,
            )
        except Exception:
            self._closed = True
            self.manager.unregister_comm(self)
            raise

    def send(
        self, data: MaybeDict = None, metadata: MaybeDict = None, buffers: BuffersType = None
    ) -> None:
        """Send a ``comm_msg`` to the frontend side. Safe from any thread."""
        self._publish("comm_msg", data, metadata, buffers)

    def close(
        self, data: MaybeDict = None, metadata: MaybeDict = None, buffers: BuffersType = None
    ) -> None:
        """Close both sides. Only the first call sends ``comm_close``."""
        if self._closed:
            return
        self._closed = True
        self._publish("comm_close", data, metadata, buffers)
        if self.manager.comms.get(self.comm_id) is self:
            self.manager.unregister_comm(self)

    def __del__(self) -> None:
        # Reached only once the manager no longer holds us (or is itself garbage, e.g. at
        # interpreter exit), where the socket may already be gone: best effort, silent.
        if not getattr(self, "_closed", True):
            self._closed = True
            with contextlib.suppress(Exception):
                self._publish("comm_close", None, None, None)

    def _publish(
        self,
        msg_type: str,
        data: MaybeDict,
        metadata: MaybeDict,
        buffers: BuffersType,
        **keys: t.Any,
    ) -> None:
        content = {"data": {} if data is None else data, "comm_id": self.comm_id, **keys}
        parent = self.manager.publish(self.topic, msg_type, content, metadata, buffers)
        self.from_kernel += 1
        self.last_activity = time.time()
        header = parent.get("header") if parent else None
        if header:
            self._note_reply_subshell(header.get("subshell_id"), data)

    # ipykernel >= 7 subshells: route the frontend's reply to the subshell that asked

    def _note_reply_subshell(self, subshell_id: str | None, data: t.Any) -> None:
        self._reply_subshell_id = subshell_id
        request_id = _request_id(data)
        if request_id is not None:
            pending = self._reply_subshell_ids
            if len(pending) >= self._MAX_PENDING_REPLIES:
                with contextlib.suppress(KeyError):  # the router thread may have emptied it
                    pending.popitem(last=False)
            pending[request_id] = subshell_id

    def _reply_subshell_for(self, data: t.Any, default: str | None) -> str | None:
        """Called by ipykernel's shell router (another thread) for each incoming message."""
        request_id = _request_id(data)
        if request_id is not None and request_id in self._reply_subshell_ids:
            return self._reply_subshell_ids.pop(request_id, default)
        return self._reply_subshell_id if self._reply_subshell_id is not None else default

    # callbacks

    def on_msg(self, callback: CommCallback | None) -> None:
        """Call ``callback(msg)`` for each ``comm_msg``; ``None`` removes it."""
        self._msg_callback = callback

    def on_close(self, callback: CommCallback | None) -> None:
        """Call ``callback(msg)`` when the frontend (or an admin) closes the comm."""
        self._close_callback = callback

    # incoming, called by the manager (which logs any exception)

    def handle_msg(self, msg: MessageType) -> None:
        """Run the on_msg callback inside IPython's pre/post_execute events, like ipykernel."""
        self.to_kernel += 1
        self.last_activity = time.time()
        callback = self._msg_callback
        if callback is None:
            return
        shell = self.manager.shell
        if shell is None:
            callback(msg)
            return
        shell.events.trigger("pre_execute")
        try:
            callback(msg)
        finally:
            # unlike ipykernel, also after an error, so e.g. inline figures still flush
            shell.events.trigger("post_execute")

    def handle_close(self, msg: MessageType) -> None:
        """Mark closed (no comm_close goes back) and run the on_close callback."""
        self._closed = True
        self.to_kernel += 1
        self.last_activity = time.time()
        if self._close_callback is not None:
            self._close_callback(msg)

    # introspection

    def info(self) -> dict[str, t.Any]:
        """This comm's entry in ``comm_info_reply`` (``target_name`` plus extra keys)."""
        return {
            "target_name": self.target_name,
            "target_module": self.target_module,
            "origin": self.origin,
            "opened_at": iso_utc(self.opened_at),
            "last_activity": iso_utc(self.last_activity),
            "messages": {"to_kernel": self.to_kernel, "from_kernel": self.from_kernel},
        }


def _default_manager() -> CommManager:
    """The installed manager; inside ipykernel, install on first use."""
    import comm

    from .manager import CommManager

    manager = comm.get_comm_manager()
    if isinstance(manager, CommManager):
        return manager
    from .installer import install

    return install()

"""The registry of a kernel's comms and targets, and the shell handlers for comm messages."""

from __future__ import annotations

import importlib
import logging
import threading
import time
import typing as t

from .comm import BuffersType, Comm, MaybeDict, MessageType, iso_utc

TargetCallback = t.Callable[[t.Any, MessageType], None]
CloseHook = t.Callable[[t.Any, MessageType], None]

logger = logging.getLogger("jupyter_comm_ext.kernel")


class CommManager:
    """ipykernel's CommManager API, driven by any ``kernel`` object that provides:

    - ``session``: a ``jupyter_client.session.Session``;
    - ``iopub_socket``: where ``session.send`` publishes (a zmq PUB socket or ipykernel's
      thread-safe ``BackgroundSocket``);
    - optionally ``get_parent()``: the message being handled, used as parent header;
    - optionally ``shell``: an IPython shell whose pre/post_execute events wrap callbacks.

    Comms may also hold objects that are not ours (ipykernel's, adopted by ``install()``):
    everything here only relies on ``comm_id``, ``target_name``, ``handle_msg`` and
    ``handle_close``.
    """

    def __init__(self, kernel: t.Any = None, log: logging.Logger | None = None) -> None:
        self.kernel = kernel
        self.log = log if log is not None else logger
        self.comms: dict[str, t.Any] = {}
        self.targets: dict[str, TargetCallback] = {}
        self._close_hooks: list[CloseHook] = []
        self._adopted_at: dict[str, float] = {}
        # zmq sockets are not thread-safe (ipykernel's BackgroundSocket is); the lock is cheap.
        # Reentrant: gc may collect a comm, whose __del__ sends, in the middle of a send.
        self._send_lock = threading.RLock()

    @property
    def kernel(self) -> t.Any:
        """The object that owns the session and the iopub socket."""
        return self._kernel

    @kernel.setter
    def kernel(self, kernel: t.Any) -> None:
        self._kernel = kernel
        self.shell = getattr(kernel, "shell", None)  # cached: read on every comm_msg

    # targets

    def register_target(self, target_name: str, f: TargetCallback | str) -> None:
        """Call ``f(comm, open_msg)`` when the frontend opens a comm with ``target_name``.

        ``f`` may be an import string such as ``"pkg.module.function"``.
        """
        self.targets[target_name] = _import_string(f) if isinstance(f, str) else f

    def unregister_target(
        self, target_name: str, f: TargetCallback | None = None
    ) -> TargetCallback:
        """Remove and return the target's callback (``f`` is accepted for API parity)."""
        return self.targets.pop(target_name)

    # comms

    def register_comm(self, comm: t.Any) -> str:
        """Track ``comm`` so incoming messages reach it."""
        comm_id: str = comm.comm_id
        self.comms[comm_id] = comm
        if not isinstance(comm, Comm):
            self._adopted_at[comm_id] = time.time()
        return comm_id

    def unregister_comm(self, comm: t.Any) -> None:
        """Stop tracking ``comm``; a ``KeyError`` if it was not tracked, like ipykernel."""
        del self.comms[comm.comm_id]
        self._adopted_at.pop(comm.comm_id, None)

    def get_comm(self, comm_id: str) -> t.Any | None:
        """The comm or None, silently: ipykernel's shell router asks for every message."""
        return self.comms.get(comm_id)

    def adopt(self, other: t.Any) -> None:
        """Take over another manager's comms and targets, emptying it."""
        for comm in list(other.comms.values()):
            self.register_comm(comm)
        for name, f in other.targets.items():
            self.targets.setdefault(name, f)
        other.comms.clear()
        other.targets.clear()

    def on_external_close(self, hook: CloseHook, remove: bool = False) -> None:
        """Call ``hook(comm, msg)`` after a comm is closed from outside the kernel.

        That is a ``comm_close`` from a frontend or an admin force-close, after the comm's
        on_close callback ran and it was unregistered. Use it to release objects bound to
        the comm (``install()`` adds one for ipywidgets). Errors are logged.
        """
        if remove:
            self._close_hooks.remove(hook)
        else:
            self._close_hooks.append(hook)

    # publishing

    def publish(
        self,
        topic: bytes,
        msg_type: str,
        content: dict[str, t.Any],
        metadata: MaybeDict = None,
        buffers: BuffersType = None,
    ) -> dict[str, t.Any]:
        """Send a message on iopub with the current parent; thread-safe. Returns the parent."""
        kernel = self._kernel
        if kernel is None:
            raise RuntimeError("CommManager has no kernel to publish with")
        get_parent = getattr(kernel, "get_parent", None)
        parent = get_parent() if get_parent is not None else {}
        with self._send_lock:
            kernel.session.send(
                kernel.iopub_socket,
                msg_type,
                content,
                parent=parent,
                ident=topic,
                metadata={} if metadata is None else metadata,
                buffers=buffers,
            )
        return parent

    # shell handlers: (stream, ident, msg), never raising into the kernel loop

    def comm_open(self, stream: t.Any, ident: t.Any, msg: MessageType) -> None:
        """A frontend opened a comm: hand it to its target, or close it back."""
        content = msg["content"]
        target_name = content.get("target_name")
        comm = Comm(
            target_name,
            comm_id=content.get("comm_id"),
            primary=False,
            target_module=content.get("target_module"),
            manager=self,
        )
        comm.to_kernel = 1
        stale = self.comms.get(comm.comm_id)
        if stale is not None:
            # a repeated id: drop the old object without letting it close the new peer later
            self.log.warning("comm_open for already open comm %s, replacing it", comm.comm_id)
            stale._closed = True
        self.register_comm(comm)
        handler = self.targets.get(target_name)
        if handler is None:
            self.log.error("No such comm target registered: %s", target_name)
        else:
            try:
                handler(comm, msg)
                return
            except Exception:
                self.log.exception("Exception opening comm with target: %s", target_name)
        try:
            comm.close()
        except Exception:
            self.log.exception("Could not close comm %s back", comm.comm_id)

    def comm_msg(self, stream: t.Any, ident: t.Any, msg: MessageType) -> None:
        """Dispatch to the comm's on_msg callback."""
        comm_id = msg["content"].get("comm_id")
        comm = self.comms.get(comm_id)
        if comm is None:
            self.log.debug("No such comm: %s", comm_id)
            return
        try:
            comm.handle_msg(msg)
        except Exception:
            self.log.exception("Exception in comm_msg for %s", comm_id)

    def comm_close(self, stream: t.Any, ident: t.Any, msg: MessageType) -> None:
        """Closed from outside: unregister, run on_close, then the external-close hooks."""
        comm_id = msg["content"].get("comm_id")
        comm = self.comms.pop(comm_id, None)
        if comm is None:
            self.log.debug("No such comm: %s", comm_id)
            return
        self._adopted_at.pop(comm_id, None)
        comm._closed = True  # adopted ipykernel comms don't set it in handle_close
        try:
            comm.handle_close(msg)
        except Exception:
            self.log.exception("Exception in comm_close for %s", comm_id)
        for hook in list(self._close_hooks):
            try:
                hook(comm, msg)
            except Exception:
                self.log.exception("Exception in external-close hook for %s", comm_id)

    def comm_info_request(self, stream: t.Any, ident: t.Any, msg: MessageType) -> None:
        """Reply with every open comm (optionally one target's), plus introspection keys.

        Also installed as the control-channel handler, which may run on another thread:
        it only reads a snapshot of ``comms``.
        """
        target_name = msg["content"].get("target_name")
        comms = {
            comm_id: self._info(comm)
            for comm_id, comm in list(self.comms.items())
            if target_name is None or comm.target_name == target_name
        }
        reply = {"status": "ok", "comms": comms}
        self._kernel.session.send(stream, "comm_info_reply", reply, msg, ident)

    def _info(self, comm: t.Any) -> dict[str, t.Any]:
        if isinstance(comm, Comm):
            return comm.info()
        # Adopted before install(): we know neither its history nor its traffic.
        since = iso_utc(self._adopted_at.get(comm.comm_id, time.time()))
        return {
            "target_name": comm.target_name,
            "target_module": getattr(comm, "target_module", None),
            "origin": "kernel" if getattr(comm, "primary", True) else "frontend",
            "opened_at": since,
            "last_activity": since,
            "messages": {"to_kernel": 0, "from_kernel": 0},
        }


def _import_string(name: str) -> t.Any:
    """``"pkg.mod.obj"`` -> obj, ``"mod"`` -> module."""
    module_name, _, attr = name.rpartition(".")
    if not module_name:
        return importlib.import_module(name)
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError as e:
        raise ImportError(f"cannot import {attr!r} from {module_name!r}") from e

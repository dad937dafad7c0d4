"""The comm mirror: joins the tap, the kernel watchers, the registry and the kernels' lives.

The tap reports what frontends send, the watchers what kernels send, the kernel tracker when
kernels start, restart and go away.  All of it lands in one `CommRegistry`, which the REST
handlers and the culler read; every change that matters to a listener becomes an event.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from jupyter_client.session import Session
from traitlets import Bool, Float, Instance, Int, List, Unicode, observe
from traitlets.config import LoggingConfigurable

from . import registry as reg
from .activity import CommActivity
from .control import CommInfo, comm_close_for_frontends, write_to_frontend
from .lifecycle import KernelTracker
from .problems import RateLimitedLog
from .protocol import CommMessage, MalformedMessage
from .registry import CommRecord, CommRegistry
from .watchers import (
    GatewayKernelWatcher,
    IOPubWatcher,
    KernelUnreachable,
    KernelWatcher,
    is_remote,
)

COMM_EVENT_SCHEMA = "https://events.jupyter.org/jupyter_comm_ext/comm/v1"


class CommMirror(LoggingConfigurable):
    """Keeps the registry in step with every kernel of the server."""

    max_comms_per_kernel = Int(
        50_000,
        config=True,
        help="""How many open comms to track per kernel. Past it, new comms of that kernel
        are not tracked (a warning is logged), so a runaway kernel cannot exhaust the
        server's memory.""",
    )

    max_closed_history = Int(
        1000,
        config=True,
        help="How many closed comms to remember (over all kernels) for `status=closed`.",
    )

    share_activity_stream = Bool(
        False,
        config=True,
        help="Deprecated: has no effect (the mirror always reads its own IOPub subscription).",
    )

    @observe("share_activity_stream")
    def _share_activity_stream_changed(self, change: dict[str, Any]) -> None:
        self.log.warning(
            "CommMirror.share_activity_stream is deprecated and has no effect: the mirror "
            "reads its own IOPub subscription, which keeps up with bursts"
        )

    iopub_topics = List(
        Unicode(),
        default_value=["comm-"],
        config=True,
        help="""ZMQ topic prefixes of the mirror's IOPub subscription. ipykernel and the
        `comm` package publish comm messages under `comm-<comm_id>`, which lets libzmq
        filter all other output out before it reaches the server. Use [""] for kernels
        that publish comm messages without that topic.""",
    )

    iopub_queue_limit = Int(
        50_000,
        config=True,
        help="""How many of a kernel's messages may wait for the server to read them (the
        ZMQ receive high-water mark of the mirror's IOPub subscription; stock's is 1000).
        A kernel that
        publishes faster than a busy server reads (10,000 widgets opened in a loop) is
        counted exactly up to that backlog; past it libzmq drops the excess (counts fall
        short; the comms themselves are recovered by the next reconcile), which bounds the
        server's memory (about 1-4 KB a message). 0 means no limit: exact counts, and a
        runaway kernel can make the server's memory grow without bound.""",
    )

    reconcile_timeout = Float(
        5.0,
        config=True,
        help="Seconds to wait for a kernel's comm_info_reply when reconciling.",
    )

    orphan_grace = Float(
        2.0,
        config=True,
        help="""Seconds after a frontend closed a comm before a kernel that still reports it
        (while idle) makes it an orphan: the kernel may simply not have read the close yet.""",
    )

    kernel_manager = Instance("jupyter_server.services.kernels.kernelmanager.MappingKernelManager")
    event_logger = Instance("jupyter_events.EventLogger", allow_none=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.registry = CommRegistry(self.max_comms_per_kernel, self.max_closed_history)
        self.watchers: dict[str, KernelWatcher] = {}
        self.connections: dict[str, set[Any]] = {}
        self.problems = RateLimitedLog(self.log)
        self.pack = Session().pack
        #: which comm messages count as user activity (installed by the app)
        self.activity = CommActivity(parent=self, kernel_manager=self.kernel_manager)
        self.kernels = KernelTracker(
            self.kernel_manager,
            self.event_logger,
            on_start=self.ensure_watched,
            on_restart=self.kernel_restarted,
            on_gone=self.forget_kernel,
        )
        self._reconciles: dict[str, asyncio.Future[None]] = {}

    # -- traffic -----------------------------------------------------------------------

    def frontend_sent(self, kernel_id: str, session_id: str | None, comm: CommMessage) -> None:
        """A comm message a frontend (session) sent to the kernel (seen once, on its connection)."""
        self.activity.user_touched(kernel_id)
        self._observe(kernel_id, comm, reg.TO_KERNEL, session_id)

    def kernel_sent(self, kernel_id: str, comm: CommMessage) -> None:
        """A comm message the kernel published (seen once, on the watcher)."""
        self._observe(kernel_id, comm, reg.FROM_KERNEL, None)

    def _observe(self, kernel_id: str, comm: CommMessage, direction: str, session: Any) -> None:
        if kernel_id not in self.watchers:
            self.ensure_watched(kernel_id)
        record, actions = self.registry.observe(kernel_id, comm, direction, session)
        for action in actions:
            if action == reg.CAPPED:
                self.problems.warning(
                    "cap",
                    kernel_id,
                    "Kernel %s has %d open comms, the most tracked "
                    "(CommMirror.max_comms_per_kernel); new ones are not tracked",
                    kernel_id,
                    self.max_comms_per_kernel,
                )
            elif record is not None and action == reg.CLOSED:
                self.emit("closed", record, reason=record.close_reason)
            elif record is not None:
                self.emit("opened", record)

    # -- connections -------------------------------------------------------------------

    def add_connection(self, connection: Any) -> None:
        self.connections.setdefault(connection.kernel_id, set()).add(connection)
        self.ensure_watched(connection.kernel_id)

    async def when_watched(self, connection: Any, connected: Any) -> Any:
        """Finish a frontend's connection once the kernel's watcher is subscribed.

        A frontend that connects right after the kernel started (a notebook opening) may
        make the kernel open comms at once; their comm_open must not beat our subscription.
        """
        result = await connected if inspect.isawaitable(connected) else connected
        watcher = self.watchers.get(connection.kernel_id)
        if watcher is not None:
            await watcher.subscribed(self.reconcile_timeout)
        return result

    def remove_connection(self, connection: Any) -> None:
        self.connections.get(connection.kernel_id, set()).discard(connection)

    # -- kernels -----------------------------------------------------------------------

    def ensure_watched(self, kernel_id: str) -> None:
        """Start watching a kernel, then reconcile once the subscription is live.

        Whatever the kernel did before (comms opened before the server watched it, or in
        the moment the subscription took) is learnt from the kernel itself.
        """
        if kernel_id in self.watchers or kernel_id not in self.kernels:
            return
        km = self.kernels.track(kernel_id)
        watcher: KernelWatcher
        if is_remote(km):
            watcher = GatewayKernelWatcher(
                kernel_id,
                km,
                self.kernel_sent,
                self.kernel_problem,
                self.log,
                self.pack,
                on_reconnect=self._first_contact,
            )
        else:
            watcher = IOPubWatcher(
                kernel_id,
                km,
                self.kernel_sent,
                self.kernel_problem,
                self.log,
                self.iopub_topics,
                self.iopub_queue_limit,
            )
        self.watchers[kernel_id] = watcher
        self.registry.add_kernel(kernel_id)
        self._first_contact(kernel_id)

    def _first_contact(self, kernel_id: str) -> None:
        """Once subscribed, learn from the kernel what happened before we were."""

        async def first_contact() -> None:
            await self.watchers[kernel_id].subscribed(self.reconcile_timeout)
            await self.reconcile(kernel_id)

        previous = self._reconciles.pop(kernel_id, None)
        if previous is not None:
            previous.cancel()
        self._reconciles[kernel_id] = asyncio.ensure_future(first_contact())

    def kernel_problem(self, kernel_id: str, error: Exception) -> None:
        self.problems.warning(
            "iopub",
            kernel_id,
            "Unreadable comm message from kernel %s: %r",
            kernel_id,
            error,
            exc=None if isinstance(error, MalformedMessage) else error,
        )

    def kernel_restarted(self, kernel_id: str, reconnect: bool) -> None:
        """A restarted kernel has forgotten all its comms (and may listen on new ports)."""
        for record in self.registry.close_kernel(kernel_id, reg.KERNEL_RESTARTED):
            self.emit("closed", record, reason=reg.KERNEL_RESTARTED)
        watcher = self.watchers.get(kernel_id)
        if reconnect and watcher is not None:
            watcher.connect()
            self._first_contact(kernel_id)

    def forget_kernel(self, kernel_id: str, reason: str) -> None:
        """A kernel is gone: drop its watcher and every record of it."""
        watcher = self.watchers.pop(kernel_id, None)
        if watcher is not None:
            watcher.close()
        self.kernels.untrack(kernel_id)
        task = self._reconciles.pop(kernel_id, None)
        if task is not None:
            task.cancel()
        self.connections.pop(kernel_id, None)
        self.problems.forget(kernel_id)
        self.activity.forget(kernel_id)
        if kernel_id in self.registry.kernels():
            self.registry.remove_kernel(kernel_id)
            self.emit_event({"action": "kernel_gone", "kernel_id": kernel_id, "reason": reason})

    def sync_kernels(self) -> None:
        """Watch every running kernel and forget the ones that went away unnoticed."""
        self.kernels.sync()

    # -- reconcile ---------------------------------------------------------------------

    async def refresh(self, kernel_ids: list[str] | None = None) -> dict[str, str]:
        """Reconcile kernels with what they report; returns why, by kernel id, for those
        that could not be asked."""
        self.sync_kernels()
        kernel_ids = list(self.watchers) if kernel_ids is None else kernel_ids
        results = await asyncio.gather(*(self.reconcile(k) for k in kernel_ids))
        return {k: err for k, err in zip(kernel_ids, results, strict=True) if err}

    async def reconcile(self, kernel_id: str) -> str | None:
        """Ask one kernel for its comms and merge the answer; why it failed, or None."""
        watcher = self.watchers.get(kernel_id)
        if watcher is None:
            return "the kernel is not running"
        try:
            info = await watcher.comm_info(self.reconcile_timeout)
        except KernelUnreachable as e:
            self.log.info("Could not reconcile comms of kernel %s: %s", kernel_id, e)
            return str(e) or type(e).__name__
        if self.watchers.get(kernel_id) is watcher:
            km = self.kernel_manager.get_kernel(kernel_id)
            self.merge(kernel_id, info, idle=getattr(km, "execution_state", None) == "idle")
        return None

    def merge(self, kernel_id: str, info: CommInfo, idle: bool) -> None:
        watcher = self.watchers.get(kernel_id)
        if watcher is not None:
            # Comm messages already received go first, so what they say about a comm
            # (who opened it) is not lost to an adoption as "unknown".
            watcher.flush()
            if info.kernel_session:
                watcher.kernel_session = info.kernel_session
        orphan_before = info.asked_at - self.orphan_grace if idle else None
        opened, closed = self.registry.merge(kernel_id, info.comms, info.asked_at, orphan_before)
        for record in opened:
            self.emit("opened", record)
        for record in closed:
            self.emit("closed", record, reason=record.close_reason)

    # -- force-close -------------------------------------------------------------------

    async def force_close(
        self,
        record: CommRecord,
        reason: str = reg.FORCE_CLOSED,
        username: str | None = None,
        display_name: str | None = None,
    ) -> bool:
        """Close a comm on both sides, whether or not a frontend is connected.

        False if its kernel is gone (then so is the record).

        The record is closed first, before any await, so a concurrent request finds it
        closed.  Then the kernel gets `comm_close` on its main shell (so its on_close
        callbacks run) and every connected frontend gets one on IOPub in the kernel's name
        (but for an orphan: every frontend already closed it, and would log an unknown comm).
        """
        kernel_id, comm_id = record.kernel_id, record.comm_id
        if kernel_id not in self.kernels:
            self.forget_kernel(kernel_id, "died")
            return False
        self.ensure_watched(kernel_id)
        orphan = record.status == "orphaned"
        self.registry.close(record, reason, closed_by=username, closed_by_name=display_name)
        record.kernel_told = True
        self.emit(
            "culled" if reason == reg.CULLED else "force_closed",
            record,
            reason=reason,
            username=username,
        )
        try:
            self.watchers[kernel_id].send_comm_close(comm_id)
        except KernelUnreachable as e:  # a kernel dying under us: the mirror is already right
            self.log.warning("Could not send comm_close to kernel %s: %s", kernel_id, e)
        if orphan:
            return True
        msg = comm_close_for_frontends(await self.kernel_session(kernel_id), comm_id)
        for connection in list(self.connections.get(kernel_id, ())):
            try:
                write_to_frontend(connection, msg, self.pack)
            except Exception as e:  # a websocket closing under us
                self.log.warning("Could not tell a frontend of kernel %s: %r", kernel_id, e)
        return True

    async def kernel_session(self, kernel_id: str) -> str | None:
        """The kernel's Session id: learnt from its messages, else asked on control."""
        watcher = self.watchers.get(kernel_id)
        if watcher is None:
            return None
        if watcher.kernel_session:
            return watcher.kernel_session
        try:
            info = await watcher.comm_info(self.reconcile_timeout)
        except KernelUnreachable as e:
            self.log.warning("Kernel %s did not tell its session id: %s", kernel_id, e)
            return None
        watcher.kernel_session = info.kernel_session
        return info.kernel_session

    # -- events ------------------------------------------------------------------------

    def emit(self, action: str, record: CommRecord, **extra: Any) -> None:
        data = {
            "action": action,
            "kernel_id": record.kernel_id,
            "comm_id": record.comm_id,
            "target_name": record.target_name,
            "origin": record.origin,
        }
        data.update({k: v for k, v in extra.items() if v is not None})
        self.emit_event(data)

    def emit_event(self, data: dict[str, Any]) -> None:
        if self.event_logger is not None:
            self.event_logger.emit(schema_id=COMM_EVENT_SCHEMA, data=data)

    def close(self) -> None:
        """Stop watching every kernel (server shutdown)."""
        for watcher in self.watchers.values():
            watcher.close()
        self.watchers.clear()
        for task in self._reconciles.values():
            task.cancel()
        self.kernels.close()
        self.activity.uninstall()

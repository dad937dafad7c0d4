"""The mirror of every comm the server has seen: pure data, no I/O.

The tap and the kernel watchers feed it facts ("this message went to the kernel"), the
REST handlers and the culler read it.  Nothing here talks to a kernel or a socket, so
every rule about how a comm's life is recorded can be tested without either.
"""

from __future__ import annotations

import bisect
import math
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import orjson

from . import widgets
from .query import ORIGINS, CommFilter
from .widgets import WidgetGraph, WidgetInfo

if TYPE_CHECKING:
    from .protocol import CommMessage

#: Directions a comm message can travel, as used in the model's counters.
TO_KERNEL = "to_kernel"
FROM_KERNEL = "from_kernel"

#: Why a comm left the open list.
CLOSED_BY_KERNEL = "closed-by-kernel"
CLOSED_BY_FRONTEND = "closed-by-frontend"
KERNEL_RESTARTED = "kernel-restarted"
FORCE_CLOSED = "force-closed"
CULLED = "culled"

CLOSE_REASONS = (CLOSED_BY_KERNEL, CLOSED_BY_FRONTEND, KERNEL_RESTARTED, FORCE_CLOSED, CULLED)

#: What one comm message did to the mirror (see `CommRegistry.observe`).
OPENED = "opened"
CLOSED = "closed"
#: the comm is new but its kernel is at `max_per_kernel`: it is not tracked
CAPPED = "capped"


@lru_cache(maxsize=4096)
def _isoformat_seconds(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def isoformat(timestamp: float | None) -> str | None:
    """Format an epoch timestamp the way jupyter_server formats `last_activity`.

    `GET /api/comms` formats three per comm: with 10,000 comms `datetime.strftime` alone
    took ~60 ms.  The whole seconds are formatted once (cached), the microseconds rounded
    exactly as `datetime.fromtimestamp` rounds them (half to even, carried into seconds).
    """
    if timestamp is None:
        return None
    frac, whole = math.modf(timestamp)
    micro = round(frac * 1e6)
    seconds = int(whole)
    if micro >= 1_000_000:
        seconds, micro = seconds + 1, micro - 1_000_000
    elif micro < 0:
        seconds, micro = seconds - 1, micro + 1_000_000
    return f"{_isoformat_seconds(seconds)}.{micro:06d}Z"


def parse_isoformat(value: object) -> float | None:
    """Read a timestamp a kernel reported back into epoch seconds (None if unreadable)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


@dataclass(slots=True, eq=False)
class CommRecord:
    """What the server knows about one comm.  Slots keep it small: ~10k of them is normal."""

    comm_id: str
    kernel_id: str
    target_name: str | None
    target_module: str | None
    origin: str
    session_id: str | None
    opened_at: float
    last_activity: float
    messages_to_kernel: int = 0
    messages_from_kernel: int = 0
    bytes_to_kernel: int = 0
    bytes_from_kernel: int = 0
    status: str = "open"
    closed_at: float | None = None
    close_reason: str | None = None
    closed_by: str | None = None
    #: how the person who closed it is shown (their display name); `closed_by` identifies them
    closed_by_name: str | None = None
    #: set when the kernel was sent comm_close (by a frontend, or by us force-closing): a
    #: reconcile that still finds it in the idle kernel later turns the record into an orphan.
    kernel_told: bool = False
    #: the widget model this comm is, if its comm_open said so (None: not a widget, or unknown)
    widget: WidgetInfo | None = None
    #: comm messages that went by after the mirror saw it close (a kernel sending on a comm
    #: closed from outside); counted in `messages` and `bytes` too
    sent_after_close: int = 0
    #: the model as JSON, and the (last_activity, status) it was made at: every change to a
    #: record moves one of the two, so `GET /api/comms` re-encodes only the comms that changed
    _json: orjson.Fragment | None = None
    _json_at: float = -1.0
    _json_status: str = ""

    def count(self, direction: str, nbytes: int, now: float) -> None:
        """Count one comm message of this comm."""
        if direction == TO_KERNEL:
            self.messages_to_kernel += 1
            self.bytes_to_kernel += nbytes
        else:
            self.messages_from_kernel += 1
            self.bytes_from_kernel += nbytes
        self.last_activity = now

    def idle_seconds(self, now: float) -> float:
        return now - self.last_activity

    @property
    def left_behind(self) -> bool:
        """An open widget model the last open widget that referenced it let go of."""
        return self.widget is not None and self.widget.left_behind and self.status == "open"

    def changed(self) -> None:
        """Something the model shows changed without a message (the widget graph moved)."""
        self._json = None

    def to_json(self) -> orjson.Fragment:
        """The REST model as JSON, re-encoded only when the record changed since.

        A fragment, so a list of 10,000 of them is written by one `orjson.dumps` into one
        buffer (joining bytes and adding brackets copies the whole answer twice more).
        """
        if (
            self._json is None
            or self._json_at != self.last_activity
            or self._json_status != self.status
        ):
            self._json = orjson.Fragment(orjson.dumps(self.to_model()))
            self._json_at, self._json_status = self.last_activity, self.status
        return self._json

    def to_model(self) -> dict[str, Any]:
        """The REST model (`Comm` in rest-api.yml)."""
        return {
            "comm_id": self.comm_id,
            "kernel_id": self.kernel_id,
            "target_name": self.target_name,
            "target_module": self.target_module,
            "origin": self.origin,
            "session_id": self.session_id,
            "opened_at": isoformat(self.opened_at),
            "last_activity": isoformat(self.last_activity),
            "messages": {
                TO_KERNEL: self.messages_to_kernel,
                FROM_KERNEL: self.messages_from_kernel,
            },
            "bytes": {TO_KERNEL: self.bytes_to_kernel, FROM_KERNEL: self.bytes_from_kernel},
            "status": self.status,
            "closed_at": isoformat(self.closed_at),
            "close_reason": self.close_reason,
            "closed_by": self.closed_by,
            "closed_by_name": self.closed_by_name,
            "widget": None if self.widget is None else self.widget.to_model(),
            "sent_after_close": self.sent_after_close,
        }


class _Tally:
    """Running counts of a set of live comms (see `CommRegistry.summary`)."""

    __slots__ = ("bytes", "left_behind", "messages", "open", "orphaned")

    def __init__(self) -> None:
        self.open = self.orphaned = self.left_behind = 0
        self.messages = [0, 0]
        self.bytes = [0, 0]

    def add(self, record: CommRecord) -> None:
        if record.status == "orphaned":
            self.orphaned += 1
        else:
            self.open += 1
            self.left_behind += record.left_behind
        self.messages[0] += record.messages_to_kernel
        self.messages[1] += record.messages_from_kernel
        self.bytes[0] += record.bytes_to_kernel
        self.bytes[1] += record.bytes_from_kernel

    def merge(self, other: _Tally) -> None:
        self.open += other.open
        self.orphaned += other.orphaned
        self.left_behind += other.left_behind
        for mine, theirs in ((self.messages, other.messages), (self.bytes, other.bytes)):
            mine[0] += theirs[0]
            mine[1] += theirs[1]

    def to_model(self) -> dict[str, Any]:
        return {
            "open": self.open,
            "orphaned": self.orphaned,
            "left_behind": self.left_behind,
            "messages": {TO_KERNEL: self.messages[0], FROM_KERNEL: self.messages[1]},
            "bytes": {TO_KERNEL: self.bytes[0], FROM_KERNEL: self.bytes[1]},
        }


_EMPTY: dict[str, CommRecord] = {}
#: the `status` filters that match live records only
LIVE_STATUSES = ("open", "orphaned", "left_behind")


def page(
    records: list[CommRecord], limit: int, after: tuple[float, str] | None
) -> tuple[list[CommRecord], tuple[float, str] | None]:
    """One page of `records` in a stable order (opened_at, then comm_id).

    Returns the page and the key to resume after, or None when nothing is left.  Keys, not
    offsets, so comms opening or closing between two pages neither repeat nor skip others.
    """
    ordered = sorted(records, key=_page_key)
    start = 0 if after is None else bisect.bisect_right(ordered, after, key=_page_key)
    chunk = ordered[start : start + limit]
    return chunk, _page_key(chunk[-1]) if start + limit < len(ordered) else None


def _page_key(record: CommRecord) -> tuple[float, str]:
    return (record.opened_at, record.comm_id)


class CommRegistry:
    """Live comms per kernel, plus a bounded history of closed ones.

    `max_per_kernel` and `max_closed` bound memory: a kernel that opens comms without end
    stops being tracked past the cap (the caller is told, so it can log), and the oldest
    closed records fall off the history.
    """

    def __init__(self, max_per_kernel: int = 50_000, max_closed: int = 1000) -> None:
        self.max_per_kernel = max_per_kernel
        self._live: dict[str, dict[str, CommRecord]] = {}
        self._closed: deque[CommRecord] = deque(maxlen=max_closed)
        #: messages and bytes of the records forgotten so far, for `totals()`: counting per
        #: message would cost the relay, summing when asked does not
        self._forgotten = _Tally()
        #: how many comms closed, by reason, since the server started
        self.closes: dict[str, int] = dict.fromkeys(CLOSE_REASONS, 0)
        #: messages whose big content was only skimmed (`protocol.skim`), since the start
        self.skimmed_contents = 0
        #: the references between widget models, and which are left behind
        self.widgets = WidgetGraph()

    # -- reading ---------------------------------------------------------------------

    def get(self, comm_id: str) -> CommRecord | None:
        """A live record by id, else the newest closed one."""
        for comms in self._live.values():
            record = comms.get(comm_id)
            if record is not None:
                return record
        return self._last_closed(comm_id)

    def _last_closed(self, comm_id: str, kernel_id: str | None = None) -> CommRecord | None:
        """The newest closed record of a comm (of that kernel, if given)."""
        for record in reversed(self._closed):
            if record.comm_id == comm_id and kernel_id in (None, record.kernel_id):
                return record
        return None

    def cascade(self, record: CommRecord) -> list[CommRecord]:
        """A live widget and every open model only it references, transitively (it first)."""
        return self.widgets.cascade(self.kernel_comms(record.kernel_id), record)

    def kernel_comms(self, kernel_id: str) -> dict[str, CommRecord]:
        """The live (open or orphaned) comms of one kernel, by id."""
        return self._live.get(kernel_id, {})

    def kernels(self) -> list[str]:
        return list(self._live)

    def live_records(self) -> list[CommRecord]:
        """Every open or orphaned record, as a list (callers may close as they go)."""
        return [r for comms in self._live.values() for r in comms.values()]

    def kernels_told_to_close(self) -> list[str]:
        """Kernels sent comm_close for some of their comms: where orphans may hide."""
        return sorted({r.kernel_id for r in self._closed if r.kernel_told})

    def records(self) -> Iterator[CommRecord]:
        """Every record: live ones, then closed history."""
        for comms in self._live.values():
            yield from comms.values()
        yield from self._closed

    def query(self, flt: CommFilter, now: float | None = None) -> list[CommRecord]:
        now = time.time() if now is None else now
        if flt.status in LIVE_STATUSES and flt.kernel_id is not None:
            candidates: Iterable[CommRecord] = self.kernel_comms(flt.kernel_id).values()
        elif flt.status in LIVE_STATUSES:
            candidates = self.live_records()
        else:
            candidates = self.records()
        if flt == CommFilter(status=flt.status) and flt.status != "left_behind":
            # the default list: no call per record
            return [r for r in candidates if flt.status in ("all", r.status)]
        return [r for r in candidates if flt.matches(r, now)]

    def __len__(self) -> int:
        return sum(len(comms) for comms in self._live.values())

    def totals(self) -> dict[str, dict[str, int]]:
        """Messages and bytes of every comm message counted since the server started."""
        tally = _Tally()
        tally.merge(self._forgotten)
        for record in self.records():
            tally.add(record)
        model = tally.to_model()
        return {"messages": model["messages"], "bytes": model["bytes"]}

    def summary(self) -> dict[str, Any]:
        """Counts of the live (open and orphaned) comms, for aggregators: no per-comm models.

        By kernel (every watched kernel, with zeros when it has no comm), by target, by
        origin, the message and byte totals of those comms, and the size of the closed history.
        `left_behind` counts the open widget models among them that are left behind.
        """
        totals = _Tally()
        by_kernel: dict[str, _Tally] = {}
        by_target: dict[str, dict[str, int]] = {}
        by_origin = dict.fromkeys(ORIGINS, 0)
        for kernel_id, comms in self._live.items():
            kernel = by_kernel[kernel_id] = _Tally()
            for record in comms.values():
                kernel.add(record)
                target = by_target.setdefault(
                    record.target_name or "", {"open": 0, "orphaned": 0, "left_behind": 0}
                )
                target[record.status] += 1
                target["left_behind"] += record.left_behind
                by_origin[record.origin] += 1
            totals.merge(kernel)
        return {
            **totals.to_model(),
            "closed": len(self._closed),
            "by_kernel": {k: tally.to_model() for k, tally in by_kernel.items()},
            "by_target": by_target,
            "by_origin": by_origin,
        }

    # -- writing ---------------------------------------------------------------------

    def add_kernel(self, kernel_id: str) -> None:
        self._live.setdefault(kernel_id, {})

    def observe(
        self,
        kernel_id: str,
        comm: CommMessage,
        direction: str,
        session_id: str | None = None,
        now: float | None = None,
    ) -> tuple[CommRecord | None, tuple[str, ...]]:
        """Count one comm message; returns its record and what it did (OPENED, CLOSED, CAPPED).

        The rules of a comm's life:
        - a `comm_open` opens a record, its origin the side that sent it;
        - a kernel talking on a comm we never saw open holds it: it predates us ("unknown");
          a frontend's message on a comm we do not know is not tracked (the kernel ignores it);
        - a `comm_open` arriving after a reconcile adopted the comm says who opened it;
        - a `comm_close` closes the record, as closed by the side that sent it; one sent to
          the kernel marks it told, so a kernel that still holds it later holds an orphan;
        - a message on a comm the mirror saw close is counted on that closed record (sent
          after close: a widget still sending on a comm closed from outside), it does not
          bring the comm back;
        - a widget's `comm_open` and its state updates keep the widget graph current.
        """
        now = time.time() if now is None else now
        if comm.skimmed:
            self.skimmed_contents += 1
        comms = self._live.get(kernel_id, _EMPTY)
        record = comms.get(comm.comm_id)
        actions: tuple[str, ...] = ()
        if record is None:
            if comm.msg_type != "comm_open":
                ghost = self._sent_after_close(kernel_id, comm, direction, now)
                if ghost is not None or direction == TO_KERNEL:
                    return ghost, ()
                origin = "unknown"
            else:
                origin = "kernel" if direction == FROM_KERNEL else "frontend"
            record = self.open(
                kernel_id,
                comm.comm_id,
                comm.target_name,
                origin,
                target_module=comm.target_module,
                session_id=session_id,
                now=now,
            )
            if record is None:
                return None, (CAPPED,)
            actions = (OPENED,)
        elif comm.msg_type == "comm_open" and record.origin == "unknown":
            record.origin = "kernel" if direction == FROM_KERNEL else "frontend"
            record.target_module = comm.target_module
        record.count(direction, comm.nbytes, now)
        if comm.content is not None:
            self._read_widget(record, comm)
        if comm.msg_type == "comm_close":
            if direction == TO_KERNEL:
                record.kernel_told = True
                reason = CLOSED_BY_FRONTEND
            else:
                reason = CLOSED_BY_KERNEL
            self.close(record, reason, now=now)
            actions = (*actions, CLOSED)
        return record, actions

    def _sent_after_close(
        self, kernel_id: str, comm: CommMessage, direction: str, now: float
    ) -> CommRecord | None:
        """Count a message on a comm the mirror saw close on its closed record, if any."""
        record = self._last_closed(comm.comm_id, kernel_id)
        if record is not None:
            record.sent_after_close += 1
            record.count(direction, comm.nbytes, now)
        return record

    def _read_widget(self, record: CommRecord, comm: CommMessage) -> None:
        """Learn a widget model from its open, and its references from its state updates
        (each reader tests the raw bytes before parsing anything)."""
        if comm.msg_type == "comm_msg":
            if record.widget is not None:
                by_key = widgets.read_update(comm.content)
                if by_key is not None:
                    self.widgets.updated(self._live[record.kernel_id], record, by_key)
        elif comm.msg_type == "comm_open" and record.widget is None:
            opened = widgets.read_open(comm.content)
            if opened is not None:
                self.widgets.opened(self._live[record.kernel_id], record, *opened)

    def open(
        self,
        kernel_id: str,
        comm_id: str,
        target_name: str | None,
        origin: str,
        *,
        target_module: str | None = None,
        session_id: str | None = None,
        opened_at: float | None = None,
        now: float | None = None,
    ) -> CommRecord | None:
        """Record a comm as open; None when the kernel is at its cap.

        A second `comm_open` for a live id keeps the first record (its counters are the
        truth so far); the caller counts the message on it.
        """
        comms = self._live.setdefault(kernel_id, {})
        record = comms.get(comm_id)
        if record is not None:
            return record
        if len(comms) >= self.max_per_kernel:
            return None
        now = time.time() if now is None else now
        record = CommRecord(
            comm_id=comm_id,
            kernel_id=kernel_id,
            target_name=target_name,
            target_module=target_module,
            origin=origin,
            session_id=session_id,
            opened_at=now if opened_at is None else opened_at,
            last_activity=now,
        )
        comms[comm_id] = record
        return record

    def close(
        self,
        record: CommRecord,
        reason: str,
        *,
        closed_by: str | None = None,
        closed_by_name: str | None = None,
        now: float | None = None,
    ) -> None:
        """Move a live record to the closed history (the oldest closed one may fall off).

        The widget models only it referenced are left behind.
        """
        now = time.time() if now is None else now
        comms = self._live.get(record.kernel_id, _EMPTY)
        comms.pop(record.comm_id, None)
        if record.widget is not None:
            self.widgets.closed(comms, record, now)
        record.status = "closed"
        record.closed_at = now
        record.close_reason = reason
        record.closed_by = closed_by
        record.closed_by_name = closed_by_name
        self.closes[reason] = self.closes.get(reason, 0) + 1
        if self._closed and len(self._closed) == self._closed.maxlen:
            self._forgotten.add(self._closed[0])
        self._closed.append(record)

    def close_kernel(self, kernel_id: str, reason: str) -> list[CommRecord]:
        """Close every live comm of a kernel (a restart: the kernel forgot them all)."""
        records = list(self._live.get(kernel_id, {}).values())
        now = time.time()
        for record in records:
            self.close(record, reason, now=now)
        return records

    def remove_kernel(self, kernel_id: str) -> list[CommRecord]:
        """Forget a kernel that is gone, its live comms and its history."""
        records = list(self._live.pop(kernel_id, {}).values())
        self.widgets.forget_kernel(kernel_id)
        for record in records:
            self._forgotten.add(record)
        if any(r.kernel_id == kernel_id for r in self._closed):
            kept = []
            for record in self._closed:
                if record.kernel_id == kernel_id:
                    self._forgotten.add(record)
                else:
                    kept.append(record)
            self._closed.clear()
            self._closed.extend(kept)
        return records

    def merge(
        self,
        kernel_id: str,
        reported: dict[str, dict[str, Any]],
        asked_at: float,
        orphan_before: float | None,
    ) -> tuple[list[CommRecord], list[CommRecord]]:
        """Fold a kernel's `comm_info_reply` in; returns (opened, closed) records.

        `asked_at` is when the kernel was asked; `orphan_before`, for a kernel idle when it
        answered, the latest close it must have read by then (None for a busy kernel: its
        shell queue may still hold any close).
        """
        live = self._live.setdefault(kernel_id, {})
        unseen = [comm_id for comm_id in reported if comm_id not in live]
        opened = self._merge_reported(kernel_id, unseen, reported, asked_at, orphan_before)
        return opened, self._merge_gone(live, reported, asked_at)

    def _merge_reported(
        self,
        kernel_id: str,
        unseen: list[str],
        reported: dict[str, dict[str, Any]],
        asked_at: float,
        orphan_before: float | None,
    ) -> list[CommRecord]:
        """Comms the kernel holds that are not live here.

        Each is adopted (origin as the kernel says, if it says, else "unknown"), unless it
        closed since we asked (the reply is older than the close), or the kernel was told
        to close it: then it becomes an orphan once the kernel, idle since `orphan_before`,
        still holds it (every frontend thinks it gone), and is left alone before that (the
        close may sit unread in the shell queue).
        """
        if not unseen:
            return []
        live = self._live[kernel_id]
        # the latest closed record of each comm of this kernel (the history is bounded)
        was_closed = {r.comm_id: r for r in self._closed if r.kernel_id == kernel_id}
        opened: list[CommRecord] = []
        for comm_id in unseen:
            record = was_closed.get(comm_id)
            if record is None:
                adopted = self._adopt(kernel_id, comm_id, reported[comm_id])
                if adopted is not None:
                    opened.append(adopted)
            elif (record.closed_at or 0.0) >= asked_at or not record.kernel_told:
                continue
            elif orphan_before is not None and (record.closed_at or 0.0) <= orphan_before:
                self._closed.remove(record)
                record.status = "orphaned"
                live[comm_id] = record
        return opened

    def _merge_gone(
        self, live: dict[str, CommRecord], reported: dict[str, dict[str, Any]], asked_at: float
    ) -> list[CommRecord]:
        """Live comms the kernel no longer holds: closed, unless they opened after we asked
        or a frontend opened them (its comm_open may still sit unread in the shell queue)."""
        closed: list[CommRecord] = []
        for record in list(live.values()):
            if record.comm_id in reported or record.opened_at >= asked_at:
                continue
            if record.status == "orphaned":
                self.close(record, CLOSED_BY_FRONTEND, now=asked_at)
            elif record.origin != "frontend":
                self.close(record, CLOSED_BY_KERNEL, now=asked_at)
            else:
                continue
            closed.append(record)
        return closed

    def _adopt(self, kernel_id: str, comm_id: str, info: dict[str, Any]) -> CommRecord | None:
        """Track a comm first heard of from the kernel itself."""
        origin = info.get("origin")
        target_module = info.get("target_module")
        opened_at = parse_isoformat(info.get("opened_at"))
        record = self.open(
            kernel_id,
            comm_id,
            info.get("target_name") if isinstance(info.get("target_name"), str) else None,
            origin if origin in ("kernel", "frontend") else "unknown",
            target_module=target_module if isinstance(target_module, str) else None,
            opened_at=opened_at,
        )
        if record is not None:
            last_activity = parse_isoformat(info.get("last_activity"))
            if last_activity is not None:
                record.last_activity = last_activity
            messages = info.get("messages")
            if isinstance(messages, dict):
                to_kernel, from_kernel = messages.get(TO_KERNEL), messages.get(FROM_KERNEL)
                if isinstance(to_kernel, int) and isinstance(from_kernel, int):
                    record.messages_to_kernel = to_kernel
                    record.messages_from_kernel = from_kernel
        return record

"""Widget models among the comms: what each one is, what it references, what is left behind.

A Jupyter widget is a comm whose `comm_open` carries the model's state (`data.state`, with
`_model_name`): ipywidgets 7 and 8, and every library built on its protocol (bqplot,
ipyleaflet, anywidget).  A model references another by an ``"IPY_MODEL_<comm id>"`` string
anywhere in its state (a slider's `layout` and `style`, a box's `children`), and the
references change with `update` and `echo_update` messages.

Closing a widget closes its own comm only: the models it referenced stay open in the kernel
and in every frontend, and nothing refers to them any more.  This module keeps, per kernel,
the graph of references between open models and decides which are *left behind* (the last
open widget that referenced them closed) and which a close of one widget may take with it
(the cascade).  Pure: no I/O, and nothing of the state is kept but model names and reference
ids (state values are user data).

Reading references must not slow the relay down: the raw content is tested for a marker
(`_model_name`, `IPY_MODEL_`) before any JSON is parsed, so a slider's `update {value: n}`
costs a substring search.
"""

from __future__ import annotations

import re
import sys
from collections import deque
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from .registry import CommRecord

#: the prefix of a widget reference in a model's state
REFERENCE = "IPY_MODEL_"
_REFERENCE_LEN = len(REFERENCE)
#: the `comm_msg` methods that carry state (the kernel's, and its echo of a frontend's)
STATE_METHODS = frozenset({"update", "echo_update"})
#: the most ids one model's references may hold: a bound on the memory a kernel can make
#: the server spend on one comm (a box with more children keeps the first ones)
MAX_REFERENCES = 1000
#: memoryviews have no substring test; a compiled literal search reads them without a copy
_HAS_STATE = re.compile(b"_model_name").search
_HAS_REFERENCE = re.compile(REFERENCE.encode()).search


def _holds(content: Any, marker: bytes, search: Any) -> bool:
    """Whether the raw content part may hold `marker` (a parsed dict: read it anyway)."""
    if content.__class__ is bytes:
        return marker in content
    if isinstance(content, (memoryview, bytearray)):
        return search(content) is not None
    return isinstance(content, dict)


def _data(content: Any) -> dict[str, Any] | None:
    """The `data` of a comm message's content, parsed if it came as JSON bytes."""
    if not isinstance(content, dict):
        try:
            content = orjson.loads(content)
        except (orjson.JSONDecodeError, TypeError):
            return None
        if not isinstance(content, dict):
            return None
    data = content.get("data")
    return data if isinstance(data, dict) else None


class WidgetInfo:
    """What the mirror keeps of one widget model: names and reference ids, no values.

    Slotted and shared where it can be (names interned, reference ids the target's own
    comm id string), so a widget adds a few hundred bytes to its comm's record.
    """

    __slots__ = (
        "left_behind",
        "left_behind_at",
        "model_module",
        "model_module_version",
        "model_name",
        "referrers",
        "refs",
    )

    def __init__(
        self, model_name: str, model_module: str | None, model_module_version: str | None
    ) -> None:
        self.model_name = model_name
        self.model_module = model_module
        self.model_module_version = model_module_version
        #: the references held, flat: (key, comm_id, key, comm_id, ...)
        self.refs: tuple[str, ...] = ()
        #: ids of the open widgets that reference this model
        self.referrers: list[str] = []
        #: the last open widget that referenced this model closed, and when
        self.left_behind = False
        self.left_behind_at = 0.0

    def targets(self) -> set[str]:
        """The ids this model references."""
        return set(self.refs[1::2])

    def to_model(self) -> dict[str, Any]:
        """The `widget` object of the REST model (`Widget` in rest-api.yml)."""
        refs = self.refs
        return {
            "model_name": self.model_name,
            "model_module": self.model_module,
            "model_module_version": self.model_module_version,
            "references": [
                {"key": refs[i], "comm_id": refs[i + 1]} for i in range(0, len(refs), 2)
            ],
            "referenced_by": sorted(self.referrers),
            "left_behind": self.left_behind,
        }


def _name(value: Any) -> str | None:
    return sys.intern(value[:200]) if isinstance(value, str) else None


def read_open(content: Any) -> tuple[WidgetInfo, list[tuple[str, str]]] | None:
    """The widget model a `comm_open` opens and its references, or None if not a widget."""
    if not _holds(content, b"_model_name", _HAS_STATE):
        return None
    data = _data(content)
    state = data.get("state") if data is not None else None
    if not isinstance(state, dict):
        return None
    name = _name(state.get("_model_name"))
    if name is None:
        return None
    info = WidgetInfo(
        name, _name(state.get("_model_module")), _name(state.get("_model_module_version"))
    )
    return info, list(references(state))


def read_update(content: Any) -> dict[str, list[tuple[str, str]]] | None:
    """The references of each state key a `comm_msg` sets, or None if it cannot change any.

    Only keys that are present change: an update sends the keys that changed, so a key it
    leaves out keeps its references.
    """
    if not _holds(content, REFERENCE.encode(), _HAS_REFERENCE):
        return None
    data = _data(content)
    if data is None or data.get("method") not in STATE_METHODS:
        return None
    state = data.get("state")
    if not isinstance(state, dict):
        return None
    found: dict[str, list[tuple[str, str]]] = {key: [] for key in state}
    for key, comm_id in references(state):
        found[key].append((key, comm_id))
    return found


def references(state: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """Every ``IPY_MODEL_<id>`` string in a state, with the top-level key it sits under."""
    for key, value in state.items():
        if not isinstance(key, str):
            continue
        stack = [value]
        while stack:
            item = stack.pop()
            if item.__class__ is str:
                if item.startswith(REFERENCE) and len(item) > _REFERENCE_LEN:
                    yield sys.intern(key), item[_REFERENCE_LEN:]
            elif isinstance(item, list):
                stack.extend(reversed(item))
            elif isinstance(item, dict):
                stack.extend(reversed(list(item.values())))


class WidgetGraph:
    """The references between the live widget models of every kernel.

    The registry calls it as comms open, update and close; it keeps each model's referrers
    and its `left_behind` flag current.  A reference to a comm that is not (or not yet) a
    known widget waits in `_dangling` until that comm opens as one.
    """

    def __init__(self) -> None:
        #: kernel id -> target comm id -> ids of open widgets that reference it
        self._dangling: dict[str, dict[str, list[str]]] = {}

    def opened(
        self,
        comms: Mapping[str, CommRecord],
        record: CommRecord,
        info: WidgetInfo,
        refs: list[tuple[str, str]],
    ) -> None:
        """A widget model opened with these references."""
        dangling = self._dangling.get(record.kernel_id)
        if dangling:
            info.referrers = dangling.pop(record.comm_id, [])
        record.widget = info
        self._set_refs(comms, record, info, refs)

    def updated(
        self,
        comms: Mapping[str, CommRecord],
        record: CommRecord,
        by_key: dict[str, list[tuple[str, str]]],
    ) -> None:
        """An update set these keys: their references replace the ones they had.

        A reference an update drops does not leave its target behind: the referrer is open
        and the Python side may still hold the target.
        """
        info = record.widget
        if info is None or record.status != "open":
            return
        refs = info.refs
        kept = [(refs[i], refs[i + 1]) for i in range(0, len(refs), 2) if refs[i] not in by_key]
        for found in by_key.values():
            kept.extend(found)
        self._set_refs(comms, record, info, kept)

    def closed(self, comms: Mapping[str, CommRecord], record: CommRecord, now: float) -> None:
        """A comm left the live set (at `now`): the models only it referenced are left behind."""
        info = record.widget
        if info is None:
            return
        if info.left_behind:
            info.left_behind = False
            record.changed()
        self._set_refs(comms, record, info, [], closing=now, keep=True)

    def forget_kernel(self, kernel_id: str) -> None:
        self._dangling.pop(kernel_id, None)

    def cascade(self, comms: Mapping[str, CommRecord], record: CommRecord) -> list[CommRecord]:
        """`record` and every open model only it references, transitively (root first).

        A model shared with a widget outside the set stays: closing a box closes its
        children, their layouts and styles, not a layout another slider still uses.
        """
        closing = {record.comm_id: record}
        queue = deque([record])
        while queue:
            member = queue.popleft()
            if member.widget is None:
                continue
            for target_id in member.widget.refs[1::2]:
                target = comms.get(target_id)
                if (
                    target is None
                    or target.comm_id in closing
                    or target.widget is None
                    or target.status != "open"
                    or not all(r in closing for r in target.widget.referrers)
                ):
                    continue
                closing[target.comm_id] = target
                queue.append(target)
        return list(closing.values())

    def _set_refs(
        self,
        comms: Mapping[str, CommRecord],
        record: CommRecord,
        info: WidgetInfo,
        refs: list[tuple[str, str]],
        *,
        closing: float | None = None,
        keep: bool = False,
    ) -> None:
        """Make `refs` the references of `record`, linking and unlinking their targets.

        `closing`: when the referrer left the live set, so a target it was the last open
        referrer of is left behind (from then on).  `keep`: keep `info.refs` as they were (a
        closed record shows what it referenced).
        """
        refs = refs[:MAX_REFERENCES]
        old = set(info.refs[1::2])
        new = {comm_id for _, comm_id in refs}
        referrer = record.comm_id
        canonical: dict[str, str] = {}
        for target_id in new - old:
            canonical[target_id] = self._link(comms, record.kernel_id, referrer, target_id)
        for target_id in old - new:
            self._unlink(comms, record.kernel_id, referrer, target_id, closing)
        if not keep:
            flat: list[str] = []
            for key, comm_id in refs:
                flat += (key, canonical.get(comm_id) or _same(comms, comm_id))
            info.refs = tuple(flat)
        record.changed()

    def _link(
        self, comms: Mapping[str, CommRecord], kernel_id: str, referrer: str, target_id: str
    ) -> str:
        target = comms.get(target_id)
        if target is None or target.widget is None:
            self._dangling.setdefault(kernel_id, {}).setdefault(target_id, []).append(referrer)
            return target_id
        target.widget.referrers.append(referrer)
        if target.widget.left_behind:
            target.widget.left_behind = False
        target.changed()
        return target.comm_id

    def _unlink(
        self,
        comms: Mapping[str, CommRecord],
        kernel_id: str,
        referrer: str,
        target_id: str,
        closing: float | None,
    ) -> None:
        target = comms.get(target_id)
        if target is None or target.widget is None:
            waiting = self._dangling.get(kernel_id, {}).get(target_id)
            if waiting is not None and referrer in waiting:
                waiting.remove(referrer)
                if not waiting:
                    del self._dangling[kernel_id][target_id]
            return
        referrers = target.widget.referrers
        if referrer not in referrers:  # an orphan's references went when it first closed
            return
        referrers.remove(referrer)
        if closing is not None and not referrers and target.status == "open":
            target.widget.left_behind = True
            target.widget.left_behind_at = closing
        target.changed()


def _same(comms: Mapping[str, CommRecord], comm_id: str) -> str:
    """The live record's own id string for `comm_id`, so references share it."""
    target = comms.get(comm_id)
    return comm_id if target is None else target.comm_id

"""Which comm messages are user activity: the side they came from decides.

jupyter_server moves a kernel's `last_activity` (which its idle culler reads) and the
server's `last_kernel_activity` (which `/api/status` and JupyterHub's single-user server
report) on the messages its per-kernel activity stream reads from the kernel's IOPub. A comm
message counts there whoever caused it, so a widget the kernel updates on its own (a clock,
a progress poll: a thread, a timer, an asyncio task) keeps an abandoned kernel, and its
server, alive forever. Message types cannot tell the two apart: a thread's comm messages
carry as parent whatever the kernel handled last, a user's slider move as readily as the
timer cell.

What can: a frontend's comm message is answered by the kernel between a `busy` and an `idle`
status whose parent it is. So a comm message from the kernel is user activity while the
frontend message it names as parent is being handled, and the kernel's own otherwise. Every
message still reaches jupyter_server's `record_activity` (execution state, busy and idle,
stays its business); for the ones that are not activity, the two timestamps it moved are put
back. Answers to the server's own comm requests (an admin's force-close, asking a kernel
which comms it holds) are not activity either.

Reading is a byte search on the header and parent frames (and on a status's few content
bytes): no JSON is parsed. Kernels behind a gateway have no activity stream here: their
`last_activity` is the gateway's, which decides on its own.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from jupyter_client.session import DELIM
from traitlets import Bool, Instance
from traitlets.config import LoggingConfigurable

from .registry import isoformat

COMM_TYPES = frozenset({b"comm_open", b"comm_msg", b"comm_close"})
_MSG_TYPE = re.compile(rb'"msg_type"\s*:\s*"([^"]*)"')
_MSG_ID = re.compile(rb'"msg_id"\s*:\s*"([^"]*)"')
#: frontend messages a kernel may be handling at once (subshells); past it, the oldest go
MAX_IN_FLIGHT = 256


def _field(pattern: re.Pattern[bytes], frame: bytes) -> bytes | None:
    match = pattern.search(frame)
    return match.group(1) if match else None


@dataclass(slots=True)
class CommTimes:
    """When a kernel's comms last moved, by side (epoch seconds, None if never)."""

    #: a frontend sent a comm message (a user touched a widget)
    user: float | None = None
    #: the kernel sent a comm message on its own (not in answer to a frontend's)
    kernel: float | None = None

    def model(self) -> dict[str, str | None]:
        return {"user": isoformat(self.user), "kernel": isoformat(self.kernel)}


class ActivityFilter:
    """Stands in for jupyter_server's `record_activity` on one kernel's activity stream."""

    def __init__(self, record: Any, kernel: Any, kernel_manager: Any, times: CommTimes) -> None:
        self.record = record
        self.kernel = kernel
        self.kernel_manager = kernel_manager
        self.times = times
        #: the server's own Session id: it signs the `comm_close` of a force-close
        self.own_session = str(kernel.session.session).encode()
        #: msg_ids of the frontend comm messages the kernel is handling (busy, not yet idle)
        self.in_flight: dict[bytes, None] = {}

    def __call__(self, msg_list: list[bytes]) -> None:
        try:
            activity = self.is_activity(msg_list)
        except Exception:  # not a message we can read: jupyter_server decides, as without us
            activity = True
        if activity:
            self.record(msg_list)
            return
        kernel, km = self.kernel, self.kernel_manager
        before = kernel.last_activity, km.last_kernel_activity
        self.record(msg_list)
        if kernel.last_activity is not before[0]:
            kernel.last_activity = before[0]
        if km.last_kernel_activity is not before[1]:
            km.last_kernel_activity = before[1]

    def is_activity(self, msg_list: list[bytes]) -> bool:
        """False for the kernel's own comm messages and answers to the server's requests;
        True for everything else (which jupyter_server then judges as it always does)."""
        start = msg_list.index(DELIM)
        header, parent = msg_list[start + 2], msg_list[start + 3]
        parent_type = _field(_MSG_TYPE, parent)
        if parent_type == b"comm_info_request" or (
            parent_type == b"comm_close" and self.own_session in parent
        ):
            return False
        msg_type = _field(_MSG_TYPE, header)
        if msg_type == b"status":
            if parent_type in COMM_TYPES:
                self.track(_field(_MSG_ID, parent), msg_list[start + 5])
            return True
        if msg_type not in COMM_TYPES:
            return True
        if parent_type in COMM_TYPES and _field(_MSG_ID, parent) in self.in_flight:
            return True  # the kernel's answer to a frontend (a widget's echo_update)
        self.times.kernel = time.time()
        return False

    def track(self, msg_id: bytes | None, content: bytes) -> None:
        """Follow a frontend comm message from the kernel's `busy` to its `idle`."""
        if msg_id is None:
            return
        if b'"busy"' in content:
            self.in_flight[msg_id] = None
            if len(self.in_flight) > MAX_IN_FLIGHT:  # an idle lost with a restart
                del self.in_flight[next(iter(self.in_flight))]
        elif b'"idle"' in content:
            self.in_flight.pop(msg_id, None)


class CommActivity(LoggingConfigurable):
    """Makes jupyter_server count comm messages by the side they came from."""

    origin_aware = Bool(
        True,
        config=True,
        help="""Count a kernel's comm messages as user activity only when they answer a
        frontend's: a user moving a widget keeps the kernel (and the server) from idle
        culling, a widget the kernel updates on its own (a timer, a thread, an asyncio
        task) does not, so jupyter_server's and JupyterHub's cullers can stop an abandoned
        kernel or server. Answers to an admin's force-close, or to the server asking a
        kernel for its comms, never count. False counts every comm message the kernel
        sends as jupyter_server does by default: a kernel that updates a widget on its own
        is then never idle.""",
    )

    kernel_manager = Instance("jupyter_server.services.kernels.kernelmanager.MappingKernelManager")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.times: dict[str, CommTimes] = {}
        self._installed = False

    def install(self) -> None:
        """Filter the activity stream of every kernel, now and whenever one (re)starts."""
        if not self.origin_aware or self._installed:
            return
        km = self.kernel_manager
        start_watching = km.start_watching_activity

        def start_watching_activity(kernel_id: str) -> None:
            start_watching(kernel_id)
            self.filter(kernel_id)

        # On the instance: jupyter_server calls it on itself after a start and a restart.
        km.start_watching_activity = start_watching_activity
        self._installed = True
        for kernel_id in km.list_kernel_ids():
            self.filter(kernel_id)

    def uninstall(self) -> None:
        if self._installed:
            del self.kernel_manager.start_watching_activity
            self._installed = False

    def filter(self, kernel_id: str) -> None:
        """Put an `ActivityFilter` in front of the kernel's activity stream, if it has one
        (a gateway's kernels do not)."""
        try:
            kernel = self.kernel_manager.get_kernel(kernel_id)
        except KeyError:
            return
        stream: Any = getattr(kernel, "_activity_stream", None)
        record = getattr(stream, "_recv_callback", None)
        if record is None or isinstance(record, ActivityFilter):
            return
        stream.on_recv(
            ActivityFilter(record, kernel, self.kernel_manager, self.of(kernel_id)),
            copy=getattr(stream, "_recv_copy", True),
        )

    def of(self, kernel_id: str) -> CommTimes:
        times = self.times.get(kernel_id)
        if times is None:
            times = self.times[kernel_id] = CommTimes()
        return times

    def user_touched(self, kernel_id: str) -> None:
        """A frontend sent the kernel a comm message (seen by the tap, remote kernels too)."""
        self.of(kernel_id).user = time.time()

    def model(self, kernel_id: str) -> dict[str, str | None]:
        return self.times.get(kernel_id, CommTimes()).model()

    def annotate(self, by_kernel: dict[str, dict[str, Any]]) -> None:
        """Add `comm_activity` to each kernel's entry of a summary."""
        for kernel_id, tally in by_kernel.items():
            tally["comm_activity"] = self.model(kernel_id)

    def forget(self, kernel_id: str) -> None:
        self.times.pop(kernel_id, None)

"""Closing stale comms on a schedule, configured like jupyter_server's kernel culler."""

from __future__ import annotations

import time
from typing import Any

from tornado.ioloop import PeriodicCallback
from traitlets import Bool, Instance, Int, List, Unicode, validate
from traitlets.config import LoggingConfigurable

from .mirror import CommMirror
from .registry import CULLED, CommRecord


class CommCuller(LoggingConfigurable):
    """Force-closes comms idle for too long, and comms every frontend has let go of."""

    cull_idle_timeout = Int(
        0,
        config=True,
        help="""Close comms with no message in either direction for this many seconds.
        0 (the default) culls no comm for being idle.""",
    )

    cull_interval_default = 300

    cull_interval = Int(
        cull_interval_default,
        config=True,
        help="""Seconds between two passes of the culler. A value of 0 or less would stop
        the culler from ever running: it is replaced by the default, with a warning.""",
    )

    @validate("cull_interval")
    def _valid_interval(self, proposal: dict[str, Any]) -> int:
        value: int = proposal["value"]
        if value <= 0:
            self.log.warning(
                "Invalid value for 'cull_interval' detected (%s) - using default value (%s).",
                value,
                self.cull_interval_default,
            )
            return self.cull_interval_default
        return value

    cull_connected = Bool(
        False,
        config=True,
        help="""Also cull idle comms of kernels that have a frontend connected. Off by
        default: a widget on an open page may be idle and still wanted.""",
    )

    cull_targets = List(
        Unicode(),
        config=True,
        help="Only cull comms with these target names (empty: every target).",
    )

    cull_exclude_targets = List(
        Unicode(),
        default_value=["jupyter.widget.control"],
        config=True,
        help="Never cull comms with these target names.",
    )

    cull_orphaned = Bool(
        True,
        config=True,
        help="""Finish closing orphans: comms a frontend closed that the kernel still holds
        (a close lost on a kernel subshell, say). Each pass asks the kernels that had comms
        closed by a frontend which comms they still hold.""",
    )

    cull_left_behind_after = Int(
        600,
        config=True,
        help="""Finish widget models left behind (open models that the last open widget
        referencing them let go of: a closed slider's layout and style, a closed box's
        children) once they have been left behind, with no message, for this many seconds.
        The delay is there because a model may be used again soon after its parent closed
        (a child put into a new box), which takes it out of the left-behind set. 0 turns
        this off.""",
    )

    mirror = Instance(CommMirror)

    _callback: PeriodicCallback | None = None

    @property
    def enabled(self) -> bool:
        return self.cull_idle_timeout > 0 or self.cull_orphaned or self.cull_left_behind_after > 0

    def start(self) -> None:
        if not self.enabled or self._callback is not None:
            return
        self.log.info(
            "Culling comms idle for %ss (0: never), orphaned comms (%s) and widget models "
            "left behind for %ss (0: never), every %ss",
            self.cull_idle_timeout,
            self.cull_orphaned,
            self.cull_left_behind_after,
            self.cull_interval,
        )
        self._callback = PeriodicCallback(self.cull, 1000 * self.cull_interval)
        self._callback.start()

    def stop(self) -> None:
        if self._callback is not None:
            self._callback.stop()
            self._callback = None

    async def cull(self) -> list[CommRecord]:
        """One pass; returns the comms it closed.

        A comm that cannot be closed is logged and the pass goes on with the others.
        """
        mirror = self.mirror
        mirror.sync_kernels()
        if self.cull_orphaned:
            kernels = mirror.registry.kernels_told_to_close()
            if kernels:
                await mirror.refresh(kernels)
        now = time.time()
        candidates = [r for r in mirror.registry.live_records() if self.should_cull(r, now)]
        culled = []
        for record in candidates:
            if record.status == "closed":
                continue
            try:
                closed = await mirror.force_close(record, reason=CULLED)
            except Exception:
                self.log.exception(
                    "Could not cull comm %s of kernel %s", record.comm_id, record.kernel_id
                )
                continue
            if closed:
                self.log.info(
                    "Culled comm %s (%s) of kernel %s",
                    record.comm_id,
                    record.target_name,
                    record.kernel_id,
                )
                culled.append(record)
        return culled

    def should_cull(self, record: CommRecord, now: float) -> bool:
        if record.status == "orphaned":
            return self.cull_orphaned
        if self.left_behind_long_enough(record, now):
            return True
        if self.cull_idle_timeout <= 0 or record.idle_seconds(now) < self.cull_idle_timeout:
            return False
        if record.target_name in self.cull_exclude_targets:
            return False
        if self.cull_targets and record.target_name not in self.cull_targets:
            return False
        return self.cull_connected or not self.mirror.connections.get(record.kernel_id)

    def left_behind_long_enough(self, record: CommRecord, now: float) -> bool:
        """Left behind, and neither a message nor a new referrer for `cull_left_behind_after`."""
        after = self.cull_left_behind_after
        if after <= 0 or not record.left_behind or record.widget is None:
            return False
        return now - max(record.last_activity, record.widget.left_behind_at) >= after

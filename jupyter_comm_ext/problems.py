"""A log for problems that can repeat without end: malformed frames, unreadable messages.

One client sending garbage in a loop must not flood the server log, and must not hide
what went wrong either: the first problem of each kind is logged with its traceback, later
ones at most once per interval with a count of those suppressed meanwhile.
"""

from __future__ import annotations

import logging
import time
from typing import Any


class RateLimitedLog:
    """Log a kind of problem at most once per `interval` seconds per subject, counting the rest.

    A kind is what went wrong ("refused", "iopub"), a subject where (a kernel id): the same
    kind on another kernel is news, the same kind on the same kernel within the interval is not.
    """

    def __init__(
        self, log: logging.Logger | logging.LoggerAdapter[Any], interval: float = 10.0
    ) -> None:
        self.log = log
        self.interval = interval
        self._last: dict[tuple[str, str], float] = {}
        self._suppressed: dict[tuple[str, str], int] = {}
        self._traced: set[str] = set()

    def warning(
        self, kind: str, subject: str, msg: str, *args: object, exc: BaseException | None = None
    ) -> None:
        """Log `msg % args`, unless the same kind and subject was logged within the interval.

        `exc`, when given, is logged with its traceback the first time its kind is logged
        (afterwards its message is part of `msg`, as the caller formats it).
        """
        key = (kind, subject)
        now = time.monotonic()
        if now - self._last.get(key, -self.interval) < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        suppressed = self._suppressed.pop(key, 0)
        self._last[key] = now
        if suppressed:
            msg += f" ({suppressed} similar messages suppressed)"
        exc_info = None
        if exc is not None and kind not in self._traced:
            self._traced.add(kind)
            exc_info = exc
        self.log.warning(msg, *args, exc_info=exc_info)

    def forget(self, subject: str) -> None:
        """Drop what is remembered of a subject (a kernel that is gone)."""
        for key in [k for k in self._last if k[1] == subject]:
            self._last.pop(key, None)
            self._suppressed.pop(key, None)

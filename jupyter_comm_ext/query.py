"""The query filters of the comm routes, and their checks.

One parser for every place that takes them: the single-user server's `GET/DELETE
/api/comms` and the JupyterHub service, which forwards them to each server. It imports
nothing of jupyter_server or tornado, so the service and the command line can use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Protocol

#: `left_behind`: open widget models the last open widget that referenced them let go of
STATUSES = ("open", "closed", "orphaned", "left_behind", "all")
ORIGINS = ("kernel", "frontend", "unknown")
#: the query arguments that filter comms
FILTERS = ("kernel_id", "target_name", "origin", "min_idle", "status")
#: the filters that, alone, are narrow enough for a bulk close (see `CommFilter.is_empty`)
NARROW_STATUSES = ("orphaned", "left_behind")
#: the statuses whose comms a bulk close may close (left-behind models are open comms)
CLOSABLE_STATUSES = ("open", "orphaned")


class BadQuery(ValueError):
    """A filter with a value the API does not take; its message is the 400's."""


class Filterable(Protocol):
    """What a filter reads of a comm (`registry.CommRecord` has it)."""

    kernel_id: str
    target_name: str | None
    origin: str
    status: str
    last_activity: float

    @property
    def left_behind(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class CommFilter:
    """The query filters of `GET /api/comms`, already validated."""

    kernel_id: str | None = None
    target_name: str | None = None
    origin: str | None = None
    min_idle: float | None = None
    status: str = "open"

    @classmethod
    def from_arguments(cls, args: Mapping[str, str | None]) -> CommFilter:
        """Check the filters among a request's query arguments (absent ones are None).

        Raises `BadQuery` naming the argument and what it takes. `status=` (empty) is not
        "the default": it is a value outside the enum.
        """
        status = args.get("status")
        status = "open" if status is None else status
        if status not in STATUSES:
            raise BadQuery(f"status must be one of {', '.join(STATUSES)}")
        origin = args.get("origin")
        if origin is not None and origin not in ORIGINS:
            raise BadQuery(f"origin must be one of {', '.join(ORIGINS)}")
        min_idle = args.get("min_idle")
        return cls(
            kernel_id=args.get("kernel_id"),
            target_name=args.get("target_name"),
            origin=origin,
            min_idle=None if min_idle is None else _seconds("min_idle", min_idle),
            status=status,
        )

    def to_arguments(self) -> dict[str, str]:
        """The query arguments that make this filter (the defaults left out)."""
        args = {k: v for k, v in asdict(self).items() if v is not None}
        if self.min_idle is not None:
            args["min_idle"] = repr(self.min_idle)
        if self.status == "open":
            del args["status"]
        return args

    @property
    def is_empty(self) -> bool:
        """True when nothing narrows the match down (`status=orphaned` and
        `status=left_behind` do: every frontend already let go of orphans, and no open widget
        refers to a left-behind model)."""
        return (
            self.kernel_id is None
            and self.target_name is None
            and self.origin is None
            and self.min_idle is None
            and self.status not in NARROW_STATUSES
        )

    def check_closable(self) -> None:
        """A bulk close needs a filter and open (or orphaned) comms: never all by accident."""
        if self.is_empty:
            raise BadQuery(
                "closing comms in bulk needs at least one filter (or status="
                + " or status=".join(NARROW_STATUSES)
                + ")"
            )
        if self.status not in CLOSABLE_STATUSES and self.status != "left_behind":
            raise BadQuery(f"only {' or '.join(CLOSABLE_STATUSES)} comms can be closed")

    def matches(self, record: Filterable, now: float) -> bool:
        if self.status == "left_behind":
            if not record.left_behind:
                return False
        elif self.status != "all" and record.status != self.status:
            return False
        if self.kernel_id is not None and record.kernel_id != self.kernel_id:
            return False
        if self.target_name is not None and record.target_name != self.target_name:
            return False
        if self.origin is not None and record.origin != self.origin:
            return False
        return self.min_idle is None or now - record.last_activity >= self.min_idle


def _seconds(name: str, value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise BadQuery(f"{name} must be a number of seconds >= 0")
    return seconds

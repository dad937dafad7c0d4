"""Folding a kernel's comm_info_reply into the registry: the reply is a snapshot taken when
the kernel was asked, and closes may have happened since, or may not have reached the kernel.
(The kernels and servers of the other tests race; here the times are given.)"""

from __future__ import annotations

import pytest

from jupyter_comm_ext.registry import (
    CLOSED_BY_FRONTEND,
    CLOSED_BY_KERNEL,
    FORCE_CLOSED,
    CommRecord,
    CommRegistry,
)

KERNEL = "k1"
REPORTED = {"c1": {"target_name": "t"}}


def registry_with_closed(reason: str, closed_at: float, kernel_told: bool) -> CommRegistry:
    """One comm `c1`, opened at t=0 by a frontend and closed at `closed_at`."""
    registry = CommRegistry(max_per_kernel=10, max_closed=10)
    registry.add_kernel(KERNEL)
    record = registry.open(KERNEL, "c1", "t", "frontend", now=0.0)
    assert record is not None
    record.kernel_told = kernel_told
    registry.close(record, reason, now=closed_at)
    return registry


def live(registry: CommRegistry) -> dict[str, CommRecord]:
    return registry.kernel_comms(KERNEL)


@pytest.mark.parametrize(
    ("reason", "kernel_told"),
    [(CLOSED_BY_FRONTEND, True), (FORCE_CLOSED, True), (CLOSED_BY_KERNEL, False)],
)
def test_a_reply_older_than_the_close_does_not_reopen_the_comm(reason, kernel_told):
    registry = registry_with_closed(reason, closed_at=10.0, kernel_told=kernel_told)
    opened, closed = registry.merge(KERNEL, REPORTED, asked_at=9.0, orphan_before=None)
    assert (opened, closed, live(registry)) == ([], [], {})
    assert registry.get("c1").status == "closed"


@pytest.mark.parametrize("reason", [CLOSED_BY_FRONTEND, FORCE_CLOSED])
def test_a_close_the_kernel_may_not_have_read_yet_is_left_alone(reason):
    # asked after the close, but the kernel is busy (no orphan_before) or within the grace
    registry = registry_with_closed(reason, closed_at=10.0, kernel_told=True)
    assert registry.merge(KERNEL, REPORTED, asked_at=11.0, orphan_before=None) == ([], [])
    assert registry.merge(KERNEL, REPORTED, asked_at=11.0, orphan_before=9.0) == ([], [])
    assert live(registry) == {}


@pytest.mark.parametrize("reason", [CLOSED_BY_FRONTEND, FORCE_CLOSED])
def test_a_close_the_idle_kernel_ignored_makes_an_orphan(reason):
    registry = registry_with_closed(reason, closed_at=10.0, kernel_told=True)
    registry.merge(KERNEL, REPORTED, asked_at=20.0, orphan_before=18.0)
    assert live(registry)["c1"].status == "orphaned"


def test_a_comm_the_mirror_never_saw_is_adopted():
    registry = CommRegistry(max_per_kernel=10, max_closed=10)
    registry.add_kernel(KERNEL)
    opened, _ = registry.merge(KERNEL, REPORTED, asked_at=5.0, orphan_before=None)
    assert [(r.comm_id, r.origin, r.status) for r in opened] == [("c1", "unknown", "open")]

"""The rules of a comm's life, as the registry applies them to comm messages: no server,
no kernel, the messages and times given (`CommRegistry.observe`, `summary`, `page`)."""

from __future__ import annotations

from jupyter_comm_ext.protocol import CommMessage
from jupyter_comm_ext.query import CommFilter
from jupyter_comm_ext.registry import (
    CAPPED,
    CLOSED,
    CLOSED_BY_FRONTEND,
    CLOSED_BY_KERNEL,
    FROM_KERNEL,
    OPENED,
    TO_KERNEL,
    CommRegistry,
    page,
)

K = "k1"


def msg(msg_type: str, comm_id: str = "c1", target: str | None = "t", nbytes: int = 10):
    return CommMessage(msg_type, comm_id, nbytes, target_name=target)


def test_an_open_is_recorded_with_the_side_that_sent_it():
    registry = CommRegistry()
    record, actions = registry.observe(K, msg("comm_open"), FROM_KERNEL, now=1.0)
    assert actions == (OPENED,) and record.origin == "kernel" and record.opened_at == 1.0
    record, actions = registry.observe(K, msg("comm_open", "c2"), TO_KERNEL, "ws1", now=2.0)
    assert actions == (OPENED,) and (record.origin, record.session_id) == ("frontend", "ws1")
    assert (record.messages_to_kernel, record.bytes_to_kernel) == (1, 10)


def test_a_kernel_talking_on_an_unseen_comm_holds_one_that_predates_us():
    registry = CommRegistry()
    record, actions = registry.observe(K, msg("comm_msg", target=None), FROM_KERNEL, now=1.0)
    assert actions == (OPENED,) and record.origin == "unknown"
    # and its comm_open, arriving late, says who opened it
    record, actions = registry.observe(K, msg("comm_open", target="t"), FROM_KERNEL, now=2.0)
    assert actions == () and record.origin == "kernel"
    assert record.messages_from_kernel == 2


def test_a_frontend_message_on_an_unknown_comm_is_not_tracked():
    registry = CommRegistry()
    assert registry.observe(K, msg("comm_msg"), TO_KERNEL, "ws1") == (None, ())
    assert registry.observe(K, msg("comm_close"), TO_KERNEL, "ws1") == (None, ())
    assert len(registry) == 0


def test_closes_say_who_closed_and_a_frontend_close_marks_the_kernel_told():
    registry = CommRegistry()
    registry.observe(K, msg("comm_open", "a"), FROM_KERNEL)
    registry.observe(K, msg("comm_open", "b"), FROM_KERNEL)
    a, actions = registry.observe(K, msg("comm_close", "a"), TO_KERNEL, "ws1", now=5.0)
    assert actions == (CLOSED,)
    assert (a.status, a.close_reason, a.closed_at, a.kernel_told) == (
        "closed",
        CLOSED_BY_FRONTEND,
        5.0,
        True,
    )
    b, _ = registry.observe(K, msg("comm_close", "b"), FROM_KERNEL)
    assert (b.close_reason, b.kernel_told) == (CLOSED_BY_KERNEL, False)
    assert registry.closes[CLOSED_BY_FRONTEND] == registry.closes[CLOSED_BY_KERNEL] == 1


def test_a_message_on_a_comm_seen_closed_counts_on_the_closed_record():
    """The ghost: a widget still sending on a comm closed from outside does not bring it
    back as an open comm of unknown origin, and its history holds it once."""
    registry = CommRegistry()
    registry.observe(K, msg("comm_open", "s"), FROM_KERNEL, now=1.0)
    registry.observe(K, msg("comm_close", "s"), TO_KERNEL, "ws1", now=2.0)
    ghost, actions = registry.observe(K, msg("comm_msg", "s", None), FROM_KERNEL, now=3.0)
    assert actions == () and ghost.status == "closed" and ghost.sent_after_close == 1
    assert (ghost.messages_from_kernel, ghost.last_activity) == (2, 3.0)
    registry.observe(K, msg("comm_msg", "s", None), TO_KERNEL, "ws1", now=4.0)
    assert ghost.sent_after_close == 2 and ghost.to_model()["sent_after_close"] == 2
    assert len(registry) == 0
    assert [r.comm_id for r in registry.query(CommFilter(status="closed"))] == ["s"]
    # the same id opened anew is a new comm
    record, actions = registry.observe(K, msg("comm_open", "s"), FROM_KERNEL, now=5.0)
    assert actions == (OPENED,) and record is not ghost and record.sent_after_close == 0


def test_past_the_cap_new_comms_are_not_tracked_but_known_ones_still_count():
    registry = CommRegistry(max_per_kernel=1)
    first, _ = registry.observe(K, msg("comm_open", "a"), FROM_KERNEL)
    assert registry.observe(K, msg("comm_open", "b"), FROM_KERNEL) == (None, (CAPPED,))
    registry.observe(K, msg("comm_msg", "a"), FROM_KERNEL)
    assert first.messages_from_kernel == 2 and len(registry) == 1


def test_totals_survive_the_history_and_kernels_that_go():
    registry = CommRegistry(max_closed=1)
    for comm_id in ("a", "b", "c"):
        registry.observe(K, msg("comm_open", comm_id, nbytes=100), FROM_KERNEL)
        registry.observe(K, msg("comm_close", comm_id, nbytes=1), TO_KERNEL, "ws")
    registry.observe("k2", msg("comm_open", "d", nbytes=7), FROM_KERNEL)
    registry.remove_kernel("k2")
    assert registry.totals() == {
        "messages": {"to_kernel": 3, "from_kernel": 4},
        "bytes": {"to_kernel": 3, "from_kernel": 307},
    }


def test_summary_counts_live_comms_by_kernel_target_and_origin():
    registry = CommRegistry()
    registry.add_kernel("idle")
    registry.observe(K, msg("comm_open", "a", "w"), FROM_KERNEL)
    registry.observe(K, msg("comm_open", "b", "w"), TO_KERNEL, "ws")
    registry.observe(K, msg("comm_open", "c", None), FROM_KERNEL)
    registry.observe(K, msg("comm_close", "c"), FROM_KERNEL)
    summary = registry.summary()
    assert (summary["open"], summary["orphaned"], summary["closed"]) == (2, 0, 1)
    assert summary["by_target"] == {"w": {"open": 2, "orphaned": 0, "left_behind": 0}}
    assert summary["by_origin"] == {"kernel": 1, "frontend": 1, "unknown": 0}
    assert summary["by_kernel"]["idle"]["open"] == 0
    assert summary["by_kernel"][K]["messages"] == {"to_kernel": 1, "from_kernel": 1}


def test_pages_are_stable_and_resume_after_their_key():
    registry = CommRegistry()
    for i, comm_id in enumerate(["e", "d", "c", "b", "a"]):
        registry.observe(K, msg("comm_open", comm_id), FROM_KERNEL, now=float(i // 2))
    records = registry.query(CommFilter())
    first, resume = page(records, 2, None)
    assert [r.comm_id for r in first] == ["d", "e"]  # opened at 0: by comm id
    second, resume = page(records, 2, resume)
    assert [r.comm_id for r in second] == ["b", "c"]
    last, resume = page(records, 2, resume)
    assert [r.comm_id for r in last] == ["a"] and resume is None


def test_only_an_explicit_orphaned_status_counts_as_a_filter_alone():
    assert CommFilter().is_empty and CommFilter(status="open").is_empty
    assert not CommFilter(status="orphaned").is_empty
    assert not CommFilter(target_name="t").is_empty

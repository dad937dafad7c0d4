"""The rate-limited problem log: the first of a kind with its traceback, repeats counted."""

from __future__ import annotations

import logging

from jupyter_comm_ext.problems import RateLimitedLog


def _raised(message: str) -> Exception:
    try:
        raise ValueError(message)
    except ValueError as e:
        return e


def test_first_of_a_kind_has_its_traceback_and_repeats_are_counted(caplog):
    caplog.set_level(logging.WARNING)
    log = RateLimitedLog(logging.getLogger("problems"), interval=60)
    for i in range(3):
        log.warning("mirror", "k1", "failed %d", i, exc=_raised(f"boom {i}"))
    log.warning("mirror", "k2", "failed on k2", exc=_raised("boom k2"))
    assert [r.getMessage() for r in caplog.records] == ["failed 0", "failed on k2"]
    assert caplog.records[0].exc_info is not None  # the first of its kind
    assert caplog.records[1].exc_info is None  # same kind, other kernel: a line only
    log.interval = 0
    log.warning("mirror", "k1", "failed again")
    assert caplog.records[-1].getMessage() == "failed again (2 similar messages suppressed)"

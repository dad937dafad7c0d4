"""The query filters' checks, shared by the server's routes and the JupyterHub service."""

from __future__ import annotations

import pytest

from jupyter_comm_ext.query import BadQuery, CommFilter


def test_absent_filters_are_the_default_list() -> None:
    flt = CommFilter.from_arguments({})
    assert flt == CommFilter() and flt.is_empty and flt.to_arguments() == {}


def test_every_filter_is_read_and_given_back() -> None:
    args = {"kernel_id": "k", "target_name": "t", "origin": "kernel", "min_idle": "1.5"}
    flt = CommFilter.from_arguments({**args, "status": "all"})
    assert flt == CommFilter("k", "t", "kernel", 1.5, "all")
    assert CommFilter.from_arguments(flt.to_arguments()) == flt


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"status": ""}, "status must be one of open, closed, orphaned, left_behind, all"),
        ({"status": "opened"}, "status must be one of"),
        ({"origin": "user"}, "origin must be one of kernel, frontend, unknown"),
        ({"min_idle": "-1"}, "min_idle must be a number of seconds >= 0"),
        ({"min_idle": "nan"}, "min_idle must be"),
        ({"min_idle": "inf"}, "min_idle must be"),
        ({"min_idle": "soon"}, "min_idle must be"),
    ],
)
def test_bad_values_are_named(args: dict[str, str], message: str) -> None:
    with pytest.raises(BadQuery, match=message):
        CommFilter.from_arguments(args)


def test_a_bulk_close_needs_a_filter_and_closable_comms() -> None:
    with pytest.raises(BadQuery, match="needs at least one filter"):
        CommFilter().check_closable()
    CommFilter(status="orphaned").check_closable()  # narrow enough alone
    CommFilter(target_name="t").check_closable()
    with pytest.raises(BadQuery, match="only open or orphaned comms can be closed"):
        CommFilter(target_name="t", status="closed").check_closable()

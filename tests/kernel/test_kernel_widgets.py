"""ipywidgets, unchanged, through our manager (kernel started with the extension config)."""

from __future__ import annotations

from typing import Any

import pytest

from .kernel_driver import KernelDriver


def slider_open(out: list[dict[str, Any]]) -> dict[str, Any]:
    """The IntSlider's comm_open (its Layout and Style widgets open their own comms)."""
    [opened] = [
        m
        for m in out
        if m["msg_type"] == "comm_open"
        and m["content"]["data"]["state"]["_model_name"] == "IntSliderModel"
    ]
    return opened


SETUP = """
import gc, weakref
import ipywidgets
from ipywidgets.widgets.widget import Widget, _instances
"""


def test_intslider_end_to_end(kernel: KernelDriver) -> None:
    kernel.execute(SETUP)
    out = kernel.execute("slider = ipywidgets.IntSlider(value=1)")
    opened = slider_open(out)
    assert opened["content"]["target_name"] == "jupyter.widget"
    assert opened["metadata"]["version"].split(".")[0] == "2"
    model_id = opened["content"]["comm_id"]
    assert kernel.evaluate("slider.model_id") == model_id

    # frontend moves the slider
    update = {"method": "update", "state": {"value": 7}, "buffer_paths": []}
    kernel.comm_msg(model_id, update)
    assert kernel.evaluate("slider.value") == 7

    # kernel moves it: the frontend gets an update
    out = kernel.execute("slider.value = 3")
    updates = [m["content"]["data"] for m in out if m["msg_type"] == "comm_msg"]
    assert {"method": "update", "state": {"value": 3}, "buffer_paths": []} in updates

    # a frontend (re)connecting asks for every widget's state over the control comm
    control_id = kernel.open_comm("jupyter.widget.control", metadata={"version": "1.0.0"})
    assert not [m for m in kernel.last_open if m["msg_type"] == "comm_close"]
    out = kernel.comm_msg(control_id, {"method": "request_states"})
    [states] = [m["content"]["data"] for m in out if m["msg_type"] == "comm_msg"]
    assert states["method"] == "update_states"
    assert states["states"][model_id]["state"]["value"] == 3
    assert states["states"][model_id]["model_name"] == "IntSliderModel"


def test_force_closed_widget_is_released(kernel: KernelDriver) -> None:
    kernel.execute(SETUP)
    code = "w = ipywidgets.IntSlider(); ref = weakref.ref(w); wid = w.model_id; del w"
    model_id = slider_open(kernel.execute(code))["content"]["comm_id"]
    assert kernel.evaluate("wid in _instances and ref() is not None")

    # an admin force-close arrives as comm_close on shell
    out = kernel.request("comm_close", {"comm_id": model_id, "data": {}})
    assert not [m for m in out if m["msg_type"].startswith("comm_")]  # nothing sent back
    kernel.execute("gc.collect()")
    assert kernel.evaluate("[wid in _instances, wid in mgr.comms, ref() is None]") == [
        False,
        False,
        True,
    ]

    # the control comm is let go too
    control_id = kernel.open_comm("jupyter.widget.control", metadata={"version": "1.0.0"})
    assert kernel.evaluate("Widget._control_comm is not None")
    kernel.request("comm_close", {"comm_id": control_id, "data": {}})
    assert kernel.evaluate("Widget._control_comm is None")


@pytest.mark.parametrize("closed_by", ["kernel", "outside"])
def test_finishing_left_behind_models_returns_widgets_to_baseline(
    kernel: KernelDriver, closed_by: str
) -> None:
    """A slider closed by `close()` or from outside, then its Layout and style finished."""
    kernel.execute(SETUP)
    code = (
        "baseline = len(_instances)\n"
        "s = ipywidgets.IntSlider(); sid = s.model_id\n"
        "left = [s.layout.model_id, s.style.model_id]\n"
        "refs = [weakref.ref(s), weakref.ref(s.layout), weakref.ref(s.style)]\n"
    )
    kernel.execute(code)
    if closed_by == "kernel":
        kernel.execute("s.close()")
    else:
        kernel.request("comm_close", {"comm_id": kernel.evaluate("sid"), "data": {}})
    kernel.execute("del s")
    # finishing: an admin force-closes what the slider left behind
    for comm_id in kernel.evaluate("left"):
        kernel.request("comm_close", {"comm_id": comm_id, "data": {}})
    kernel.execute("gc.collect()")
    checks = {
        "Widget.widgets at baseline": "len(_instances) == baseline",
        "widgets freed": "all(ref() is None for ref in refs)",
        "comms released": "not {sid, *left} & set(mgr.comms)",
    }
    assert {name: kernel.evaluate(expr) for name, expr in checks.items()} == dict.fromkeys(
        checks, True
    )

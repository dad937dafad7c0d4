"""Widgets, not comm ids: a real server, a real ipykernel with ipywidgets 8 (and ipyleaflet).

What the REST API says of widget models (names, references, left behind) is compared with
what the kernel itself holds (`ipywidgets.widgets.widget._instances`, the comm manager).
"""

from __future__ import annotations

import ast
import asyncio
import json

import pytest
from inprocess import extension
from prometheus_client.parser import text_string_to_metric_families
from tornado.httpclient import HTTPClientError
from waiting import wait_for
from wsclient import PROTOCOLS, KernelWS, comm_msgs

from jupyter_comm_ext.cli.app import model_name, status
from jupyter_comm_ext.hub.aggregate import add_up

#: what every test runs first: ipywidgets, the kernel's own view of its models, and helpers
#: that read the references of a model the way ipywidgets serializes them
SETUP = """
import json, re
import ipywidgets as w
from comm import get_comm_manager
from ipywidgets.widgets.widget import _instances

def _refs(widget):
    state = json.dumps(widget.get_state(), default=str)
    return set(re.findall(r"IPY_MODEL_([0-9a-f]+)", state))

def _tree(widget):
    seen, todo = set(), [widget.model_id]
    while todo:
        model_id = todo.pop()
        if model_id not in seen and model_id in _instances:
            seen.add(model_id)
            todo.extend(_refs(_instances[model_id]))
    return sorted(seen)
"""


async def start(jp_ws_fetch, start_kernel, protocol: str = "v1") -> tuple[str, KernelWS]:
    kernel_id = await start_kernel()
    ws = await KernelWS.connect(jp_ws_fetch, kernel_id, protocol)
    await ws.execute(SETUP)
    return kernel_id, ws


async def kernel_value(ws: KernelWS, expression: str):
    """A literal (ids, lists of them) computed in the kernel."""
    return ast.literal_eval(await ws.evaluate(expression))


async def ids(fetch_json, kernel_id: str, status: str = "left_behind") -> set[str]:
    models = await fetch_json("api", "comms", params={"kernel_id": kernel_id, "status": status})
    return {m["comm_id"] for m in models}


async def becomes(fetch_json, kernel_id: str, expected: set[str], what: str) -> None:
    """Wait (bounded) until the left-behind set is exactly `expected`."""

    async def check() -> bool:
        return await ids(fetch_json, kernel_id) == expected

    try:
        await wait_for(check, timeout=20, what=what)
    except TimeoutError:
        assert await ids(fetch_json, kernel_id) == expected, what


async def widget_of(fetch_json, comm_id: str) -> dict:
    """The `widget` object of a comm, once the mirror has it."""

    async def model():
        m = await fetch_json("api", "comms", comm_id)
        return m if m["widget"] is not None else None

    return (await wait_for(model, timeout=20, what=f"widget model {comm_id}"))["widget"]


async def test_widget_models_are_named_with_their_references(fetch_json, jp_ws_fetch, start_kernel):
    kernel_id, ws = await start(jp_ws_fetch, start_kernel)
    await ws.execute("s = w.IntSlider(value=7, description='secret-label')")
    s, layout, style = await kernel_value(ws, "[s.model_id, s.layout.model_id, s.style.model_id]")
    widget = await widget_of(fetch_json, s)
    assert widget == {
        "model_name": "IntSliderModel",
        "model_module": "@jupyter-widgets/controls",
        "model_module_version": "2.0.0",
        "references": [
            {"key": "layout", "comm_id": layout},
            {"key": "style", "comm_id": style},
        ],
        "referenced_by": [],
        "left_behind": False,
    }
    layout_widget = await widget_of(fetch_json, layout)
    assert layout_widget["model_name"] == "LayoutModel"
    assert layout_widget["model_module"] == "@jupyter-widgets/base"
    assert layout_widget["referenced_by"] == [s]
    assert (await widget_of(fetch_json, style))["model_name"] == "SliderStyleModel"
    # nothing of the state's values is exposed
    listing = await fetch_json("api", "comms", params={"kernel_id": kernel_id})
    assert "secret-label" not in json.dumps(listing)
    ws.close()


async def test_closing_sliders_leaves_exactly_what_the_kernel_still_holds(
    jp_fetch, fetch_json, jp_ws_fetch, start_kernel
):
    kernel_id, ws = await start(jp_ws_fetch, start_kernel)
    await ws.execute("ss = [w.IntSlider() for _ in range(6)]\nfor s in ss[:4]: s.close()")
    # the kernel still holds the layout and style of each closed slider, as ipywidgets does
    stray = await kernel_value(
        ws,
        "sorted(m.model_id for s in ss[:4] for m in (s.layout, s.style)"
        " if m.model_id in _instances)",
    )
    assert len(stray) == 8
    await becomes(fetch_json, kernel_id, set(stray), "the closed sliders' layouts and styles")
    summary = await fetch_json("api", "comms", "summary")
    assert summary["left_behind"] == 8 and summary["by_kernel"][kernel_id]["left_behind"] == 8
    assert summary["by_target"]["jupyter.widget"]["left_behind"] == 8
    metrics = (await jp_fetch("metrics")).body.decode()
    gauge = {
        s.name: s.value
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
    }
    assert gauge["jupyter_comm_ext_left_behind_comms"] == 8
    ws.close()


async def test_a_shared_layout_stays_until_both_sliders_close(
    fetch_json, jp_ws_fetch, start_kernel
):
    kernel_id, ws = await start(jp_ws_fetch, start_kernel)
    await ws.execute(
        "L = w.Layout(width='50%')\na = w.IntSlider(layout=L)\nb = w.IntSlider(layout=L)"
    )
    shared, a, b, a_style, b_style = await kernel_value(
        ws, "[L.model_id, a.model_id, b.model_id, a.style.model_id, b.style.model_id]"
    )
    assert sorted((await widget_of(fetch_json, shared))["referenced_by"]) == sorted([a, b])
    await ws.execute("a.close()")
    await becomes(fetch_json, kernel_id, {a_style}, "a's style only: b still uses the layout")
    await ws.execute("b.close()")
    await becomes(fetch_json, kernel_id, {a_style, b_style, shared}, "the layout, once both closed")
    ws.close()


async def test_a_reused_child_leaves_the_set(fetch_json, jp_ws_fetch, start_kernel):
    kernel_id, ws = await start(jp_ws_fetch, start_kernel)
    await ws.execute("x = w.Button()\nbox = w.VBox([x])\nbox.close()")
    x, box_layout = await kernel_value(ws, "[x.model_id, box.layout.model_id]")
    await becomes(fetch_json, kernel_id, {x, box_layout}, "the box's child and layout")
    await ws.execute("again = w.HBox([x])")
    await becomes(fetch_json, kernel_id, {box_layout}, "the child, in a new box, is not")
    ws.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_an_update_that_drops_a_child_does_not_leave_it_behind(
    fetch_json, jp_ws_fetch, start_kernel, protocol
):
    kernel_id, ws = await start(jp_ws_fetch, start_kernel, protocol)
    await ws.execute("x, y = w.Button(), w.Text()\nbox = w.VBox([x, y])\nbox.children = [x]")
    x, y, box = await kernel_value(ws, "[x.model_id, y.model_id, box.model_id]")

    async def y_let_go():
        return (await widget_of(fetch_json, y))["referenced_by"] == []

    await wait_for(y_let_go, timeout=20, what="the update dropped y")
    assert await ids(fetch_json, kernel_id) == set()
    # a frontend's update (the kernel echoes it) puts y back
    await ws.send(
        "comm_msg",
        {
            "comm_id": box,
            "data": {
                "method": "update",
                "state": {"children": [f"IPY_MODEL_{x}", f"IPY_MODEL_{y}"]},
                "buffer_paths": [],
            },
        },
    )
    await ws.eventually("len(box.children) == 2")

    async def y_back():
        return (await widget_of(fetch_json, y))["referenced_by"] == [box]

    await wait_for(y_back, timeout=20, what="the frontend's update put y back")
    ws.close()


async def test_cascade_closes_a_box_tree(jp_fetch, fetch_json, jp_ws_fetch, start_kernel):
    kernel_id, ws = await start(jp_ws_fetch, start_kernel)
    await ws.execute(
        "shared = w.Layout()\n"
        "keep = w.IntSlider(layout=shared)\n"
        "outer = w.VBox([w.HBox([w.Button(), w.Text(layout=shared)]), w.IntSlider()])"
    )
    tree, outer, shared = await kernel_value(ws, "[_tree(outer), outer.model_id, shared.model_id]")
    assert len(tree) == 13 and shared in tree  # 12 of the tree's own and the shared layout
    expected = set(tree) - {shared}  # another slider still uses it
    await widget_of(fetch_json, outer)
    r = await jp_fetch("api", "comms", outer, method="DELETE", params={"cascade": "1"})
    assert r.code == 200
    closed = json.loads(r.body)
    assert closed[0]["comm_id"] == outer
    assert {m["comm_id"] for m in closed} == expected
    assert {m["status"] for m in closed} == {"closed"}
    await ws.eventually(f"not set({sorted(expected)}) & set(get_comm_manager().comms)")
    await ws.eventually(f"{shared!r} in get_comm_manager().comms")
    assert await ids(fetch_json, kernel_id) == set()
    # without cascade: 204, as before
    r = await jp_fetch("api", "comms", shared, method="DELETE")
    assert r.code == 204
    ws.close()


async def test_finishing_left_behind_returns_the_comm_manager_to_its_baseline(
    jp_fetch, fetch_json, jp_ws_fetch, start_kernel
):
    kernel_id, ws = await start(jp_ws_fetch, start_kernel)
    baseline = await kernel_value(ws, "sorted(get_comm_manager().comms)")
    await ws.execute(
        "ss = [w.IntSlider() for _ in range(3)]\n"
        "box = w.VBox([w.Button(), w.Text()])\n"
        "for s in ss: s.close()\n"
        "box.close()"
    )
    assert len(await kernel_value(ws, "sorted(get_comm_manager().comms)")) == len(baseline) + 13
    with pytest.raises(HTTPClientError) as e:  # a bulk close needs a narrow filter
        await jp_fetch("api", "comms", method="DELETE", params={"status": "all"})
    assert e.value.code == 400
    stray = await kernel_value(
        ws,
        "{m.model_id for s in ss for m in (s.layout, s.style)}"
        " | {c.model_id for c in box.children} | {box.layout.model_id}",
    )
    await becomes(fetch_json, kernel_id, stray, "before finishing")
    # finishing the box's children leaves their own layouts and styles: finish those too
    closed: list[str] = []
    for _ in range(3):
        r = await fetch_json("api", "comms", method="DELETE", params={"status": "left_behind"})
        closed += [m["comm_id"] for m in r]
        if not r:
            break
    assert len(closed) == 13  # all but the sliders and the box, which the kernel closed
    await ws.eventually(f"sorted(get_comm_manager().comms) == {baseline!r}")
    assert await ids(fetch_json, kernel_id) == set()
    ws.close()


async def test_the_culler_finishes_models_left_behind_long_enough(
    jp_serverapp, fetch_json, jp_ws_fetch, start_kernel
):
    culler = extension(jp_serverapp).culler
    assert culler.cull_left_behind_after == 600  # on by default, with a delay
    kernel_id, ws = await start(jp_ws_fetch, start_kernel)
    await ws.execute("s = w.IntSlider()\ns.close()")
    stray = set(await kernel_value(ws, "[s.layout.model_id, s.style.model_id]"))
    await becomes(fetch_json, kernel_id, stray, "the slider's layout and style")
    assert await culler.cull() == []  # not for 600 s
    culler.cull_left_behind_after = 1
    await asyncio.sleep(1.2)
    culled = await culler.cull()
    assert {r.comm_id for r in culled} == stray
    assert {r.close_reason for r in culled} == {"culled"}
    await ws.eventually(f"not set({sorted(stray)}) & set(get_comm_manager().comms)")
    ws.close()


async def test_a_widget_sending_on_a_closed_comm_is_no_ghost(
    jp_fetch, fetch_json, jp_ws_fetch, start_kernel
):
    kernel_id, ws = await start(jp_ws_fetch, start_kernel)
    await ws.execute("s = w.IntSlider()")
    (s,) = await kernel_value(ws, "[s.model_id]")
    await widget_of(fetch_json, s)
    await jp_fetch("api", "comms", s, method="DELETE")
    await ws.recv(comm_msgs(ws, "comm_close", s), timeout=10)
    await ws.eventually(f"{s!r} not in get_comm_manager().comms")
    await ws.execute("s.value = 5")  # stock ipywidgets sends on its closed comm

    async def counted():
        model = await fetch_json("api", "comms", s)
        return model if model["sent_after_close"] == 1 else None

    model = await wait_for(counted, timeout=20, what="the message counted after close")
    assert model["status"] == "closed" and model["origin"] == "kernel"
    assert s not in await ids(fetch_json, kernel_id, "open")
    closed = await fetch_json("api", "comms", params={"status": "closed"})
    assert [m["comm_id"] for m in closed].count(s) == 1
    ws.close()


async def test_ipyleaflet_maps_are_found_and_closed_the_same_way(
    jp_fetch, fetch_json, jp_ws_fetch, start_kernel
):
    pytest.importorskip("ipyleaflet")
    kernel_id, ws = await start(jp_ws_fetch, start_kernel)
    await ws.execute(
        "from ipyleaflet import Map, Marker, LayerGroup\n"
        "m = Map(center=(52.2, 0.1), zoom=9)\n"
        "m.add(LayerGroup(layers=[Marker(location=(52.2, 0.1)), Marker(location=(52.3, 0.1))]))\n"
        "m2 = Map()\n"
        "m2.add(LayerGroup(layers=[Marker(location=(1, 1))]))\n"
        "m.close()"
    )
    direct, tree2, m2 = await kernel_value(ws, "[sorted(_refs(m)), _tree(m2), m2.model_id]")
    assert len(direct) >= 5  # layout, style, default style, base layer, controls, the group
    await becomes(fetch_json, kernel_id, set(direct), "the closed map's models")
    widget = await widget_of(fetch_json, m2)
    assert (widget["model_name"], widget["model_module"]) == ("LeafletMapModel", "jupyter-leaflet")
    r = await jp_fetch("api", "comms", m2, method="DELETE", params={"cascade": "1"})
    assert {m["comm_id"] for m in json.loads(r.body)} == set(tree2)
    assert len(tree2) > len(direct)  # deeper: the group's markers, the controls' models
    await ws.eventually(f"not set({sorted(tree2)}) & set(get_comm_manager().comms)")
    ws.close()


def test_the_hub_adds_up_left_behind_models():
    one = {"open": 3, "orphaned": 0, "left_behind": 2, "closed": 1, "by_kernel": {"k": {}}}
    one["by_target"] = {"jupyter.widget": {"open": 3, "orphaned": 0, "left_behind": 2}}
    older = {"open": 1, "orphaned": 1, "closed": 0, "by_target": {"t": {"open": 1, "orphaned": 1}}}
    totals = add_up([one, older])
    assert (totals["open"], totals["left_behind"]) == (4, 2)
    assert totals["by_target"]["jupyter.widget"]["left_behind"] == 2
    assert totals["by_target"]["t"] == {"open": 1, "orphaned": 1, "left_behind": 0}


def test_the_command_line_names_models_and_left_behind():
    model = {"status": "open", "widget": {"model_name": "LayoutModel", "left_behind": True}}
    assert (model_name(model), status(model)) == ("LayoutModel", "left_behind")
    other = {"status": "open", "widget": None}
    assert (model_name(other), status(other)) == (None, "open")

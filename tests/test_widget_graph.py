"""The widget graph as the registry keeps it: model names, references, left behind, cascade.

Pure: comm messages are built here as the wire carries them (JSON content bytes), no
kernel, no server (`CommRegistry.observe`, `widgets`).
"""

from __future__ import annotations

from typing import Any

import orjson

from jupyter_comm_ext import widgets
from jupyter_comm_ext.protocol import CommMessage
from jupyter_comm_ext.query import CommFilter
from jupyter_comm_ext.registry import FROM_KERNEL, TO_KERNEL, CommRegistry

K = "k1"


def ref(comm_id: str) -> str:
    return f"IPY_MODEL_{comm_id}"


def content(comm_id: str, data: dict[str, Any]) -> bytes:
    return orjson.dumps({"comm_id": comm_id, "target_name": "jupyter.widget", "data": data})


def open_widget(registry: CommRegistry, comm_id: str, model: str, **state: Any) -> None:
    state = {
        "_model_name": model,
        "_model_module": "@jupyter-widgets/controls",
        "_model_module_version": "2.0.0",
        **state,
    }
    data = {"state": state, "buffer_paths": []}
    message = CommMessage(
        "comm_open", comm_id, 100, "jupyter.widget", content=content(comm_id, data)
    )
    registry.observe(K, message, FROM_KERNEL)


def update(
    registry: CommRegistry,
    comm_id: str,
    method: str = "update",
    direction: str = FROM_KERNEL,
    **state: Any,
) -> None:
    raw = content(comm_id, {"method": method, "state": state, "buffer_paths": []})
    registry.observe(K, CommMessage("comm_msg", comm_id, 50, content=raw), direction, "ws")


def close(registry: CommRegistry, comm_id: str, now: float | None = None) -> None:
    raw = content(comm_id, {})
    message = CommMessage("comm_close", comm_id, 50, content=raw)
    registry.observe(K, message, FROM_KERNEL, now=now)


def slider(registry: CommRegistry, name: str, layout: str | None = None) -> None:
    """An IntSlider as ipywidgets 8 opens it: its layout and style first, then itself."""
    if layout is None:
        layout = f"{name}-layout"
        open_widget(registry, layout, "LayoutModel", width=None)
    open_widget(registry, f"{name}-style", "SliderStyleModel", handle_color=None)
    open_widget(
        registry, name, "IntSliderModel", value=0, layout=ref(layout), style=ref(f"{name}-style")
    )


def left_behind(registry: CommRegistry) -> set[str]:
    return {r.comm_id for r in registry.query(CommFilter(status="left_behind"))}


def widget(registry: CommRegistry, comm_id: str) -> dict[str, Any]:
    record = registry.get(comm_id)
    assert record is not None
    return orjson.loads(orjson.dumps(record.to_json()))["widget"]


def test_a_widget_is_named_with_its_references_and_who_references_it():
    registry = CommRegistry()
    slider(registry, "s")
    assert widget(registry, "s") == {
        "model_name": "IntSliderModel",
        "model_module": "@jupyter-widgets/controls",
        "model_module_version": "2.0.0",
        "references": [
            {"key": "layout", "comm_id": "s-layout"},
            {"key": "style", "comm_id": "s-style"},
        ],
        "referenced_by": [],
        "left_behind": False,
    }
    assert widget(registry, "s-layout")["referenced_by"] == ["s"]
    # the reference shares the target's own id string
    s = registry.get("s")
    assert s.widget.refs[1] is registry.get("s-layout").comm_id


def test_state_values_are_not_kept():
    registry = CommRegistry()
    open_widget(registry, "t", "TextModel", value="secret", description="password")
    assert b"secret" not in orjson.dumps(registry.get("t").to_json())
    assert set(widgets.WidgetInfo.__slots__) == {
        "model_name",
        "model_module",
        "model_module_version",
        "refs",
        "referrers",
        "left_behind",
        "left_behind_at",
    }


def test_a_comm_that_is_not_a_widget_has_none():
    registry = CommRegistry()
    raw = orjson.dumps({"comm_id": "c", "target_name": "my.comm", "data": {"x": 1}})
    registry.observe(K, CommMessage("comm_open", "c", 10, "my.comm", content=raw), FROM_KERNEL)
    registry.merge(K, {"adopted": {"target_name": "jupyter.widget"}}, 1.0, None)
    assert registry.get("c").to_model()["widget"] is None
    assert registry.get("adopted").to_model()["widget"] is None


def test_closing_a_slider_leaves_its_layout_and_style_behind():
    registry = CommRegistry()
    for name in ("a", "b", "c"):
        slider(registry, name)
    close(registry, "a", now=10.0)
    close(registry, "b")
    assert left_behind(registry) == {"a-layout", "a-style", "b-layout", "b-style"}
    assert registry.get("a-layout").widget.left_behind_at == 10.0
    assert widget(registry, "a-layout")["left_behind"] is True  # the cached JSON moved too
    assert registry.get("a-layout").to_model()["status"] == "open"
    summary = registry.summary()
    assert summary["left_behind"] == 4 and summary["by_kernel"][K]["left_behind"] == 4
    assert summary["by_target"]["jupyter.widget"]["left_behind"] == 4
    # finishing one: closed models are not left behind
    close(registry, "a-layout")
    assert left_behind(registry) == {"a-style", "b-layout", "b-style"}
    assert widget(registry, "a-layout")["left_behind"] is False


def test_a_shared_layout_stays_until_the_last_slider_closes():
    registry = CommRegistry()
    open_widget(registry, "shared", "LayoutModel")
    slider(registry, "a", layout="shared")
    slider(registry, "b", layout="shared")
    assert widget(registry, "shared")["referenced_by"] == ["a", "b"]
    close(registry, "a")
    assert left_behind(registry) == {"a-style"}
    close(registry, "b")
    assert left_behind(registry) == {"a-style", "b-style", "shared"}


def box(registry: CommRegistry, name: str, children: list[str]) -> None:
    open_widget(registry, f"{name}-layout", "LayoutModel")
    open_widget(
        registry,
        name,
        "VBoxModel",
        children=[ref(c) for c in children],
        layout=ref(f"{name}-layout"),
    )


def test_a_reused_child_leaves_the_set_and_its_own_models_follow_when_finished():
    registry = CommRegistry()
    slider(registry, "x")
    slider(registry, "y")
    box(registry, "box", ["x", "y"])
    assert widget(registry, "box")["references"] == [
        {"key": "children", "comm_id": "x"},
        {"key": "children", "comm_id": "y"},
        {"key": "layout", "comm_id": "box-layout"},
    ]
    close(registry, "box")
    assert left_behind(registry) == {"x", "y", "box-layout"}
    box(registry, "again", ["x"])
    assert left_behind(registry) == {"y", "box-layout"}
    close(registry, "y")  # finished: then its own layout and style
    assert left_behind(registry) == {"box-layout", "y-layout", "y-style"}


def test_an_update_that_drops_a_child_does_not_leave_it_behind():
    registry = CommRegistry()
    slider(registry, "x")
    slider(registry, "y")
    box(registry, "box", ["x", "y"])
    update(registry, "box", children=[ref("x")])
    assert left_behind(registry) == set()
    assert widget(registry, "y")["referenced_by"] == []
    assert widget(registry, "box")["references"] == [
        {"key": "layout", "comm_id": "box-layout"},
        {"key": "children", "comm_id": "x"},
    ]
    # a frontend's update and the kernel's echo of it read alike; other keys keep theirs
    update(registry, "box", "echo_update", TO_KERNEL, children=[ref("x"), ref("y")])
    assert widget(registry, "y")["referenced_by"] == ["box"]
    close(registry, "box")
    assert left_behind(registry) == {"x", "y", "box-layout"}


def test_only_messages_that_can_hold_a_reference_are_parsed():
    assert widgets.read_update(b'{"data": {"method": "update", "state": {"value": 5}}') is None
    assert widgets.read_update(b"not JSON, and no reference in it") is None
    assert widgets.read_open(b"not JSON, no state") is None
    raw = content("b", {"method": "update", "state": {"children": [ref("x")]}})
    assert widgets.read_update(memoryview(raw)) == {"children": [("children", "x")]}
    assert widgets.read_update(orjson.loads(raw)) == {"children": [("children", "x")]}
    custom = content("b", {"method": "custom", "content": ref("x")})
    assert widgets.read_update(custom) is None


def test_references_nested_in_lists_and_dicts_keep_their_top_level_key():
    state = {"layers": [{"a": ref("l1")}, [ref("l2"), 3]], "name": "IPY_MODEL_", "n": 1}
    assert list(widgets.references(state)) == [("layers", "l1"), ("layers", "l2")]


def test_a_reference_to_a_model_not_yet_open_is_linked_when_it_opens():
    registry = CommRegistry()
    open_widget(registry, "box", "VBoxModel", children=[ref("late")])
    open_widget(registry, "late", "ButtonModel")
    assert widget(registry, "late")["referenced_by"] == ["box"]
    close(registry, "box")
    assert left_behind(registry) == {"late"}


def test_the_cascade_of_a_box_tree_spares_what_others_share():
    registry = CommRegistry()
    open_widget(registry, "shared", "LayoutModel")
    slider(registry, "x")
    slider(registry, "y", layout="shared")
    slider(registry, "outside", layout="shared")
    box(registry, "inner", ["y"])
    box(registry, "outer", ["x", "inner"])
    cascade = registry.cascade(registry.get("outer"))
    assert cascade[0].comm_id == "outer"
    assert {r.comm_id for r in cascade} == {
        "outer",
        "outer-layout",
        "x",
        "x-layout",
        "x-style",
        "inner",
        "inner-layout",
        "y",
        "y-style",
    }
    # a child two boxes of the tree share goes with it; one a box outside shares does not
    box(registry, "other", ["x"])
    assert "x" not in {r.comm_id for r in registry.cascade(registry.get("outer"))}


def test_a_kernel_restart_or_exit_leaves_nothing_behind():
    registry = CommRegistry()
    slider(registry, "s")
    close(registry, "s")
    registry.close_kernel(K, "kernel-restarted")
    assert left_behind(registry) == set() and registry.summary()["left_behind"] == 0
    slider(registry, "t")
    open_widget(registry, "box", "VBoxModel", children=[ref("never")])
    registry.remove_kernel(K)
    assert left_behind(registry) == set() and not registry.widgets._dangling

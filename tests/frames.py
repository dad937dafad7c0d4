"""Generated websocket frames (hypothesis strategies): v1 and legacy frames, well formed or
damaged, that a client might send a kernel's websocket."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st
from jupyter_server.services.kernels.connection.base import (
    serialize_binary_message,
    serialize_msg_to_ws_v1,
)

SAFE_MSG_TYPES = ["comm_open", "comm_msg", "comm_close", "comm_info_request"]
SAFE_MSG_TYPES += ["kernel_info_request", "no_such_request", ""]
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
# comm ids and target names may be lone surrogates (the guard refuses those); other strings
# never are: hypothesis' text() leaves surrogates out.
_ids = st.text(max_size=12) | st.sampled_from(["\ud800", "a\udfffb", "echo"]) | _json
_header = st.fixed_dictionaries(
    {"msg_type": st.sampled_from(SAFE_MSG_TYPES)},
    optional={
        "msg_id": st.text(max_size=12),
        "session": st.text(max_size=12),
        "username": st.text(max_size=8),
        "version": st.just("5.3"),
        "date": st.just("2026-01-01T00:00:00Z"),
    },
)
_content = st.fixed_dictionaries(
    {}, optional={"comm_id": _ids, "target_name": _ids, "data": _json, "target_module": _ids}
)
_channel = st.sampled_from(["shell", "control", "stdin", "iopub", "nope", ""]) | st.text(max_size=6)


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


_part = st.binary(max_size=200) | _json.map(_dumps)
_message = st.fixed_dictionaries(
    {
        "header": _header | _json,
        "parent_header": _json,
        "metadata": _json,
        "content": _content | _json,
    },
)
# (index, byte) to overwrite somewhere in a frame, or a length to cut it to
_damage = st.none() | st.tuples(st.integers(0, 80), st.integers(0, 255)) | st.integers(0, 200)


def _damaged(frame: bytes, damage: Any) -> bytes:
    if isinstance(damage, tuple):
        index, byte = damage
        if index < len(frame):
            return frame[:index] + bytes([byte]) + frame[index + 1 :]
    elif isinstance(damage, int):
        return frame[:damage]
    return frame


@st.composite
def v1_frames(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        return draw(st.binary(min_size=8, max_size=4096))
    msg = draw(_message)
    parts = [
        draw(st.just(_dumps(msg[key])) | _part)
        for key in ("header", "parent_header", "metadata", "content")
    ]
    parts += draw(st.lists(st.binary(max_size=200), max_size=2))
    frame = serialize_msg_to_ws_v1(parts[: draw(st.integers(0, len(parts)))], draw(_channel))
    return _damaged(frame, draw(_damage))


@st.composite
def legacy_frames(draw: st.DrawFn) -> bytes | str:
    kind = draw(st.sampled_from(["text", "json", "message", "binary", "bytes"]))
    if kind == "text":
        return draw(st.text(max_size=4096))
    if kind == "json":
        return json.dumps(draw(_json))
    msg = dict(draw(_message), channel=draw(_channel | st.none()))
    if kind == "message":
        return json.dumps(msg)
    if kind == "bytes":
        return draw(st.binary(max_size=4096))
    msg["buffers"] = draw(st.lists(st.binary(max_size=200), max_size=2))
    return _damaged(serialize_binary_message(msg), draw(_damage))

"""The frame readers the tap runs on every frontend frame: whatever the bytes, they either
read the frame or raise `MalformedMessage` (which the tap turns into a log line), nothing else.

The same generated frames go through a real server in test_guard; here, in process, many more
of them fit in a second.
"""

from __future__ import annotations

import contextlib
import json

import orjson
from frames import legacy_frames, v1_frames
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from jupyter_client.session import Session
from jupyter_server.services.kernels.connection.base import (
    serialize_binary_message,
    serialize_msg_to_ws_v1,
)

from jupyter_comm_ext import protocol

PACK = Session().pack
SETTINGS = settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))


def _header_only(**parts: object) -> bytes:
    """A well-framed legacy binary message whose JSON lacks what stock's parser indexes."""
    return serialize_binary_message({**parts, "buffers": [b"x"]})


@SETTINGS
@given(v1_frames())
def test_v1_reader_raises_only_malformed(frame: bytes) -> None:
    with contextlib.suppress(protocol.MalformedMessage):
        protocol.from_ws_v1(frame, protocol.v1_offsets(frame))


@SETTINGS
@given(legacy_frames())
@example(_header_only(header={"msg_type": "comm_msg"}))  # no parent_header: a KeyError in stock
@example(serialize_binary_message({"header": [], "parent_header": {}, "buffers": []}))
@example(json.dumps({"header": {"msg_type": "comm_msg"}, "content": []}))
def test_legacy_reader_raises_only_malformed(frame: bytes | str) -> None:
    with contextlib.suppress(protocol.MalformedMessage):
        protocol.from_ws_legacy(frame, PACK)


# -- big contents: skimmed at their ends, read as a full parse reads them ----------------

PAD = "x" * protocol.SKIM_ABOVE
#: what a big value may carry near its ends to mislead a reader of the ends
_decoys = st.sampled_from(
    ['", "comm_id": "decoy"}', '\\", \\"comm_id\\": \\"decoy', "\\\\", '\\"', "}", '"', ""]
)
_big_value = st.builds(
    lambda a, b, shape: shape(a + PAD + b),
    _decoys,
    _decoys,
    st.sampled_from(
        [
            lambda s: s,
            lambda s: {"comm_id": "decoy", "s": s},
            lambda s: [s, {"comm_id": "decoy"}],
        ]
    ),
)
_scalar = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
)
_field = _scalar | st.sampled_from(["\ud800", "echo"]) | st.just({})


@st.composite
def big_contents(draw: st.DrawFn) -> bytes:
    """A comm content over the skim threshold: the small fields, other small members, and a
    big value (or two) anywhere among them, as JupyterLab, ipykernel or anyone may write it."""
    members = [(k, draw(_field)) for k in ("comm_id", "target_name", "target_module")]
    members = [m for m in members if draw(st.integers(0, 5))]  # sometimes left out
    members += draw(
        st.lists(st.tuples(st.sampled_from(["metadata", "x", "d"]), _field), max_size=2)
    )
    for _ in range(draw(st.integers(1, 2))):
        members.insert(draw(st.integers(0, len(members))), ("data", draw(_big_value)))
    space = draw(st.sampled_from([(",", ":"), (", ", ": "), (" ,\n", " :\t")]))
    text = json.dumps(dict(members), separators=space, ensure_ascii=draw(st.booleans()))
    return text.encode("utf-8", "surrogatepass")


def _full_parse(header: dict, content: bytes) -> object:
    """What reading the whole content gives: a CommMessage's facts, or the error's class
    (of a skimmed comm_msg or comm_close, only the comm_id is read)."""
    parsed = json.loads(content)
    fields = protocol.skim(content)
    if header["msg_type"] != "comm_open" and fields is not None and "comm_id" in fields:
        parsed = {"comm_id": parsed["comm_id"]}
    try:
        msg = protocol.comm_message(header, parsed, 0)
    except protocol.MalformedMessage as e:
        return type(e)
    assert msg is not None
    return (msg.comm_id, msg.target_name, msg.target_module)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(big_contents(), st.sampled_from(["comm_open", "comm_msg", "comm_close"]), st.booleans())
def test_big_content_reads_as_a_full_parse(content: bytes, msg_type: str, view: bool) -> None:
    header = {"msg_type": msg_type, "session": "s"}
    part = memoryview(content) if view else content
    parts = [json.dumps(header).encode(), b"{}", b"{}", part, b"buffer"]
    try:
        msg = protocol.from_parts(parts)
    except protocol.MalformedMessage as e:
        assert _full_parse(header, content) is type(e)
        return
    assert msg is not None
    assert (msg.comm_id, msg.target_name, msg.target_module) == _full_parse(header, content)
    assert msg.nbytes == sum(map(len, parts))
    assert msg.content is part  # a reference, never a copy


def test_ipykernel_and_jupyterlab_contents_are_skimmed() -> None:
    """What ipykernel and JupyterLab send is skimmed, but an open without its target_module
    (JupyterLab leaves it out) may hide it in the middle: that one is parsed whole."""
    data = {"state": {"value": PAD, "child": "IPY_MODEL_x", "comm_id": "decoy"}}
    cases = [
        ("comm_open", {"data": data, "comm_id": "c1", "target_name": "w", "target_module": None}),
        ("comm_msg", {"data": data, "comm_id": "c1"}),
        ("comm_msg", {"comm_id": "c1", "data": data}),
        ("comm_open", {"comm_id": "c1", "target_name": "w", "data": data}),
    ]
    for (msg_type, content), skimmed in zip(cases, (True, True, True, False), strict=True):
        raw = memoryview(orjson.dumps(content))
        header = orjson.dumps({"msg_type": msg_type})
        msg = protocol.from_parts([header, b"{}", b"{}", raw])
        assert msg is not None and msg.skimmed is skimmed
        assert msg.comm_id == "c1" and msg.content is raw


def test_small_content_is_parsed_whole_and_kept_as_bytes() -> None:
    content = memoryview(b'{"comm_id": "c1", "data": {}}')
    msg = protocol.from_parts([b'{"msg_type": "comm_msg"}', b"{}", b"{}", content])
    assert msg is not None and not msg.skimmed
    assert msg.content == b'{"comm_id": "c1", "data": {}}' and isinstance(msg.content, bytes)


def test_v1_frame_big_content_is_a_view_into_the_frame() -> None:
    content = orjson.dumps({"comm_id": "c1", "data": {"v": PAD}})
    parts = [orjson.dumps({"msg_type": "comm_msg"}), b"{}", b"{}", content, b"b" * 1000]
    frame = serialize_msg_to_ws_v1(parts, "shell")
    channel, msg = protocol.from_ws_v1(frame, protocol.v1_offsets(frame))
    assert channel == "shell" and msg is not None and msg.skimmed
    assert isinstance(msg.content, memoryview) and msg.content.obj is frame
    assert msg.nbytes == sum(map(len, parts))


def test_legacy_binary_frame_size_without_its_buffers_read() -> None:
    msg = Session().msg("comm_msg", {"comm_id": "c1", "data": {}})
    msg["channel"] = "shell"
    msg["buffers"] = [b"a" * 100_000, b"b" * 7]
    frame = serialize_binary_message(msg)
    channel, comm = protocol.from_ws_legacy(frame, PACK)
    expected = sum(len(PACK(msg[k])) for k in ("header", "parent_header", "metadata", "content"))
    assert channel == "shell" and comm is not None
    assert comm.nbytes == expected + 100_007

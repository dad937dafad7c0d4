"""The frame readers the tap runs on every frontend frame: whatever the bytes, they either
read the frame or raise `MalformedMessage` (which the tap turns into a log line), nothing else.

The same generated frames go through a real server in test_guard; here, in process, many more
of them fit in a second.
"""

from __future__ import annotations

import contextlib
import json

from frames import legacy_frames, v1_frames
from hypothesis import HealthCheck, example, given, settings
from jupyter_client.session import Session
from jupyter_server.services.kernels.connection.base import serialize_binary_message

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

"""Reading comm messages out of kernel traffic, as cheaply as possible.

Every kernel message passes through here, so the common case (not a comm message) must
cost a substring search on the header frame and nothing else: `comm_` appears in the
header of every comm message (its `msg_type`), and JSON is parsed only when it does.

Three wire forms carry the same message:
- ZMQ frames: ``[idents..., b"<IDS|MSG>", signature, header, parent, metadata, content, *buffers]``;
- websocket v1 (``v1.kernel.websocket.jupyter.org``): offsets, channel, then the same parts;
- websocket legacy: one JSON text, or a binary frame of offsets, JSON and buffers.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import orjson
from jupyter_client.session import DELIM
from jupyter_server.services.kernels.connection.base import deserialize_binary_message

V1_SUBPROTOCOL = "v1.kernel.websocket.jupyter.org"
COMM_MSG_TYPES = frozenset({"comm_open", "comm_msg", "comm_close"})
_COMM_MARK = b"comm_"
#: a v1 frame's leading offset count, and its offset tables for the counts frames have
#: (channel + 4 parts + a few buffers; other counts build theirs per frame)
_COUNT = struct.Struct("<Q")
_OFFSET_TABLES = {count: struct.Struct(f"<{count}Q") for count in range(3, 33)}


class MalformedMessage(ValueError):
    """A message that claims to be a comm message but cannot be read as one."""


class BadFraming(MalformedMessage):
    """A binary frame whose offset table does not fit the frame itself."""


class InvalidUnicode(MalformedMessage):
    """A comm id or target name that is not valid Unicode (a lone surrogate).

    Relayed as is, such a message makes ipykernel fail to encode its own log line and
    stall; the guard refuses it on the way to the kernel.
    """


@dataclass(slots=True)
class CommMessage:
    """The few facts the mirror needs from one comm message."""

    msg_type: str
    comm_id: str
    nbytes: int
    target_name: str | None = None
    target_module: str | None = None
    session: str | None = None
    #: the content part as received: JSON bytes (ZMQ frames, v1 parts), or the parsed dict of
    #: a legacy JSON frame; kept for readers that need more than the ids (widget state)
    content: Any = None


def _checked_str(content: dict, key: str, required: bool) -> str | None:
    value = content.get(key)
    if value.__class__ is str and value.isascii():  # the common case: nothing to check
        return value
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise MalformedMessage(f"comm message {key!r} must be a string, got {value!r:.80}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidUnicode(f"comm message {key!r} is not valid Unicode") from e
    return value


def comm_message(header: Any, content: Any, nbytes: int, raw: Any = None) -> CommMessage | None:
    """Build a CommMessage from a parsed header and content; None if not a comm message.

    `raw` is the content part as received, if not `content` itself.
    """
    if not isinstance(header, dict):
        raise MalformedMessage("message header is not a JSON object")
    msg_type = header.get("msg_type")
    if msg_type not in COMM_MSG_TYPES:
        return None
    if not isinstance(content, dict):
        raise MalformedMessage(f"{msg_type} content is not a JSON object")
    is_open = msg_type == "comm_open"
    session = header.get("session")
    return CommMessage(
        msg_type,
        _checked_str(content, "comm_id", True),  # type: ignore[arg-type]
        nbytes,
        _checked_str(content, "target_name", is_open),
        _checked_str(content, "target_module", False) if is_open else None,
        session if isinstance(session, str) else None,
        content if raw is None else raw,
    )


def _loads(part: bytes | str, what: str) -> Any:
    """orjson (5x faster than json on a header); json for what orjson is stricter about
    (lone surrogates, NaN, huge integers), so both read what jupyter_client reads."""
    try:
        return orjson.loads(part)
    except (ValueError, TypeError):
        pass
    try:
        return json.loads(part)
    except (ValueError, TypeError) as e:
        raise MalformedMessage(f"{what} is not JSON: {e}") from e


def _read(header: bytes, content: bytes, nbytes: int) -> CommMessage | None:
    """The comm message with this header and content frame, if it is one."""
    parsed = _loads(header, "header")
    if not isinstance(parsed, dict) or parsed.get("msg_type") not in COMM_MSG_TYPES:
        return None
    return comm_message(parsed, _loads(content, "content"), nbytes, content)


def from_parts(parts: Sequence[bytes]) -> CommMessage | None:
    """Read ``[header, parent, metadata, content, *buffers]`` (ZMQ frames or v1 parts)."""
    if not parts or _COMM_MARK not in parts[0]:
        return None
    if len(parts) < 4:
        raise MalformedMessage(f"message has {len(parts)} parts, fewer than 4")
    return _read(parts[0], parts[3], sum(map(len, parts)))


def from_zmq(msg_list: Sequence[bytes]) -> CommMessage | None:
    """Read a message as received from a kernel's ZMQ socket (identities first)."""
    try:
        start = msg_list.index(DELIM) + 2  # skip the delimiter and the signature
    except ValueError as e:
        raise MalformedMessage("no <IDS|MSG> delimiter in ZMQ message") from e
    return from_parts(msg_list[start:])


def v1_offsets(frame: bytes) -> tuple[int, ...]:
    """The part offsets of a v1 frame, checked in O(1) of the frame's size.

    jupyter_server trusts the leading count, so a frame that claims 2**63 offsets makes
    it loop until memory runs out; here the count must fit in the frame, and the offsets
    must rise within it.
    """
    size = len(frame)
    if size < 8:
        raise BadFraming(f"v1 frame of {size} bytes has no offset count")
    (count,) = _COUNT.unpack_from(frame)
    if not 3 <= count <= size // 8 - 1:
        raise BadFraming(f"v1 frame claims {count} offsets in {size} bytes")
    table = _OFFSET_TABLES.get(count) or struct.Struct(f"<{count}Q")
    offsets = table.unpack_from(frame, 8)
    if offsets[0] != 8 * (count + 1) or offsets[-1] > size:
        raise BadFraming("v1 frame offsets do not match its size")
    if sorted(offsets) != list(offsets):
        raise BadFraming("v1 frame offsets are not in order")
    return offsets


def legacy_offsets(frame: bytes) -> list[int]:
    """The buffer offsets of a legacy binary frame, checked like `v1_offsets`."""
    size = len(frame)
    count = int.from_bytes(frame[:4], "big", signed=True) if size >= 4 else -1
    if not 1 <= count <= size // 4 - 1:
        raise BadFraming(f"binary frame claims {count} buffers in {size} bytes")
    offsets = [int.from_bytes(frame[4 * i : 4 * i + 4], "big") for i in range(1, count + 1)]
    if offsets[0] != 4 * (count + 1) or offsets[-1] > size:
        raise BadFraming("binary frame offsets do not match its size")
    if any(a > b for a, b in pairwise(offsets)):
        raise BadFraming("binary frame offsets are not in order")
    return offsets


def from_ws_v1(frame: bytes, offsets: Sequence[int]) -> tuple[str, CommMessage | None]:
    """Read a v1 websocket frame, slicing out only the parts a comm message needs."""
    channel = frame[offsets[0] : offsets[1]].decode("utf-8", "replace")
    if len(offsets) < 6:  # channel + 4 parts need 6 offsets
        return channel, None
    header = frame[offsets[1] : offsets[2]]
    if _COMM_MARK not in header:
        return channel, None
    return channel, _read(header, frame[offsets[4] : offsets[5]], offsets[-1] - offsets[1])


def from_ws_legacy(
    frame: str | bytes, pack: Callable[[Any], bytes]
) -> tuple[str | None, CommMessage | None]:
    """Read a legacy websocket frame: JSON text, or binary with buffers.

    The legacy frame is JSON that the server re-packs before sending, so the size that
    counts (the ZMQ frames on the kernel side) is computed with the session's `pack`.
    """
    if isinstance(frame, str):
        if "comm_" not in frame:
            return None, None
        msg = _loads(frame, "message")
        buffers: list[bytes] = []
    else:
        legacy_offsets(frame)
        try:
            msg = deserialize_binary_message(frame)
        except Exception as e:  # stock's parser raises whatever the bytes lead it to
            raise MalformedMessage(f"bad binary message: {e!r}") from e
        buffers = msg.get("buffers") or []
    if not isinstance(msg, dict):
        raise MalformedMessage("message is not a JSON object")
    channel = msg.get("channel")
    header = msg.get("header")
    if not isinstance(header, dict) or header.get("msg_type") not in COMM_MSG_TYPES:
        return channel, None
    parts = (header, msg.get("parent_header") or {}, msg.get("metadata") or {})
    content = msg.get("content")
    try:
        nbytes = sum(len(pack(p)) for p in (*parts, content)) + sum(len(b) for b in buffers)
    except (TypeError, ValueError) as e:
        raise MalformedMessage(f"message cannot be packed: {e}") from e
    return channel, comm_message(header, content, nbytes)

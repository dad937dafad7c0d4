"""Reading comm messages out of kernel traffic, as cheaply as possible.

Every kernel message passes through here, so the common case (not a comm message) must
cost a substring search on the header frame and nothing else: `comm_` appears in the
header of every comm message (its `msg_type`), and JSON is parsed only when it does.

Three wire forms carry the same message:
- ZMQ frames: ``[idents..., b"<IDS|MSG>", signature, header, parent, metadata, content, *buffers]``;
- websocket v1 (``v1.kernel.websocket.jupyter.org``): offsets, channel, then the same parts;
- websocket legacy: one JSON text, or a binary frame of offsets, JSON and buffers.

Comm messages can be big (a figure's or a data grid's state, megabytes of JSON or binary
buffers), and the mirror needs only their ids and size.  Sizes come from the frames' lengths,
buffers are never copied, and a content part bigger than `SKIM_ABOVE` is *skimmed*: its
top-level fields are read at its two ends (`skim`), the rest (the `data`) is neither parsed
nor copied.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import orjson
from jupyter_client.jsonutil import extract_dates
from jupyter_client.session import DELIM

V1_SUBPROTOCOL = "v1.kernel.websocket.jupyter.org"
COMM_MSG_TYPES = frozenset({"comm_open", "comm_msg", "comm_close"})
_COMM_MARK = b"comm_"
#: a v1 frame's leading offset count, and its offset tables for the counts frames have
#: (channel + 4 parts + a few buffers; other counts build theirs per frame)
_COUNT = struct.Struct("<Q")
_OFFSET_TABLES = {count: struct.Struct(f"<{count}Q") for count in range(3, 33)}
#: a content part up to this size is parsed whole (orjson reads 64 KB in about 0.1 ms); a
#: bigger one is skimmed (see `skim`)
SKIM_ABOVE = 64 * 1024
#: how many bytes at each end of a big content part `skim` reads
SKIM_EDGE = 4096

#: a content part's bytes: a reference into the frame that carried it when that is big
Buffer = bytes | memoryview


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
    #: the content part as received, never a copy of a big one: JSON bytes (ZMQ frames, v1
    #: parts; a memoryview into the frame past `SKIM_ABOVE`), or the parsed dict of a legacy
    #: frame; kept for readers that need more than the ids (widget state)
    content: Any = None
    #: whether the content was too big to read whole and only its ends were read (`skim`)
    skimmed: bool = False


def _checked_str(content: dict[str, Any], key: str, required: bool) -> str | None:
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


def comm_message(
    header: Any, content: Any, nbytes: int, raw: Any = None, skimmed: bool = False
) -> CommMessage | None:
    """Build a CommMessage from a parsed header and content; None if not a comm message.

    `raw` is the content part as received, if not `content` itself; `skimmed` says that
    `content` holds only the fields `skim` found.
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
        skimmed,
    )


def _loads(part: Buffer | str, what: str) -> Any:
    """orjson (5x faster than json on a header); json for what orjson is stricter about
    (lone surrogates, NaN, huge integers), so both read what jupyter_client reads."""
    try:
        return orjson.loads(part)
    except (ValueError, TypeError):
        pass
    try:
        return json.loads(part.tobytes() if isinstance(part, memoryview) else part)
    except (ValueError, TypeError) as e:
        raise MalformedMessage(f"{what} is not JSON: {e}") from e


# -- skimming a big content part --------------------------------------------------------
#
# Jupyter's comm content is a JSON object whose few small fields sit before or after its
# one big value: `{"comm_id": ..., "data": {...}}` from JupyterLab, `{"data": {...},
# "comm_id": ..., "target_name": ..., "target_module": ...}` from ipykernel.  Read from each
# end, member by member, those fields are found in a few hundred bytes, and a member is
# known to be at the top level because every member between it and the object's brace was
# read whole.  A `"comm_id"` inside `data` is never looked at.

_JSON_WS = b" \t\n\r"
_OBJECT_START = re.compile(rb"[ \t\n\r]*\{")
#: a top-level member with a string, number or literal value, and what follows it
_HEAD_MEMBER = re.compile(
    rb'[ \t\n\r]*("(?:[^"\\]|\\.)*")[ \t\n\r]*:[ \t\n\r]*'
    rb'("(?:[^"\\]|\\.)*"|-?[0-9][-+.0-9eE]*|true|false|null)[ \t\n\r]*([,}])',
    re.DOTALL,
)
#: the bytes a number, true, false or null can end with and be made of
_SCALAR_BYTES = frozenset(b"0123456789+-.eEtrufalsn")
_QUOTE, _BACKSLASH, _COLON, _COMMA, _OPEN, _CLOSE = b'"\\:,{}'
#: the fields a skim must find to spare a full parse: what the mirror records of a message
#: (other fields of a big content, such as a comm_msg's target_name, are not checked)
_SKIM_NEEDS = {
    "comm_open": ("comm_id", "target_name", "target_module"),
    "comm_msg": ("comm_id",),
    "comm_close": ("comm_id",),
}


def _head_members(head: bytes) -> list[tuple[bytes, bytes]] | None:
    """The members at the start of a JSON object, up to the first that is not a string,
    number or literal (or that the head cuts); None if the object ends within the head."""
    start = _OBJECT_START.match(head)
    if start is None:
        return None
    members = []
    pos = start.end()
    while (m := _HEAD_MEMBER.match(head, pos)) is not None:
        if m[3] == b"}":
            return None
        members.append((m[1], m[2]))
        pos = m.end()
    return members


def _skip_back(tail: bytes, i: int) -> int:
    while i >= 0 and tail[i] in _JSON_WS:
        i -= 1
    return i


def _string_start(tail: bytes, end: int) -> int:
    """Where the JSON string that ends with the quote at `end` starts; -1 if not in `tail`.

    In a string every quote is escaped (an odd run of backslashes before it), so the first
    unescaped quote back from the end opens it."""
    j = end
    while (j := tail.rfind(b'"', 0, j)) > 0:
        k = j
        while k > 0 and tail[k - 1] == _BACKSLASH:
            k -= 1
        if k == 0:  # the run of backslashes may go on before the tail
            return -1
        if (j - k) % 2 == 0:
            return j
    return -1


def _value_start(tail: bytes, end: int) -> int:
    """Where the string, number or literal ending at `end` starts; -1 if it is none of them."""
    if tail[end] == _QUOTE:
        return _string_start(tail, end)
    i = end
    while i >= 0 and tail[i] in _SCALAR_BYTES:
        i -= 1
    return i + 1 if 0 <= i < end else -1


def _tail_members(tail: bytes) -> list[tuple[bytes, bytes]] | None:
    """The members at the end of a JSON object, back to the last that is not a string,
    number or literal (or that the tail cuts); None if the object starts within the tail."""
    i = _skip_back(tail, len(tail) - 1)
    if i < 0 or tail[i] != _CLOSE:
        return None
    members: list[tuple[bytes, bytes]] = []
    while True:
        value_end = _skip_back(tail, i - 1)
        value_start = _value_start(tail, value_end) if value_end >= 0 else -1
        colon = _skip_back(tail, value_start - 1) if value_start > 0 else -1
        key_end = _skip_back(tail, colon - 1) if colon > 0 and tail[colon] == _COLON else -1
        key_start = _string_start(tail, key_end) if key_end > 0 and tail[key_end] == _QUOTE else -1
        before = _skip_back(tail, key_start - 1) if key_start > 0 else -1
        if before < 0 or tail[before] not in (_COMMA, _OPEN):
            break
        if tail[before] == _OPEN:
            return None
        members.append((tail[key_start : key_end + 1], tail[value_start : value_end + 1]))
        i = before
    members.reverse()
    return members


def skim(content: Buffer) -> dict[str, Any] | None:
    """The top-level fields of a big JSON object that are strings, numbers or literals and
    lie before its first other value or after its last; None if the ends do not read as
    those of an object.  The rest is neither copied nor parsed nor checked.

    Repeated names resolve as in a full parse (the last wins) among the fields read; a name
    repeated in the unread middle is not seen.
    """
    head = _head_members(bytes(content[:SKIM_EDGE]))
    if head is None:
        return None
    tail = _tail_members(bytes(content[-SKIM_EDGE:]))
    if tail is None:
        return None
    fields: dict[str, Any] = {}
    try:
        for key, value in (*head, *tail):
            fields[_loads(key, "name")] = _loads(value, "value")
    except MalformedMessage:  # a full parse says what is wrong
        return None
    return fields


def _read(header: bytes, content: Buffer, nbytes: int) -> CommMessage | None:
    """The comm message with this header and content frame, if it is one."""
    parsed = _loads(header, "header")
    if not isinstance(parsed, dict) or parsed.get("msg_type") not in COMM_MSG_TYPES:
        return None
    if len(content) <= SKIM_ABOVE:
        if isinstance(content, memoryview):
            content = content.tobytes()
        return comm_message(parsed, _loads(content, "content"), nbytes, content)
    fields = skim(content)
    needed = _SKIM_NEEDS[parsed["msg_type"]]
    if fields is not None and all(key in fields for key in needed):
        needs = {key: fields[key] for key in needed}
        return comm_message(parsed, needs, nbytes, content, skimmed=True)
    if _OBJECT_START.match(bytes(content[:SKIM_EDGE])) is None:  # not worth a parse
        raise MalformedMessage(f"{parsed['msg_type']} content is not a JSON object")
    return comm_message(parsed, _loads(content, "content"), nbytes, content)


def from_parts(parts: Sequence[Buffer]) -> CommMessage | None:
    """Read ``[header, parent, metadata, content, *buffers]`` (ZMQ frames or v1 parts).

    The header must be bytes; the other parts may be memoryviews (only their length is
    read, and the content's as `_read` needs)."""
    if not parts or _COMM_MARK not in parts[0]:
        return None
    if len(parts) < 4:
        raise MalformedMessage(f"message has {len(parts)} parts, fewer than 4")
    return _read(parts[0], parts[3], sum(map(len, parts)))  # type: ignore[arg-type]


def from_zmq(msg_list: Sequence[Buffer]) -> CommMessage | None:
    """Read a message as received from a kernel's ZMQ socket (identities first); frames
    from the content on may be memoryviews."""
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
    """Read a v1 websocket frame, slicing out only the parts a comm message needs (a big
    content as a memoryview: a reference into the frame, not a copy)."""
    channel = frame[offsets[0] : offsets[1]].decode("utf-8", "replace")
    if len(offsets) < 6:  # channel + 4 parts need 6 offsets
        return channel, None
    header = frame[offsets[1] : offsets[2]]
    if _COMM_MARK not in header:
        return channel, None
    start, end = offsets[4], offsets[5]
    content = frame[start:end] if end - start <= SKIM_ABOVE else memoryview(frame)[start:end]
    return channel, _read(header, content, offsets[-1] - offsets[1])


def _legacy_binary(frame: bytes) -> tuple[dict[str, Any], int]:
    """A legacy binary frame's message (without its buffers) and its buffers' total size.

    Reads it the way jupyter_server's parser does (header and parent header required,
    dates parsed: they are re-packed for the size), without copying the buffers."""
    offsets = legacy_offsets(frame)
    end = offsets[1] if len(offsets) > 1 else len(frame)
    msg = _loads(memoryview(frame)[offsets[0] : end], "message")
    if not isinstance(msg, dict):
        raise MalformedMessage("message is not a JSON object")
    try:
        msg["header"] = extract_dates(msg["header"])
        msg["parent_header"] = extract_dates(msg["parent_header"])
    except Exception as e:  # stock's parser raises whatever the JSON leads it to
        raise MalformedMessage(f"bad binary message: {e!r}") from e
    return msg, len(frame) - end


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
        buffers = 0
    else:
        msg, buffers = _legacy_binary(frame)
    if not isinstance(msg, dict):
        raise MalformedMessage("message is not a JSON object")
    channel = msg.get("channel")
    header = msg.get("header")
    if not isinstance(header, dict) or header.get("msg_type") not in COMM_MSG_TYPES:
        return channel, None
    parts = (header, msg.get("parent_header") or {}, msg.get("metadata") or {})
    content = msg.get("content")
    try:
        nbytes = sum(len(pack(p)) for p in (*parts, content)) + buffers
    except (TypeError, ValueError) as e:
        raise MalformedMessage(f"message cannot be packed: {e}") from e
    return channel, comm_message(header, content, nbytes)

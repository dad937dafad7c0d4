"""Big comm messages (megabytes of JSON state or binary buffers, as data-heavy widgets send
them) are counted once each, with their exact size, both ways and on both websocket
protocols, while the mirror reads only their ends (the skim) and copies none of them."""

from __future__ import annotations

import json

import pytest
from inprocess import extension
from jupyter_client.session import Session
from jupyter_server.services.kernels.connection.base import (
    deserialize_binary_message,
    deserialize_msg_from_ws_v1,
)
from waiting import wait_for
from wsclient import KernelWS, comm_msgs

from jupyter_comm_ext.protocol import SKIM_ABOVE

N = 3
SIZE = 3_000_000
PACK = Session().pack

#: a kernel target that notes the size of what each message brought
SINK = """
from comm import get_comm_manager
got = []
def _sink(comm, msg):
    comm.on_msg(lambda m: got.append(len(m["content"]["data"].get("s", "")) + sum(
        len(b) for b in m["buffers"])))
get_comm_manager().register_target("sink", _sink)
"""

#: the kernel opens a comm and sends N big messages on it (JSON: a "comm_id" inside data)
KERNEL_SENDS = """
from comm import create_comm
big = create_comm(target_name="big-{kind}", data={{}})
for i in range({n}):
    if "{kind}" == "json":
        big.send({{"s": "x" * {size}, "inner": {{"comm_id": "decoy"}}, "i": i}})
    else:
        big.send({{"i": i}}, buffers=[bytes({size})])
big.comm_id
"""


def big_content(kind: str, comm_id: str, i: int) -> tuple[dict, list[bytes]]:
    """The content and buffers of the i-th big message a frontend sends."""
    if kind == "json":
        return {"comm_id": comm_id, "data": {"s": "x" * SIZE, "inner": {"comm_id": "decoy"}}}, []
    return {"comm_id": comm_id, "data": {"i": i}}, [bytes(SIZE)]


def zmq_size(frame: bytes | str, protocol: str) -> int:
    """The size of a frontend's frame as the ZMQ frames the server sends the kernel: the v1
    parts as they are, a legacy message as jupyter_server re-packs it."""
    if protocol == "v1":
        return sum(map(len, deserialize_msg_from_ws_v1(frame)[1]))
    msg = deserialize_binary_message(frame) if isinstance(frame, bytes) else json.loads(frame)
    parts = (msg["header"], msg["parent_header"], msg["metadata"], msg["content"])
    return sum(len(PACK(p)) for p in parts) + sum(map(len, msg.get("buffers", [])))


async def model(fetch_json, comm_id: str) -> dict:
    return await fetch_json("api", "comms", comm_id)


@pytest.mark.parametrize("kind", ["json", "buffers"])
@pytest.mark.parametrize("protocol", ["v1", "legacy"])
async def test_frontend_to_kernel(
    jp_serverapp, fetch_json, jp_ws_fetch, start_kernel, protocol, kind
):
    mirror = extension(jp_serverapp).mirror
    kernel_id = await start_kernel()
    ws = await KernelWS.connect(jp_ws_fetch, kernel_id, protocol)
    await ws.execute(SINK)
    skimmed = mirror.registry.skimmed_contents
    comm_id = f"big-{protocol}-{kind}"
    frames = [
        ws.encode(ws.message("comm_open", {"comm_id": comm_id, "target_name": "sink"}), "shell")
    ]
    for i in range(N):
        content, buffers = big_content(kind, comm_id, i)
        frames.append(ws.encode(ws.message("comm_msg", content, buffers), "shell"))
    for frame in frames:
        await ws.write(frame)
    await ws.eventually(f"got == [{SIZE}] * {N}", timeout=60)
    m = await model(fetch_json, comm_id)
    assert m["messages"]["to_kernel"] == N + 1
    assert m["bytes"]["to_kernel"] == sum(zmq_size(f, protocol) for f in frames)
    # v1 JSON contents are skimmed; legacy frames are JSON the server parses whole anyway
    expect_skimmed = N if (protocol, kind) == ("v1", "json") else 0
    assert mirror.registry.skimmed_contents - skimmed == expect_skimmed
    ws.close()


@pytest.mark.parametrize("kind", ["json", "buffers"])
async def test_kernel_to_frontends(jp_serverapp, fetch_json, jp_ws_fetch, start_kernel, kind):
    """One v1 and one legacy frontend: both get every message, the watcher counts each
    once, and its size is that of the v1 parts (the kernel's ZMQ frames, byte for byte)."""
    mirror = extension(jp_serverapp).mirror
    kernel_id = await start_kernel()
    v1 = await KernelWS.connect(jp_ws_fetch, kernel_id, "v1")
    legacy = await KernelWS.connect(jp_ws_fetch, kernel_id, "legacy")
    skimmed = mirror.registry.skimmed_contents
    reply = await v1.execute(KERNEL_SENDS.format(kind=kind, n=N, size=SIZE), timeout=60)
    assert reply["content"]["status"] == "ok"
    opened = await v1.recv(comm_msgs(v1, "comm_open"))
    comm_id = opened["content"]["comm_id"]
    for ws in (v1, legacy):
        for _ in range(N):
            await ws.recv(comm_msgs(ws, "comm_msg", comm_id), timeout=60)
    sizes = []
    for frame in v1.raw:
        parts = deserialize_msg_from_ws_v1(frame)[1]
        header, content = json.loads(parts[0]), parts[3]
        if header["msg_type"].startswith("comm_") and json.loads(content).get("comm_id") == comm_id:
            sizes.append(sum(map(len, parts)))
    assert len(sizes) == N + 1

    async def counted() -> bool:
        return (await model(fetch_json, comm_id))["messages"]["from_kernel"] == N + 1

    await wait_for(counted, timeout=20, what=f"{N + 1} messages counted")
    m = await model(fetch_json, comm_id)
    assert m["bytes"]["from_kernel"] == sum(sizes)
    assert mirror.registry.skimmed_contents - skimmed == (N if kind == "json" else 0)
    assert SIZE > SKIM_ABOVE
    v1.close()
    legacy.close()

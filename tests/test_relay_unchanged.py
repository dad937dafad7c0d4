"""The tap forwards every byte unchanged, both ways."""

from __future__ import annotations

import asyncio
import json

import pytest
from jupyter_client.jsonutil import json_default
from jupyter_client.session import DELIM
from jupyter_server.services.kernels.connection.base import deserialize_msg_from_ws_v1
from wsclient import PROTOCOLS, KernelWS, comm_msgs

ECHO_RAW = """
import json
from comm import get_comm_manager
def _raw(comm, open_msg):
    @comm.on_msg
    def _(msg):
        comm.send({"header": msg["header"], "metadata": msg["metadata"],
                   "content": msg["content"]},
                  buffers=[bytes(b) for b in msg["buffers"]])
get_comm_manager().register_target("raw", _raw)
"""


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_kernel_receives_what_the_frontend_sent(jp_ws_fetch, start_kernel, protocol):
    kernel_id = await start_kernel()
    ws = await KernelWS.connect(jp_ws_fetch, kernel_id, protocol)
    await ws.execute(ECHO_RAW)
    await ws.send("comm_open", {"comm_id": "raw1", "target_name": "raw", "data": {}})
    data = {"text": 'é ✓ \u0000 "quoted"', "n": [1, 2.5, None, True], "nested": {"a": {}}}
    sent = ws.message(
        "comm_msg",
        {"comm_id": "raw1", "data": data},
        buffers=[b"\x00\xff" * 100, bytes(range(256))],
    )
    sent["metadata"] = {"m": "x"}
    await ws.write(ws.encode(sent, "shell"))
    echo = await ws.recv(comm_msgs(ws, "comm_msg", "raw1"))
    seen = echo["content"]["data"]
    assert seen["content"] == sent["content"]
    assert seen["metadata"] == sent["metadata"]
    assert {k: seen["header"][k] for k in sent["header"]} == json.loads(
        json.dumps(sent["header"], default=json_default)
    )
    assert echo["buffers"] == sent["buffers"]
    ws.close()


async def test_frontend_receives_the_kernels_bytes(jp_serverapp, jp_ws_fetch, start_kernel):
    """On v1 the server forwards the kernel's frames: they must arrive byte for byte."""
    kernel_id = await start_kernel()
    ws = await KernelWS.connect(jp_ws_fetch, kernel_id, "v1")
    sub = jp_serverapp.kernel_manager.get_kernel(kernel_id).connect_iopub()
    frames_seen = []
    sub.on_recv(frames_seen.append)
    await ws.execute("from comm import create_comm; c = create_comm(target_name='bytes')")
    await ws.execute("c.send({'v': 'é'}, buffers=[b'\\x00\\x01' * 1000])")
    msg = await ws.recv(comm_msgs(ws, "comm_msg"))
    raw = next(f for f in reversed(ws.raw) if b'"comm_msg"' in f)
    _, ws_parts = deserialize_msg_from_ws_v1(raw)
    for _ in range(100):
        zmq_msgs = [
            f[f.index(DELIM) + 2 :] for f in frames_seen if any(b'"comm_msg"' in p for p in f)
        ]
        if zmq_msgs:
            break
        await asyncio.sleep(0.05)
    sub.close()
    assert [bytes(p) for p in zmq_msgs[0]] == ws_parts
    assert msg["buffers"] == [b"\x00\x01" * 1000]
    ws.close()

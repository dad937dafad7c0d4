"""Relay benchmarks: kernel -> frontend floods and frontend -> kernel -> frontend round trips.

Each function runs one measurement on an already connected `KernelClient` and returns
numbers; `bench/run.py` interleaves servers (stock, extension, stock again for A/A) round by
round so that load from elsewhere on the machine hits every side alike.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from .clients import KernelClient, msg_type_mark

COMM_MSG = msg_type_mark("comm_msg")
STREAM = msg_type_mark("stream")

#: kernel code: an echo target for round trips (ipykernel's own comm manager, via `comm`)
ECHO_TARGET = """
import comm as _comm_pkg
def _bench_echo(c, open_msg):
    c.on_msg(lambda msg: c.send(msg["content"]["data"]))
_comm_pkg.get_comm_manager().register_target("bench_echo", _bench_echo)
"""

#: a slider's model as its comm_open carries it (the widget graph reads it), and what a drag
#: sends: the comm traffic of a widget, for `variants.py --widget`
SLIDER_STATE = {
    "_model_name": "IntSliderModel",
    "_model_module": "@jupyter-widgets/controls",
    "_model_module_version": "2.0.0",
    "value": 0,
    "layout": "IPY_MODEL_" + "0" * 32,
    "style": "IPY_MODEL_" + "1" * 32,
}
SLIDER_OPEN = {"state": SLIDER_STATE, "buffer_paths": []}


def slider_update(i: int) -> dict:
    """A slider drag's message: `update {value: i}`."""
    return {"method": "update", "state": {"value": i}, "buffer_paths": []}


def plain(i: int) -> dict:
    return {"i": i}


COMM_FLOOD = """
import comm as _comm_pkg
_c = _comm_pkg.create_comm(target_name="bench_sink")
for _i in range({n}):
    _c.send({{"i": _i}})
_c.close()
"""

WIDGET_FLOOD = """
import comm as _comm_pkg
_c = _comm_pkg.create_comm(target_name="bench_sink", data={data})
for _i in range({n}):
    _c.send({{"method": "update", "state": {{"value": _i}}, "buffer_paths": []}})
_c.close()
"""

STREAM_FLOOD = """
for _i in range({n}):
    print(_i, flush=True)
"""


async def flood(client: KernelClient, kind: str, n: int, timeout: float) -> dict:
    """The kernel sends `n` comm_msg (kind "comm"; "widget": a slider's updates) or stream
    messages (kind "stream").

    Server CPU is read by the caller (see `bench/run.py`'s slices), not here: the flood's
    last frames reach the client before the server has finished all its work for them.
    """
    code, mark = {
        "comm": (COMM_FLOOD, COMM_MSG),
        "widget": (WIDGET_FLOOD, COMM_MSG),
    }.get(kind, (STREAM_FLOOD, STREAM))
    t0 = time.perf_counter()
    await client.execute(code.format(n=n, data=repr(SLIDER_OPEN)), wait=False)
    t1 = await client.read_until(mark, n, timeout)
    return {"seconds": t1 - t0, "msgs_per_s": n / (t1 - t0)}


async def fanout(clients: list[KernelClient], n: int, timeout: float) -> dict:
    """The kernel floods `n` comm_msg to every one of `clients` (dashboards, classrooms).

    Server CPU per delivered message (per message and frontend) is read by the caller, as
    for `flood`.
    """
    t0 = time.perf_counter()
    await clients[0].execute(COMM_FLOOD.format(n=n), wait=False)
    done = await asyncio.gather(*(c.read_until(COMM_MSG, n, timeout) for c in clients))
    await asyncio.gather(*(c.drain(quiet=0.2) for c in clients))
    delivered = n * len(clients)
    return {
        "frontends": len(clients),
        "seconds": max(done) - t0,
        "delivered_per_s": delivered / (max(done) - t0),
    }


async def open_echo(client: KernelClient, data: dict | None = None) -> str:
    """Open a comm on the kernel's echo target (`ECHO_TARGET` must have run); its id.
    `data` is its comm_open's (`SLIDER_OPEN`: the mirror takes it for a widget)."""
    comm_id = uuid.uuid4().hex
    content = {"comm_id": comm_id, "target_name": "bench_echo", "data": data or {}}
    await client.send("comm_open", content)
    return comm_id


async def close_echo(client: KernelClient, comm_id: str) -> None:
    await client.send("comm_close", {"comm_id": comm_id, "data": {}})
    await client.drain(quiet=0.2)


async def roundtrips(
    client: KernelClient,
    comm_id: str,
    n: int,
    timeout: float,
    first: int = 0,
    payload: Callable[[int], dict] = plain,
) -> dict:
    """`n` sequential comm round trips on an echo comm: the frontend sends, the kernel
    echoes.  Each round trip relays one frame in and three out (status busy, the echo,
    status idle).  `first` numbers the messages, so a late echo is never taken for one;
    `payload(i)` is message i's data (`slider_update`: a slider drag)."""
    latencies = []
    deadline = time.monotonic() + timeout
    for i in range(first, first + n):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{i - first} of {n} round trips in {timeout}s")

        def accept(frame: bytes | str, i: int = i) -> bool:
            msg = client.decode(frame)  # only frames that mention comm_msg
            content = msg["content"]
            return (
                msg["header"]["msg_type"] == "comm_msg"
                and content.get("comm_id") == comm_id
                and content.get("data") == payload(i)
            )

        t0 = time.perf_counter()
        await client.send("comm_msg", {"comm_id": comm_id, "data": payload(i)})
        t1 = await client.read_until(COMM_MSG, 1, deadline - time.monotonic(), accept)
        latencies.append((t1 - t0) * 1e3)
    latencies.sort()
    return {
        "p50_ms": latencies[len(latencies) // 2],
        "p95_ms": latencies[int(len(latencies) * 0.95)],
        "mean_ms": sum(latencies) / len(latencies),
    }


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2)

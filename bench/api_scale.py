"""`GET /api/comms` at scale vs asking every kernel with `comm_info_request`.

One server with the extension, `kernels` kernels each holding `comms // kernels` open
comms (opened by the kernel, so the mirror learns them from IOPub).  Then:
- `GET /api/comms` latency (p50/p95) and response size, and filtered to one kernel and
  one target;
- today's alternative: `comm_info_request` on every kernel's shell (over its websocket,
  as a frontend would), waiting for all replies: with every kernel idle, and with one
  kernel busy in a 5 s cell (the reply waits for the cell; the mirror does not).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from .clients import KernelClient, msg_type_mark
from .servers import Server

OPEN_COMMS = """
import comm as _comm_pkg
_bench_comms = [_comm_pkg.create_comm(target_name="jupyter.widget", data={{}}) for _ in range({n})]
"""

COMM_INFO_REPLY = msg_type_mark("comm_info_reply")


def percentiles(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {
        "p50_ms": statistics.median(s),
        "p95_ms": s[min(len(s) - 1, int(len(s) * 0.95))],
        "p99_ms": s[min(len(s) - 1, int(len(s) * 0.99))],
        "min_ms": s[0],
        "max_ms": s[-1],
        "n": len(s),
    }


async def get_comms(server: Server, path: str = "/api/comms") -> tuple[float, int, int]:
    t0 = time.perf_counter()
    resp = await server.api("GET", path, raw=True)
    ms = (time.perf_counter() - t0) * 1e3
    return ms, len(resp.body), resp.body.count(b'"comm_id"')


async def ask_kernels(clients: list[KernelClient], timeout: float) -> float:
    t0 = time.perf_counter()
    for c in clients:
        await c.send("comm_info_request", {})
    await asyncio.gather(*(c.read_until(COMM_INFO_REPLY, 1, timeout) for c in clients))
    return (time.perf_counter() - t0) * 1e3


async def run(
    kernels: int, comms: int, requests: int, busy_seconds: float, code: str | None
) -> dict[str, Any]:
    server = await Server("api", True, code=code).start()
    clients: list[KernelClient] = []
    try:
        ids = []
        for _ in range(kernels):  # one at a time: 20 starting at once swamp 2 cores
            ids.append(await server.start_kernel())
        for kernel_id in ids:
            clients.append(await KernelClient.connect(server, kernel_id, "v1"))
        per_kernel = comms // kernels
        await asyncio.gather(
            *(c.execute(OPEN_COMMS.format(n=per_kernel), timeout=300) for c in clients)
        )
        await asyncio.gather(*(c.drain(quiet=0.5, limit=60) for c in clients))
        deadline = time.monotonic() + 120
        while True:
            _, size, count = await get_comms(server)
            if count >= per_kernel * kernels or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        listed = count
        await get_comms(server)  # warm
        idle = [(await get_comms(server))[0] for _ in range(requests)]
        one = f"/api/comms?kernel_id={ids[0]}&target_name=jupyter.widget"
        filtered = [(await get_comms(server, one))[0] for _ in range(requests)]
        asked_idle = [await ask_kernels(clients, 60) for _ in range(max(3, requests // 5))]
        # one kernel busy: the mirror answers at once, comm_info waits for the cell
        await clients[0].execute(f"import time; time.sleep({busy_seconds})", wait=False)
        await asyncio.sleep(0.3)
        t_busy = time.perf_counter()
        busy = []
        while len(busy) < requests and time.perf_counter() - t_busy < busy_seconds * 0.5:
            busy.append((await get_comms(server))[0])
        asked_busy = await ask_kernels(clients, busy_seconds + 60)
        await clients[0].drain(quiet=0.3)
        return {
            "kernels": kernels,
            "comms": per_kernel * kernels,
            "listed": listed,
            "response_bytes": size,
            "get_api_comms_idle": percentiles(idle),
            "get_api_comms_one_kernel_one_target": percentiles(filtered),
            "get_api_comms_one_kernel_busy": percentiles(busy),
            "comm_info_request_all_idle": percentiles(asked_idle),
            "comm_info_request_one_busy_ms": asked_busy,
            "busy_cell_seconds": busy_seconds,
        }
    finally:
        for c in clients:
            c.close()
        await server.shutdown()

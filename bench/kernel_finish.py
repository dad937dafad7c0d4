"""What finishing left-behind widget models frees in the kernel, stock and with the kernel side.

For each way, a server with the extension and one IPython kernel, and `rounds` times (a
dashboard rebuilt in a loop): create `n` IntSliders (3 comms each: the slider, its Layout,
its SliderStyle), `close()` them (the 2n Layout and style comms stay open), then finish
those through the server, `DELETE /api/comms` of the kernel's `jupyter.widget` comms: the
kernel gets `comm_close` on shell for each. Probed
from inside the kernel after each step: its RSS (VmRSS of /proc/self/status, after
`gc.collect()` and glibc's `malloc_trim(0)`, so memory the allocator would keep after a free
is not counted), `len(Widget.widgets)`, the comms open in its comm manager, and the objects
the garbage collector tracks. The ways:

- `stock`: ipykernel's own comm manager;
- `kernel side`: the server started with `--CommKernelSide.enabled=True`, so the kernel
  loads `jupyter_comm_ext.kernel`.

Run: `python bench/kernel_finish.py` (`--n 100 --rounds 1` for a quick run, `--json FILE`).
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.clients import KernelClient  # noqa: E402
from bench.servers import Server, exit_on_signals  # noqa: E402

#: way -> (server arguments, the module of the kernel's comm manager)
WAYS = {
    "stock": ([], "ipykernel."),
    "kernel side": (["--CommKernelSide.enabled=True"], "jupyter_comm_ext.kernel."),
}
#: sliders per cell: 3 comm_open each, under IOPub's default high-water mark of 1000
BATCH = 100

SETUP = """
import ctypes as _ctypes
import gc as _gc
import ipywidgets as _ipywidgets
from ipywidgets.widgets.widget import _instances as _widgets

_malloc_trim = getattr(_ctypes.CDLL(None), "malloc_trim", lambda pad: 0)  # glibc

def _probe():
    _gc.collect()
    _malloc_trim(0)
    with open("/proc/self/status") as f:
        rss_kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    manager = get_ipython().kernel.comm_manager
    return {
        "rss_kb": rss_kb,
        "widgets": len(_widgets),
        "comms": len(manager.comms),
        "objects": len(_gc.get_objects()),
        "manager": type(manager).__module__,
    }

_sliders = []
"""
CREATE = "_sliders.extend(_ipywidgets.IntSlider() for _ in range({n}))"
CLOSE = "for _s in _sliders[{start}:{stop}]: _s.close()"


async def evaluate(client: KernelClient, expr: str, timeout: float = 120) -> Any:
    """The JSON value of `expr` in the kernel, from an execute_request's user_expressions."""
    content = {
        "code": "",
        "silent": True,
        "store_history": False,
        "user_expressions": {"v": f"__import__('json').dumps({expr})"},
        "allow_stdin": False,
        "stop_on_error": True,
    }
    await client.send("execute_request", content)
    deadline = time.monotonic() + timeout
    while True:
        msg = client.decode(await client.read_frame(max(0.01, deadline - time.monotonic())))
        if msg["header"]["msg_type"] == "execute_reply":
            value = msg["content"]["user_expressions"]["v"]
            if value["status"] != "ok":
                raise RuntimeError(f"{expr}: {value}")
            return json.loads(ast.literal_eval(value["data"]["text/plain"]))


async def run_way(
    name: str, args: list[str], manager: str, n: int, rounds: int
) -> list[dict[str, Any]]:
    """One server and kernel: the probes after each step of each round."""
    server = await Server(name.replace(" ", "-"), extension=True, extra_args=args).start()
    try:
        model = await server.api("POST", "/api/kernels", {"name": "python3"})
        kernel_id = model["id"]
        server.kernels.append(kernel_id)
        client = await KernelClient.connect(server, kernel_id)
        try:
            await client.execute(SETUP)
            rows = [{"step": "baseline", **await evaluate(client, "_probe()")}]
            if not rows[0]["manager"].startswith(manager):
                raise RuntimeError(f"{name}: the kernel's comm manager is {rows[0]['manager']}")
            for r in range(1, rounds + 1):
                rows += await one_round(server, client, kernel_id, n, f"{r}:")
            return rows
        finally:
            client.close()
    finally:
        await server.shutdown()


async def one_round(
    server: Server, client: KernelClient, kernel_id: str, n: int, label: str
) -> list[dict[str, Any]]:
    """Create, close and finish `n` sliders: the probes after each step."""
    await client.execute("_sliders = []")
    for start in range(0, n, BATCH):
        await client.execute(CREATE.format(n=min(BATCH, n - start)))
    rows = [{"step": f"{label} {n:,} open", **await evaluate(client, "_probe()")}]
    for start in range(0, n, BATCH):
        await client.execute(CLOSE.format(start=start, stop=start + BATCH))
    await client.execute("del _sliders, _s")
    rows.append({"step": f"{label} closed", **await evaluate(client, "_probe()")})
    query = f"/api/comms?kernel_id={kernel_id}&target_name=jupyter.widget"
    await wait_for_mirror(server, query, 2 * n)
    finished = await server.api("DELETE", query, timeout=300)
    rows.append({"step": f"{label} finished", **await wait_finished(client, rows[-1], n)})
    rows[-1]["finished_by_server"] = len(finished)
    # comm_close messages the kernel had not handled when the wait ended
    rows[-1]["not_reached"] = 2 * n - (rows[-2]["comms"] - rows[-1]["comms"])
    return rows


async def wait_for_mirror(server: Server, query: str, count: int, timeout: float = 60) -> None:
    """Until the server lists the `count` left-behind comms (it learns them from IOPub)."""
    deadline = time.monotonic() + timeout
    while len(await server.api("GET", query)) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the server does not list {count} comms for {query}")
        await asyncio.sleep(0.2)


async def wait_finished(
    client: KernelClient, closed: dict[str, Any], n: int, timeout: float = 60
) -> dict[str, Any]:
    """The probe once the kernel has handled every comm_close the server sent."""
    deadline = time.monotonic() + timeout
    while True:
        probe: dict[str, Any] = await evaluate(client, "_probe()")
        if closed["comms"] - probe["comms"] >= 2 * n or time.monotonic() > deadline:
            return probe
        await asyncio.sleep(0.2)


COLUMNS = ("rss_kb", "widgets", "comms", "objects")


def print_table(report: dict[str, list[dict[str, Any]]]) -> None:
    print(
        f"{'way':<12} {'step':<20} {'RSS MB':>8} {'Widget.widgets':>15} {'comms':>6} {'objects':>9}"
    )

    def line(way: str, step: str, values: dict[str, int]) -> None:
        print(
            f"{way:<12} {step:<20} {values['rss_kb'] / 1024:>8.1f} {values['widgets']:>15,} "
            f"{values['comms']:>6,} {values['objects']:>9,}"
        )

    for way, rows in report.items():
        for row in rows:
            line(way, row["step"], row)
        before, after = rows[2], rows[3]
        line(way, "1: finishing freed", {k: before[k] - after[k] for k in COLUMNS})
        line(way, "all: over baseline", {k: rows[-1][k] - rows[0][k] for k in COLUMNS})
        lost = sum(row.get("not_reached", 0) for row in rows)
        if lost:
            print(f"{way}: {lost:,} comm_close messages did not reach the kernel")


async def amain(n: int, rounds: int) -> dict[str, list[dict[str, Any]]]:
    return {way: await run_way(way, *how, n, rounds) for way, how in WAYS.items()}


def main(argv: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="sliders to create and close")
    parser.add_argument("--rounds", type=int, default=3, help="create-close-finish rounds")
    parser.add_argument("--json", type=Path, help="write the probes here")
    args = parser.parse_args(argv)
    exit_on_signals()
    report = asyncio.run(amain(args.n, args.rounds))
    print_table(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()

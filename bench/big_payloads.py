"""Big comm messages through the server: stock against the extension, in the same slices.

    python bench/big_payloads.py                       # v1, every case, ~5 minutes
    python bench/big_payloads.py --slices 3 --case k2f-json-10x20MB
    python bench/big_payloads.py --code HEAD --variant before=@ffce488 --protocol legacy

Data-heavy widgets (figures, data grids, maps) send megabytes of JSON state or binary
buffers per message.  Each case sends a batch of such comm messages, kernel to frontend
(the kernel sends, the client reads them all) or frontend to kernel (the client sends,
then waits for the reply to an execute_request queued behind them, so the kernel has them
all), on stock, the extension and stock again (A/A), one kernel each, in the slices of
``run.py``: each server once per slice, in a new random order.  Per batch: the server's
CPU, the wall time until the other end has everything, and the server's peak RSS growth
(its high-water mark reset before the batch, read after it); ext and A/A are medians of
per-slice ratios to stock, with a 95 % interval.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import sys
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from jupyter_client.session import Session  # noqa: E402
from jupyter_server.services.kernels.connection.base import (  # noqa: E402
    serialize_binary_message,
    serialize_msg_to_ws_v1,
)

from bench.clients import PROTOCOLS, KernelClient, msg_type_mark  # noqa: E402
from bench.run import _snapshots, in_slices, paired, snapshot  # noqa: E402
from bench.servers import Server  # noqa: E402
from bench.variants import variant  # noqa: E402

MB = 1_000_000


def _cases(batches: tuple[tuple[int, int], ...]) -> dict[str, tuple[str, str, int, int]]:
    """name ("k2f-json-10x20MB") -> (direction, kind, messages per batch, bytes each)"""
    return {
        f"{direction}-{kind}-{n}x{size}MB": (direction, kind, n, size * MB)
        for direction in ("k2f", "f2k")
        for kind in ("json", "buffers")
        for n, size in batches
    }


CASES = _cases(((10, 20), (100, 1)))
SMOKE_CASES = _cases(((3, 1),))
#: tornado refuses websocket messages over 10 MiB by default: every server takes 1 GB
SERVER_ARGS = ['--ServerApp.tornado_settings={"websocket_max_message_size": 1073741824}']
COMM_MSG = msg_type_mark("comm_msg")
#: the comm's id, the same on every server (each has its own kernel)
COMM_ID = "bench-big"

#: kernel code: a sink target for the frontend's messages, and a comm for the kernel's own
KERNEL_SETUP = """
import comm as _comm_pkg
_comm_pkg.get_comm_manager().register_target("bench_sink", lambda c, m: None)
_big = _comm_pkg.create_comm(target_name="bench_big")
"""
#: kernel code: the state of one big message (a figure's numbers), or its buffer
KERNEL_PAYLOAD = {
    "json": "_payload = [round(_i * 0.37, 2) for _i in range({size} // 9)]",
    "buffers": "_payload = bytes({size})",
}
KERNEL_SEND = {
    "json": "for _i in range({n}): _big.send({{'method': 'update', 'state': {{'x': _payload}}}})",
    "buffers": (
        "for _i in range({n}): _big.send({{'method': 'update', 'state': {{}}, "
        "'buffer_paths': [['x']]}}, buffers=[_payload])"
    ),
}


def frontend_frames(protocol: str, kind: str, n: int, size: int) -> list[bytes | str]:
    """A frontend's batch: n comm_msg frames of about `size` bytes, JSON state or a buffer,
    encoded as JupyterLab does (the same frames go to every server)."""
    session = Session(session=uuid.uuid4().hex, key=b"")
    if kind == "json":
        data = {"method": "update", "state": {"x": [round(i * 0.37, 2) for i in range(size // 9)]}}
        buffers = []
    else:
        data = {"method": "update", "state": {}, "buffer_paths": [["x"]]}
        buffers = [bytes(size)]
    content = json.dumps({"comm_id": COMM_ID, "data": data}).encode()
    frames: list[bytes | str] = []
    for _ in range(n):
        msg = session.msg("comm_msg", {})
        if protocol == "v1":
            parts = [json.dumps(msg[k], default=str).encode() for k in ("header", "parent_header")]
            frames.append(serialize_msg_to_ws_v1([*parts, b"{}", content, *buffers], "shell"))
            continue
        header = json.dumps(msg["header"], default=str)
        text = (
            f'{{"header": {header}, "parent_header": {{}}, "metadata": {{}}, '
            f'"content": {content.decode()}, "channel": "shell"}}'
        )
        if buffers:
            legacy = json.loads(text)
            legacy["buffers"] = buffers
            frames.append(serialize_binary_message(legacy))
        else:
            frames.append(text)
    return frames


def reset_peak(pid: int) -> int:
    """Reset a process's RSS high-water mark (Linux: clear_refs 5); its RSS now."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")
    return _status_kb(pid, "VmRSS") * 1024


def peak_rss(pid: int) -> int:
    return _status_kb(pid, "VmHWM") * 1024


def _status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


class Run:
    """The servers, a kernel and a client on each, in one protocol."""

    def __init__(self, protocol: str, variants: dict[str, Server], code: str | None) -> None:
        self.protocol = protocol
        self.servers = {
            "stock": Server("stock", False, SERVER_ARGS),
            "ext": Server("ext", True, SERVER_ARGS, code),
            "stock_aa": Server("stock-aa", False, SERVER_ARGS),
            **variants,
        }
        self.clients: dict[str, KernelClient] = {}

    async def start(self) -> None:
        await asyncio.gather(*(s.start() for s in self.servers.values()))
        for name, server in self.servers.items():
            kernel_id = await server.start_kernel()
            self.clients[name] = await KernelClient.connect(server, kernel_id, self.protocol)
            await self.clients[name].execute(KERNEL_SETUP)
            await self.clients[name].send(
                "comm_open", {"comm_id": COMM_ID, "target_name": "bench_sink", "data": {}}
            )
            await self.clients[name].drain(quiet=0.3)

    async def shutdown(self) -> None:
        for c in self.clients.values():
            c.close()
        await asyncio.gather(*(s.shutdown() for s in self.servers.values()), return_exceptions=True)


async def batch(
    run: Run, direction: str, kind: str, n: int, frames: list[bytes | str], name: str, i: int
) -> dict[str, float]:
    """One batch on server `name`: wall time until the other end has it all, and the
    server's peak RSS growth over it (read once the server has had a moment to finish)."""
    client, pid = run.clients[name], run.servers[name].pid
    rss0 = reset_peak(pid)
    t0 = time.perf_counter()
    if direction == "k2f":
        await client.execute(KERNEL_SEND[kind].format(n=n), wait=False)
        t1 = await client.read_until(COMM_MSG, n, 600)
    else:
        for frame in frames:
            await client.ws.write_message(frame, binary=isinstance(frame, bytes))
        await client.execute("pass", timeout=600)
        t1 = time.perf_counter()
    await client.drain(quiet=0.2)
    return {"wall_ms": (t1 - t0) * 1000, "rss_growth_mb": (peak_rss(pid) - rss0) / MB}


async def measure(
    run: Run, cases: dict[str, tuple[str, str, int, int]], slices: int, log: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    order = random.Random(3)
    for case, (direction, kind, n, size) in cases.items():
        frames: list[bytes | str] = []
        if direction == "f2k":
            frames = frontend_frames(run.protocol, kind, n, size)
        else:
            for c in run.clients.values():
                await c.execute(KERNEL_PAYLOAD[kind].format(size=size))
        one = partial(batch, run, direction, kind, n, frames)
        raw = await in_slices(run.servers, slices, order, one, "cpu_ms", 1000)
        out[case] = {"raw": raw, "summary": summarize(raw)}
        log(f"{run.protocol} {case}: {slices} slices done")
    return out


def summarize(raw: dict[str, list[dict]]) -> dict[str, Any]:
    """Medians per server; CPU and wall as paired ratios to stock, peak RSS growth as the
    median of paired differences (a batch that fits in memory freed by the last one grows
    the RSS by 0: no ratio)."""
    summary: dict[str, Any] = {}
    for metric in ("cpu_ms", "wall_ms", "rss_growth_mb"):
        samples = {name: [r[metric] for r in results] for name, results in raw.items()}
        entry: dict[str, Any] = {name: statistics.median(v) for name, v in samples.items()}
        for name in samples:
            if name == "stock":
                continue
            if metric == "rss_growth_mb":
                diffs = [a - b for a, b in zip(samples[name], samples["stock"], strict=True)]
                entry[f"diff_{name}"] = statistics.median(diffs)
            else:
                entry[f"ratio_{name}"] = paired(samples[name], samples["stock"])
        summary[metric] = entry
    return summary


async def run_all(
    protocols: list[str],
    cases: dict[str, tuple[str, str, int, int]],
    slices: int,
    variants: list[str],
    log: Any,
    code: str | None = None,
) -> dict[str, Any]:
    """Every case on each protocol; `code`: a directory the extension is imported from."""
    report: dict[str, Any] = {}
    for protocol in protocols:
        run = Run(protocol, dict(variant(spec, SERVER_ARGS) for spec in variants), code)
        try:
            await run.start()
            report[protocol] = await measure(run, cases, slices, log)
        finally:
            await run.shutdown()
    return report


def pct(p: dict[str, Any]) -> str:
    low, high = (100 * (x - 1) for x in p["ci95"])
    return f"{100 * (p['median'] - 1):+.1f}% [{low:+.1f}, {high:+.1f}]"


def print_table(report: dict[str, Any]) -> None:
    labels = {"cpu_ms": "srv CPU ms", "wall_ms": "wall ms", "rss_growth_mb": "peak RSS +MB"}
    for protocol, cases in report.items():
        names = list(next(iter(cases.values()))["raw"])
        others = [n for n in names if n != "stock"]
        print(
            f"\nbig comm messages, {protocol} client: per batch, median over slices; "
            "vs stock: median of per-slice ratios [95% interval], or of differences (RSS)"
        )
        head = f"{'case':<20}{'metric':<14}" + "".join(f"{n:>10}" for n in names)
        print(head + "".join(f"{n + ' vs stock':>26}" for n in others))
        for case, entry in cases.items():
            for metric, label in labels.items():
                per = entry["summary"][metric]
                cells = "".join(f"{per[n]:>10,.1f}" for n in names)
                if metric == "rss_growth_mb":
                    ratios = "".join(f"{per[f'diff_{n}']:>+23.1f} MB" for n in others)
                else:
                    ratios = "".join(f"{pct(per[f'ratio_{n}']):>26}" for n in others)
                print(f"{case:<20}{label:<14}{cells}{ratios}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocol", choices=[*PROTOCOLS, "both"], default="v1")
    parser.add_argument("--slices", type=int, default=5)
    parser.add_argument("--case", action="append", choices=[*CASES, *SMOKE_CASES])
    parser.add_argument("--smoke", action="store_true", help="1 MB x 3, 2 slices")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=[@ref] ARGS")
    parser.add_argument("--json", type=Path, help="write the raw results here")
    parser.add_argument(
        "--code", help="import the extension from this directory, or a git ref to archive"
    )
    args = parser.parse_args(argv)
    protocols = list(PROTOCOLS) if args.protocol == "both" else [args.protocol]
    every = {**CASES, **SMOKE_CASES}
    cases = {c: every[c] for c in args.case} if args.case else SMOKE_CASES if args.smoke else CASES
    slices = 2 if args.smoke else args.slices
    t0 = time.monotonic()

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - t0:6.0f}s] {msg}", file=sys.stderr, flush=True)

    try:
        code = snapshot(args.code) if args.code and not Path(args.code).is_dir() else args.code
        report = asyncio.run(run_all(protocols, cases, slices, args.variant, log, code))
    finally:
        for tmp in _snapshots:
            shutil.rmtree(tmp, ignore_errors=True)
    print_table(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()

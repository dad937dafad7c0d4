"""All of issue 7's benchmarks in one command: a table on stdout, JSON on disk.

    python bench/run.py                   # ~10 minutes on 2 cores
    python bench/run.py --smoke           # tiny N, under a minute: keeps the code from rotting
    python bench/run.py --code HEAD       # the extension as committed (git archive of HEAD)

Servers (stock jupyter_server, the same with jupyter_comm_ext, stock again for the A/A
noise floor) run side by side; rounds are interleaved A B A' with the order rotated each
round, so load from elsewhere on the machine hits every side alike.  Medians and spreads
(min-max) are reported; ratios are of medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import api_scale, machine, memory, relay, tap_replay  # noqa: E402
from bench.clients import PROTOCOLS, KernelClient  # noqa: E402
from bench.servers import Server  # noqa: E402

FULL = {
    "rounds": 3,
    # relay: slices per case, each server once per slice; messages or round trips per slice
    "slices": {"comm": 60, "stream": 60, "roundtrip": 200},
    "flood_n": 1000,
    "rt_n": 25,
    "browser_rounds": 2,
    "browser_n": 200,
    "fanout": {"frontends": [10, 50], "n": 500},
    "api": {"kernels": 20, "comms": 10_000, "requests": 30, "busy_seconds": 5.0},
    "memory_sizes": [10_000, 100_000],
    "replay": {"n": 5000, "repeat": 5, "rounds": 3},
    "dispatch_args": ["--n", "20000", "--rounds", "5"],
}
SMOKE = {
    "rounds": 1,
    "slices": {"comm": 2, "stream": 2, "roundtrip": 2},
    "flood_n": 200,
    "rt_n": 10,
    "browser_rounds": 1,
    "browser_n": 10,
    "fanout": {"frontends": [3], "n": 50},
    "api": {"kernels": 2, "comms": 20, "requests": 5, "busy_seconds": 1.0},
    "memory_sizes": [1000],
    "replay": {"n": 200, "repeat": 1, "rounds": 1},
    "dispatch_args": ["--smoke"],
}


def summarize(samples: list[float]) -> dict[str, Any]:
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "samples": samples,
    }


def rotated(items: list, r: int) -> list:
    r %= len(items)
    return items[r:] + items[:r]


_snapshots: list[str] = []


def snapshot(ref: str) -> str:
    """A clean copy of the package at a git ref (others may be editing the checkout)."""
    out = tempfile.mkdtemp(prefix="bench-code-")
    _snapshots.append(out)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "jupyter_comm_ext"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    subprocess.run(["tar", "-x", "-C", out], input=archive, check=True, timeout=60)
    return out


def git_commit() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=30
        ).stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}


# -- relay --------------------------------------------------------------------------------


class RelayServers:
    """The relay benchmark's servers, one kernel each, and one client per measured server."""

    def __init__(self, code: str | None) -> None:
        self.servers = {
            "stock": Server("stock", False),
            "ext": Server("ext", True, code=code),
            "stock_aa": Server("stock-aa", False),
            "ext_nagle": Server("ext-nagle", True, ["--CommTap.websocket_nodelay=False"], code),
        }
        self.kernels: dict[str, str] = {}
        self.clients: dict[str, KernelClient] = {}

    async def start(self) -> None:
        await asyncio.gather(*(s.start() for s in self.servers.values()))
        for name, server in self.servers.items():
            self.kernels[name] = await server.start_kernel()
        await self.connect(list(self.servers), "v1")
        for c in self.clients.values():
            await c.execute(relay.ECHO_TARGET)

    async def connect(self, names: list[str], proto: str) -> None:
        """One client per server on this protocol, and no other: a kernel's IOPub goes to
        every connected client, and an idle client's unread frames would cost its server."""
        self.close_clients()
        for name in names:
            self.clients[name] = await KernelClient.connect(
                self.servers[name], self.kernels[name], proto
            )

    def close_clients(self) -> None:
        for c in self.clients.values():
            c.close()
        self.clients.clear()

    async def shutdown(self) -> None:
        self.close_clients()
        await asyncio.gather(*(s.shutdown() for s in self.servers.values()))


CASES = ("comm", "stream", "roundtrip")
#: seconds to let every server finish its last slice's work before the final CPU reading
SETTLE = 1.0


async def relay_slices(run: RelayServers, cfg: dict, log: Any) -> dict:
    """Floods and round trips on stock, extension and stock again, in short slices.

    This machine's speed drifts by tens of percent over a minute (a VM among neighbours),
    so a long measurement of one server and then another compares different machines.  A
    slice is short (a second or less per server), the servers run in a new random order in
    each, and ratios are taken within a slice, then their median: drift cancels, and many
    slices give a confidence interval.  A server's CPU is read when each of its slices
    starts, so a slice owns the work the server does after its client has everything (a
    watcher's backlog, a push timer) and a case costs what it costs, not what its client saw.
    """
    main = ["stock", "ext", "stock_aa"]
    order = random.Random(0)
    raw: dict = {p: {c: {s: [] for s in main} for c in CASES} for p in PROTOCOLS}
    for proto in PROTOCOLS:
        await run.connect(main, proto)
        echo = {name: await relay.open_echo(run.clients[name]) for name in main}
        for case in CASES:
            units = cfg["rt_n"] if case == "roundtrip" else cfg["flood_n"]
            marks: dict[str, list[float]] = {name: [] for name in main}
            for i in range(cfg["slices"][case]):
                for name in order.sample(main, len(main)):
                    server, c = run.servers[name], run.clients[name]
                    marks[name].append(server.cpu_seconds())
                    if case == "roundtrip":
                        c.quickack = True  # the relay's cost, without the delayed-ACK stall
                        res = await relay.roundtrips(c, echo[name], units, 300, first=i * units)
                        c.quickack = False
                    else:
                        res = await relay.flood(c, case, units, 600)
                    raw[proto][case][name].append(res)
            await asyncio.sleep(SETTLE)
            metric = "server_cpu_us_per_" + ("roundtrip" if case == "roundtrip" else "msg")
            for name in main:
                marks[name].append(run.servers[name].cpu_seconds())
                for res, (a, b) in zip(raw[proto][case][name], pairwise(marks[name]), strict=True):
                    res[metric] = (b - a) / units * 1e6
            log(f"relay {proto} {case}: {cfg['slices'][case]} slices done")
        for name in main:
            await relay.close_echo(run.clients[name], echo[name])
    return raw


async def fanout_rounds(run: RelayServers, cfg: dict, log: Any) -> dict:
    """Many frontends on one kernel (v1 and legacy mixed, as a class would be), one server
    at a time so each has the machine to itself; rounds rotate the order."""
    main = ["stock", "ext", "stock_aa"]
    sizes, n = cfg["fanout"]["frontends"], cfg["fanout"]["n"]
    raw: dict = {str(k): {s: [] for s in main} for k in sizes}
    for r in range(cfg["rounds"]):
        for k in sizes:
            for name in rotated(main, r):
                run.close_clients()
                server, kernel = run.servers[name], run.kernels[name]
                clients = [
                    await KernelClient.connect(server, kernel, PROTOCOLS[i % 2]) for i in range(k)
                ]
                try:
                    raw[str(k)][name].append(await relay.fanout(server, clients, n, 600))
                finally:
                    for c in clients:
                        c.close()
        log(f"fan-out round {r + 1}/{cfg['rounds']} done")
    return raw


async def browser_rounds(run: RelayServers, cfg: dict, log: Any) -> dict:
    """Round trips as a browser sees them (no QUICKACK), with and without the push window."""
    browser = ["stock", "ext", "ext_nagle"]
    braw: dict = {p: {s: [] for s in browser} for p in PROTOCOLS}
    for r in range(cfg["browser_rounds"]):
        for proto in PROTOCOLS:
            await run.connect(browser, proto)
            for name in rotated(browser, r):
                c = run.clients[name]
                comm_id = await relay.open_echo(c)
                res = await relay.roundtrips(c, comm_id, cfg["browser_n"], 600)
                await relay.close_echo(c, comm_id)
                braw[proto][name].append(res)
        log(f"browser-like latency round {r + 1}/{cfg['browser_rounds']} done")
    return braw


async def run_relay(cfg: dict, code: str | None, log: Any) -> dict[str, Any]:
    run = RelayServers(code)
    try:
        await run.start()
        pids = {s.pid for s in run.servers.values()}
        state_before = machine.others(pids)
        raw = await relay_slices(run, cfg, log)
        fraw = await fanout_rounds(run, cfg, log)
        braw = await browser_rounds(run, cfg, log)
        state_after = machine.others(pids)
    finally:
        await run.shutdown()
    return {
        "raw": raw,
        "browser_raw": braw,
        "fanout_raw": fraw,
        "fanout": summarize_fanout(fraw),
        "summary": summarize_relay(raw),
        "browser": summarize_browser(braw),
        "machine_before": state_before,
        "machine_after": state_after,
    }


BOOTSTRAP = 2000


def paired(ext: list[float], stock: list[float]) -> dict[str, Any]:
    """The median of per-slice ratios, and its 95 % bootstrap interval (seeded)."""
    ratios = [a / b for a, b in zip(ext, stock, strict=True)]
    draw = random.Random(1)
    boot = sorted(statistics.median(draw.choices(ratios, k=len(ratios))) for _ in range(BOOTSTRAP))
    return {
        "median": statistics.median(ratios),
        "ci95": [boot[int(BOOTSTRAP * 0.025)], boot[int(BOOTSTRAP * 0.975) - 1]],
    }


def summarize_relay(raw: dict) -> dict:
    out: dict = {}
    for proto, cases in raw.items():
        for case, by_server in cases.items():
            metrics = (
                ("msgs_per_s", "server_cpu_us_per_msg")
                if case != "roundtrip"
                else ("p50_ms", "p95_ms", "server_cpu_us_per_roundtrip")
            )
            entry: dict = {}
            for metric in metrics:
                samples = {s: [x[metric] for x in xs] for s, xs in by_server.items()}
                per: dict = {s: summarize(v) for s, v in samples.items()}
                ext, aa = (
                    paired(samples["ext"], samples["stock"]),
                    paired(samples["stock_aa"], samples["stock"]),
                )
                per["ratio_ext"], per["ci_ext"] = ext["median"], ext["ci95"]
                per["ratio_aa"], per["ci_aa"] = aa["median"], aa["ci95"]
                entry[metric] = per
            out[f"{proto}/{case}"] = entry
    return out


def summarize_fanout(raw: dict) -> dict:
    out: dict = {}
    for k, by_server in raw.items():
        entry: dict = {}
        for metric in ("server_cpu_us_per_delivered", "delivered_per_s"):
            per = {s: summarize([x[metric] for x in xs]) for s, xs in by_server.items()}
            per["ratio_ext"] = per["ext"]["median"] / per["stock"]["median"]
            per["ratio_aa"] = per["stock_aa"]["median"] / per["stock"]["median"]
            entry[metric] = per
        out[k] = entry
    return out


def summarize_browser(raw: dict) -> dict:
    out: dict = {}
    for proto, by_server in raw.items():
        for metric in ("p50_ms", "p95_ms"):
            out[f"{proto}/{metric}"] = {
                s: summarize([x[metric] for x in xs]) for s, xs in by_server.items()
            }
    return out


# -- the rest -----------------------------------------------------------------------------


def run_dispatch(args: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "dispatch.json"
        script = ROOT / "bench" / "bench_kernel_dispatch.py"
        proc = subprocess.run(
            [sys.executable, str(script), *args, "--json", str(out)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-2000:])
        return json.loads(out.read_text())


def tap_fractions(replay: dict, relay_summary: dict) -> dict:
    """The tap's µs per message as a fraction of stock's server CPU per relayed message."""
    out = {}
    for proto in PROTOCOLS:
        r = replay[proto]
        stock_comm = relay_summary[f"{proto}/comm"]["server_cpu_us_per_msg"]["stock"]["median"]
        stock_stream = relay_summary[f"{proto}/stream"]["server_cpu_us_per_msg"]["stock"]["median"]
        stock_rt = relay_summary[f"{proto}/roundtrip"]["server_cpu_us_per_roundtrip"]["stock"][
            "median"
        ]
        # a round trip: one comm_msg in, the echo out (+ watcher), status busy and idle out
        rt_tap = r["in_comm_us"] + r["out_comm_us"] + 2 * r["out_other_us"]
        out[proto] = {
            "non_comm_out": {"tap_us": r["out_other_us"], "stock_server_cpu_us": stock_stream},
            "comm_out": {"tap_us": r["out_comm_us"], "stock_server_cpu_us": stock_comm},
            "comm_roundtrip": {"tap_us": rt_tap, "stock_server_cpu_us": stock_rt},
        }
        for v in out[proto].values():
            v["fraction"] = v["tap_us"] / v["stock_server_cpu_us"]
    return out


# -- report -------------------------------------------------------------------------------


def pct(ratio: float) -> str:
    return f"{(ratio - 1) * 100:+.1f}%"


def interval(ratio: float, ci: list[float]) -> str:
    return f"{pct(ratio)} [{pct(ci[0])}, {pct(ci[1])}]"


def spread(s: dict, fmt: str = "{:,.0f}") -> str:
    return f"{fmt.format(s['median'])} ({fmt.format(s['min'])}-{fmt.format(s['max'])})"


def print_relay(report: dict) -> None:
    p = print
    m = report["machine"]
    p(
        f"\nmachine: {m['cpus']} x {m['cpu_model']}, {m['memory_bytes'] / 2**30:.0f} GiB, "
        f"Linux {m['kernel']}, python {m['python']}; code: {report['code']} "
        f"({report['git']['commit'][:10]}); relay slices {report['config']['slices']}, "
        f"rounds {report['config']['rounds']}"
    )
    rel = report["relay"]["summary"]
    p(
        "\n1. relay, stock vs extension, in interleaved slices: per-server median (min-max) "
        "over slices; ext and A/A are medians of per-slice ratios to stock [95% interval]"
    )
    p(f"{'case':<18}{'metric':<15}{'stock':>22}{'extension':>22}{'ext':>22}{'A/A':>22}")
    for key, entry in rel.items():
        for metric, per in entry.items():
            fmt = "{:,.2f}" if metric.endswith("_ms") else "{:,.0f}"
            label = {
                "msgs_per_s": "msg/s",
                "server_cpu_us_per_msg": "srv CPU us/msg",
                "p50_ms": "p50 ms",
                "p95_ms": "p95 ms",
                "server_cpu_us_per_roundtrip": "srv CPU us/rt",
            }[metric]
            p(
                f"{key:<18}{label:<15}{spread(per['stock'], fmt):>22}{spread(per['ext'], fmt):>22}"
                f"{interval(per['ratio_ext'], per['ci_ext']):>22}"
                f"{interval(per['ratio_aa'], per['ci_aa']):>22}"
            )
    p("   (round trips here with a client that sets TCP_QUICKACK: the relay's own latency)")
    p("\n1c. many frontends on one kernel, comm flood: per delivered message")
    for k, entry in report["relay"]["fanout"].items():
        for metric, per in entry.items():
            label = {"server_cpu_us_per_delivered": "srv CPU us", "delivered_per_s": "deliv/s"}
            p(
                f"{k + ' frontends':<18}{label[metric]:<14}{spread(per['stock'], '{:,.1f}'):>24}"
                f"{spread(per['ext'], '{:,.1f}'):>24}{pct(per['ratio_ext']):>9}"
                f"{pct(per['ratio_aa']):>9}"
            )
    p("\n1d. the tap alone, replayed real traffic: us per message / stock server CPU per message")
    for proto, entry in report["tap_fractions"].items():
        for case, v in entry.items():
            p(
                f"{proto:<8}{case:<16}{v['tap_us']:>8.2f} us / {v['stock_server_cpu_us']:>7.0f} us"
                f" = {v['fraction'] * 100:.2f}%"
            )


def print_rest(report: dict) -> None:
    p = print
    api = report["api"]
    p(f"\n2. GET /api/comms, {api['comms']} comms over {api['kernels']} kernels")
    keys = (
        "get_api_comms_idle",
        "get_api_comms_one_kernel_one_target",
        "get_api_comms_one_kernel_busy",
        "comm_info_request_all_idle",
    )
    for key in keys:
        s = api[key]
        p(f"{key:<34} p50 {s['p50_ms']:8.1f} ms  p95 {s['p95_ms']:8.1f} ms  (n={s['n']})")
    p(f"{'comm_info_request_one_busy':<34} {api['comm_info_request_one_busy_ms']:8.1f} ms")
    p(f"response size {api['response_bytes']:,} bytes ({api['listed']} comms listed)")
    p("\n3. memory per tracked comm")
    for e in report["memory"]:
        p(
            f"{e['comms']:>8} comms: tracemalloc {e['tracemalloc_bytes_per_comm']:.0f} B, "
            f"RSS delta {e['rss_bytes_per_comm']:.0f} B"
        )
    d = report["kernel_dispatch"]
    p("\n4. kernel dispatch, ours / ipykernel (msg/s, median)")
    for name, e in d["scenarios"].items():
        p(
            f"{name:<10} ours {e['ours']['median']:>10,.0f}  ipykernel "
            f"{e['ipykernel']['median']:>10,.0f}  ratio {e['ratio']:.2f}x"
        )
    b = report["relay"]["browser"]
    p("\n5. comm round trip as a browser sees it (no TCP_QUICKACK), ms, median (min-max)")
    p(f"{'':<12}{'stock':>22}{'ext (nodelay)':>22}{'ext nodelay=False':>22}")
    for key, per in b.items():
        p(
            f"{key:<12}"
            + "".join(f"{spread(per[s], '{:.1f}'):>22}" for s in ("stock", "ext", "ext_nagle"))
        )
    before, after = (report["relay"][k]["loadavg"] for k in ("machine_before", "machine_after"))
    p(f"\nelapsed {report['elapsed_s']:.0f} s; load average before/after relay: {before} / {after}")


def print_table(report: dict) -> None:
    print_relay(report)
    print_rest(report)


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    cfg = SMOKE if args.smoke else FULL
    if args.rounds:
        cfg = dict(cfg, rounds=args.rounds)
    code = snapshot(args.code) if args.code and not os.path.isdir(args.code) else args.code
    if code:
        sys.path.insert(0, code)  # the in-process parts import the same code
        import jupyter_comm_ext

        assert jupyter_comm_ext.__file__.startswith(code), jupyter_comm_ext.__file__
    t0 = time.monotonic()

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - t0:6.0f}s] {msg}", file=sys.stderr, flush=True)

    report: dict[str, Any] = {
        "benchmark": "jupyter_comm_ext",
        "smoke": args.smoke,
        "config": cfg,
        "code": args.code or "installed",
        "git": git_commit(),
        "machine": machine.describe(),
    }
    log("memory")
    report["memory"] = memory.run(cfg["memory_sizes"], code)
    log("tap replay")
    report["tap_replay"] = tap_replay.replay(**cfg["replay"])
    log("kernel dispatch")
    report["kernel_dispatch"] = run_dispatch(cfg["dispatch_args"])
    log("relay")
    report["relay"] = await run_relay(cfg, code, log)
    report["tap_fractions"] = tap_fractions(report["tap_replay"], report["relay"]["summary"])
    log("api at scale")
    report["api"] = await api_scale.run(code=code, **cfg["api"])
    report["elapsed_s"] = time.monotonic() - t0
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny N, for CI")
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3)")
    parser.add_argument(
        "--code", help="import jupyter_comm_ext from this directory, or a git ref to archive"
    )
    args = parser.parse_args(argv)
    try:
        report = asyncio.run(amain(args))
    finally:
        for tmp in _snapshots:
            shutil.rmtree(tmp, ignore_errors=True)
    print_table(report)
    path = args.json or ROOT / "bench" / "results" / time.strftime("run-%Y%m%d-%H%M%S.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1))
    print(f"JSON: {path}")
    return report


if __name__ == "__main__":
    main()

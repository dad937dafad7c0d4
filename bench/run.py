"""All of issue 7's benchmarks in one command: a table on stdout, JSON on disk.

    python bench/run.py                   # ~17 minutes on 2 cores
    python bench/run.py --smoke           # tiny N, under a minute: keeps the code from rotting
    python bench/run.py --code HEAD       # the extension as committed (git archive of HEAD)

Servers (stock jupyter_server, the same with jupyter_comm_ext, stock again for the A/A
noise floor) run side by side.  The relay's floods, round trips and fan-out run in short
slices, each server once per slice in a new random order (`in_slices`); their ratios are
medians of per-slice ratios with a 95 % bootstrap interval.  The browser-like round trips
run in rounds with the order rotated; medians and spreads (min-max) are reported.
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
from collections.abc import Awaitable, Callable
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import api_scale, machine, memory, relay, tap_replay  # noqa: E402
from bench.clients import PROTOCOLS, KernelClient  # noqa: E402
from bench.servers import Server, exit_on_signals  # noqa: E402

FULL = {
    # relay: slices per case, each server once per slice; messages or round trips per slice
    "slices": {"comm": 60, "stream": 60, "roundtrip": 200},
    "flood_n": 1000,
    "rt_n": 25,
    "browser_rounds": 2,
    "browser_n": 200,
    "fanout": {"frontends": [10, 50], "n": 200, "slices": 20},
    "api": {"kernels": 20, "comms": 10_000, "requests": 30, "busy_seconds": 5.0},
    "memory_sizes": [10_000, 100_000],
    "replay": {"n": 5000, "repeat": 5, "rounds": 3},
    "dispatch_args": ["--n", "20000", "--rounds", "5"],
    # big comm messages (bench/big_payloads.py): every case, v1, slices per case
    "big_payloads": {"smoke": False, "slices": 5},
}
SMOKE = {
    "slices": {"comm": 2, "stream": 2, "roundtrip": 2},
    "flood_n": 200,
    "rt_n": 10,
    "browser_rounds": 1,
    "browser_n": 10,
    "fanout": {"frontends": [3], "n": 50, "slices": 2},
    "api": {"kernels": 2, "comms": 20, "requests": 5, "busy_seconds": 1.0},
    "memory_sizes": [1000],
    "replay": {"n": 200, "repeat": 1, "rounds": 1},
    "dispatch_args": ["--smoke"],
    "big_payloads": {"smoke": True, "slices": 2},
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

    def __init__(self, code: str | None, ext_args: list[str]) -> None:
        self.servers = {
            "stock": Server("stock", False),
            "ext": Server("ext", True, ext_args, code),
            "stock_aa": Server("stock-aa", False),
            "ext_nagle": Server("ext-nagle", True, ["--WebsocketNodelay.enabled=False"], code),
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


#: the servers every sliced case compares: stock, the extension, stock again (A/A)
MAIN = ("stock", "ext", "stock_aa")
CASES = ("comm", "stream", "roundtrip")
#: seconds to let every server finish its last slice's work before the final CPU reading
SETTLE = 1.0


async def in_slices(
    servers: dict[str, Server],
    slices: int,
    order: random.Random,
    one: Callable[[str, int], Awaitable[dict]],
    metric: str,
    units: int,
) -> dict[str, list[dict]]:
    """`one(name, slice)` on each server once per slice, the servers in a new random order
    in each; sets `metric` in every result: the server's CPU from the start of its slice to
    the start of its next (the last, `SETTLE` after the end), in µs per unit.

    This machine's speed drifts by tens of percent over a minute (a VM among neighbours),
    so a long measurement of one server and then another compares different machines.  A
    slice is short (a second or less per server) and ratios are taken within a slice, then
    their median: drift cancels, and many slices give a confidence interval.  Reading a
    server's CPU when each of its slices starts makes a slice own the work its server does
    after the client has everything (a watcher's backlog, a push timer).
    """
    results: dict[str, list[dict]] = {name: [] for name in servers}
    marks: dict[str, list[float]] = {name: [] for name in servers}
    for i in range(slices):
        for name in order.sample(list(servers), len(servers)):
            marks[name].append(servers[name].cpu_seconds())
            results[name].append(await one(name, i))
    await asyncio.sleep(SETTLE)
    for name, server in servers.items():
        marks[name].append(server.cpu_seconds())
        for res, (a, b) in zip(results[name], pairwise(marks[name]), strict=True):
            res[metric] = (b - a) / units * 1e6
    return results


async def relay_slices(run: RelayServers, cfg: dict, log: Any) -> dict:
    """Floods and round trips on stock, extension and stock again, in short slices."""
    main = {name: run.servers[name] for name in MAIN}
    order = random.Random(0)
    raw: dict = {}
    for proto in PROTOCOLS:
        await run.connect(list(main), proto)
        echo = {name: await relay.open_echo(run.clients[name]) for name in main}
        raw[proto] = {}
        for case in CASES:
            units = cfg["rt_n"] if case == "roundtrip" else cfg["flood_n"]
            if case == "roundtrip":
                one = partial(sliced_roundtrips, run.clients, echo, units)
                metric = "server_cpu_us_per_roundtrip"
            else:
                one = partial(sliced_flood, run.clients, case, units)
                metric = "server_cpu_us_per_msg"
            raw[proto][case] = await in_slices(main, cfg["slices"][case], order, one, metric, units)
            log(f"relay {proto} {case}: {cfg['slices'][case]} slices done")
        for name in main:
            await relay.close_echo(run.clients[name], echo[name])
    return raw


async def sliced_roundtrips(
    clients: dict[str, KernelClient],
    echo: dict[str, str],
    units: int,
    name: str,
    i: int,
    payload: Callable[[int], dict] = relay.plain,
) -> dict:
    """Slice `i` of round trips on server `name`'s echo comm (numbered on from the last)."""
    client = clients[name]
    client.quickack = True  # the relay's cost, without the delayed-ACK stall
    try:
        return await relay.roundtrips(
            client, echo[name], units, 300, first=i * units, payload=payload
        )
    finally:
        client.quickack = False


async def sliced_flood(
    clients: dict[str, KernelClient], case: str, units: int, name: str, i: int
) -> dict:
    return await relay.flood(clients[name], case, units, 600)


async def sliced_fanout(
    clients: dict[str, list[KernelClient]], units: int, name: str, i: int
) -> dict:
    return await relay.fanout(clients[name], units, 600)


async def fanout_slices(run: RelayServers, cfg: dict, log: Any) -> dict:
    """Many frontends on one kernel (v1 and legacy mixed, as a class would be), in slices;
    each server keeps its frontends from slice to slice (an idle server sends them nothing).
    """
    main = {name: run.servers[name] for name in MAIN}
    order = random.Random(2)
    sizes, n, slices = (cfg["fanout"][key] for key in ("frontends", "n", "slices"))
    raw: dict = {}
    run.close_clients()
    for k in sizes:
        clients = {
            name: [
                await KernelClient.connect(server, run.kernels[name], PROTOCOLS[i % 2])
                for i in range(k)
            ]
            for name, server in main.items()
        }
        try:
            one = partial(sliced_fanout, clients, n)
            metric = "server_cpu_us_per_delivered"
            raw[str(k)] = await in_slices(main, slices, order, one, metric, n * k)
        finally:
            for group in clients.values():
                for c in group:
                    c.close()
        log(f"fan-out to {k} frontends: {slices} slices done")
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


async def run_relay(cfg: dict, code: str | None, ext_args: list[str], log: Any) -> dict[str, Any]:
    run = RelayServers(code, ext_args)
    try:
        await run.start()
        pids = {s.pid for s in run.servers.values()}
        state_before = machine.others(pids)
        raw = await relay_slices(run, cfg, log)
        fraw = await fanout_slices(run, cfg, log)
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


def ratios(by_server: dict[str, list[dict]], metric: str) -> dict[str, Any]:
    """Per-server spreads of `metric` over slices, and ext's and A/A's paired ratios."""
    samples = {s: [x[metric] for x in xs] for s, xs in by_server.items()}
    per: dict = {s: summarize(v) for s, v in samples.items()}
    ext, aa = (
        paired(samples["ext"], samples["stock"]),
        paired(samples["stock_aa"], samples["stock"]),
    )
    per["ratio_ext"], per["ci_ext"] = ext["median"], ext["ci95"]
    per["ratio_aa"], per["ci_aa"] = aa["median"], aa["ci95"]
    return per


def summarize_relay(raw: dict) -> dict:
    out: dict = {}
    for proto, cases in raw.items():
        for case, by_server in cases.items():
            metrics = (
                ("msgs_per_s", "server_cpu_us_per_msg")
                if case != "roundtrip"
                else ("p50_ms", "p95_ms", "server_cpu_us_per_roundtrip")
            )
            out[f"{proto}/{case}"] = {metric: ratios(by_server, metric) for metric in metrics}
    return out


def summarize_fanout(raw: dict) -> dict:
    return {
        k: {m: ratios(by_server, m) for m in ("server_cpu_us_per_delivered", "delivered_per_s")}
        for k, by_server in raw.items()
    }


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
        f"({report['git']['commit'][:10]}); extension server args {report['ext_args']}; "
        f"relay slices {report['config']['slices']}, fan-out {report['config']['fanout']}"
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
    p("\n1c. many frontends on one kernel, comm flood, in slices: per delivered message")
    for k, entry in report["relay"]["fanout"].items():
        for metric, per in entry.items():
            label = {"server_cpu_us_per_delivered": "srv CPU us", "delivered_per_s": "deliv/s"}
            p(
                f"{k + ' frontends':<18}{label[metric]:<11}{spread(per['stock'], '{:,.1f}'):>26}"
                f"{spread(per['ext'], '{:,.1f}'):>26}"
                f"{interval(per['ratio_ext'], per['ci_ext']):>22}"
                f"{interval(per['ratio_aa'], per['ci_aa']):>22}"
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
    from bench import big_payloads  # it imports this module's slicing

    print_relay(report)
    print_rest(report)
    big_payloads.print_table(report["big_payloads"])


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    cfg = SMOKE if args.smoke else FULL
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
        "ext_args": args.ext_arg,
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
    report["relay"] = await run_relay(cfg, code, args.ext_arg, log)
    report["tap_fractions"] = tap_fractions(report["tap_replay"], report["relay"]["summary"])
    log("api at scale")
    report["api"] = await api_scale.run(code=code, **cfg["api"])
    log("big comm messages")
    from bench import big_payloads  # it imports this module's slicing

    big = cfg["big_payloads"]
    cases = big_payloads.SMOKE_CASES if big["smoke"] else big_payloads.CASES
    report["big_payloads"] = await big_payloads.run_all(
        ["v1"], cases, big["slices"], [], log, code=code
    )
    report["elapsed_s"] = time.monotonic() - t0
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny N, for CI")
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument(
        "--code", help="import jupyter_comm_ext from this directory, or a git ref to archive"
    )
    parser.add_argument(
        "--ext-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="""a command-line argument for the relay's extension server (repeatable): what
        a part costs is the difference to a default run, e.g. without the watcher's comm
        traffic: --ext-arg="--CommMirror.iopub_topics=['zzz-']" """,
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
    exit_on_signals()
    main()

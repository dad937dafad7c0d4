"""Soak: the extension under sustained load, checked for bounded memory and exact counts.

    python bench/soak.py            # the full soak, ~8 minutes on 2 cores (465 s, load 4-6)
    python bench/soak.py --smoke    # tiny N, ~30 s (tests/test_bench_smoke.py runs it)

Three scenarios, each on a fresh server with the extension (`bench/servers.py`), kernels
with an unbounded IOPub queue (`bench/kernel_launcher.py`), so a flood measures what the
server does with every message, not what the kernel dropped:

1. flood: websocket clients (v1 and legacy alternating, `bench/clients.py`) on one kernel
   while it sends comm_msg on one comm; every client must receive every message, and the
   mirror must count each message once (not once per client);
2. scale: comms held open over several kernels; server RSS before and after, GET
   latencies while they open and once they are open, summary totals exact;
3. churn: kernels open and close comms in a loop with no frontend connected; RSS must stay
   flat (the closed history is capped at `CommMirror.max_closed_history`), and at the end
   nothing is open and the history holds exactly the last comms closed.

Meanwhile a separate process (so the clients' event loop does not delay its clock) polls
the REST routes and samples the server's RSS from /proc; p50/p95/p99 are reported.  After
each scenario the server's log is searched for tracebacks.  Every wait has a deadline.
A table goes to stdout, JSON to bench/results/; the exit status is 1 if a check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing
import os
import re
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import machine  # noqa: E402
from bench.api_scale import OPEN_COMMS, percentiles  # noqa: E402
from bench.clients import PROTOCOLS, KernelClient, msg_type_mark  # noqa: E402
from bench.run import git_commit  # noqa: E402
from bench.servers import Server, exit_on_signals, proc_rss_bytes  # noqa: E402
from jupyter_comm_ext.mirror import CommMirror  # noqa: E402

MB = 2**20
#: the closed history's cap, which the churn server runs with
CLOSED_CAP = CommMirror.max_closed_history.default_value

FULL: dict[str, dict[str, Any]] = {
    # 50 x 10,000 = 500,000 deliveries, a few minutes; 50,000 messages would take 2.5 M
    # deliveries, 12 minutes of server CPU alone at ~300 us each (stock's cost, measured)
    "flood": {"clients": 50, "messages": 10_000, "timeout": 600},
    "scale": {"kernels": 10, "comms": 100_000, "requests": 10, "timeout": 300},
    # timeout: the kernels' loops stop then; catch_up: how much longer the mirror may take
    "churn": {"kernels": 2, "comms": 1_000_000, "timeout": 420, "catch_up": 180},
}
SMOKE: dict[str, dict[str, Any]] = {
    "flood": {"clients": 4, "messages": 200, "timeout": 30},
    "scale": {"kernels": 2, "comms": 200, "requests": 3, "timeout": 30},
    "churn": {"kernels": 1, "comms": 2 * CLOSED_CAP, "timeout": 30, "catch_up": 15},
}
#: For the scenarios whose frontends leave while kernels still send: stock jupyter_server
#: keeps every IOPub message for the session that left (an unbounded list, until it comes
#: back), which would be the server's memory, not the mirror's.
NO_OFFLINE_BUFFER = ["--MappingKernelManager.buffer_offline_messages=False"]
RESULTS = ROOT / "bench" / "results"
#: characters of each server's log kept in the JSON (at log level WARN it is short)
LOG_KEPT = 200_000
#: seconds between two rounds of the poller (one GET per route, one RSS sample): often
#: enough for a p99 over a few hundred rounds, rarely enough not to be the load itself
POLL_INTERVAL = 0.5

COMM_MSG = msg_type_mark("comm_msg")
COMM_CLOSE = msg_type_mark("comm_close")
EXECUTE_INPUT = msg_type_mark("execute_input")

#: kernel code: `n` comm_msg on one comm, then its close (the clients' end mark)
FLOOD = """
import comm as _comm_pkg
_c = _comm_pkg.create_comm(target_name="soak.flood", comm_id={comm_id!r})
for _i in range({n}):
    _c.send({{"i": _i}})
_c.close()
"""

#: kernel code: open and close `n` comms (ids `prefix` + index), stop early past `seconds`,
#: write how many and when it finished to `prefix.json` in its working directory (the
#: server's root), then open the marker comm `prefix + "done"`: the mirror has seen every
#: churned comm when it sees the marker (one IOPub socket, in order)
CHURN = """
import comm as _comm_pkg, json as _json, time as _time
def _soak_churn(n, prefix, seconds):
    end = _time.monotonic() + seconds
    for i in range(n):
        _comm_pkg.create_comm(target_name="soak.churn", comm_id=f"{{prefix}}{{i:07d}}").close()
        if i % 1000 == 0 and _time.monotonic() > end:
            break
    with open(prefix + ".json", "w") as f:
        _json.dump({{"churned": i + 1, "finished": _time.time()}}, f)
    _comm_pkg.create_comm(target_name="soak.done", comm_id=prefix + "done")
_soak_churn({n}, {prefix!r}, {seconds})
"""
#: how far above its start the server's RSS may go while comms churn, besides the backlog:
#: the mirror's own state is bounded by the caps (a closed history of 1,000 records is about
#: 1 MB); the rest is room for the allocator and the poller's responses
CHURN_RSS_SLACK_MB = 64
#: what one message waiting in a kernel's IOPub backlog may cost the server (the upper end
#: of `CommMirror.iopub_queue_limit`'s help): when two kernels churn faster than the server
#: reads, each backlog fills to the queue limit, by design
BACKLOG_BYTES_PER_MESSAGE = 4096


# -- the poller (its own process) ---------------------------------------------------------


def poll(
    port: int, token: str, routes: list[str], pid: int, ready: Any, stop: Any, out: Any
) -> None:
    """GET each route in turn, sample the server's RSS, until `stop` is set; results to `out`.

    `ready` is set after the first round, so the load starts once the poller is polling.

    Blocking HTTP on one keep-alive connection: a latency here is the server's answer time
    plus the loopback, not the bench's own event loop being busy reading floods.
    """
    headers = {"Authorization": f"token {token}"}
    latencies: dict[str, list[float]] = {r: [] for r in routes}
    sizes: dict[str, int] = {}
    errors: list[str] = []
    rss: list[tuple[float, int]] = []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    t0 = time.monotonic()
    while not stop.is_set():
        for route in routes:
            start = time.perf_counter()
            try:
                conn.request("GET", route, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
            except (OSError, http.client.HTTPException) as e:
                errors.append(f"GET {route}: {e!r}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                continue
            if resp.status != 200:
                errors.append(f"GET {route}: {resp.status} {body[:200]!r}")
                continue
            latencies[route].append((time.perf_counter() - start) * 1e3)
            sizes[route] = len(body)
        try:
            rss.append((time.monotonic() - t0, proc_rss_bytes(pid)))
        except FileNotFoundError:
            errors.append("the server process is gone")
            break
        ready.set()
        stop.wait(POLL_INTERVAL)
    conn.close()
    out.put({"latencies": latencies, "sizes": sizes, "errors": errors, "rss": rss})


class Poller:
    """The poller process around one phase of a scenario (`async with Poller(...)`)."""

    def __init__(self, server: Server, routes: list[str]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._ready, self._stop, self._out = ctx.Event(), ctx.Event(), ctx.Queue()
        self._proc = ctx.Process(
            target=poll,
            args=(
                server.port,
                server.token,
                routes,
                server.pid,
                self._ready,
                self._stop,
                self._out,
            ),
            daemon=True,
        )
        self.result: dict[str, Any] = {}

    async def __aenter__(self) -> Poller:
        self._proc.start()
        if not await asyncio.to_thread(self._ready.wait, 60):
            self._proc.kill()
            raise TimeoutError("the poller did not start polling in 60 s")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        try:
            # read before joining: a child blocks on exit until its queue is drained
            self.result = await asyncio.to_thread(self._out.get, True, 90)
        finally:
            self._proc.join(10)
            if self._proc.is_alive():
                self._proc.kill()

    def report(self) -> dict[str, Any]:
        r = self.result
        rss = [b for _, b in r["rss"]]
        return {
            "routes": {
                route: {**percentiles(ms), "response_bytes": r["sizes"].get(route, 0)}
                for route, ms in r["latencies"].items()
                if ms
            },
            "errors": r["errors"],
            "rss_mb": {
                "first": rss[0] / MB,
                "max": max(rss) / MB,
                "last": rss[-1] / MB,
                "samples": len(rss),
            }
            if rss
            else None,
            "rss_series": r["rss"],
        }


# -- shared steps -------------------------------------------------------------------------


class Checks:
    """Named pass/fail results of a scenario (the bench's exit status)."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, name: str, ok: bool, detail: Any = "") -> None:
        self.items.append({"name": name, "ok": bool(ok), "detail": detail})

    @property
    def ok(self) -> bool:
        return all(c["ok"] for c in self.items)


async def wait_for(probe: Any, timeout: float, what: str, interval: float = 0.5) -> Any:
    """Await `probe()` until it returns something truthy; TimeoutError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout} s")
        await asyncio.sleep(interval)


#: a jupyter_server log line of level warning or worse: level, logger, message
LOG_LINE = re.compile(r"\[([WEC]) [\d\-: .]+ (\S+)\] (.*)")


def log_problems(server: Server) -> dict[str, Any]:
    """Tracebacks, and warnings or worse by kind, in the server's log (its end is kept).

    A kind is a message with its timestamp and object addresses left out, so a warning
    repeated a thousand times is one line with a count.
    """
    text = (Path(server.dir) / "server.log").read_text(errors="replace")
    lines = text.splitlines()
    tracebacks = [i for i, ln in enumerate(lines) if "Traceback" in ln]
    kinds: dict[str, int] = {}
    for ln in lines:
        m = LOG_LINE.match(ln)
        if m:
            kind = f"[{m[1]}] {m[2]}: " + re.sub(r"0x[0-9a-f]+", "0x...", m[3])[:200]
            kinds[kind] = kinds.get(kind, 0) + 1
    return {
        "tracebacks": len(tracebacks),
        "first_traceback": "\n".join(lines[tracebacks[0] : tracebacks[0] + 40])
        if tracebacks
        else None,
        "warnings": sum(n for k, n in kinds.items() if k.startswith("[W]")),
        "errors": sum(n for k, n in kinds.items() if not k.startswith("[W]")),
        "kinds": kinds,
        "text": text[-LOG_KEPT:],
    }


def rss_mb(server: Server) -> float:
    return server.rss_bytes() / MB


async def summary(server: Server) -> dict[str, Any]:
    return await server.api("GET", "/api/comms/summary")


METRIC = re.compile(r'jupyter_comm_ext_(comm_messages|comms_closed)_total\{\w+="([\w-]+)"\} (\S+)')


async def server_totals(server: Server) -> dict[str, dict[str, int]]:
    """The server's counts since it started, from its Prometheus `/metrics`: comm messages
    by direction and closed comms by reason (the summary counts only the live comms)."""
    text = (await server.api("GET", "/metrics", raw=True)).body.decode()
    totals: dict[str, dict[str, int]] = {"comm_messages": {}, "comms_closed": {}}
    for kind, label, value in METRIC.findall(text):
        totals[kind][label] = int(float(value))
    return totals


async def timed_gets(server: Server, path: str, n: int) -> dict[str, Any]:
    """`n` sequential GETs of `path` with nothing else running: the quiet-server latency."""
    ms, body = [], b""
    for _ in range(n):
        t0 = time.perf_counter()
        body = (await server.api("GET", path, raw=True, timeout=120)).body
        ms.append((time.perf_counter() - t0) * 1e3)
    return {**percentiles(ms), "response_bytes": len(body), "listed": body.count(b'"comm_id"')}


async def finish(server: Server, result: dict[str, Any], checks: Checks) -> None:
    """The server log's verdict, then stop the server (its directory goes with it)."""
    result["checks"] = checks.items
    try:
        result["log"] = problems = log_problems(server)
        checks.add("no traceback in the server log", problems["tracebacks"] == 0, problems)
    finally:
        await server.shutdown()


# -- 1. flood ------------------------------------------------------------------------------


async def count_flood(client: KernelClient, timeout: float) -> int:
    """The comm_msg frames a client receives until the flood's comm_close."""
    marks = {bytes: COMM_MSG, str: tuple(m.decode() for m in COMM_MSG)}
    ends = {bytes: COMM_CLOSE, str: tuple(m.decode() for m in COMM_CLOSE)}
    deadline = time.monotonic() + timeout
    n = 0
    while True:
        frame = await client.read_frame(deadline - time.monotonic())
        if any(m in frame for m in marks[type(frame)]):
            n += 1
        elif any(m in frame for m in ends[type(frame)]):
            return n


async def flood(cfg: dict[str, Any], result: dict[str, Any], log: Callable[[str], None]) -> None:
    n, n_clients = cfg["messages"], cfg["clients"]
    server = await Server("soak-flood", True).start()
    checks = Checks()
    clients: list[KernelClient] = []
    try:
        kernel_id = await server.start_kernel()
        for i in range(n_clients):
            proto = PROTOCOLS[i % len(PROTOCOLS)]
            clients.append(await KernelClient.connect(server, kernel_id, proto))
        await asyncio.gather(*(c.drain(quiet=0.3, limit=30) for c in clients))
        log(f"flood: {n_clients} clients connected; {n:,} comm_msg")
        comm_id = "soak-flood"
        result["rss_before_mb"] = rss_mb(server)
        routes = ["/api/comms", "/api/comms/summary"]
        async with Poller(server, routes) as poller:
            cpu0, t0 = server.cpu_seconds(), time.perf_counter()
            await clients[0].execute(FLOOD.format(comm_id=comm_id, n=n), wait=False)
            counts = await asyncio.gather(*(count_flood(c, cfg["timeout"]) for c in clients))
            seconds, cpu = time.perf_counter() - t0, server.cpu_seconds() - cpu0
        result["rss_after_mb"] = rss_mb(server)
        result["api"] = poller.report()
        result["seconds"] = seconds
        result["delivered_per_s"] = n * n_clients / seconds
        result["server_cpu_us_per_delivered"] = cpu / (n * n_clients) * 1e6
        by_proto = {p: counts[i :: len(PROTOCOLS)] for i, p in enumerate(PROTOCOLS)}
        result["received"] = {p: sorted(set(c)) for p, c in by_proto.items()}
        checks.add(
            f"every client received all {n} comm_msg",
            all(c == n for c in counts),
            result["received"],
        )
        model = await server.api("GET", f"/api/comms/{comm_id}")
        result["mirror"] = {k: model[k] for k in ("status", "messages", "close_reason")}
        # comm_open + n comm_msg + comm_close, each once however many clients
        expected = {"to_kernel": 0, "from_kernel": n + 2}
        checks.add("the mirror counted every message once", model["messages"] == expected, model)
        checks.add("the flood's comm is closed", model["status"] == "closed", model["status"])
        result["server_totals"] = totals = await server_totals(server)
        checks.add(
            "the server's totals (/metrics): the same messages, one close by the kernel",
            totals["comm_messages"] == expected and totals["comms_closed"]["closed-by-kernel"] == 1,
            totals,
        )
        checks.add("the poller got every answer", not result["api"]["errors"])
    finally:
        for c in clients:
            c.close()
        await finish(server, result, checks)


# -- 2. scale ------------------------------------------------------------------------------


async def scale(cfg: dict[str, Any], result: dict[str, Any], log: Callable[[str], None]) -> None:
    n_kernels = cfg["kernels"]
    per_kernel = cfg["comms"] // n_kernels
    total = per_kernel * n_kernels
    server = await Server("soak-scale", True, NO_OFFLINE_BUFFER).start()
    checks = Checks()
    try:
        kernel_ids = [await server.start_kernel() for _ in range(n_kernels)]  # one at a time
        result["rss_before_mb"] = rss_mb(server)
        log(f"scale: {n_kernels} kernels open {total:,} comms")
        k0 = quote(kernel_ids[0])
        routes = ["/api/comms/summary", "/api/comms?limit=100", f"/api/kernels/{k0}/comms"]
        async with Poller(server, routes) as poller:
            t0 = time.perf_counter()
            code = OPEN_COMMS.format(n=per_kernel)
            # One kernel at a time, a frontend reading along: ten kernels opening comms at
            # once outpace the server on 2 cores, and their backlog in the server (which the
            # churn measures) would count as memory per comm.
            for kernel_id in kernel_ids:
                client = await KernelClient.connect(server, kernel_id, "v1")
                try:
                    await client.execute(code, timeout=cfg["timeout"])  # reads every comm_open
                finally:
                    client.close()

            async def all_open() -> bool:
                return (await summary(server))["open"] >= total

            await wait_for(all_open, cfg["timeout"], f"{total} comms open in the mirror")
            result["open_seconds"] = time.perf_counter() - t0
        result["api_while_opening"] = poller.report()
        result["rss_after_mb"] = rss_mb(server)
        result["rss_bytes_per_comm"] = (
            (result["rss_after_mb"] - result["rss_before_mb"]) * MB / total
        )
        log("scale: GET latencies, comms open and kernels idle")
        n = cfg["requests"]
        result["api_open"] = {
            route: await timed_gets(server, route, n)
            for route in ("/api/comms", "/api/comms/summary", *routes[1:])
        }
        s = await summary(server)
        result["summary"] = {k: s[k] for k in ("open", "orphaned", "closed", "messages")}
        checks.add(f"summary open == {total}", s["open"] == total, s["open"])
        checks.add(
            "summary messages: one comm_open from the kernel per comm",
            s["messages"] == {"to_kernel": 0, "from_kernel": total},
            s["messages"],
        )
        per = {k: v["open"] for k, v in s["by_kernel"].items()}
        checks.add(
            f"by_kernel: {per_kernel} open on each kernel",
            per == dict.fromkeys(kernel_ids, per_kernel),
            sorted(set(per.values())),
        )
        checks.add(
            "by_target and by_origin add up",
            s["by_target"] == {"jupyter.widget": {"open": total, "orphaned": 0, "left_behind": 0}}
            and s["by_origin"]["kernel"] == total,
            {"by_target": s["by_target"], "by_origin": s["by_origin"]},
        )
        listed = result["api_open"]["/api/comms"]
        checks.add(f"GET /api/comms lists {total}", listed["listed"] == total, listed["listed"])
        checks.add("the poller got every answer", not result["api_while_opening"]["errors"])
        for kernel_id in kernel_ids:
            await server.api("DELETE", f"/api/kernels/{kernel_id}", timeout=60)
        server.kernels.clear()

        async def forgotten() -> dict | None:
            s = await summary(server)
            return s if s["open"] == 0 and not s["by_kernel"] else None

        await wait_for(forgotten, 60, "the shut-down kernels' comms forgotten")
        result["server_totals"] = totals = await server_totals(server)
        checks.add(
            "the server's totals (/metrics) keep every comm_open after the kernels are gone",
            totals["comm_messages"] == {"to_kernel": 0, "from_kernel": total},
            totals["comm_messages"],
        )
        result["rss_after_shutdown_mb"] = rss_mb(server)
        log(f"scale: GET /api/comms of {total:,} comms p50 {listed['p50_ms']:.0f} ms")
    finally:
        await finish(server, result, checks)


# -- 3. churn ------------------------------------------------------------------------------


def mentions(text: str) -> Callable[[bytes | str], bool]:
    """A frame filter: the frames (v1 bytes or legacy text) that contain `text`."""
    raw = text.encode()
    return lambda frame: (raw if isinstance(frame, bytes) else text) in frame


def parse_time(iso: str) -> float:
    """Seconds since the epoch of a model's ISO 8601 UTC timestamp."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def churn_index(comm_id: str, prefix: str) -> int | None:
    rest = comm_id[len(prefix) :]
    return int(rest) if comm_id.startswith(prefix) and rest.isdigit() else None


async def churn(cfg: dict[str, Any], result: dict[str, Any], log: Callable[[str], None]) -> None:
    n_kernels = cfg["kernels"]
    per_kernel = cfg["comms"] // n_kernels
    server = await Server("soak-churn", True, NO_OFFLINE_BUFFER).start()
    checks = Checks()
    try:
        kernel_ids = [await server.start_kernel() for _ in range(n_kernels)]
        prefixes = [f"soak-churn-{i}-" for i in range(n_kernels)]
        result["rss_before_mb"] = rss_mb(server)
        log(f"churn: {n_kernels} kernel(s) open and close {per_kernel * n_kernels:,} comms")
        routes = ["/api/comms", "/api/comms/summary", "/api/comms?status=closed"]
        async with Poller(server, routes) as poller:
            cpu0, t0 = server.cpu_seconds(), time.perf_counter()
            for kernel_id, prefix in zip(kernel_ids, prefixes, strict=True):
                client = await KernelClient.connect(server, kernel_id, "v1")
                code = CHURN.format(n=per_kernel, prefix=prefix, seconds=cfg["timeout"])
                await client.execute(code, wait=False)
                # the kernel runs it (closing earlier may drop the request unsent); this
                # execute_input, not the one of `connect`'s "pass", which may come late
                await client.read_until(EXECUTE_INPUT, 1, 30, mentions(prefix))
                client.close()  # nobody connected: only the mirror's subscription reads

            async def markers() -> list[dict]:
                found = await server.api("GET", "/api/comms?target_name=soak.done")
                return found if len(found) == n_kernels else []

            wait = cfg["timeout"] + cfg["catch_up"]
            done = await wait_for(markers, wait, "the churn's end markers")
            seconds, cpu = time.perf_counter() - t0, server.cpu_seconds() - cpu0
        result["api"] = poller.report()
        result["rss_after_mb"] = rss_mb(server)
        ends = {p: json.loads((Path(server.dir) / f"{p}.json").read_text()) for p in prefixes}
        churned = sum(e["churned"] for e in ends.values())
        # how long after the kernels finished the mirror saw their last message: the backlog
        seen = {m["comm_id"][: -len("done")]: parse_time(m["opened_at"]) for m in done}
        result["mirror_lag_s"] = max(seen[p] - e["finished"] for p, e in ends.items())
        for marker in done:  # force-close: the kernel is told, the history takes it
            await server.api("DELETE", f"/api/comms/{quote(marker['comm_id'])}")
        closed = await server.api("GET", "/api/comms?status=closed")
        s = await summary(server)
        history_ok = True
        for prefix, end in ends.items():
            indices = sorted(
                i for m in closed if (i := churn_index(m["comm_id"], prefix)) is not None
            )
            # the history is the newest closes: a contiguous run ending at the last comm
            last = end["churned"] - 1
            history_ok &= indices == list(range(last - len(indices) + 1, last + 1))
        result["churned"] = churned
        result["seconds"] = seconds
        result["comms_per_s"] = churned / seconds
        result["server_cpu_us_per_comm"] = cpu / churned * 1e6
        result["summary"] = {k: s[k] for k in ("open", "orphaned", "closed", "messages")}
        peak = result["api"]["rss_mb"]["max"]
        backlog_mb = n_kernels * CommMirror.iopub_queue_limit.default_value
        backlog_mb *= BACKLOG_BYTES_PER_MESSAGE / MB
        checks.add(
            f"server RSS within {CHURN_RSS_SLACK_MB} MB of its start while churning, besides "
            f"{backlog_mb:.0f} MB of backlog (iopub_queue_limit messages per kernel)",
            peak - result["rss_before_mb"] <= CHURN_RSS_SLACK_MB + backlog_mb,
            f"{result['rss_before_mb']:.0f} -> peak {peak:.0f} MB; the mirror lagged "
            f"{result['mirror_lag_s']:.1f} s behind the kernels",
        )
        checks.add(
            f"churned all {per_kernel * n_kernels} comms (not stopped by the time bound)",
            churned == per_kernel * n_kernels,
            churned,
        )
        left = [] if s["open"] == 0 else await server.api("GET", "/api/comms?status=all&limit=1000")
        checks.add(
            "summary: nothing open",
            s["open"] == 0 and s["orphaned"] == 0,
            [m for m in left if m["status"] != "closed"],
        )
        checks.add(
            f"summary: closed == the cap ({CLOSED_CAP})", s["closed"] == CLOSED_CAP, s["closed"]
        )
        checks.add(
            "the history is the last comms closed",
            len(closed) == CLOSED_CAP and history_ok,
            {"records": len(closed), "contiguous runs ending at each kernel's last": history_ok},
        )
        churn_records = [m for m in closed if m["target_name"] == "soak.churn"]
        checks.add(
            "each churned comm: opened and closed by the kernel, 2 messages, counted once",
            all(
                m["messages"] == {"to_kernel": 0, "from_kernel": 2}
                and m["origin"] == "kernel"
                and m["close_reason"] == "closed-by-kernel"
                for m in churn_records
            ),
            len(churn_records),
        )
        checks.add(
            "the markers are force-closed",
            sum(m["close_reason"] == "force-closed" for m in closed) == n_kernels,
        )
        result["server_totals"] = totals = await server_totals(server)
        closes = totals["comms_closed"]
        checks.add(
            "the server's totals (/metrics): every churned comm's 2 messages and close, "
            "the markers' comm_open and force-close",
            totals["comm_messages"] == {"to_kernel": 0, "from_kernel": 2 * churned + n_kernels}
            and closes["closed-by-kernel"] == churned
            and closes["force-closed"] == n_kernels,
            totals,
        )
        checks.add("the poller got every answer", not result["api"]["errors"])
    finally:
        await finish(server, result, checks)


# -- report --------------------------------------------------------------------------------


def api_rows(title: str, routes: dict[str, Any]) -> None:
    print(f"  {title}")
    for route, s in routes.items():
        route = re.sub(r"/kernels/[^/]+/", "/kernels/<one>/", route)
        print(
            f"    {route:<34} p50 {s['p50_ms']:7.1f}  p95 {s['p95_ms']:7.1f}  "
            f"p99 {s['p99_ms']:7.1f}  max {s['max_ms']:7.1f} ms  n={s['n']:<5}"
            f"{s['response_bytes']:>11,} B"
        )


def print_flood(f: dict[str, Any]) -> str:
    c = f["config"]
    title = f"{c['clients']} clients (v1/legacy) on one kernel, {c['messages']:,} comm_msg"
    print(f"\n1. flood: {title}")
    print(
        f"  {f['seconds']:.1f} s, {f['delivered_per_s']:,.0f} delivered msg/s, server CPU "
        f"{f['server_cpu_us_per_delivered']:.1f} us per delivered msg; received per client "
        f"{f['received']}; mirror {f['mirror']['messages']}"
    )
    rss = f["api"]["rss_mb"]
    print(
        f"  server RSS {f['rss_before_mb']:.0f} MB before, peak {rss['max']:.0f}, "
        f"{f['rss_after_mb']:.0f} after"
    )
    api_rows("API during the flood (ms)", f["api"]["routes"])
    return title


def print_scale(s: dict[str, Any]) -> str:
    c = s["config"]
    title = f"{c['comms']:,} comms over {c['kernels']} kernels"
    print(f"\n2. scale: {title}")
    print(
        f"  opened in {s['open_seconds']:.1f} s; server RSS {s['rss_before_mb']:.0f} -> "
        f"{s['rss_after_mb']:.0f} MB ({s['rss_bytes_per_comm']:.0f} B per comm), "
        f"{s['rss_after_shutdown_mb']:.0f} MB after the kernels shut down; "
        f"summary {s['summary']}"
    )
    api_rows("API while the comms open (ms)", s["api_while_opening"]["routes"])
    api_rows("API with every comm open, kernels idle, sequential (ms)", s["api_open"])
    return title


def print_churn(ch: dict[str, Any]) -> str:
    c = ch["config"]
    title = f"{c['comms']:,} comms opened and closed on {c['kernels']} kernel(s)"
    rss = ch["api"]["rss_mb"]
    print(f"\n3. churn: {title}")
    print(
        f"  {ch['churned']:,} churned in {ch['seconds']:.0f} s ({ch['comms_per_s']:,.0f}/s, "
        f"server CPU {ch['server_cpu_us_per_comm']:.1f} us per comm); the mirror saw the "
        f"last {ch['mirror_lag_s']:.1f} s after the kernels sent it; summary {ch['summary']}"
    )
    print(
        f"  server RSS {ch['rss_before_mb']:.0f} MB before, peak {rss['max']:.0f}, "
        f"{ch['rss_after_mb']:.0f} after ({rss['samples']} samples)"
    )
    api_rows("API during the churn (ms)", ch["api"]["routes"])
    return title


def print_table(report: dict[str, Any]) -> None:
    m = report["machine"]
    print(
        f"\nmachine: {m['cpus']} x {m['cpu_model']}, {m['memory_bytes'] / 2**30:.0f} GiB, "
        f"Linux {m['kernel']}, python {m['python']}; commit {report['git']['commit'][:10]}"
        f"{' (dirty)' if report['git']['dirty'] else ''}; load average before "
        f"{report['load_before']} after {report['load_after']}"
    )
    rows = []
    for name, r in report["scenarios"].items():
        if "error" in r:
            print(f"\n{name}: did not finish: {r['error']}")
            title = name
        else:
            title = PRINTERS[name](r)
        rows.append((name, title, r))
    print("\nchecks")
    for name, _, r in rows:
        lg = r.get("log")
        if lg:
            print(
                f"  {name}: server log {lg['tracebacks']} tracebacks, {lg['errors']} errors, "
                f"{lg['warnings']} warnings"
            )
            for kind, n in lg["kinds"].items():
                print(f"      {n:>6} x {kind[:140]}")
        for check in r["checks"]:
            detail = "" if check["ok"] else f"  <- {str(check['detail'])[:300]}"
            print(f"    [{'ok' if check['ok'] else 'FAILED'}] {check['name']}{detail}")
    print("\n| scenario | server RSS MB: before, peak, after | API p50 / p99 ms, loaded | checks |")
    print("|---|---|---|---|")
    for name, title, r in rows:
        api = r.get("api") or r.get("api_while_opening")
        rss = (
            f"{r['rss_before_mb']:.0f} / {api['rss_mb']['max']:.0f} / {r['rss_after_mb']:.0f}"
            if api and api["rss_mb"] and "rss_after_mb" in r
            else "-"
        )
        lat = "; ".join(
            f"`{re.sub(r'/kernels/[^/]+/', '/kernels/<id>/', route)}` "
            f"{s['p50_ms']:.0f} / {s['p99_ms']:.0f}"
            for route, s in (api["routes"] if api else {}).items()
        )
        ok = sum(c["ok"] for c in r["checks"])
        print(f"| {name}: {title} | {rss} | {lat or '-'} | {ok} of {len(r['checks'])} ok |")
    print(f"\nelapsed {report['elapsed_s']:.0f} s")


PRINTERS = {"flood": print_flood, "scale": print_scale, "churn": print_churn}
SCENARIOS = {"flood": flood, "scale": scale, "churn": churn}


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    cfg = SMOKE if args.smoke else FULL
    if args.factor != 1:
        counts = ("messages", "comms")
        cfg = {
            name: {k: int(v * args.factor) if k in counts else v for k, v in c.items()}
            for name, c in cfg.items()
        }
    t0 = time.monotonic()

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - t0:6.0f}s] {msg}", file=sys.stderr, flush=True)

    report: dict[str, Any] = {
        "benchmark": "jupyter_comm_ext soak",
        "smoke": args.smoke,
        "config": cfg,
        "git": git_commit(),
        "machine": machine.describe(),
        "load_before": os.getloadavg(),
        "scenarios": {},
    }
    for name in args.only or list(SCENARIOS):
        log(name)
        result = report["scenarios"][name] = {"config": cfg[name]}
        try:
            await SCENARIOS[name](cfg[name], result, log)
        except Exception as e:  # a deadline passed, a server died: report, go on
            result["error"] = repr(e)
            result.setdefault("checks", []).append(
                {"name": "ran to the end", "ok": False, "detail": repr(e)}
            )
            log(f"{name} failed: {e!r}")
    report["load_after"] = os.getloadavg()
    report["elapsed_s"] = time.monotonic() - t0
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny N, for CI")
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument(
        "--factor", type=float, default=1, help="scale the message and comm counts by this"
    )
    parser.add_argument("--only", nargs="+", choices=list(SCENARIOS), help="run these only")
    args = parser.parse_args(argv)
    report = asyncio.run(amain(args))
    print_table(report)
    path = args.json or RESULTS / time.strftime("soak-%Y%m%d-%H%M%S.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1))
    print(f"JSON: {path}")
    failed = [c for r in report["scenarios"].values() for c in r["checks"] if not c["ok"]]
    return 1 if failed else 0


if __name__ == "__main__":
    exit_on_signals()
    sys.exit(main())

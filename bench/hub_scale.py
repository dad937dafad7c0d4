"""The JupyterHub service at scale: a real Hub, N single-user servers x M comms each.

    python bench/hub_scale.py                       # 10 servers x 1,000 comms, ~2 minutes
    python bench/hub_scale.py --servers 3 --comms 100 --requests 5   # a quick look

Through the Hub's proxy, as an admin's API client would (the service's own traits at their
defaults: concurrency 32, server_timeout 5 s, answer_timeout 10 s, page_size 1,000):
- `GET {service}api/summary` (per-server totals): p50/p95, body bytes;
- `GET {service}api/comms?target_name=other` (a filtered list, 1 % of the comms): same;
- `GET {service}api/comms` (every comm) for scale;
- the same routes of one single-user server directly (per-server cost), and the Hub API's
  list of ready users (which the service asks first, every time);
- the service's CPU per request and its memory (RSS now and peak);
- with one server hung (SIGSTOP): the summary's time, bounded by server_timeout.
Then a projection to 1,000 servers from the per-server figures. JSON in bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the Hub runner the tests use

from hub_process import PREFIX, SERVICE, Hub  # noqa: E402

OPEN_COMMS = """
from comm import create_comm
_bench = [create_comm(target_name="jupyter.widget") for _ in range({widgets})]
_bench += [create_comm(target_name="other") for _ in range({others})]
"""


def percentiles(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {
        "p50_ms": round(statistics.median(s), 1),
        "p95_ms": round(s[min(len(s) - 1, math.ceil(len(s) * 0.95) - 1)], 1),
        "max_ms": round(s[-1], 1),
        "n": len(s),
    }


def proc_status(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def service_pid(hub: Hub) -> int:
    for pid in hub.marked_pids():
        if b"jupyter_comm_ext.hub" in Path(f"/proc/{pid}/cmdline").read_bytes():
            return pid
    raise LookupError("no service process")


async def timed(hub: Hub, path: str, n: int, pid: int | None = None) -> dict[str, Any]:
    """n sequential GETs of `path` as admin: latency, body size, service CPU per request."""
    samples, size = [], 0
    cpu0 = cpu_seconds(pid) if pid else 0.0
    for _ in range(n):
        started = time.perf_counter()
        status, _, response = await hub.fetch(path, user="admin", timeout=60)
        samples.append((time.perf_counter() - started) * 1000)
        assert status == 200, (path, status, response.body[:300])
        size = len(response.body)
    result = {**percentiles(samples), "bytes": size}
    if pid:
        result["service_cpu_ms_per_request"] = round((cpu_seconds(pid) - cpu0) * 1000 / n, 1)
    return result


async def measure(hub: Hub, users: list[str], comms: int, requests: int) -> dict[str, Any]:
    others = max(1, comms // 100)
    for user in users:
        kernel_id = await hub.start_kernel(user)
        ws = await hub.connect(user, kernel_id)
        await ws.execute(OPEN_COMMS.format(widgets=comms - others, others=others), timeout=120)
        ws.close()
    total = comms * len(users)
    deadline = time.monotonic() + 60
    while (await hub.api("api/summary"))["totals"]["open"] != total:
        assert time.monotonic() < deadline, "the servers never reported every comm"
        await asyncio.sleep(0.5)

    pid = service_pid(hub)
    memory_before = proc_status(pid)
    report: dict[str, Any] = {"servers": len(users), "comms_per_server": comms}
    report["hub_summary"] = await timed(hub, f"{PREFIX}api/summary", requests, pid)
    report["hub_filtered_list"] = await timed(
        hub, f"{PREFIX}api/comms?target_name=other", requests, pid
    )
    report["hub_full_list"] = await timed(hub, f"{PREFIX}api/comms", max(3, requests // 5), pid)
    report["service_memory"] = {"before": memory_before, "after": proc_status(pid)}

    report["hub_api_users"] = await timed(hub, "/hub/api/users?state=ready", requests)
    one = f"/user/{users[0]}/"
    report["server_summary"] = await timed(hub, f"{one}api/comms/summary", requests)
    report["server_filtered_list"] = await timed(hub, f"{one}api/comms?target_name=other", requests)
    report["server_full_list"] = await timed(hub, f"{one}api/comms", max(3, requests // 5))

    hung = hub.server_pid(users[-1])
    os.kill(hung, signal.SIGSTOP)
    try:
        report["hub_summary_one_hung"] = await timed(hub, f"{PREFIX}api/summary", 3, pid)
    finally:
        os.kill(hung, signal.SIGCONT)
    report["projection"] = project(report)
    return report


def project(report: dict[str, Any], servers: int = 1000) -> dict[str, Any]:
    """On paper: the service asks `concurrency` servers at a time, one request each for a
    summary, and does the JSON work on one core. The wall time is the larger of the waves
    of requests and the service's CPU; the answer timeout must cover it with a margin."""
    n = report["servers"]
    per_server_ms = report["server_summary"]["p50_ms"]
    cpu_per_server_ms = report["hub_summary"]["service_cpu_ms_per_request"] / n
    body_per_server = report["hub_summary"]["bytes"] / n
    rows = {}
    for concurrency in (32, 64, 128):
        waves_ms = math.ceil(servers / concurrency) * per_server_ms
        cpu_ms = servers * cpu_per_server_ms
        wall_ms = max(waves_ms, cpu_ms)
        rows[str(concurrency)] = {
            "waves_ms": round(waves_ms),
            "service_cpu_ms": round(cpu_ms),
            "expected_ms": round(wall_ms),
            "answer_timeout_s_suggested": max(10, math.ceil(3 * wall_ms / 1000)),
        }
    return {
        "servers": servers,
        "per_server_summary_ms": per_server_ms,
        "service_cpu_ms_per_server": round(cpu_per_server_ms, 2),
        "summary_body_bytes": round(body_per_server * servers),
        "by_concurrency": rows,
    }


def print_table(r: dict[str, Any]) -> None:
    def row(label: str, m: dict[str, Any]) -> None:
        cpu = m.get("service_cpu_ms_per_request")
        print(
            f"| {label} | {m['p50_ms']:,.1f} | {m['p95_ms']:,.1f} | {m['bytes']:,} | "
            f"{'' if cpu is None else f'{cpu:,.1f}'} |"
        )

    print(f"\n{r['servers']} servers x {r['comms_per_server']:,} comms, through the Hub's proxy")
    print("| request | p50 ms | p95 ms | body bytes | service CPU ms/request |")
    print("|---|---|---|---|---|")
    row("service `api/summary`", r["hub_summary"])
    row("service `api/comms?target_name=other`", r["hub_filtered_list"])
    row("service `api/comms` (every comm)", r["hub_full_list"])
    row("the Hub's `GET /hub/api/users?state=ready`", r["hub_api_users"])
    row("one server `api/comms/summary`", r["server_summary"])
    row("one server `api/comms?target_name=other`", r["server_filtered_list"])
    row("one server `api/comms`", r["server_full_list"])
    row("service `api/summary`, one server hung", r["hub_summary_one_hung"])
    mem = r["service_memory"]
    print(
        f"\nservice RSS {mem['before']['VmRSS'] / 2**20:.1f} MB before, "
        f"{mem['after']['VmRSS'] / 2**20:.1f} MB after, peak {mem['after']['VmHWM'] / 2**20:.1f} MB"
    )
    p = r["projection"]
    print(
        f"\nprojection to {p['servers']:,} servers: one summary {p['per_server_summary_ms']} ms, "
        f"service CPU {p['service_cpu_ms_per_server']} ms per server, "
        f"summary body ~{p['summary_body_bytes'] / 2**20:.1f} MB"
    )
    for concurrency, x in p["by_concurrency"].items():
        print(
            f"  concurrency {concurrency}: waves {x['waves_ms']:,} ms, CPU {x['service_cpu_ms']:,} "
            f"ms -> ~{x['expected_ms']:,} ms; answer_timeout >= {x['answer_timeout_s_suggested']} s"
        )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--servers", type=int, default=10)
    parser.add_argument("--comms", type=int, default=1000, help="comms per server")
    parser.add_argument("--requests", type=int, default=30, help="samples per route")
    args = parser.parse_args(argv)
    users = [f"user{i:03d}" for i in range(args.servers)]
    with tempfile.TemporaryDirectory(prefix="hub-bench-") as tmp:
        hub = Hub(
            Path(tmp),
            ["admin", *users],
            roles=[("bench", "admin", ["custom:comms:read", f"access:services!service={SERVICE}"])],
        )
        try:
            started = time.monotonic()
            hub.start_servers([(u, "") for u in users], timeout=300)
            report = asyncio.run(measure(hub, users, args.comms, args.requests))
            report["setup_and_run_s"] = round(time.monotonic() - started, 1)
        finally:
            hub.stop()
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "hub_scale.json").write_text(json.dumps(report, indent=2))
    print_table(report)
    return report


if __name__ == "__main__":
    # SIGTERM ends it like Ctrl-C does, so `Hub.stop` runs
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    main()

"""`bench/run.py --smoke` runs end to end and writes the documented JSON shape; no timing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import processes
import pytest

ROOT = Path(__file__).resolve().parents[1]
RATIOS = {"ratio_ext", "ci_ext", "ratio_aa", "ci_aa"}
#: how long a bench script has to stop its servers on SIGTERM
STOP_GRACE = 30


def bench(script: str, *args: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """`bench/<script> args...` with this Python, its output captured as text.

    In a process group of its own: past `timeout`, or on pytest's own timeout, the script
    gets SIGTERM (it stops its servers, which stop their kernels), then the group SIGKILL.
    """
    proc = processes.spawn(
        [sys.executable, str(ROOT / "bench" / script), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        processes.stop(proc, STOP_GRACE)
        _, stderr = proc.communicate(timeout=10)
        pytest.fail(f"bench/{script} did not finish in {timeout} s: {stderr[-3000:]}")
    finally:
        if proc.poll() is None:  # pytest's timeout, or an interrupt
            processes.stop(proc, STOP_GRACE)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


# each test's timeout: its scripts' bounds, and the time to stop them
@pytest.mark.timeout(280 + STOP_GRACE + 30)
def test_bench_run_smoke(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = bench(
        *("run.py", "--smoke", "--json", str(out)),
        # the relay's extension server takes extra arguments (a part's cost is the
        # difference to a default run); a traitlet the server rejects would fail the run
        "--ext-arg=--WebsocketNodelay.push_interval=0.002",
        cwd=tmp_path,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "GET /api/comms" in proc.stdout
    report = json.loads(out.read_text())
    assert report["smoke"] is True
    assert report["ext_args"] == ["--WebsocketNodelay.push_interval=0.002"]
    assert {"cpus", "cpu_model", "python"} <= set(report["machine"])

    relay = report["relay"]["summary"]
    for proto in ("v1", "legacy"):
        for case in ("comm", "stream"):
            entry = relay[f"{proto}/{case}"]
            assert set(entry) == {"msgs_per_s", "server_cpu_us_per_msg"}
            for per in entry.values():
                assert set(per) == {"stock", "ext", "stock_aa"} | RATIOS
                assert per["stock"]["min"] <= per["stock"]["median"] <= per["stock"]["max"]
        rt = relay[f"{proto}/roundtrip"]
        assert set(rt) == {"p50_ms", "p95_ms", "server_cpu_us_per_roundtrip"}
        for metric in ("p50_ms", "p95_ms"):
            assert set(report["relay"]["browser"][f"{proto}/{metric}"]) == {
                "stock",
                "ext",
                "ext_nagle",
            }
    fanout = report["relay"]["fanout"]["3"]
    assert set(fanout) == {"server_cpu_us_per_delivered", "delivered_per_s"}
    for per in fanout.values():
        assert set(per) == {"stock", "ext", "stock_aa"} | RATIOS
        assert len(per["ext"]["samples"]) == 2  # the smoke's slices
    for proto in ("v1", "legacy"):
        fractions = report["tap_fractions"][proto]
        assert set(fractions) == {"non_comm_out", "comm_out", "comm_roundtrip"}
        assert all(v["fraction"] >= 0 for v in fractions.values())
        # the replay counted every comm message it fed the tap and the watcher
        counted = report["tap_replay"][proto]["counted"]
        assert counted["to_kernel"] > 0 and counted["from_kernel"] > 0

    api = report["api"]
    assert api["listed"] == api["comms"] == 20
    assert api["response_bytes"] > 0
    for key in ("get_api_comms_idle", "get_api_comms_one_kernel_busy"):
        assert {"p50_ms", "p95_ms", "n"} <= set(api[key])
    assert api["comm_info_request_one_busy_ms"] > 0

    (mem,) = report["memory"]
    assert mem["comms"] == 1000 and mem["tracemalloc_bytes_per_comm"] > 0

    dispatch = report["kernel_dispatch"]
    assert dispatch["benchmark"] == "kernel_comm_dispatch"
    assert set(dispatch["scenarios"]) == {"wire", "dispatch"}


@pytest.mark.timeout(200 + STOP_GRACE + 30)
def test_bench_soak_smoke(tmp_path: Path) -> None:
    """`bench/soak.py --smoke`: three scenarios on real servers; their checks are counts."""
    out = tmp_path / "soak.json"
    proc = bench("soak.py", "--smoke", "--json", str(out), cwd=tmp_path, timeout=200)
    # exit status 1 is a failed check (a count off, a traceback in a server's log)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for heading in ("1. flood", "2. scale", "3. churn", "checks"):
        assert heading in proc.stdout
    report = json.loads(out.read_text())
    assert report["smoke"] is True
    scenarios = report["scenarios"]
    assert set(scenarios) == {"flood", "scale", "churn"}
    for result in scenarios.values():
        assert result["checks"] and all(c["ok"] for c in result["checks"])
        assert result["log"]["tracebacks"] == 0
    flood = scenarios["flood"]
    assert set(flood["api"]["routes"]) == {"/api/comms", "/api/comms/summary"}
    assert flood["mirror"]["messages"]["from_kernel"] == flood["config"]["messages"] + 2
    for route in flood["api"]["routes"].values():
        assert {"p50_ms", "p95_ms", "p99_ms", "n"} <= set(route) and route["n"] > 0
    assert scenarios["scale"]["summary"]["open"] == scenarios["scale"]["config"]["comms"]
    churn = scenarios["churn"]
    assert churn["summary"]["open"] == 0 and churn["summary"]["closed"] == 1000
    assert churn["api"]["rss_mb"]["samples"] > 0


@pytest.mark.timeout(200 + 120 + 2 * STOP_GRACE + 30)
def test_bench_variants_smoke(tmp_path: Path) -> None:
    """`bench/variants.py`: a variant by arguments and one by git ref, beside stock, A/A and
    the default extension, one line per server and case; a rejected setting fails the run."""
    proc = bench(
        *("variants.py", "--rt-slices", "2", "--flood-slices", "1"),
        "--variant=nagle=--WebsocketNodelay.enabled=False",
        "--variant=head=@HEAD --WebsocketNodelay.push_interval=0.002",
        cwd=tmp_path,
        timeout=200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    sections: dict[str, set[str]] = {}
    case = ""
    for line in proc.stdout.splitlines():
        if line.startswith("  "):
            sections[case].add(line.split()[0])
        else:
            case = line.split(" (")[0]
            sections[case] = set()
    names = {"stock_aa", "ext", "nagle", "head"}
    assert sections == {
        "v1 round trip, server CPU": names,
        "v1 comm flood, server CPU/msg": names,
    }, proc.stdout

    bad = bench("variants.py", "--variant=x=--CommTap.guard=maybe", cwd=tmp_path, timeout=120)
    assert bad.returncode != 0
    assert "server x has no jupyter_comm_ext" in bad.stderr, bad.stderr[-3000:]

"""The dispatch benchmark runs (tiny N) and reports the documented JSON shape; no timing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .kernel_driver import ROOT

BENCH = ROOT / "bench" / "bench_kernel_dispatch.py"


@pytest.mark.timeout(120 + 60)  # the script's own bound, and a loaded machine's start-up
def test_bench_smoke_json_shape(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--smoke", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ratio" in proc.stdout
    report = json.loads(out.read_text())
    assert report["benchmark"] == "kernel_comm_dispatch"
    assert report["unit"] == "messages/second"
    assert (report["n"], report["rounds"]) == (200, 2)
    assert set(report["scenarios"]) == {"wire", "dispatch"}
    for entry in report["scenarios"].values():
        assert set(entry) == {"ours", "ipykernel", "ratio"}
        assert entry["ratio"] > 0
        for impl in ("ours", "ipykernel"):
            stats = entry[impl]
            assert set(stats) == {"median", "min", "max", "samples"}
            assert len(stats["samples"]) == 2
            assert 0 < stats["min"] <= stats["median"] <= stats["max"]

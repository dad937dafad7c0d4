"""Server memory per tracked comm: the registry filled with N records, in a fresh process.

Both tracemalloc (bytes Python allocated for the records, their ids, the per-kernel dicts)
and the RSS delta of the process are reported, per comm.  Records look like a live
server's: 20 kernels, 32-hex comm ids parsed out of JSON, a widget target name, counted
once in each direction.

    python -m bench.memory 10000        # prints one JSON object
    python -m bench.memory 10000 widgets  # the same comms as sliders (slider, layout, style)

With `widgets`, every comm opens through `CommRegistry.observe` with the comm_open content of
an ipywidgets 8 slider, its layout or its style, so each record carries a widget model and
the slider its two references.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
import tracemalloc
import uuid
from typing import Any

KERNELS = 20


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(n: int) -> dict[str, Any]:
    from jupyter_comm_ext import registry as reg

    registry = reg.CommRegistry(max_per_kernel=n)
    kernel_ids = [str(uuid.uuid4()) for _ in range(KERNELS)]
    for k in kernel_ids:
        registry.add_kernel(k)
    # ids as the server gets them: fresh strings out of parsed JSON, not interned literals
    ids = [json.loads(json.dumps(uuid.uuid4().hex)) for _ in range(n)]
    target = json.loads('"jupyter.widget"')
    gc.collect()
    rss0 = rss_bytes()
    tracemalloc.start()
    snap0 = tracemalloc.take_snapshot()
    now = time.time()
    for i, comm_id in enumerate(ids):
        record = registry.open(kernel_ids[i % KERNELS], comm_id, target, "kernel", now=now)
        record.count(reg.FROM_KERNEL, 600, now)
        record.count(reg.TO_KERNEL, 300, now)
    del ids  # the registry now holds the only reference to each id
    gc.collect()
    snap1 = tracemalloc.take_snapshot()
    tracemalloc.stop()
    traced = sum(s.size_diff for s in snap1.compare_to(snap0, "filename"))
    # RSS without tracemalloc's own bookkeeping: a second, untraced registry
    registry2 = reg.CommRegistry(max_per_kernel=n)
    ids2 = [json.loads(json.dumps(uuid.uuid4().hex)) for _ in range(n)]
    gc.collect()
    rss1 = rss_bytes()
    for i, comm_id in enumerate(ids2):
        record = registry2.open(kernel_ids[i % KERNELS], comm_id, target, "kernel", now=now)
        record.count(reg.FROM_KERNEL, 600, now)
    del ids2
    gc.collect()
    rss2 = rss_bytes()
    assert len(registry) == n and len(registry2) == n
    return {
        "comms": n,
        "tracemalloc_bytes_per_comm": traced / n,
        "rss_bytes_per_comm": (rss2 - rss1) / n,
        "rss_before_bytes": rss0,
    }


def slider_contents(n: int) -> list[tuple[str, bytes]]:
    """(comm id, comm_open content) of n comms: sliders, each after its layout and style."""
    out: list[tuple[str, bytes]] = []
    for _ in range(n // 3):
        layout, style, slider = (json.loads(json.dumps(uuid.uuid4().hex)) for _ in range(3))
        for comm_id, model, extra in (
            (layout, "LayoutModel", {"width": None}),
            (style, "SliderStyleModel", {"handle_color": None}),
            (
                slider,
                "IntSliderModel",
                {"layout": f"IPY_MODEL_{layout}", "style": f"IPY_MODEL_{style}"},
            ),
        ):
            state = {
                "_model_name": model,
                "_model_module": "@jupyter-widgets/controls",
                "_model_module_version": "2.0.0",
                "value": 0,
                **extra,
            }
            data = {"state": state, "buffer_paths": []}
            content = {"comm_id": comm_id, "target_name": "jupyter.widget", "data": data}
            out.append((comm_id, json.dumps(content).encode()))
    return out


def measure_widgets(n: int) -> dict[str, Any]:
    """Like `measure`, for sliders opened through `observe` (tracemalloc only)."""
    from jupyter_comm_ext import registry as reg
    from jupyter_comm_ext.protocol import CommMessage

    registry = reg.CommRegistry(max_per_kernel=n)
    kernel_ids = [str(uuid.uuid4()) for _ in range(KERNELS)]
    contents = slider_contents(n)
    target = json.loads('"jupyter.widget"')
    gc.collect()
    tracemalloc.start()
    snap0 = tracemalloc.take_snapshot()
    now = time.time()
    for i, (comm_id, content) in enumerate(contents):
        message = CommMessage("comm_open", comm_id, 600, target, content=content)
        registry.observe(kernel_ids[(i // 3) % KERNELS], message, reg.FROM_KERNEL, now=now)
    del contents, message
    gc.collect()
    snap1 = tracemalloc.take_snapshot()
    tracemalloc.stop()
    traced = sum(s.size_diff for s in snap1.compare_to(snap0, "filename"))
    widgets = sum(1 for r in registry.live_records() if getattr(r, "widget", None) is not None)
    return {
        "comms": len(registry),
        "widgets": widgets,
        "tracemalloc_bytes_per_comm": traced / len(registry),
    }


def run(sizes: list[int], code: str | None = None) -> list[dict[str, Any]]:
    """Each size in its own interpreter, so one run's heap does not serve the next."""
    env = dict(os.environ)
    if code:  # `python -m` puts the cwd (the checkout) first: say where to import from
        env["BENCH_CODE"] = code
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = []
    for n in sizes:
        proc = subprocess.run(
            [sys.executable, "-m", "bench.memory", str(n)],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=root,
            env=env,
            check=True,
        )
        out.append(json.loads(proc.stdout))
    return out


if __name__ == "__main__":
    if os.environ.get("BENCH_CODE"):
        sys.path.insert(0, os.environ["BENCH_CODE"])
    widgets = sys.argv[2:] == ["widgets"]
    print(json.dumps((measure_widgets if widgets else measure)(int(sys.argv[1]))))

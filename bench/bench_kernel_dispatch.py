"""Comm dispatch throughput in the kernel: jupyter_comm_ext.kernel vs ipykernel's comms.

Messages per second handled by ``CommManager.comm_msg`` dispatching to an ``on_msg``
callback, in-process, with a real ``jupyter_client.Session``. Two scenarios:

- ``wire``: each message arrives as signed serialized frames and is deserialized by the
  kernel's Session first, as ipykernel does for every shell message;
- ``dispatch``: already deserialized messages, so only the comm layer is measured.

Both implementations run in the same process, interleaved A B A B over ``--rounds``;
the table shows the median, the spread (min-max) and the ratio ours / ipykernel.

    python bench/bench_kernel_dispatch.py [--n 50000] [--rounds 9] [--json out.json]
    python bench/bench_kernel_dispatch.py --smoke --json out.json   # seconds, for CI
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time
import types
import typing as t
from pathlib import Path

from jupyter_client.session import Session

try:
    import jupyter_comm_ext.kernel as ours
except ImportError:  # run from a checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import jupyter_comm_ext.kernel as ours

import ipykernel
from ipykernel.comm import CommManager as IpykernelCommManager
from ipykernel.comm.comm import BaseComm as IpykernelComm

KEY = b"bench-key"
COMM_ID = "bench-comm"


def make_ours() -> tuple[t.Any, list[int]]:
    kernel = types.SimpleNamespace(session=Session(key=KEY), iopub_socket=None)
    manager = ours.CommManager(kernel)
    comm = ours.Comm("bench", comm_id=COMM_ID, primary=False, manager=manager)
    manager.register_comm(comm)
    return manager, _count_into(comm)


def make_ipykernel() -> tuple[t.Any, list[int]]:
    manager = IpykernelCommManager()
    comm = IpykernelComm(target_name="bench", comm_id=COMM_ID, primary=False)
    manager.register_comm(comm)
    return manager, _count_into(comm)


def _count_into(comm: t.Any) -> list[int]:
    counter = [0]

    def on_msg(msg: dict[str, t.Any]) -> None:
        counter[0] += 1

    comm.on_msg(on_msg)
    return counter


IMPLEMENTATIONS: dict[str, t.Callable[[], tuple[t.Any, list[int]]]] = {
    "ours": make_ours,
    "ipykernel": make_ipykernel,
}


def frontend_messages(n: int) -> list[list[bytes]]:
    """``n`` signed widget-update comm_msgs as they arrive on the shell socket."""
    client = Session(key=KEY)
    out = []
    for i in range(n):
        content = {
            "comm_id": COMM_ID,
            "data": {"method": "update", "state": {"value": i}, "buffer_paths": []},
        }
        out.append([b"client-ident", *client.serialize(client.msg("comm_msg", content))])
    return out


def run_wire(make: t.Callable, frames: list[list[bytes]]) -> float:
    manager, counter = make()
    session = Session(key=KEY)  # fresh: its replay protection remembers signatures
    handle = manager.comm_msg
    gc.collect()
    start = time.perf_counter()
    for raw in frames:
        idents, msg_frames = session.feed_identities(raw)
        handle(None, idents, session.deserialize(msg_frames))
    elapsed = time.perf_counter() - start
    assert counter[0] == len(frames), "messages were lost"
    return len(frames) / elapsed


def run_dispatch(make: t.Callable, messages: list[dict[str, t.Any]]) -> float:
    manager, counter = make()
    handle = manager.comm_msg
    gc.collect()
    start = time.perf_counter()
    for msg in messages:
        handle(None, [], msg)
    elapsed = time.perf_counter() - start
    assert counter[0] == len(messages), "messages were lost"
    return len(messages) / elapsed


def summarize(samples: list[float]) -> dict[str, t.Any]:
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "samples": samples,
    }


def main(argv: list[str] | None = None) -> dict[str, t.Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=50_000, help="messages per round")
    parser.add_argument("--rounds", type=int, default=9, help="rounds per implementation")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--smoke", action="store_true", help="tiny run, for CI")
    args = parser.parse_args(argv)
    if args.smoke:
        args.n, args.rounds = 200, 2

    frames = frontend_messages(args.n)
    reader = Session(key=KEY)
    messages = [reader.deserialize(reader.feed_identities(raw)[1]) for raw in frames]
    scenarios = {
        "wire": lambda make: run_wire(make, frames),
        "dispatch": lambda make: run_dispatch(make, messages),
    }

    results: dict[str, t.Any] = {}
    for scenario, run in scenarios.items():
        run(make_ours)  # warm up both before timing
        run(make_ipykernel)
        samples: dict[str, list[float]] = {name: [] for name in IMPLEMENTATIONS}
        for _ in range(args.rounds):
            for name, make in IMPLEMENTATIONS.items():
                samples[name].append(run(make))
        entry = {name: summarize(values) for name, values in samples.items()}
        entry["ratio"] = entry["ours"]["median"] / entry["ipykernel"]["median"]
        results[scenario] = entry

    report = {
        "benchmark": "kernel_comm_dispatch",
        "unit": "messages/second",
        "n": args.n,
        "rounds": args.rounds,
        "python": platform.python_version(),
        "ipykernel": ipykernel.__version__,
        "scenarios": results,
    }
    print_table(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


def print_table(report: dict[str, t.Any]) -> None:
    print(
        f"comm_msg dispatch, {report['n']} messages x {report['rounds']} rounds "
        f"(python {report['python']}, ipykernel {report['ipykernel']})"
    )
    print(f"{'scenario':<10} {'impl':<10} {'median msg/s':>14} {'min-max msg/s':>22} {'ratio':>7}")
    for scenario, entry in report["scenarios"].items():
        for name in IMPLEMENTATIONS:
            s = entry[name]
            ratio = f"{entry['ratio']:.2f}x" if name == "ours" else ""
            spread = f"{s['min']:,.0f}-{s['max']:,.0f}"
            print(f"{scenario:<10} {name:<10} {s['median']:>14,.0f} {spread:>22} {ratio:>7}")


if __name__ == "__main__":
    main()

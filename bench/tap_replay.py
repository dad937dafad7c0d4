"""The tap's own cost, in process: real traffic replayed through the tap code alone.

Traffic is recorded, not made up:
- kernel -> frontend: the raw IOPub frames (topic, delimiter, signature, header, parent,
  metadata, content) of a real kernel sending comm messages and printing lines, as
  received by a SUB socket, which is what the server's relay and the mirror's watcher get;
- frontend -> kernel: websocket frames encoded exactly as `clients.KernelClient` sends them
  in the relay benchmark (widget-style comm_msg, and execute_request), v1 and legacy.

Each frame is then handed to a tapped connection class built on a stub whose relay does
nothing, and to the same stub untapped; the difference is the tap's cost per message.
Kernel comm messages also go through `IOPubWatcher._on_recv` (the mirror's IOPub
subscriber; libzmq filters every other message out before Python sees it).
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import time
import types
import uuid
from typing import Any

from jupyter_client.session import Session

from .clients import encode


def record_kernel_traffic(n: int, timeout: float = 60) -> dict[str, list[list[bytes]]]:
    """IOPub frames of a real kernel: `n` comm_msg (with open and close), `n` stream lines."""
    from jupyter_client.kernelspec import KernelSpec
    from jupyter_client.manager import KernelManager

    launcher = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernel_launcher.py")
    km = KernelManager()
    km._kernel_spec = KernelSpec(
        argv=[sys.executable, launcher, "-f", "{connection_file}"],
        language="python",
        display_name="bench",
    )
    km.start_kernel(stderr=open(os.devnull, "w"))  # noqa: SIM115
    try:
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout)
        sub = kc.connect_iopub()
        sub.linger = 0
        time.sleep(0.5)  # let the subscription settle
        code = (
            "import comm\n"
            "_c = comm.create_comm(target_name='jupyter.widget', data={'state': {}})\n"
            f"for _i in range({n}):\n"
            "    _c.send({'method': 'update', 'state': {'value': _i}, 'buffer_paths': []})\n"
            "_c.close()\n"
            f"for _i in range({n}):\n"
            "    print(_i, flush=True)\n"
        )
        kc.execute(code)
        comm: list[list[bytes]] = []
        stream: list[list[bytes]] = []
        deadline = time.monotonic() + timeout
        while len(stream) < n and time.monotonic() < deadline:
            if not sub.poll(1000):
                continue
            frames = sub.recv_multipart()
            if frames[0].startswith(b"comm-"):
                comm.append(frames)
            elif frames[0].startswith(b"stream"):
                stream.append(frames)
        sub.close()
        kc.stop_channels()
    finally:
        km.shutdown_kernel(now=True)
    if len(stream) < n or len(comm) < n + 2:
        raise RuntimeError(f"recorded {len(comm)} comm and {len(stream)} stream messages")
    return {"comm": comm, "stream": stream}


def frontend_frames(protocol: str, n: int, comm_id: str) -> dict[str, list[bytes | str]]:
    """Frames a frontend sends: widget updates on one comm, and execute requests."""
    session = Session(session=uuid.uuid4().hex, key=b"")
    comm_open = encode(
        session,
        protocol,
        "comm_open",
        {"comm_id": comm_id, "target_name": "jupyter.widget", "data": {"state": {}}},
    )
    comm = [
        encode(
            session,
            protocol,
            "comm_msg",
            {
                "comm_id": comm_id,
                "data": {"method": "update", "state": {"value": i}, "buffer_paths": []},
            },
        )
        for i in range(n)
    ]
    code = {
        "code": "x = 1",
        "silent": False,
        "store_history": True,
        "user_expressions": {},
        "allow_stdin": True,
        "stop_on_error": True,
    }
    other = [encode(session, protocol, "execute_request", code) for _ in range(n)]
    return {"comm_open": [comm_open], "comm": comm, "other": other}


class StubConnection:
    """What the tap wraps, minus the relay: the tap's cost is all that is left."""

    def __init__(self, kernel_id: str, protocol: str) -> None:
        self.kernel_id = kernel_id
        self.session_id = uuid.uuid4().hex
        v1 = "v1.kernel.websocket.jupyter.org"
        self.websocket_handler = types.SimpleNamespace(
            selected_subprotocol=v1 if protocol == "v1" else None
        )

    def handle_incoming_message(self, incoming_msg: Any) -> None:
        pass

    def handle_outgoing_message(self, stream: Any, outgoing_msg: Any, *args: Any) -> None:
        pass


def make_mirror() -> Any:
    from jupyter_server.services.kernels.kernelmanager import MappingKernelManager

    from jupyter_comm_ext.mirror import CommMirror

    # a kernel manager without kernels: the mirror then never starts a watcher
    return CommMirror(kernel_manager=MappingKernelManager())


def unconnected_watcher(mirror: Any, kernel_id: str, on_problem: Any) -> Any:
    """The mirror's IOPub watcher of a kernel, without its socket: fed frames by hand."""
    from jupyter_comm_ext.watchers import IOPubWatcher, KernelWatcher

    watcher = object.__new__(IOPubWatcher)
    KernelWatcher.__init__(watcher, kernel_id, None, mirror.kernel_sent, on_problem, mirror.log)
    watcher._welcome = None
    return watcher


def _time_per_call(fn: Any, items: list, repeat: int) -> float:
    """Best-of-`repeat` seconds per call of fn(item) over items (min: least disturbed)."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        try:
            t0 = time.perf_counter()
            for item in items:
                fn(item)
            best = min(best, (time.perf_counter() - t0) / len(items))
        finally:
            gc.enable()
    return best


def _median_of(fn: Any, items: list, repeat: int, rounds: int) -> float:
    return statistics.median(_time_per_call(fn, items, repeat) for _ in range(rounds))


def replay(n: int = 5000, repeat: int = 5, rounds: int = 3) -> dict[str, Any]:
    """µs per message the tap adds, per traffic class and protocol."""
    kernel = record_kernel_traffic(n)
    results: dict[str, Any] = {"n": n}
    for protocol in ("v1", "legacy"):
        results[protocol] = _replay_protocol(protocol, kernel, n, repeat, rounds)
    return results


def _replay_protocol(
    protocol: str, kernel: dict[str, list[list[bytes]]], n: int, repeat: int, rounds: int
) -> dict[str, Any]:
    from jupyter_comm_ext.counting import CommCounting, RecentIds
    from jupyter_comm_ext.tap import CommTap

    mirror = make_mirror()
    kernel_id = uuid.uuid4().hex
    watcher = unconnected_watcher(mirror, kernel_id, lambda k, e: (_ for _ in ()).throw(e))
    mirror.watchers[kernel_id] = watcher  # as in a live server: the kernel is being watched
    counting = mirror.counting[kernel_id] = CommCounting(watcher)
    tapped_cls = CommTap(mirror=mirror).connection_class(StubConnection)
    tapped = tapped_cls(kernel_id, protocol)
    plain = StubConnection(kernel_id, protocol)
    comm_id = uuid.uuid4().hex
    frames = frontend_frames(protocol, n, comm_id)
    tapped.handle_incoming_message(frames["comm_open"][0])
    assert mirror.registry.kernel_comms(kernel_id), "the tap did not see the comm_open"

    def incoming(conn: Any) -> Any:
        return conn.handle_incoming_message

    def outgoing(conn: Any) -> Any:
        return lambda msg: conn.handle_outgoing_message("iopub", msg)

    def fresh_ids(fn: Any) -> Any:
        """Replays repeat the same messages: forget their ids before each pass, so every
        pass counts them (as live traffic would) instead of dropping them as seen."""

        def call(msg: Any) -> None:
            if msg is first:
                counting.recent = RecentIds()
            fn(msg)

        return call

    kernel_comm = kernel["comm"][1:-1]
    first = kernel_comm[0]

    def watch(msg: list[bytes]) -> None:
        watcher._on_recv(msg)

    # the comm's record, from its comm_open
    watch(kernel["comm"][0])

    def cost(make: Any, items: list) -> float:
        tap = _median_of(make(tapped), items, repeat, rounds)
        base = _median_of(make(plain), items, repeat, rounds)
        return max(tap - base, 0.0) * 1e6

    entry = {
        "in_comm_us": cost(incoming, frames["comm"]),
        "in_other_us": cost(incoming, frames["other"]),
        # a connection that does not count: one attribute test per message
        "out_other_us": cost(outgoing, kernel["stream"]),
        "out_passing_comm_us": cost(outgoing, kernel_comm),
        # no frontend: the watcher receives the kernel's comm messages
        "watcher_comm_us": _median_of(fresh_ids(watch), kernel_comm, repeat, rounds) * 1e6,
    }
    tapped.counts_comms = True  # a frontend connected: its connection counts
    entry["out_counted_other_us"] = cost(outgoing, kernel["stream"])
    entry["out_comm_us"] = cost(lambda conn: fresh_ids(outgoing(conn)), kernel_comm)
    records = list(mirror.registry.kernel_comms(kernel_id).values())
    entry["counted"] = {
        "to_kernel": sum(r.messages_to_kernel for r in records),
        "from_kernel": sum(r.messages_from_kernel for r in records),
    }
    return entry


def profile_target(n: int = 5000) -> None:
    """Run the comm paths in a loop, for a profiler (py-spy / pyinstrument)."""
    kernel = record_kernel_traffic(n)
    from jupyter_comm_ext.counting import CommCounting
    from jupyter_comm_ext.tap import CommTap

    mirror = make_mirror()
    kernel_id = uuid.uuid4().hex
    watcher = unconnected_watcher(mirror, kernel_id, mirror.kernel_problem)
    mirror.watchers[kernel_id] = watcher
    tapped = CommTap(mirror=mirror).connection_class(StubConnection)(kernel_id, "v1")
    tapped.counts_comms = True
    frames = frontend_frames("v1", n, uuid.uuid4().hex)
    tapped.handle_incoming_message(frames["comm_open"][0])
    for _ in range(20):
        mirror.counting[kernel_id] = CommCounting(watcher)  # fresh ids: every message counts
        for msg in kernel["comm"]:
            tapped.handle_outgoing_message("iopub", msg)
        for frame in frames["comm"]:
            tapped.handle_incoming_message(frame)


if __name__ == "__main__":
    import json

    print(json.dumps(replay(int(sys.argv[1]) if len(sys.argv) > 1 else 2000), indent=2))

"""Prometheus metrics on the server's /metrics, read with prometheus_client's own parser."""

from __future__ import annotations

from types import SimpleNamespace

from inprocess import extension
from kernel_code import ECHO_TARGET
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from waiting import wait_for
from wsclient import KernelWS, comm_msgs

from jupyter_comm_ext.metrics import CommMetrics
from jupyter_comm_ext.registry import CommRegistry


async def scrape(jp_fetch) -> dict[tuple[str, tuple], float]:
    """Every jupyter_comm_ext sample, by (name, sorted labels)."""
    r = await jp_fetch("metrics")
    samples = {}
    for family in text_string_to_metric_families(r.body.decode()):
        for s in family.samples:
            if s.name.startswith("jupyter_comm_ext_"):
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels):
    """The sample's value; a KeyError if it is not there (a missing series is not a 0)."""
    return samples[(name, tuple(sorted(labels.items())))]


async def test_gauges_and_counters_follow_the_comms(
    jp_fetch, fetch_json, jp_ws_fetch, start_kernel
):
    before = await scrape(jp_fetch)
    kernel_id = await start_kernel()
    ws = await KernelWS.connect(jp_ws_fetch, kernel_id, "v1")
    await ws.execute(
        ECHO_TARGET + "\nfrom comm import create_comm\nw = create_comm(target_name='w')"
    )
    await ws.send("comm_open", {"comm_id": "e1", "target_name": "echo", "data": {}})
    for i in range(3):
        await ws.send("comm_msg", {"comm_id": "e1", "data": {"i": i}})
        await ws.recv(comm_msgs(ws, "comm_msg", "e1"))
    await wait_for(lambda: _open(fetch_json, 2), what="2 comms")
    samples = await scrape(jp_fetch)
    assert value(samples, "jupyter_comm_ext_open_comms", target_name="echo") == 1
    assert value(samples, "jupyter_comm_ext_open_comms", target_name="w") == 1
    assert value(samples, "jupyter_comm_ext_orphaned_comms") == 0
    models = await fetch_json("api", "comms")
    for direction in ("to_kernel", "from_kernel"):
        name = "jupyter_comm_ext_comm_messages_total"
        grown = value(samples, name, direction=direction) - value(before, name, direction=direction)
        assert grown == sum(m["messages"][direction] for m in models) > 0
    assert value(samples, "jupyter_comm_ext_comm_bytes_total", direction="from_kernel") > 0

    await jp_fetch("api", "comms", "e1", method="DELETE")
    samples = await scrape(jp_fetch)
    assert value(samples, "jupyter_comm_ext_open_comms", target_name="echo") == 0
    closed = "jupyter_comm_ext_comms_closed_total"
    assert (
        value(samples, closed, reason="force-closed")
        == value(before, closed, reason="force-closed") + 1
    )
    # counters do not go down when the comm leaves the open list
    assert value(samples, "jupyter_comm_ext_comm_messages_total", direction="to_kernel") >= 4
    ws.close()


async def _open(fetch_json, n):
    return len(await fetch_json("api", "comms")) == n


async def test_target_labels_are_capped(
    jp_serverapp, jp_fetch, fetch_json, jp_ws_fetch, start_kernel
):
    extension(jp_serverapp).metrics.max_target_labels = 2
    kernel_id = await start_kernel()
    ws = await KernelWS.connect(jp_ws_fetch, kernel_id, "v1")
    await ws.execute(
        "from comm import create_comm\n"
        "cs = [create_comm(target_name=t) for t in ['a', 'a', 'a', 'b', 'b', 'c', 'd']]"
    )
    await wait_for(lambda: _open(fetch_json, 7), what="7 comms")
    samples = await scrape(jp_fetch)
    targets = {
        dict(labels)["target_name"]: v
        for (name, labels), v in samples.items()
        if name == "jupyter_comm_ext_open_comms"
    }
    assert targets == {"a": 3, "b": 2, "other": 2}
    ws.close()


async def test_a_target_reads_0_after_its_last_comm_closes(
    jp_serverapp, jp_fetch, fetch_json, jp_ws_fetch, start_kernel
):
    """Its series stays, so a graph or an alert sees the drop, while the label cap has room."""
    extension(jp_serverapp).metrics.max_target_labels = 2
    kernel_id = await start_kernel()
    ws = await KernelWS.connect(jp_ws_fetch, kernel_id, "v1")
    await ws.execute("from comm import create_comm\nw = create_comm(target_name='w')")
    await wait_for(lambda: _open(fetch_json, 1), what="the comm of w")
    assert value(await scrape(jp_fetch), "jupyter_comm_ext_open_comms", target_name="w") == 1

    await ws.execute("w.close()")
    await wait_for(lambda: _open(fetch_json, 0), what="w's comm to close")
    samples = await scrape(jp_fetch)
    assert value(samples, "jupyter_comm_ext_open_comms", target_name="w") == 0
    assert value(await scrape(jp_fetch), "jupyter_comm_ext_open_comms", target_name="w") == 0

    # targets with open comms take the cap's places first: w's 0 gives its place up
    await ws.execute("cs = [create_comm(target_name=t) for t in ['a', 'b']]")
    await wait_for(lambda: _open(fetch_json, 2), what="the comms of a and b")
    targets = {
        dict(labels)["target_name"]: v
        for (name, labels), v in (await scrape(jp_fetch)).items()
        if name == "jupyter_comm_ext_open_comms"
    }
    assert targets == {"a": 1, "b": 1}
    ws.close()


async def test_refused_frames_are_counted(jp_fetch, jp_ws_fetch, start_kernel):
    before = value(await scrape(jp_fetch), "jupyter_comm_ext_refused_frames_total")
    kernel_id = await start_kernel()
    ws = await KernelWS.connect(jp_ws_fetch, kernel_id, "v1")
    await ws.write((2**63).to_bytes(8, "little") + bytes(24))  # an offset table that cannot fit
    await ws.execute("1")  # the connection survives, and the refusal is behind us
    after = value(await scrape(jp_fetch), "jupyter_comm_ext_refused_frames_total")
    assert after == before + 1
    ws.close()


async def test_metrics_need_the_usual_authentication(jp_fetch, http_server_client, jp_base_url):
    r = await http_server_client.fetch(f"{jp_base_url}metrics", raise_error=False)
    assert r.code == 403
    assert (await jp_fetch("metrics")).code == 200


def test_two_servers_in_one_process_share_the_one_collector():
    """Each server (tests run many in one process) adds its source; none registers again."""
    sources = []
    for n in (1, 2):
        registry = CommRegistry()
        registry.open("k", f"c{n}", "t", "kernel")
        sources.append(
            CommMetrics(SimpleNamespace(registry=registry), SimpleNamespace(refused_frames=n))
        )
    for source in sources:
        source.start()
    try:
        samples = {
            (s.name, tuple(s.labels.items())): s.value
            for family in REGISTRY.collect()
            for s in family.samples
            if s.name.startswith("jupyter_comm_ext_")
        }
    finally:
        for source in sources:
            source.stop()
    assert samples[("jupyter_comm_ext_open_comms", (("target_name", "t"),))] == 2
    assert samples[("jupyter_comm_ext_refused_frames_total", ())] == 3

"""What each part of the extension costs: variants of it against stock, in the same slices.

    python bench/variants.py \\
        --variant "no-watcher-traffic=--CommMirror.iopub_topics=['zzz-']" \\
        --variant "nagle=--WebsocketNodelay.enabled=False" \\
        --variant "before=@85bb218"
    python bench/variants.py --widget --variant "before=@dfa4713"   # a slider's traffic

A variant is a server with the extension and extra command-line arguments, or the package
at a git ref (``@ref``, archived like ``run.py --code``), or both (``@ref ARGS...``).  Stock,
stock again (the A/A floor) and the default extension run alongside, one kernel each, in
the slices of ``run.py``'s relay (comm round trips, then comm floods); each server gets
the median of its per-slice ratios to stock, with a 95 % interval.  Comparing variants
across two ``run.py`` runs adds the drift between runs to every difference; here it cancels.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shlex
import shutil
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import relay  # noqa: E402
from bench.clients import PROTOCOLS, KernelClient  # noqa: E402
from bench.run import (  # noqa: E402
    _snapshots,
    in_slices,
    paired,
    sliced_flood,
    sliced_roundtrips,
    snapshot,
)
from bench.servers import Server, exit_on_signals  # noqa: E402

RT_N, FLOOD_N = 25, 1000


def variant(spec: str, base_args: Sequence[str] = ()) -> tuple[str, Server]:
    """A server from ``name=[@ref] ARGS...``, its arguments after `base_args`."""
    name, sep, rest = spec.partition("=")
    if not sep or not name or name in ("stock", "stock_aa", "ext"):
        raise argparse.ArgumentTypeError(f"want NAME=[@ref] ARGS..., got {spec!r}")
    args = shlex.split(rest)
    code = snapshot(args.pop(0)[1:]) if args and args[0].startswith("@") else None
    return name, Server(name, True, [*base_args, *args], code)


async def compare(
    servers: dict[str, Server], proto: str, rt_slices: int, flood_slices: int, widget: bool
) -> None:
    await asyncio.gather(*(s.start() for s in servers.values()))
    clients = {}
    for name, server in servers.items():
        clients[name] = await KernelClient.connect(server, await server.start_kernel(), proto)
        await clients[name].execute(relay.ECHO_TARGET)
    # --widget: the echo comm is a slider and each message a drag (`update {value: n}`), the
    # flood a slider's updates; the mirror then keeps a widget model for each
    data = relay.SLIDER_OPEN if widget else None
    payload = relay.slider_update if widget else relay.plain
    echo = {name: await relay.open_echo(c, data) for name, c in clients.items()}
    order = random.Random(0)
    cases = (
        (
            "round trip, server CPU",
            partial(sliced_roundtrips, clients, echo, RT_N, payload=payload),
            RT_N,
            rt_slices,
        ),
        (
            "comm flood, server CPU/msg",
            partial(sliced_flood, clients, "widget" if widget else "comm", FLOOD_N),
            FLOOD_N,
            flood_slices,
        ),
    )
    for case, one, units, n in cases:
        results = await in_slices(servers, n, order, one, "cpu", units)
        stock = [r["cpu"] for r in results["stock"]]
        print(f"{proto} {case} ({n} slices of {units}), vs stock:", flush=True)
        for name in servers:
            if name != "stock":
                p = paired([r["cpu"] for r in results[name]], stock)
                low, high = (100 * (x - 1) for x in p["ci95"])
                print(f"  {name:24} {100 * (p['median'] - 1):+6.1f} % [{low:+.1f}, {high:+.1f}]")
    for c in clients.values():
        c.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", type=variant, action="append", default=[], metavar="SPEC")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="v1")
    parser.add_argument("--rt-slices", type=int, default=200)
    parser.add_argument("--flood-slices", type=int, default=80)
    parser.add_argument(
        "--widget", action="store_true", help="a slider's comm traffic instead of a plain comm's"
    )
    args = parser.parse_args(argv)
    servers = {
        "stock": Server("stock", False),
        "stock_aa": Server("stock-aa", False),
        "ext": Server("ext", True),
        **dict(args.variant),
    }

    async def run() -> None:
        try:
            await compare(servers, args.protocol, args.rt_slices, args.flood_slices, args.widget)
        finally:
            await asyncio.gather(*(s.shutdown() for s in servers.values()), return_exceptions=True)

    try:
        asyncio.run(run())
    finally:
        for tmp in _snapshots:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    exit_on_signals()
    main()

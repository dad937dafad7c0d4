"""The fast timestamp formatter writes exactly what datetime.strftime writes."""

from __future__ import annotations

import random
import time
from datetime import datetime, timezone

from jupyter_comm_ext.registry import isoformat


def reference(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_isoformat_matches_datetime() -> None:
    rng = random.Random(7)
    edges = [0.0, 1e9, 1.9999995, 1.0000005, 1700000000.9999996, 1700000000.0000005, -0.5]
    now = time.time()
    values = edges + [rng.uniform(0, 4e9) for _ in range(20_000)]
    values += [now + rng.random() for _ in range(20_000)]
    assert [isoformat(v) for v in values] == [reference(v) for v in values]
    assert isoformat(None) is None

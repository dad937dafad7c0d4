"""Prometheus metrics of the comms, on the server's own `/metrics`.

A custom collector reads the registry when Prometheus scrapes: the relay counts nothing
more per message than the mirror already does, and the figures cannot drift from what
`GET /api/comms` says.  Target names come from kernels, so their label values are capped
(`CommMetrics.max_target_labels`); no comm or kernel id is ever a label.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from traitlets import Int
from traitlets.config import LoggingConfigurable

from .registry import CLOSE_REASONS, FROM_KERNEL, TO_KERNEL

PREFIX = "jupyter_comm_ext"
#: the label value of the targets past the cap
OTHER = "other"


class CommMetrics(LoggingConfigurable):
    """Exports the mirror's counts to Prometheus through jupyter_server's `/metrics`."""

    max_target_labels = Int(
        50,
        config=True,
        help="""How many target names get a label value of their own in
        jupyter_comm_ext_open_comms; the comms of the other targets (the rarest) are counted
        under "other". Kernels choose target names, so without a cap one kernel could make
        Prometheus store a series per made-up name.""",
    )

    def __init__(self, mirror: Any, tap: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mirror = mirror
        self.tap = tap
        # The label values of the last scrape: a target whose last comm closed keeps its
        # series at 0 (a series that vanishes is never seen to drop), while the cap has room.
        self._labelled: list[str] = []

    def start(self) -> None:
        _COLLECTOR.sources.append(self)

    def stop(self) -> None:
        if self in _COLLECTOR.sources:
            _COLLECTOR.sources.remove(self)

    def open_by_target(self) -> dict[str, int]:
        """Open comms per target name, the rarest past the cap folded into "other".

        A target that had a series keeps it at 0 once its comms are closed, as long as
        targets with open comms leave room under the cap.
        """
        counts = Counter(
            r.target_name or "" for r in self.mirror.registry.live_records() if r.status == "open"
        )
        kept = dict(counts.most_common(self.max_target_labels))
        rest = sum(n for name, n in counts.items() if name not in kept)
        for name in self._labelled:
            if len(kept) >= self.max_target_labels:
                break
            if name != OTHER:
                kept.setdefault(name, 0)
        if rest or OTHER in self._labelled:
            kept[OTHER] = kept.get(OTHER, 0) + rest
        self._labelled = list(kept)
        return kept


class _CommCollector:
    """The one collector in prometheus_client's registry, reading every running extension.

    A process may run several servers (tests do, one after another): each adds its
    `CommMetrics` while it runs, and the collector registers once, so a second server never
    makes prometheus_client refuse a duplicate.
    """

    def __init__(self) -> None:
        self.sources: list[CommMetrics] = []

    def describe(self) -> list[Metric]:
        return []  # the metric names are only known to collect(); no eager registry check

    def collect(self) -> Iterator[Metric]:
        open_comms = GaugeMetricFamily(
            f"{PREFIX}_open_comms", "Open comms over all kernels, by target", labels=["target_name"]
        )
        orphaned = GaugeMetricFamily(
            f"{PREFIX}_orphaned_comms",
            "Comms every frontend closed that the kernel still holds",
        )
        left_behind = GaugeMetricFamily(
            f"{PREFIX}_left_behind_comms",
            "Open widget models the last open widget that referenced them let go of",
        )
        messages = CounterMetricFamily(
            f"{PREFIX}_comm_messages", "Comm messages counted, by direction", labels=["direction"]
        )
        nbytes = CounterMetricFamily(
            f"{PREFIX}_comm_bytes",
            "Size of the comm messages as ZMQ frames, by direction",
            labels=["direction"],
        )
        closed = CounterMetricFamily(
            f"{PREFIX}_comms_closed", "Comms that closed, by reason", labels=["reason"]
        )
        refused = CounterMetricFamily(
            f"{PREFIX}_refused_frames", "Malformed client frames the guard dropped"
        )
        skimmed = CounterMetricFamily(
            f"{PREFIX}_skimmed_contents",
            "Comm messages whose big content was read only at its ends (data not parsed)",
        )
        by_target: Counter[str] = Counter()
        totals: dict[str, Counter[str]] = {"messages": Counter(), "bytes": Counter()}
        closes: Counter[str] = Counter(dict.fromkeys(CLOSE_REASONS, 0))
        n_orphaned = n_left_behind = n_refused = 0
        for source in self.sources:
            registry = source.mirror.registry
            by_target.update(source.open_by_target())
            for kind, per_direction in registry.totals().items():
                totals[kind].update(per_direction)
            closes.update(registry.closes)
            for record in registry.live_records():
                n_orphaned += record.status == "orphaned"
                n_left_behind += record.left_behind
            n_refused += source.tap.refused_frames
        for target, n in sorted(by_target.items()):
            open_comms.add_metric([target], n)
        orphaned.add_metric([], n_orphaned)
        left_behind.add_metric([], n_left_behind)
        for direction in (TO_KERNEL, FROM_KERNEL):
            messages.add_metric([direction], totals["messages"][direction])
            nbytes.add_metric([direction], totals["bytes"][direction])
        for reason, n in sorted(closes.items()):
            closed.add_metric([reason], n)
        refused.add_metric([], n_refused)
        skimmed.add_metric([], sum(s.mirror.registry.skimmed_contents for s in self.sources))
        yield from (open_comms, orphaned, left_behind, messages, nbytes, closed, refused)
        yield skimmed


_COLLECTOR = _CommCollector()
REGISTRY.register(_COLLECTOR)

"""Who counts a kernel's comm messages: the frontends' own connections, else the watcher.

Every frontend connection already receives each IOPub message of its kernel; the watcher's
subscription is a second receive of every comm message.  So while frontends are connected,
up to two of their connections (a primary and a standby, so one leaving loses nothing)
count from the frames they relay anyway, and the watcher unsubscribes: libzmq then stops
sending it anything.  With no frontend left, the watcher subscribes again.  Overlaps (both
counting for a moment, a standby seeing what the primary saw) are removed by message id.
"""

from __future__ import annotations

from collections import deque
from typing import Any

#: how many recent message ids are remembered per kernel to drop a second sighting: far
#: more than can be in flight between two sources while they switch
RECENT_IDS = 4096
#: connections that count a kernel's messages at once (a primary and a standby)
COUNTERS = 2


class RecentIds:
    """A bounded set of the last message ids seen: O(1) to ask and to add."""

    __slots__ = ("_ids", "_order")

    def __init__(self, size: int = RECENT_IDS) -> None:
        self._ids: set[str] = set()
        self._order: deque[str] = deque(maxlen=size)

    def first_sighting(self, msg_id: str) -> bool:
        """True the first time an id is seen (within the last `size` ids)."""
        if msg_id in self._ids:
            return False
        order = self._order
        if len(order) == order.maxlen:
            self._ids.discard(order[0])
        order.append(msg_id)
        self._ids.add(msg_id)
        return True


class CommCounting:
    """Decides, for one kernel, which connections count its comm messages."""

    def __init__(self, watcher: Any) -> None:
        self.watcher = watcher
        self.recent = RecentIds()
        #: connections that finished connecting and can count (ZMQ ones, for local kernels)
        self.ready: list[Any] = []
        self.counters: list[Any] = []

    def connection_ready(self, connection: Any) -> None:
        """A connection is live (and done replaying what it missed): it may count."""
        if connection not in self.ready:
            self.ready.append(connection)
        self._fill()

    def connection_gone(self, connection: Any) -> bool:
        """A connection closed; True when the watcher must count again (no frontend left)."""
        if connection in self.ready:
            self.ready.remove(connection)
        if connection in self.counters:
            self.counters.remove(connection)
            connection.counts_comms = False
        self._fill()
        if not self.counters and self.watcher.paused:
            self.watcher.resume()
            return True
        return False

    def stop(self) -> None:
        """The kernel is forgotten: its connections count nothing more."""
        for connection in self.counters:
            connection.counts_comms = False
        self.counters.clear()
        self.ready.clear()

    def watcher_reconnected(self) -> None:
        """The watcher has a new subscription (a restart): pause it again if frontends count."""
        self._fill()

    def _fill(self) -> None:
        for connection in self.ready:
            if len(self.counters) >= COUNTERS:
                break
            if connection not in self.counters:
                self.counters.append(connection)
                connection.counts_comms = True
        if self.counters and not self.watcher.paused:
            self.watcher.pause()

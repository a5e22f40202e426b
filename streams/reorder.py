"""Event-time order across inputs: a reorder buffer behind a multi-input watermark.

Kafka orders records only within one partition of one topic; a user's events
come on three topics in any interleaving. Each input (a topic-partition live, a
file in replay) reports the latest event time it has delivered. The watermark
is the minimum of those over the inputs that are not idle, minus the allowed
lateness; it never goes back. Buffered events are released in
(`occurred_at`, `event_id`) order once the watermark reaches them. When every
input is idle (nothing left to fetch, or end of file), everything buffered is
released and the watermark moves to the latest time seen. An event that arrives
at or behind the watermark is released at once and flagged late, never dropped.
This is Kafka Streams' `max.task.idle.ms` rule and Flink's multi-input
watermark, which Faust lacks.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from typing import Generic, TypeVar

from streams.events import Event, PolicySwitch

H = TypeVar("H")
NEVER = float("-inf")
# What the buffer holds: events, and policy switches, ordered like events by their
# (`occurred_at`, `event_id`).
Item = Event | PolicySwitch


class ReorderBuffer(Generic[H]):
    """Holds events (and policy switches) with an opaque handle each (e.g. the Kafka
    record to ack)."""

    def __init__(self, lateness: float) -> None:
        self.lateness = lateness
        self.watermark = NEVER
        self._latest: dict[Hashable, float] = {}
        self._idle: set[Hashable] = set()
        self._heap: list[tuple[float, str, int, Item, H]] = []
        self._seq = 0
        self._max_seen = NEVER

    def __len__(self) -> int:
        return len(self._heap)

    def add_input(self, source: Hashable) -> None:
        """Register an input: until it delivers or goes idle, it holds the watermark."""
        self._latest.setdefault(source, NEVER)

    def remove_input(self, source: Hashable) -> None:
        self._latest.pop(source, None)
        self._idle.discard(source)
        self._advance()

    def set_idle(self, source: Hashable, idle: bool) -> None:
        if idle:
            if source not in self._idle:
                self._idle.add(source)
                self._advance()
        else:
            self._idle.discard(source)

    def push(self, source: Hashable, event: Item, handle: H) -> bool:
        """Buffer one event; True when it arrived at or behind the watermark (late):
        events at the watermark's own time may have been released before it."""
        t = event.occurred_at
        late = t <= self.watermark
        self._seq = seq = self._seq + 1
        heapq.heappush(self._heap, (t, event.event_id, seq, event, handle))
        self.observe(source, t)
        return late

    def observe(self, source: Hashable, t: float) -> None:
        """An event from `source` at t has arrived: move the watermark (`push` does
        this for the events it buffers; a caller calls it for an event another
        buffer holds)."""
        if self._idle:
            self._idle.discard(source)
        if t > self._max_seen:
            self._max_seen = t
        if t > self._latest.get(source, NEVER):
            self._latest[source] = t
            self._advance()

    def latest(self, source: Hashable) -> float:
        """The latest event time `source` has delivered (-inf before its first)."""
        return self._latest.get(source, NEVER)

    def slowest(self) -> float | None:
        """The least latest time over the inputs that are not idle: the one holding
        the watermark back (None when every input is idle or gone)."""
        idle = self._idle
        if not idle:
            return min(self._latest.values()) if self._latest else None
        times = [t for s, t in self._latest.items() if s not in idle]
        return min(times) if times else None

    def ready(self) -> bool:
        """Whether `release` would release anything."""
        heap = self._heap
        return bool(heap) and heap[0][0] <= self.watermark

    def release(self) -> list[tuple[Item, H]]:
        """Events the watermark has passed, in event-time order."""
        heap, mark = self._heap, self.watermark
        out = []
        while heap and heap[0][0] <= mark:
            item = heapq.heappop(heap)
            out.append((item[3], item[4]))
        return out

    def _advance(self) -> None:
        slowest = self.slowest()
        # Every input idle or gone: nothing can arrive in between, release everything.
        mark = self._max_seen if slowest is None else slowest - self.lateness
        if mark > self.watermark:
            self.watermark = mark

"""What the worker holds of each input record until it is final, and the progress
record that names the records a partition finished, for the partition's next owner.

A record is `Pending` from when it is read until it is applied (or sent on) and its
state's changelog records are delivered; each input topic-partition (`Input`) keeps
its records in offset order and acks the done ones at its head. What one settle
produced travels as a `Group` (decisions in flight, state writes, records, counts).
"""

from __future__ import annotations

import asyncio
import heapq
from collections import deque
from collections.abc import Iterable
from itertools import chain
from typing import Any

import orjson
from faust.types import Message

from streams.tally import Tally


class Pending:
    """An input record held until it is applied; then its offset may be acked."""

    __slots__ = ("done", "message")

    def __init__(self, message: Message, done: bool = False) -> None:
        self.message = message
        self.done = done


# The table key of partition p's progress record (`Progress`): 0xFF never starts a
# UTF-8 string, so no user id is ever this key.
PROGRESS_KEY = b"\xffprogress:"
# Keys of the table that are not users' states begin with this byte, which no UTF-8
# user id can: the progress records, and each user's decision history
# (`HISTORY_KEY` + user id, kept while the user endpoint is on: `streams.api`).
RESERVED = b"\xff"
HISTORY_KEY = b"\xffhistory:"


# The table key of partition p's policy record in force (`Shell._settle`).
POLICY_KEY = b"\xffpolicy:"


def policy_key(p: int) -> bytes:
    return POLICY_KEY + str(p).encode()


def progress_key(p: int) -> bytes:
    return PROGRESS_KEY + str(p).encode()


# Done offsets beyond the done prefix that a progress record names at most: those
# wait behind an earlier record of their input still held (for the watermark), and
# a topic written far out of event-time order could hold thousands. Past this many
# only the lowest are named: a later owner applies the rest again (as duplicates
# where their state was stored), which keeps decisions right and costs exact counts.
PROGRESS_AHEAD_MAX = 1_000


class Progress:
    """Which records of one input topic-partition are done: every offset below
    `below`, and the offsets in `ahead` (done before an earlier record was).

    A partition's progress goes into the state table after the state writes of
    each group whose decisions were delivered, in the same changelog partition,
    when it moved; it names the records whose states' changelog records were
    delivered before it was written (and a stop writes it once more): whoever
    restores the table has the states of every record the progress names. A
    worker that takes the partition over reads again from the committed offset
    (which may be past `below`: a record is acked when done, and the progress
    naming it goes out with the next group); the records the progress names were
    applied and counted by the previous owner, and are skipped (acked, their event
    times still move the watermark) instead of being applied and counted again.
    """

    __slots__ = ("ahead", "below", "until")

    def __init__(self, below: int, ahead: Iterable[int] = ()) -> None:
        self.below = below
        self.ahead = {o for o in ahead if o >= below}
        if len(self.ahead) > PROGRESS_AHEAD_MAX:
            self.ahead = set(heapq.nsmallest(PROGRESS_AHEAD_MAX, self.ahead))
        self.until = max(self.ahead, default=below - 1) + 1  # no offset from here is done

    def done(self, offset: int) -> bool:
        return offset < self.below or offset in self.ahead

    def runs(self) -> list[list[int]]:
        """`ahead` as [first, last + 1] runs of consecutive offsets."""
        out: list[list[int]] = []
        for offset in sorted(self.ahead):
            if out and out[-1][1] == offset:
                out[-1][1] = offset + 1
            else:
                out.append([offset, offset + 1])
        return out


def encode_progress(inputs: dict[str, Progress]) -> bytes:
    return orjson.dumps({"v": 1, "inputs": {
        topic: [progress.below, progress.runs()] for topic, progress in inputs.items()}})


def decode_progress(raw: bytes) -> dict[str, Progress]:
    """`encode_progress`'s output back; ValueError for anything else."""
    try:
        data = orjson.loads(raw)
        if data["v"] != 1:
            raise ValueError(f"version {data['v']!r}")
        return {topic: Progress(int(below), (o for first, end in runs
                                             for o in range(int(first), int(end))))
                for topic, (below, runs) in data["inputs"].items()}
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"unreadable progress record: {exc!r}") from None


class Input:
    """One input topic-partition as the watermark sees it."""

    __slots__ = ("caught_up_since", "done_ahead", "idle_at", "next_offset", "pending", "skip")

    def __init__(self) -> None:
        self.next_offset = 0  # one past the last offset received (or the start offset)
        self.caught_up_since: float | None = None
        # While idle (not holding the watermark): the high-water mark it had caught up
        # with. Records beyond it at the broker end the idleness (`Shell._wake`).
        self.idle_at: int | None = None
        self.pending: deque[Pending] = deque()
        # Offsets done but held behind an earlier record that is not (see `progress`).
        self.done_ahead: set[int] = set()
        self.skip: Progress | None = None  # what a previous owner finished (Progress)

    def finish(self) -> list[Message]:
        """Take the done records at the head, in offset order: those to ack."""
        q = self.pending
        out = []
        while q and q[0].done:
            out.append(q.popleft().message)
        if self.done_ahead and out:
            self.done_ahead.difference_update(m.offset for m in out)
        return out

    def progress(self) -> Progress:
        """What is done, once `finish` has taken the head; with what a previous owner
        finished (`skip`), which may not all have been read again yet."""
        q = self.pending
        below = q[0].message.offset if q else self.next_offset
        skip = self.skip
        if skip is None:
            return Progress(below, self.done_ahead)
        # (Progress keeps only the offsets ahead of its prefix.)
        return Progress(max(below, skip.below), chain(self.done_ahead, skip.ahead))


class Group:
    """What one settle produced: decisions in flight, state writes, records to ack
    and their counts. Once the decisions are delivered the writes go to the table
    (`Shell._complete`) and `futures` becomes their changelog sends; once those are
    delivered too, the records are final (`Shell._confirm`)."""

    __slots__ = ("futures", "released", "tally", "writes")

    def __init__(self, futures: list[Any], writes: list[tuple[bytes, bytes]],
                 released: list[Pending], tally: Tally) -> None:
        self.futures = futures
        self.writes = writes
        self.released = released
        self.tally = tally

    @classmethod
    def merged(cls, groups: list[Group]) -> Group:
        """Consecutive groups of one partition as one, completed with one store: each
        user's last state once, the records in order, the counts added up."""
        if len(groups) == 1:
            return groups[0]
        tally = Tally()
        for group in groups:
            tally.add(group.tally)
        return cls([f for g in groups for f in g.futures],
                   list(dict(w for g in groups for w in g.writes).items()),
                   [r for g in groups for r in g.released], tally)

    def ready(self) -> bool:
        return all(f.done() for f in self.futures)

    def error(self) -> BaseException | None:
        """The first failed delivery, once every future is done (`ready`)."""
        for f in self.futures:
            if f.cancelled():
                return asyncio.CancelledError("delivery cancelled")
            if f.exception() is not None:
                return f.exception()
        return None

"""Replay recorded logs through the worker's own loop: a file stands in for each
topic, a dict for the table.

Several files are read as several inputs, like the three topics live: the next
line always comes from the file that is furthest behind in event time, and a
finished file stops holding the watermark back.
"""

from __future__ import annotations

import base64
import gzip
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

import orjson

from streams.codec import Rejection, decode
from streams.decisions import Decision
from streams.engine import Partition, Tally
from streams.policy import Policy
from streams.state import UserState

if TYPE_CHECKING:
    from streams.metrics import Metrics

DEFAULT_LATENESS = 600.0  # seconds of event time an input may run behind another


@dataclass(frozen=True, slots=True)
class RejectedLine:
    source: str
    line: int
    rejection: Rejection
    raw: bytes

    def to_json(self) -> bytes:
        record: dict[str, object] = {"source": self.source, "line": self.line,
                                     "reason": self.rejection.reason,
                                     "detail": self.rejection.detail}
        try:
            record["raw"] = self.raw.decode("utf-8")
        except UnicodeDecodeError:
            record["raw_base64"] = base64.b64encode(self.raw).decode("ascii")
        return orjson.dumps(record)


def open_log(path: str) -> IO[bytes]:
    """A log file, gzipped or not (by its magic bytes), or stdin for '-'."""
    if path == "-":
        return sys.stdin.buffer
    handle = open(path, "rb")  # noqa: SIM115 - the caller closes it
    if handle.peek(2)[:2] == b"\x1f\x8b":
        return gzip.open(handle, "rb")  # type: ignore[return-value]
    return handle


def _lines(handle: IO[bytes]) -> Iterator[bytes]:
    for line in handle:
        line = line.rstrip(b"\r\n")
        if line.strip():
            yield line
        else:
            yield b""


def replay(policy: Policy, paths: Iterable[str], *, lateness: float = DEFAULT_LATENESS,
           on_decision: Callable[[Decision], None],
           on_reject: Callable[[RejectedLine], None] | None = None,
           progress: Callable[[int], None] | None = None,
           states: dict[str, UserState] | None = None,
           metrics: Metrics | None = None) -> Tally:
    """Decide over the logs; call back for every decision and rejected line.

    With `metrics`, the run is counted there as the worker counts (the one
    partition labelled "0"), with the time of every step; wall-clock event lag
    means nothing for a recorded log and is not observed.
    """
    table = states if states is not None else {}
    part: Partition[None]
    if metrics is None:
        part = Partition(policy, table, lateness)
    else:
        from streams.metrics import TimedPartition

        part = TimedPartition(policy, table, lateness, observe_step=metrics.observe_step)
        metrics.set_policy(policy.version)
        metrics.watch(0, part)
    tally = part.tally
    names = list(paths)
    handles = [open_log(p) for p in names]
    readers = [_lines(h) for h in handles]
    behind = [float("-inf")] * len(readers)  # latest event time delivered per file
    line_no = [0] * len(readers)
    for i in range(len(readers)):
        part.add_input(i)
    live = list(range(len(readers)))
    try:
        while live:
            i = live[0] if len(live) == 1 else min(live, key=behind.__getitem__)
            raw = next(readers[i], None)
            if raw is None:
                live.remove(i)
                part.remove_input(i)
                _drain(part, on_decision)
                continue
            line_no[i] += 1
            if not raw:
                continue  # blank line: nothing to count
            tally.read += 1
            if progress is not None and tally.read % 65_536 == 0:
                progress(tally.read)
            event = decode(raw)
            if isinstance(event, Rejection):
                tally.count_rejection(event)
                if on_reject is not None:
                    on_reject(RejectedLine(names[i], line_no[i], event, raw))
                continue
            if event.occurred_at > behind[i]:
                behind[i] = event.occurred_at
            part.offer(i, event, None)
            if part.decisions:
                _drain(part, on_decision)
    finally:
        for h in handles:
            if h is not sys.stdin.buffer:
                h.close()
    _drain(part, on_decision)
    if metrics is not None:
        metrics.set_users(len(table))
    return tally


def _drain(part: Partition[None], on_decision: Callable[[Decision], None]) -> None:
    for d in part.drain():
        on_decision(d)


def summary_lines(tally: Tally) -> list[str]:
    applied = sum(tally.applied.values())
    dups = sum(tally.duplicates.values())
    rejected = sum(tally.rejected.values())
    lines = [
        f"events read {tally.read:,}: applied {applied:,}, duplicates {dups:,}, "
        f"rejected {rejected:,}; late {sum(tally.late.values()):,}"
        + ("" if tally.accounted == tally.read else
           f"  (UNACCOUNTED {tally.read - tally.accounted:,})"),
    ]
    if tally.applied:
        lines.append("applied by type: " + ", ".join(
            f"{k} {v:,}" for k, v in sorted(tally.applied.items())))
    if tally.rejected:
        lines.append("rejected by reason: " + ", ".join(
            f"{k} {v:,}" for k, v in sorted(tally.rejected.items())))
    by_action: dict[str, int] = {}
    for (action, _), n in tally.decisions.items():
        by_action[action] = by_action.get(action, 0) + n
    lines.append(f"decisions {sum(by_action.values()):,}: " + (", ".join(
        f"{a} {n:,}" for a, n in sorted(by_action.items())) or "none"))
    for (action, reason), n in sorted(tally.decisions.items()):
        lines.append(f"  {action:<9} {reason:<21} {n:>9,}")
    return lines

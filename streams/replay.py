"""Replay recorded logs through the engine (`streams._engine`), as the worker decides:
the logs are read (gzipped or not, or stdin), merged, decoded and decided there, a
file standing in for each topic. Several files are read as several inputs, like
the three topics live: the next line always comes from the file that is furthest
behind in event time, and a finished file stops holding the watermark back.

Also here: `open_log` (for `produce`) and the summary lines replay and the worker
print.
"""

from __future__ import annotations

import gzip
import io
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, cast

from streams.policy import Policy
from streams.tally import Tally

if TYPE_CHECKING:
    from streams.metrics import Metrics

DEFAULT_LATENESS = 600.0  # seconds of event time an input may run behind another


def open_log(path: str) -> IO[bytes]:
    """A log file, gzipped or not (by its magic bytes), or stdin for '-'."""
    handle: IO[bytes] = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    peek = getattr(handle, "peek", None)  # stdin may be a stream with no look-ahead
    if peek is None:
        return handle
    head = peek(2)[:2]
    if len(head) < 2:  # a pipe may have handed over one byte so far: wait for two
        head = handle.read(2)
        handle = io.BufferedReader(_Rejoined(head, cast(io.BufferedReader, handle)))
    if head == b"\x1f\x8b":
        return gzip.open(handle, "rb")  # type: ignore[return-value]
    return handle


class _Rejoined(io.RawIOBase):
    """The bytes read ahead, then the rest of the stream."""

    def __init__(self, head: bytes, rest: io.BufferedReader) -> None:
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read1(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def compiled(policies: Sequence[Policy], paths: Iterable[str], *,
             lateness: float = DEFAULT_LATENESS,
             on_decisions: Sequence[Callable[[list[bytes]], None]],
             on_reject: Callable[[list[bytes]], None] | None = None,
             progress: Callable[[int], None] | None = None, jobs: int = 1,
             metrics: Metrics | None = None,
             schedule: Sequence[tuple[float, str, Policy]
                                | tuple[float, str, Policy, str | None]] = ()
             ) -> list[Tally]:
    """`replay_each` in the compiled engine, its whole loop there: the logs are read,
    merged, decoded and decided in `streams._engine`, once for every policy, with
    `jobs` threads over one decode (the output is the same for any number).

    `on_decisions[i]` gets policy i's decisions as JSON lines (bytes, no newline) in
    batches, in order; `on_reject` the rejected lines' dead-letter records
    (`RejectedLine.to_json`); `progress` the lines read, every 65,536. A log that
    cannot be read to its end raises `LogError` after the decisions before it are
    handed out.

    With `metrics` (one policy), the run is counted there as the worker counts it: the
    one partition labelled "0" as it ended (its tally, watermark, events held and
    deadlines pending), the users with a state, and the time of every step; the
    wall-clock lag of a recorded log's events means nothing and is not observed.
    """
    from streams import _engine
    from streams.metrics import LAG_BUCKETS, STEP_BUCKETS

    engines = [_engine.Policy(p.engine_json()) for p in policies]
    if len(on_decisions) != len(engines):
        raise ValueError("one on_decisions callback per policy")
    if metrics is not None and len(engines) != 1:
        raise ValueError("metrics count one policy's run")

    def decisions(which: int, batch: list[bytes]) -> None:
        on_decisions[which](batch)

    history = [(item[0], item[1], _engine.Policy(item[2].engine_json()),
                item[3] if len(item) > 3 else None) for item in schedule]
    if history and len(engines) != 1:
        raise ValueError("a policy history replays one policy")
    ends = _engine.replay(engines, list(paths), lateness, jobs, decisions, on_reject,
                          progress, list(STEP_BUCKETS) if metrics is not None else None,
                          schedule=history)
    tallies = [Tally.from_engine(t) for t in ends]
    if metrics is not None:
        end, tally = ends[0], tallies[0]
        metrics.set_policy(policies[0].version)
        metrics.watch(0, Ended(tally, end["pending_deadlines"],
                               Held(end["watermark"], end["buffered"])))
        metrics.set_users(end["users"])
        metrics.add_timings(end["step"], end["step_sum"], [0] * (len(LAG_BUCKETS) + 1), 0.0)
    return tallies


@dataclass(frozen=True)
class Held:
    """A reorder buffer as it ended: its watermark and the events it held."""

    watermark: float
    held: int

    def __len__(self) -> int:
        return self.held


@dataclass(frozen=True)
class Ended:
    """A compiled replay's partition as it ended, for `Metrics.watch`."""

    tally: Tally
    pending_deadlines: int
    buffer: Held


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

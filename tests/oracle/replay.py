"""The Python engine's replay: the loop the engine (`streams.replay.compiled`) was
checked against, byte for byte, and still is (tests/unit/test_engine_oracle.py,
tests/unit/test_metrics.py, bench/differential.py).

Recorded logs through `Partition`s: a file stands in for each topic. Several files
are read as several inputs, like the three topics live: the next line always comes
from the file that is furthest behind in event time, and a finished file stops
holding the watermark back.

Rejected lines are reported as they are read, but for overrides of users with no
state, rejected when applied: those are reported at the end of the run, after every
other, in the order of their files (as given) and line numbers.

With a policy history (`schedule`: policy switches, unscoped or for one region), a
replay decides as the worker did while those policies were rolled out: the switches
are offered first, from an input of their own after the files', and take effect as
the watermark passes them.
"""

from __future__ import annotations

import base64
import gzip
import sys
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from streams.codec import Rejection, decode
from streams.errors import LogError
from streams.events import Override, PolicySwitch
from streams.policy import Policy
from streams.replay import DEFAULT_LATENESS, open_log
from streams.tally import Tally
from tests.oracle.decisions import Decision
from tests.oracle.engine import Partition, TimedPartition, rare_full_collections
from tests.oracle.state import UserState

if TYPE_CHECKING:
    from streams.metrics import Metrics


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



def replay(policy: Policy, paths: Iterable[str], *, lateness: float = DEFAULT_LATENESS,
           on_decision: Callable[[Decision], None],
           on_reject: Callable[[RejectedLine], None] | None = None,
           progress: Callable[[int], None] | None = None,
           states: dict[str, UserState] | None = None,
           metrics: Metrics | None = None,
           schedule: Iterable[PolicySwitch] = ()) -> Tally:
    """Decide over the logs; call back for every decision and rejected line. The users'
    states are kept in `states` when given.

    `policy` is in force from the start; each switch of `schedule` (any order) from
    its time on (see `_run`).

    With `metrics`, the run is counted there as the worker counts (the one
    partition labelled "0"), with the time of every step; wall-clock event lag
    means nothing for a recorded log and is not observed.
    """
    table: dict[str, UserState] = states if states is not None else {}
    part: Partition[int]
    if metrics is None:
        part = Partition(policy, table, lateness)
    else:
        part = TimedPartition(policy, table, lateness, observe_step=metrics.observe_step)
        metrics.set_policy(policy.version)
        metrics.watch(0, part)
    _run([part], list(paths), [on_decision], on_reject, progress, schedule)
    if metrics is not None:
        metrics.set_users(len(table))
    return part.tally


def replay_each(policies: Sequence[Policy], paths: Iterable[str], *,
                lateness: float = DEFAULT_LATENESS,
                on_decisions: Sequence[Callable[[Decision], None]],
                on_reject: Callable[[RejectedLine], None] | None = None,
                progress: Callable[[int], None] | None = None,
                schedule: Iterable[PolicySwitch] = ()) -> list[Tally]:
    """`replay` under each of several policies in one pass over the logs.

    Each line is read and decoded once and offered to one partition per policy,
    each with its own states, so every policy decides exactly what its own
    `replay` would (`on_decisions[i]` gets policy i's decisions, in its order).
    Returns one tally per policy; rejected lines are reported once. A policy
    history (`schedule`) is for one policy only: a switch in it with any other number
    of policies is a ValueError (an empty one is no history).
    """
    if len(policies) != len(on_decisions):
        raise ValueError("one on_decisions callback per policy")
    parts: list[Partition[int]] = [Partition(p, {}, lateness) for p in policies]
    _run(parts, list(paths), on_decisions, on_reject, progress, schedule)
    return [part.tally for part in parts]


def _run(parts: list[Partition[int]], names: list[str],
         on_decisions: Sequence[Callable[[Decision], None]],
         on_reject: Callable[[RejectedLine], None] | None,
         progress: Callable[[int], None] | None,
         schedule: Iterable[PolicySwitch] = ()) -> None:
    """Read the logs into the partitions (one per policy, all fed the same events),
    handing part i's decisions to on_decisions[i] as they come.

    The policy switches of `schedule` (one partition only) are offered before the
    first line is read, sorted by (at, policy_id, region: an unscoped switch before
    scoped ones of the same time and id), from an input of their own (the last:
    number len(names)), their handles 1..n, the lines' following on; that input is
    then removed, so the switches wait in the buffer until the watermark passes
    them, like events.
    """
    switches = sorted(schedule, key=lambda s: (s.at, s.policy_id, s.region or ""))
    if switches and len(parts) != 1:
        raise ValueError("a policy schedule replays one policy's history, not a backtest")

    def drain() -> None:
        for part, on_decision in zip(parts, on_decisions, strict=True):
            for d in part.drain():
                on_decision(d)

    tallies = [part.tally for part in parts]
    # The override lines not yet applied, by handle (few: a rejection when applied is
    # reported with its line), and the lines rejected when applied, reported at the end.
    overrides: dict[int, tuple[int, int, bytes]] = {}
    applied_rejected: list[tuple[int, int, RejectedLine]] = []

    def settle(released: list[int]) -> None:
        """Take the partitions' rejections (every partition rejects the same events: a
        user's state exists whatever the policy), then forget the released overrides."""
        taken = [part.take_rejections() for part in parts]
        for handle, rejection in taken[0]:
            i, number, raw = overrides[handle]
            applied_rejected.append((i, number, RejectedLine(names[i], number, rejection, raw)))
        for handle in released:
            overrides.pop(handle, None)

    handles = [open_log(p) for p in names]
    behind = [float("-inf")] * len(handles)  # latest event time delivered per file
    line_no = [0] * len(handles)
    for part in parts:
        for i in range(len(handles)):
            part.add_input(i)
    lines = step = 0
    if switches:  # (one partition)
        extra = len(handles)
        parts[0].add_input(extra)
        for switch in switches:
            step += 1
            parts[0].offer_policy(extra, switch, step)
        parts[0].remove_input(extra)
        drain()
    live = list(range(len(handles)))
    first_offer, *other_offers = [part.offer for part in parts]
    # Full collections rescan the table of user states, which only grows: see
    # engine.rare_full_collections.
    try:
        with rare_full_collections():
            while live:
                i = live[0] if len(live) == 1 else min(live, key=behind.__getitem__)
                # Read file i while it is the one furthest behind: it stays so until its
                # time moves on (then another may be behind it), or for good when alone.
                alone = len(live) == 1
                at, number = behind[i], line_no[i]
                done = True
                try:
                    for line in handles[i]:
                        number += 1
                        raw = line.rstrip(b"\r\n")
                        if not raw or raw.isspace():
                            continue  # blank line: nothing to count
                        lines += 1
                        if progress is not None and lines % 65_536 == 0:
                            progress(lines)
                        event = decode(raw)
                        if isinstance(event, Rejection):
                            for tally in tallies:
                                tally.read += 1
                                tally.count_rejection(event)
                            if on_reject is not None:
                                on_reject(RejectedLine(names[i], number, event, raw))
                            continue
                        t = event.occurred_at
                        step += 1
                        for tally in tallies:
                            tally.read += 1
                        if isinstance(event, Override):
                            overrides[step] = (i, number, raw)
                        released = first_offer(i, event, step)
                        for offer in other_offers:
                            offer(i, event, step)
                        if overrides:
                            settle(released)
                        drain()
                        if t > at:
                            at = t
                            if not alone:
                                done = False
                                break
                except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
                    # A damaged or cut gzip file: what came before it is applied and
                    # written; the run stops with one line naming the file and place.
                    raise LogError(f"{names[i]}: unreadable after line {number:,}: "
                                   f"{exc}") from None
                behind[i], line_no[i] = at, number
                if done:
                    live.remove(i)
                    released = parts[0].remove_input(i)
                    for part in parts[1:]:
                        part.remove_input(i)
                    if overrides:
                        settle(released)
                    drain()
    finally:
        for h in handles:
            if h is not sys.stdin.buffer:
                h.close()
    drain()
    if on_reject is not None:
        for _, _, line in sorted(applied_rejected, key=lambda r: (r[0], r[1])):
            on_reject(line)

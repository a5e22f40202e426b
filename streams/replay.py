"""Replay recorded logs through the worker's own loop: a file stands in for each
topic, a dict for the table (of decoded states; with `state_cache`, of compact
bytes behind a bounded number decoded, as the worker's table is).

Several files are read as several inputs, like the three topics live: the next
line always comes from the file that is furthest behind in event time, and a
finished file stops holding the watermark back.
"""

from __future__ import annotations

import base64
import gzip
import heapq
import io
import multiprocessing
import os
import sys
import traceback
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from operator import itemgetter
from typing import IO, TYPE_CHECKING, Any, TypeVar, cast

import orjson

from streams.codec import Rejection, decode
from streams.decisions import Decision
from streams.engine import Partition, rare_full_collections
from streams.errors import LogError, MonitorError
from streams.policy import Policy
from streams.state import UserState
from streams.states import TableStates
from streams.tally import Tally

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
             metrics: Metrics | None = None) -> list[Tally]:
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

    ends = _engine.replay(engines, list(paths), lateness, jobs, decisions, on_reject,
                          progress, list(STEP_BUCKETS) if metrics is not None else None)
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


def replay(policy: Policy, paths: Iterable[str], *, lateness: float = DEFAULT_LATENESS,
           on_decision: Callable[[Decision], None],
           on_reject: Callable[[RejectedLine], None] | None = None,
           progress: Callable[[int], None] | None = None,
           states: dict[str, UserState] | None = None,
           metrics: Metrics | None = None, jobs: int = 1,
           state_cache: int | None = None) -> Tally:
    """Decide over the logs; call back for every decision and rejected line.

    With `metrics`, the run is counted there as the worker counts (the one
    partition labelled "0"), with the time of every step; wall-clock event lag
    means nothing for a recorded log and is not observed.

    With `jobs` > 1 the users are split over that many processes (`sharded`);
    the decisions, their order and the tally are the same as with one. A run
    that keeps `states` or `metrics`, or reads stdin, uses one process.

    With `state_cache`, at most that many user states stay decoded in each process
    (`_states`); the same decisions come out.
    """
    names = list(paths)
    if states is None and metrics is None:
        return replay_each([policy], names, lateness=lateness, on_decisions=[on_decision],
                           on_reject=on_reject, progress=progress, jobs=jobs,
                           state_cache=state_cache)[0]
    table: Any = states if states is not None else _states(state_cache)
    part: Partition[int]
    if metrics is None:
        part = Partition(policy, table, lateness)
    else:
        from streams.metrics import TimedPartition

        part = TimedPartition(policy, table, lateness, observe_step=metrics.observe_step)
        metrics.set_policy(policy.version)
        metrics.watch(0, part)
    _in_one_process([part], names, [on_decision], on_reject, progress)
    if metrics is not None:
        metrics.set_users(len(table))  # (a TableStates counts its users, not its cache)
    return part.tally


# Steps between two spills of the states changed meanwhile to bytes (`_spill`).
SPILL_EVERY = 4096


def _states(state_cache: int | None) -> Any:
    """A partition's states: a dict, or with `state_cache` a `TableStates` over a dict
    of compact bytes, at most `state_cache` decoded after each spill (bench/replay.py:
    about 2.1 KB a user in all, deadline index included, against 4.2 decoded)."""
    if state_cache is None:
        return {}
    return TableStates(_Store(), max(1, state_cache))


class _Store:
    """What `TableStates` needs of a table: its data."""

    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}


def _spill(parts: Sequence[Partition[int]]) -> None:
    """Write the states changed since the last spill to their store as bytes, and
    keep at most the cache's capacity decoded."""
    for part in parts:
        states = part.states
        if isinstance(states, TableStates):
            writes = states.take_dirty()
            if writes:
                states.table.data.update(writes)
                states.stored(writes)


def replay_each(policies: Sequence[Policy], paths: Iterable[str], *,
                lateness: float = DEFAULT_LATENESS,
                on_decisions: Sequence[Callable[[Decision], None]],
                on_reject: Callable[[RejectedLine], None] | None = None,
                progress: Callable[[int], None] | None = None, jobs: int = 1,
                state_cache: int | None = None) -> list[Tally]:
    """`replay` under each of several policies in one pass over the logs.

    Each line is read and decoded once and offered to one partition per policy,
    each with its own states, so every policy decides exactly what its own
    `replay` would (`on_decisions[i]` gets policy i's decisions, in its order).
    Returns one tally per policy; rejected lines are reported once.
    """
    names = list(paths)
    if len(policies) != len(on_decisions):
        raise ValueError("one on_decisions callback per policy")
    # Every process of a sharded run reads every line: only regular files can be read
    # more than once (not stdin, nor a pipe such as `<(zcat ...)`).
    if jobs > 1 and all(name != "-" and os.path.isfile(name) for name in names):
        return sharded(policies, names, lateness=lateness, jobs=jobs,
                       on_decisions=on_decisions, on_reject=on_reject, progress=progress,
                       state_cache=state_cache)
    parts: list[Partition[int]] = [Partition(p, _states(state_cache), lateness)
                                   for p in policies]
    _in_one_process(parts, names, on_decisions, on_reject, progress)
    return [part.tally for part in parts]


T = TypeVar("T")


def _in_one_process(parts: list[Partition[int]], names: list[str],
                    on_decisions: Sequence[Callable[[Decision], None]],
                    on_reject: Callable[[RejectedLine], None] | None,
                    progress: Callable[[int], None] | None) -> None:
    """`_run` in this process: part i's decisions go to on_decisions[i] as they come."""

    def drain(_: int) -> None:
        for part, on_decision in zip(parts, on_decisions, strict=True):
            for d in part.drain():
                on_decision(d)

    def at_step(callback: Callable[[T], None] | None) -> Callable[[int, T], None] | None:
        return None if callback is None else (lambda _, item: callback(item))

    _run(parts, names, None, drain, at_step(on_reject), at_step(progress))


def _run(parts: list[Partition[int]], names: list[str], shard: tuple[int, int] | None,
         drain: Callable[[int], None],
         on_reject: Callable[[int, RejectedLine], None] | None,
         progress: Callable[[int, int], None] | None) -> None:
    """Read the logs into the partitions (one per policy, all fed the same events),
    calling `drain(step)` whenever one has decisions, and `on_reject(step, line)`
    and `progress(step, lines)` with the step they come after.

    Every line is read and decoded whatever `shard` is: a valid event moves the
    watermark (and counts one step) in every shard, but only the shard (k of n)
    that owns its user applies it; rejected lines are shard 0's to count and report.
    """
    tallies = [part.tally for part in parts]
    handles = [open_log(p) for p in names]
    behind = [float("-inf")] * len(handles)  # latest event time delivered per file
    line_no = [0] * len(handles)
    for part in parts:
        for i in range(len(handles)):
            part.add_input(i)
    live = list(range(len(handles)))
    k, n = shard if shard is not None else (0, 1)
    offers = [part.offer for part in parts]
    observes = [part.observe for part in parts]
    spill = any(isinstance(part.states, TableStates) for part in parts)
    lines = step = 0
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
                            progress(step, lines)
                        event = decode(raw)
                        if isinstance(event, Rejection):
                            if k == 0:
                                for tally in tallies:
                                    tally.read += 1
                                    tally.count_rejection(event)
                                if on_reject is not None:
                                    on_reject(step, RejectedLine(names[i], number, event, raw))
                            continue
                        t = event.occurred_at
                        step += 1
                        if n == 1 or shard_of(event.user_id, n) == k:
                            for tally in tallies:
                                tally.read += 1
                            for offer in offers:
                                offer(i, event, step)
                        else:
                            for observe in observes:
                                observe(i, t)
                        for part in parts:
                            if part.decisions:
                                drain(step)  # every partition's
                                break
                        if spill and step % SPILL_EVERY == 0:
                            _spill(parts)
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
                    step += 1
                    for part in parts:
                        part.remove_input(i)
                    drain(step)
    finally:
        for h in handles:
            if h is not sys.stdin.buffer:
                h.close()
    drain(step)


def shard_of(user_id: str, n: int) -> int:
    """Which of n shards owns a user (stable across processes and runs)."""
    return zlib.crc32(user_id.encode()) % n


def sharded(policies: Sequence[Policy], names: list[str], *, lateness: float, jobs: int,
            on_decisions: Sequence[Callable[[Decision], None]],
            on_reject: Callable[[RejectedLine], None] | None = None,
            progress: Callable[[int], None] | None = None,
            state_cache: int | None = None) -> list[Tally]:
    """`replay_each` over `jobs` processes, each owning the users `shard_of` gives it.

    Each process reads every line, so each sees the same watermark at the same
    point as a single process would, and applies and fires exactly what a single
    process would for its own users. Its decisions come with their place in the
    order of emission (the step that released them, the policy, then
    `Partition.release`'s order), and merging the processes' streams by it gives
    the single process's order: the output is byte for byte that of `jobs=1`.
    """
    ctx = multiprocessing.get_context("fork")
    procs: list[multiprocessing.process.BaseProcess] = []
    streams = []
    tallies = [Tally() for _ in policies]
    try:
        for k in range(jobs):
            receive, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_shard, name=f"replay-{k}", daemon=True,
                               args=(list(policies), names, lateness, (k, jobs), send,
                                     on_reject is not None, progress is not None and k == 0,
                                     state_cache))
            proc.start()
            send.close()
            procs.append(proc)
            streams.append(_received(receive, proc, tallies))
        for _, kind, item in heapq.merge(*streams, key=itemgetter(0)):
            if kind == "d":
                which, decision = item
                on_decisions[which](decision)
            elif kind == "r":
                assert on_reject is not None
                on_reject(item)
            elif progress is not None:
                progress(item)
    finally:
        for each in procs:
            if each.is_alive():
                each.terminate()
            each.join()
    return tallies


_FLUSH = 1024  # items a shard sends at once


def _shard(policies: list[Policy], names: list[str], lateness: float, shard: tuple[int, int],
           send: Connection, rejects: bool, progress: bool, state_cache: int | None) -> None:
    """One process of `sharded`: its items in order, then ("end", its tallies)."""
    try:
        parts: list[Partition[int]] = []
        for policy in policies:
            part: Partition[int] = Partition(policy, _states(state_cache), lateness)
            part.places = []
            parts.append(part)
        items: list[tuple[tuple[Any, ...], str, Any]] = []
        # A rejected line or progress report goes after every decision of the step it
        # came after (any shard's, any policy's), in the order they came.
        count = [0]
        after = len(parts)  # in a step, after every policy's decisions

        def drain(step: int) -> None:
            for which, part in enumerate(parts):
                assert part.places is not None
                for d, place in zip(part.drain(), part.places, strict=True):
                    items.append(((step, which, *place), "d", (which, d)))
                part.places = []
            if len(items) >= _FLUSH:
                send.send(items)
                items.clear()

        def later(kind: str, step: int, item: object) -> None:
            count[0] += 1
            items.append(((step, after, 2, 0.0, "", count[0], 0), kind, item))
            if kind == "p" or len(items) >= _FLUSH:
                send.send(items)
                items.clear()

        _run(parts, names, shard, drain,
             (lambda step, r: later("r", step, r)) if rejects else None,
             (lambda step, n: later("p", step, n)) if progress else None)
        send.send(items)
        send.send(("end", [part.tally for part in parts]))
    except MonitorError as exc:
        send.send(("fail", str(exc)))  # the parent raises it again: one line, no traceback
    except BaseException:
        send.send(("error", traceback.format_exc()))
        raise
    finally:
        send.close()


def _received(receive: Connection, proc: multiprocessing.process.BaseProcess,
              tallies: list[Tally]) -> Iterator[tuple[tuple[Any, ...], str, Any]]:
    """A shard's items, in its order; its tallies are added to `tallies` at its end."""
    with receive:
        while True:
            try:
                message = receive.recv()
            except EOFError:
                proc.join()
                code = proc.exitcode
                how = (f"killed by signal {-code}" if code is not None and code < 0
                       else f"exit code {code}")
                raise MonitorError(f"replay process {proc.name} ended early ({how}; "
                                   "out of memory? try fewer --jobs)") from None
            if isinstance(message, list):
                yield from message
            elif message[0] == "end":
                for tally, theirs in zip(tallies, message[1], strict=True):
                    tally.add(theirs)
                return
            elif message[0] == "fail":
                raise MonitorError(message[1])  # its own one line
            else:
                raise RuntimeError(f"replay process {proc.name} failed:\n{message[1]}")


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

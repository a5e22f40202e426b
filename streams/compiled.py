"""A partition of the compiled engine as the worker's shell (`streams.shell.Shell`) uses it.

The shell hands each input record over as it was fetched (`take`): bytes, its key
and a handle (`_Pending`); the engine (`streams._engine.Partition`) decodes and
checks it, buffers it, applies what the watermark releases and fires deadlines.
What comes back crosses as bytes too: the decisions (key and JSON), the states
to write to the table, the handles of the records applied, and the counts and
timings for the metrics, a batch at a time. Every user of the partition is held in
the engine (`restore` loads them from the table at assignment); the table is where
they are stored.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any, Generic, TypeVar

from streams import _engine
from streams.codec import Rejection
from streams.policy import Policy
from streams.tally import Tally

H = TypeVar("H")

# One compiled policy per policy object (a worker has one).
_compiled: dict[int, tuple[Policy, _engine.Policy]] = {}


def compiled_policy(policy: Policy) -> _engine.Policy:
    known = _compiled.get(id(policy))
    if known is None or known[0] is not policy:
        known = _compiled[id(policy)] = (policy, _engine.Policy(policy.engine_json()))
    return known[1]


class Buffer:
    """The partition's reorder buffer, as the shell looks at it."""

    def __init__(self, part: CompiledPartition[Any]) -> None:
        self._part = part

    @property
    def watermark(self) -> float:
        return self._part.engine.watermark

    def __len__(self) -> int:
        return self._part.engine.buffered

    def set_idle(self, source: Hashable, idle: bool) -> None:
        """Mark an input idle or not, releasing nothing (`CompiledPartition.set_idle`
        releases)."""
        self._part.engine.mark_idle(self._part.source(source), idle)

    def slowest(self) -> float | None:
        return self._part.engine.slowest()

    def latest(self, source: Hashable) -> float:
        return self._part.engine.latest(self._part.source(source))


class States:
    """The partition's states as the shell stores them: the writes to make."""

    def __init__(self, part: CompiledPartition[Any]) -> None:
        self._part = part

    @property
    def users(self) -> int:
        return len(self._part.engine)

    def take_dirty(self) -> list[tuple[bytes, bytes]]:
        """The changed states' writes, once each (key: the user id)."""
        return self._part.engine.take_dirty()

    def stored(self, writes: Iterable[tuple[bytes, bytes]]) -> None:
        """The table holds these writes now (the engine keeps its states regardless)."""


class CompiledPartition(Generic[H]):
    """One Kafka partition of the worker, in the compiled engine."""

    def __init__(self, policy: Policy, lateness: float, *, step_bounds: Iterable[float] = (),
                 lag_bounds: Iterable[float] = ()) -> None:
        self.policy = policy
        self.engine = _engine.Partition(compiled_policy(policy), lateness)
        self.buffer = Buffer(self)
        self.states = States(self)
        self._tally = Tally()  # counts of this side (none yet: the engine counts all)
        self._sources: dict[Hashable, int] = {}
        self._handles: dict[int, H] = {}
        self._refused: list[tuple[H, Rejection]] = []
        self._next = 0
        self._timed = bool(step_bounds) or bool(lag_bounds)
        if self._timed:
            self.engine.time_steps(list(step_bounds), list(lag_bounds))

    # -- inputs --------------------------------------------------------------------

    def source(self, tp: Hashable) -> int:
        """The engine's number for an input (registered on first sight)."""
        n = self._sources.get(tp)
        if n is None:
            n = self._sources[tp] = len(self._sources)
        return n

    def add_input(self, tp: Hashable) -> None:
        self.engine.add_input(self.source(tp))

    # -- records -------------------------------------------------------------------

    def take(self, tp: Hashable, raw: bytes, key: bytes | None, handle: H, partitions: int,
             home: int) -> tuple[list[H], Rejection | None, tuple[bytes, int] | None]:
        """Hand one fetched record over: (the handles released, a rejection to
        dead-letter, or (user key, partition) to send it on to). A rejected record
        is counted here already."""
        n = self._next
        self._next = n + 1
        self._handles[n] = handle
        outcome = self.engine.offer_record(self.source(tp), raw, n, key, partitions, home)
        if outcome is None:
            return self._released(), None, None
        del self._handles[n]
        if outcome[0] == "rejected":
            _, reason, detail, event_type = outcome
            return self._released(), Rejection(reason, detail, event_type), None
        _, user, partition = outcome
        return self._released(), None, (user, partition)

    def offer_policy(self, tp: Hashable, at: float, policy_id: str, policy: Policy,
                     handle: H, region: str | None = None) -> list[H]:
        """A policy in force from event time `at` on, ordered with input `tp`'s events
        (the engine's policy switch: deadlines before `at` fire under the policy in
        force, then `policy` is); the handles released."""
        n = self._next
        self._next = n + 1
        self._handles[n] = handle
        self.engine.offer_policy(self.source(tp), at, policy_id, compiled_policy(policy), n,
                                 region)
        return self._released()

    @property
    def policy_version(self) -> str:
        """The version of the policy in force."""
        return self.engine.policy_version

    def restore_policy(self, at: float, policy_id: str, policy: Policy,
                       region: str | None = None) -> None:
        """A switch a previous owner applied, in force at once (nothing fires)."""
        self.engine.restore_policy(at, policy_id, compiled_policy(policy), region)

    @property
    def policies(self) -> list[tuple[str | None, str, str]]:
        """The policies in force: (region or None, version, policy_id of its switch)."""
        return self.engine.policies()

    def skip(self, tp: Hashable, raw: bytes, key: bytes | None, partitions: int,
             home: int) -> list[H]:
        """A record the previous owner of the partition finished: its time still moves
        the watermark (when it was applied here); the handles that releases."""
        self.engine.skip_record(self.source(tp), raw, key, partitions, home)
        return self._released()

    def set_idle(self, tp: Hashable, idle: bool) -> list[H]:
        self.engine.set_idle(self.source(tp), idle)
        return self._released()

    def release(self) -> list[H]:
        self.engine.release()
        return self._released()

    def _released(self) -> list[H]:
        handles = self._handles
        for n, reason, detail in self.engine.take_refused():
            self._refused.append((handles[n], Rejection(reason, detail, "override")))
        return [handles.pop(n) for n in self.engine.take_handles()]

    def take_refused(self) -> list[tuple[H, Rejection]]:
        """Overrides refused when applied (they name a user with no state), each with
        its rejection to dead-letter; counted already, and among the handles released."""
        refused, self._refused = self._refused, []
        return refused

    # -- what comes out -------------------------------------------------------------

    def drain_keyed(self) -> list[tuple[bytes, bytes]]:
        """The decisions made since the last call: (user key, JSON), in order."""
        return self.engine.take_keyed_decisions()

    @property
    def tally(self) -> Tally:
        """What the partition counted since the tally was last replaced."""
        self._tally.add(Tally.from_engine(self.engine.take_tally()))
        return self._tally

    @tally.setter
    def tally(self, tally: Tally) -> None:
        self._tally.add(Tally.from_engine(self.engine.take_tally()))  # (counted before)
        self._tally = tally

    def take_timings(self) -> tuple[list[int], float, list[int], float] | None:
        """Step and lag histogram counts since the last call (see `time_steps`)."""
        return self.engine.take_timings() if self._timed else None

    @property
    def pending_deadlines(self) -> int:
        return self.engine.pending_deadlines

    # -- states ----------------------------------------------------------------------

    def restore(self, items: Iterable[tuple[str, bytes]]) -> int:
        """Load the users' stored states (from the table) and index their deadlines;
        how many were loaded."""
        n = 0
        for uid, raw in items:
            self.engine.put_state(uid, raw)
            n += 1
        self.engine.schedule_all()
        return n

"""The Python engine's partition: its loop around `step` (reorder, apply, fire
deadlines, count), as the worker and replay ran it before the engine
(`streams._engine`) took it over; kept as the oracle that engine is checked against.

Policy switches (`streams.events.PolicySwitch`) go through the reorder buffer with
the events: when one is released, the deadlines before its time fire under the
policy in force, then its policy is the partition's (`Partition.switch`).

Segment-scoped policies: a switch with a region sets that region's policy, which
decides the users whose region it is (`UserState.region`, or an event's own region
when it names one); every other user is decided by the unscoped policy
(`Partition.policy_for`).
"""

from __future__ import annotations

import gc
import heapq
import math
from collections.abc import Callable, Hashable, Iterable, Iterator, MutableMapping
from contextlib import contextmanager
from time import perf_counter, time
from typing import Any, Generic, TypeVar

from streams.codec import Rejection
from streams.events import Event, PolicySwitch, Tick
from streams.policy import Policy
from streams.reorder import ReorderBuffer
from streams.tally import Tally
from tests.oracle.core import fire, rejection, review, step, step_new
from tests.oracle.decisions import Decision
from tests.oracle.state import UserState

H = TypeVar("H")
# Where a decision came in a partition's order of emission: (0, occurred_at, event_id,
# handle, n) for the n-th decision an applied event (or a released policy switch: its
# at and policy_id) led to, (1, deadline, user_id, 0, n) for one a fired deadline led to.
Place = tuple[int, float, str, Any, int]
# A full garbage collection waits for this many middle-generation ones (CPython: 10).
FULL_COLLECTION_AFTER = 1000


@contextmanager
def rare_full_collections() -> Iterator[None]:
    """Fewer full garbage collections while a process holds many user states.

    A full collection scans every object alive, and decoded user states (about eleven
    tracked objects each) are most of them: with CPython's default thresholds a long
    replay spent about a tenth of its time rescanning its table, and a worker holding
    100,000 users spent 15.6 s of a 200 s run in 22 full collections of 0.7 s each
    (bench/live.py, 1,000,000 events). Young collections, which find the cycles an
    event may leave as garbage, run as usual; a full one waits for
    FULL_COLLECTION_AFTER middle-generation runs.
    """
    thresholds = gc.get_threshold()
    gc.set_threshold(thresholds[0], thresholds[1], max(thresholds[2], FULL_COLLECTION_AFTER))
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


class Partition(Generic[H]):
    def __init__(self, policy: Policy, states: MutableMapping[str, UserState],
                 lateness: float, tally: Tally | None = None) -> None:
        self.policy = policy  # the unscoped policy: for users of no scoped region
        # The (at, policy_id) of the unscoped policy switch in force: none yet.
        self.in_force: tuple[float, str] = (-math.inf, "")
        # Segment-scoped policies: region -> (its policy, the (at, policy_id) of its
        # switch in force). A region has none until a switch for it is applied.
        self.scoped: dict[str, tuple[Policy, tuple[float, str]]] = {}
        self.states = states
        self.buffer: ReorderBuffer[H] = ReorderBuffer(lateness)
        self.tally = tally if tally is not None else Tally()
        self.decisions: list[Decision] = []  # drained by the shell
        # Released events rejected when applied (an override for a user with no state),
        # with their handles: taken by the shell (`take_rejections`), which dead-letters
        # them. They are counted as rejections, and their handles released as any.
        self.rejections: list[tuple[H, Rejection]] = []
        self._scheduled: dict[str, float] = {}  # user -> deadline
        self._heap: list[tuple[float, str]] = []
        # With `places` set to a list: for each decision made, where it came in this
        # partition's order of emission (see `release`), so that the decisions of
        # partitions fed the same inputs can be merged back into one order.
        self.places: list[Place] | None = None
        self._place: Place = (0, 0.0, "", 0, 0)

    def policy_for(self, region: str | None) -> Policy:
        """The policy deciding a user of `region` (None: no region known): the region's
        scoped policy when it has one, the unscoped one otherwise."""
        if region is not None:
            scoped = self.scoped.get(region)
            if scoped is not None:
                return scoped[0]
        return self.policy

    @property
    def pending_deadlines(self) -> int:
        return len(self._scheduled)

    def add_input(self, source: Hashable) -> None:
        self.buffer.add_input(source)

    def offer(self, source: Hashable, event: Event, handle: H) -> list[H]:
        """Buffer an event; apply whatever the watermark releases; return their handles."""
        if self.buffer.push(source, event, handle):
            self.tally.late[event.event_type] += 1
        return self.release()

    def offer_policy(self, source: Hashable, switch: PolicySwitch, handle: H) -> list[H]:
        """Buffer a policy switch as if it were an event of `source` at its time (it
        moves the watermark alike); apply whatever that releases; return the handles.
        It is counted nowhere, not even when it arrives behind the watermark."""
        self.buffer.push(source, switch, handle)
        return self.release()

    def set_idle(self, source: Hashable, idle: bool) -> list[H]:
        self.buffer.set_idle(source, idle)
        return self.release()

    def remove_input(self, source: Hashable) -> list[H]:
        self.buffer.remove_input(source)
        return self.release()

    def observe(self, source: Hashable, t: float) -> None:
        """Another partition's event at t from `source`: moves the watermark only."""
        self.buffer.observe(source, t)
        self.release()

    def release(self) -> list[H]:
        """Apply the released events in event-time order, then fire due deadlines.

        The order of emission: by released event (its `occurred_at`, `event_id` and
        handle, which a caller that merges partitions makes a global arrival number),
        then by fired deadline (its time, then the user).
        """
        handles: list[H] = []
        buffer = self.buffer
        mark = buffer.watermark
        # Most calls (one per event offered) release nothing and fire nothing: look at
        # the heads of both heaps before doing any work. Applying events does not move
        # the watermark, so `mark` holds for the deadlines too.
        if buffer.ready():
            keep = self.places is not None
            for event, handle in buffer.release():
                if keep:
                    self._place = (0, event.occurred_at, event.event_id, handle, 0)
                if isinstance(event, PolicySwitch):
                    self.switch(event)
                else:
                    rejected = self.apply(event)
                    if rejected is not None:
                        self.rejections.append((handle, rejected))
                handles.append(handle)
        heap = self._heap
        if heap and heap[0][0] <= mark:
            self.tick()
        return handles

    def apply(self, event: Event) -> Rejection | None:
        """Apply one released event; if it is rejected instead, count it and say why.

        The event is applied, and the user judged, under the policy of the event's
        region when it names one, else of the state's region (a new user's: none).
        The user's deadlines up to the event's time fire first, as a tick would fire
        them, under the policy of the state's region: an event that moves the user to
        another region moves them from its time on, however the events were batched
        for release."""
        uid = event.user_id
        states = self.states
        state = states.get(uid)
        region = event.region
        if state is None:
            rejected = rejection(state, event)
            if rejected is not None:
                self.tally.count_rejection(rejected)
                return rejected
            state, decisions = step(self.policy_for(region), state, event)
            assert state is not None
        elif event.event_id in state.seen:  # is_duplicate
            self.tally.duplicates[event.event_type] += 1
            return None
        else:
            policy = self.policy_for(state.region)
            decisions = (fire(policy, state, event.occurred_at)
                         if state.deadline is not None else [])
            if region is not None:
                policy = self.policy_for(region)
            # (its own firing finds nothing left to fire up to the event's time)
            decisions += step_new(policy, state, event)
        states[uid] = state
        self.tally.applied[event.event_type] += 1
        if decisions:
            self._emit(decisions)
        self._schedule(uid, state.deadline)
        return None

    def switch(self, switch: PolicySwitch) -> None:
        """Apply a released policy switch.

        Its scope is its region, or none (unscoped); each scope has its own switch in
        force. One no later than the switch in force for its scope, by (at,
        policy_id), has no effect (a redelivery, or an older switch released after a
        newer one). Otherwise every user's deadlines before its time (strictly) fire
        first, each under the policy deciding that user, each user up to the largest
        time below `at`, in the order of a tick (deadline, then user); then the
        switch's policy is in force for its scope, and the users it decides are
        judged at its time under it (`core.review`), in user order: its tiers apply
        from then on, not from each user's next event. Those are, for a region's
        switch, the users whose state has that region; for an unscoped one, those of
        no region with a scoped policy (the others keep theirs).
        """
        key = (switch.at, switch.policy_id)
        region = switch.region
        if region is None:
            in_force = self.in_force
        else:
            scoped = self.scoped.get(region)
            in_force = (-math.inf, "") if scoped is None else scoped[1]
        if key <= in_force:
            return
        self.tick(math.nextafter(switch.at, -math.inf))
        states = self.states
        if region is None:
            self.policy = switch.policy
            self.in_force = key
            judged = [uid for uid in sorted(states) if states[uid].region not in self.scoped]
        else:
            self.scoped[region] = (switch.policy, key)
            judged = [uid for uid in sorted(states) if states[uid].region == region]
        for uid in judged:  # in user order
            state = states[uid]
            decisions = review(switch.policy, state, switch.at)
            if self.places is not None:
                self._place = (1, switch.at, uid, 0, 0)
            self._emit(decisions)
            self._schedule(uid, state.deadline)

    def tick(self, until: float | None = None) -> None:
        """Fire the deadlines of users the watermark has passed: those up to `until`
        instead, when given (before a policy switch, whose place in the order of
        emission its decisions take)."""
        heap = self._heap
        mark = self.buffer.watermark if until is None else until
        places = self.places is not None and until is None
        fired: list[Decision] = []
        while heap and heap[0][0] <= mark:
            deadline, uid = heapq.heappop(heap)
            if self._scheduled.get(uid) != deadline:
                continue  # superseded entry
            del self._scheduled[uid]
            state = self.states.get(uid)
            if state is None:
                continue
            state, decisions = step(self.policy_for(state.region), state, Tick(mark))
            assert state is not None
            self.states[uid] = state
            if until is None:
                if places:
                    self._place = (1, deadline, uid, 0, 0)
                self._emit(decisions)
            else:
                fired += decisions
            self._schedule(uid, state.deadline)
        self._emit(fired)

    def schedule_all(self, states: Iterable[tuple[str, UserState]]) -> None:
        """Index the deadlines of these users' states (after a restore from the changelog)."""
        for uid, state in states:
            self._schedule(uid, state.deadline)

    def drain(self) -> list[Decision]:
        out, self.decisions = self.decisions, []
        return out

    def take_rejections(self) -> list[tuple[H, Rejection]]:
        out, self.rejections = self.rejections, []
        return out

    def _emit(self, decisions: list[Decision]) -> None:
        if decisions:
            for d in decisions:
                self.tally.decisions[d.action, d.reasons[0].code] += 1
            self.decisions += decisions
            if self.places is not None:
                phase, at, name, handle, _ = self._place
                self.places += [(phase, at, name, handle, n) for n in range(len(decisions))]

    def _schedule(self, uid: str, deadline: float | None) -> None:
        if deadline is None:
            self._scheduled.pop(uid, None)
            return
        if self._scheduled.get(uid) == deadline:
            return
        self._scheduled[uid] = deadline
        heapq.heappush(self._heap, (deadline, uid))
        if len(self._heap) > 2 * len(self._scheduled) + 4096:  # drop superseded entries
            self._heap = [(d, u) for u, d in self._scheduled.items()]
            heapq.heapify(self._heap)


class TimedPartition(Partition[H]):
    """A `Partition` that reports, for every event it applies, how long `apply` took
    (load the user's state, check for a duplicate, step, store) to `observe_step`,
    and, when given `observe_lag`, the wall clock then minus the event's
    `occurred_at` (e.g. `Metrics.observe_step`, `Metrics.observe_lag`)."""

    def __init__(self, policy: Policy, states: MutableMapping[str, UserState], lateness: float,
                 tally: Tally | None = None, *, observe_step: Callable[[float], None],
                 observe_lag: Callable[[float], None] | None = None) -> None:
        super().__init__(policy, states, lateness, tally)
        self._observe_step = observe_step
        self._observe_lag = observe_lag

    def apply(self, event: Event) -> Rejection | None:
        started = perf_counter()
        rejected = super().apply(event)
        self._observe_step(perf_counter() - started)
        if self._observe_lag is not None:
            self._observe_lag(time() - event.occurred_at)
        return rejected

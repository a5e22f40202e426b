"""Per-user state: what the core remembers about one user, bounded and compact.

Bounded whatever the user's age: the ledger keeps unpaid installments and those
still inside a lateness window (at most LEDGER_CAP), the application and score
histories keep only their windows (capped), and the dedupe memory keeps the last
`policy.dedupe_ids` event ids. `dump`/`load` give the compact JSON the live
worker keeps in its table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.events import BUREAU_FIELDS

LEDGER_CAP = 64
APPLICATIONS_CAP = 64
SCORES_CAP = 32
STATUS_RANK = {"active": 0, "warned": 1, "downgraded": 2, "closed": 3}


def capped_scores(points: list[tuple[float, int]]) -> list[tuple[float, int]]:
    """At most SCORES_CAP rolling-maximum candidates: past the cap, those just after the
    oldest go. The oldest is the window's high, which the score's fall is measured
    from; the newest are the highs to come as older reports age out."""
    if len(points) <= SCORES_CAP:
        return points
    return [points[0], *points[len(points) - SCORES_CAP + 1:]]


@dataclass(slots=True)
class Installment:
    recorded_at: float  # occurred_at of the record that won (latest wins)
    due: float  # 00:00 UTC of the due date
    amount_due: float
    amount_paid: float
    paid_at: float | None

    def days_past_due(self, t: float) -> int:
        """docs/design.md: 0 if paid by the end of the due date, else whole days to payment or t."""
        end = self.paid_at if self.paid_at is not None else t
        if end < self.due + 86_400.0:
            return 0
        return int((end - self.due) // 86_400.0)


@dataclass(slots=True)
class UserState:
    user_id: str
    first_seen: float
    clock: float  # event time up to which this user has been evaluated
    status: str = "active"
    limit_factor: float = 1.0
    seq: int = 0  # decisions emitted so far: part of the deterministic decision id
    ledger: dict[str, Installment] = field(default_factory=dict)  # "loan#n" -> installment
    applications: list[float] = field(default_factory=list)  # times, sorted
    last_drawdown: float | None = None
    bureau: dict[str, float] = field(default_factory=dict)  # field -> value
    bureau_at: dict[str, float] = field(default_factory=dict)  # field -> occurred_at
    scores: list[tuple[float, int]] = field(default_factory=list)  # rolling-max candidates
    pending: dict[str, float] = field(default_factory=dict)  # tier key -> condition since
    # Notices a warning named: tier key -> the time that notice started (its `pending`).
    announced: dict[str, float] = field(default_factory=dict)
    clear_since: float | None = None  # no adverse condition since (cooling-off)
    adverse_id: str | None = None  # the decision that set the status: what a restore supersedes
    adverse_codes: tuple[str, ...] = ()  # its reasons and those of warnings since, same status
    deadline: float | None = None  # next event time at which the decision may change
    seen: list[str] = field(default_factory=list)  # recent event ids, oldest first
    hold_until: float | None = None  # an operator's hold: no automatic action before then
    # The user's region, as the last applied event that named one gave it: which
    # segment-scoped policy, if any, decides this user (tests/oracle/engine.py).
    region: str | None = None
    # Derived, never dumped (a loaded state starts without): what the last evaluation
    # found, so that the next one re-observes only what an event or time can have changed.
    memo: Memo | None = field(default=None, repr=False, compare=False)


NEVER = float("-inf")


@dataclass(slots=True)
class Memo:
    """The core's per-user cache; valid for one policy (compiled object) only."""

    policy: object
    counts: list[int]  # crossed tiers per enabled rule (-1: not yet observed)
    until: list[float]  # per rule: its count cannot change before this time
    until_min: float = NEVER
    dirty: int = -1  # rule bits an applied event or a prune may have changed
    wake: float = NEVER  # earliest effective_at of a tier still waiting out its notice
    # rules.next_change in its four parts (ledger, applications, scores, dormancy):
    # each the least future time of its inputs, valid while `stale` lacks its bit.
    changes: list[float] = field(default_factory=lambda: [NEVER] * 4)
    stale: int = 15
    low_due: float = NEVER  # a lower bound of settled installments' due dates (prune)
    plan: Any = None  # core's compiled view of `policy` (core._Plan), shared by all memos

    def __deepcopy__(self, _: object) -> None:
        return None  # a copied state rebuilds its cache (and holds no policy)


def dump(state: UserState) -> bytes:
    """Compact JSON for the table: short keys, nothing derived.

    Copied into bytes of its own length: orjson 3.13 returns bytes that keep its
    whole output buffer (about 8 KB whatever the length, measured with tracemalloc),
    and the table keeps every user's value (a worker holding 100,000 users in the
    memory store peaked at 1,052 MiB, 694 MiB of it these buffers).
    """
    data: dict[str, Any] = {
        "u": state.user_id,
        "f": state.first_seen,
        "c": state.clock,
        "s": state.status,
        "l": state.limit_factor,
        "q": state.seq,
        "L": {k: [i.recorded_at, i.due, i.amount_due, i.amount_paid, i.paid_at]
              for k, i in state.ledger.items()},
        "a": state.applications,
        "d": state.last_drawdown,
        "b": [[k, state.bureau[k], state.bureau_at[k]] for k in state.bureau],
        "S": state.scores,
        "p": state.pending,
        "W": state.announced,
        "k": state.clear_since,
        "A": [state.adverse_id, list(state.adverse_codes)],
        "D": state.deadline,
        "e": state.seen,
    }
    if state.hold_until is not None:  # last, and only when set: a state without a hold
        data["H"] = state.hold_until  # is stored as it was before holds existed
    if state.region is not None:  # after it, and only when set, likewise
        data["G"] = state.region
    return bytes(memoryview(orjson.dumps(data)))


def load(data: bytes) -> UserState:
    d: dict[str, Any] = orjson.loads(data)
    adverse_id, adverse_codes = d["A"]
    return UserState(
        user_id=d["u"],
        first_seen=d["f"],
        clock=d["c"],
        status=d["s"],
        limit_factor=d["l"],
        seq=d["q"],
        ledger={k: Installment(*v) for k, v in d["L"].items()},
        applications=d["a"],
        last_drawdown=d["d"],
        bureau={k: v for k, v, _ in d["b"] if k in BUREAU_FIELDS},
        bureau_at={k: at for k, _, at in d["b"] if k in BUREAU_FIELDS},
        scores=[(t, s) for t, s in d["S"]],
        pending=d["p"],
        # A state stored before "W" existed: its pending notices count as announced.
        announced=d["W"] if "W" in d else dict(d["p"]),
        clear_since=d["k"],
        adverse_id=adverse_id,
        adverse_codes=tuple(adverse_codes),
        deadline=d["D"],
        seen=d["e"],
        hold_until=d.get("H"),
        region=d.get("G"),
    )

"""Synthetic event logs: a borrower population and its input events, schema v1.

Each user belongs to one segment (`SEGMENTS`). The simulation runs day by day: a
day's scheduled tasks (bureau changes, drawdowns, installments falling due,
payments) emit that day's events, which are sorted with under a minute of jitter
and written at once, so memory is bounded by the users, not by the log. On the way
out some events are written twice (byte for byte, before event time moves 100 s
past them) and malformed lines are added. Times are integer epoch seconds; the same
arguments give the same bytes.

With `override_share`, operators' overrides are added (`_plan_overrides`): that share
of the users gets an episode (mostly a hold, some ended early by a release or a
restore), and ten times that share of the chronic delinquents (who are closed) one
after their closure; a few overrides name users that do not exist, and one in ten is
written twice. They are drawn from a random stream of
their own and kept out of the noise's count, so the other lines are those of the same
arguments without overrides, byte for byte and in the same order.
"""

from __future__ import annotations

import gc
import math
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import IO, Any

import orjson

from streams.events import EVENT_TYPES

SIMULATED_TYPES = EVENT_TYPES[:3]  # the borrowers' own events (overrides are added apart)

SEGMENTS = {  # share of the population
    "good": 0.70,
    "occasional_late": 0.10,  # 30% of installments paid 1-20 days late
    "chronic_delinquent": 0.04,  # stop paying; 40% later pay the arrears off
    "multi_lender": 0.04,  # open_lenders climbs to 6-10; 40% fall back
    "application_burst": 0.03,  # 8-15 applications in 1-4 days, hard inquiries
    "score_collapse": 0.03,  # score drops 100-250, recovers over months
    "over_leveraged": 0.03,  # total_debt 1.7-3x the annual income
    "external_delinquency": 0.02,  # delinquent accounts elsewhere; 40% cured
    "data_sync_correction": 0.01,  # paid on time, the ledger records it 2-40 days later
}
SCORES = {"good": (620, 850), "occasional_late": (560, 720), "chronic_delinquent": (520, 660)}
FIRST_LOAN = {"chronic_delinquent": (3, 25), "data_sync_correction": (3, 30),
              "occasional_late": (7, 60)}  # others: 40% borrow, from day 7 to 150
DAY, HOUR = 86_400, 3_600
JITTER = 60  # seconds of disorder between lines
DUPLICATE_WINDOW = 100  # a duplicate is written before event time passes it by this
PROGRESS_EVERY = 50_000
NEVER = 1 << 62
BUREAUS = ("pboc", "baihang")
CHANNELS = ("app", "app", "app", "web", "partner")
NOT_JSON = (b"<html><body>502 Bad Gateway</body></html>\n", b"repayment received\n", b"OK\n")
DAMAGE = {  # by event type: a required field, a number field, a bounded field and a bad value
    "repayment": ("loan_id", "amount_due", "installment", 0),
    "application": ("application_id", "requested_amount", "requested_amount", 0),
    "credit_report": ("bureau", "credit_score", "credit_score", 2000),
}


@dataclass
class GenerateSummary:
    users: int
    events: int
    duplicates: int
    malformed: int
    lines: int
    by_type: dict[str, int]
    by_segment: dict[str, int]


@dataclass(slots=True)
class Borrower:
    user_id: str
    segment: str
    bureau: str
    report: dict[str, float] = field(default_factory=dict)  # the bureau file as last reported
    events: int = 0
    loans: int = 0
    applications: int = 0
    defaulted: bool = False
    cure_at: int | None = None  # chronic delinquents: when the arrears are paid off


@dataclass(slots=True)
class Loan:
    loan_id: str
    number: int  # the borrower's n-th loan
    product: str
    installments: int
    first_due: int  # day index of installment 1's due date; one installment every 30 days
    amount_due: float
    stop_at: int  # the first installment a chronic delinquent leaves unpaid


Handler = Callable[[int, Borrower, Any], None]
Stamped = tuple[float, int, int, dict[str, Any]]  # (sort key, seq, occurred_at, event)


@cache
def _clock() -> list[str]:
    """'THH:MM:SSZ' for every second of a day."""
    two = [f"{i:02d}" for i in range(60)]
    return [f"T{h}:{m}:{s}Z" for h in two[:24] for m in two for s in two]


@dataclass
class _Simulation:
    rng: random.Random
    first_date: date
    days: int
    buckets: list[list[tuple[int, Handler, Borrower, Any]]] = field(default_factory=list)
    today: list[Stamped] = field(default_factory=list)
    by_type: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIMULATED_TYPES, 0))
    borrowers: list[Borrower] = field(default_factory=list)

    def __post_init__(self) -> None:
        d = self.first_date
        self.t0 = int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())
        self.buckets = [[] for _ in range(self.days)]
        # a 12-installment loan taken on the last day falls due up to 360 days later
        self.dates = [(d + timedelta(days=i)).isoformat() for i in range(self.days + 400)]
        self.clock = _clock()

    def stamp(self, t: int) -> str:
        day, second = divmod(t - self.t0, DAY)
        return self.dates[day] + self.clock[second]

    def between(self, low: int, high: int) -> int:
        """random.randint, at a third of the cost."""
        return low + int(self.rng.random() * (high - low + 1))

    def at(self, day: int, first_hour: int = 7, last_hour: int = 23) -> int:
        """A time on `day` between the given hours (users act by day, bureaus by night)."""
        span = (last_hour - first_hour) * HOUR
        return self.t0 + day * DAY + first_hour * HOUR + int(self.rng.random() * span)

    def schedule(self, t: int, handler: Handler, b: Borrower, payload: Any = None) -> None:
        day = (t - self.t0) // DAY
        if day < self.days:
            self.buckets[day].append((t, handler, b, payload))

    def bureau_change(self, day: int, b: Borrower, changes: dict[str, float]) -> None:
        self.schedule(self.at(day, 1, 6), self.report, b, changes)

    def emit(self, t: int, b: Borrower, event_type: str, body: dict[str, Any]) -> None:
        b.events += 1
        event = {"event_id": f"{b.user_id}-{b.events}", "event_type": event_type,
                 "user_id": b.user_id, "occurred_at": self.stamp(t), "schema_version": 1}
        event.update(body)
        self.today.append((t + self.rng.random() * JITTER, len(self.today), t, event))
        self.by_type[event_type] += 1

    def run(self) -> Iterator[list[Stamped]]:
        """Each day's events, sorted by occurred_at plus jitter."""
        for day in range(self.days):
            bucket, i = self.buckets[day], 0
            while i < len(bucket):  # handlers may schedule more work for today
                t, handler, b, payload = bucket[i]
                handler(t, b, payload)
                i += 1
            self.buckets[day] = []
            self.today.sort()
            yield self.today
            self.today = []

    # -- the population ----------------------------------------------------------------
    def enrol(self, users: int) -> dict[str, int]:
        quotas = {s: int(share * users) for s, share in SEGMENTS.items()}
        by_remainder = sorted(SEGMENTS, key=lambda s: quotas[s] - SEGMENTS[s] * users)
        for s in by_remainder[: users - sum(quotas.values())]:
            quotas[s] += 1
        segments = [s for s, n in quotas.items() for _ in range(n)]
        self.rng.shuffle(segments)
        width = max(6, len(str(users - 1)))
        for i, segment in enumerate(segments):
            self.borrowers.append(Borrower(f"u{i:0{width}d}", segment, BUREAUS[i % 2]))
            self.plan(self.borrowers[-1])
        return quotas

    def plan(self, b: Borrower) -> None:
        """The user's bureau file, first loan and the segment's episode."""
        rand, between, seg = self.rng.random, self.between, b.segment
        income = float(between(300, 2000) * 10)
        b.report = {"credit_score": between(*SCORES.get(seg, (580, 780))),
                    "open_lenders": between(1 if seg == "multi_lender" else 0, 3),
                    "hard_inquiries_30d": between(0, 2), "delinquent_accounts": 0,
                    "total_debt": round(12 * income * 0.8 * rand(), 2), "monthly_income": income}
        self.schedule(self.at(between(0, 6), 1, 6), self.report, b)
        first_loan = FIRST_LOAN.get(seg, (7, 150) if rand() < 0.4 else None)
        if first_loan is not None:
            self.schedule(self.at(between(*first_loan)), self.on_loan, b)
        if rand() < 0.1:
            self.schedule(self.at(between(10, 175)), self.on_apply, b,
                          ("limit_increase", between(10, 100) * 100))
        x = between(15, 120)  # the day the segment's episode begins
        if seg == "multi_lender":
            rise = between(6, 10) - int(b.report["open_lenders"])
            cuts = sorted(self.rng.sample(range(1, rise), min(rise - 1, between(2, 4))))
            for lo, hi in zip([0, *cuts], [*cuts, rise], strict=True):
                self.bureau_change(x, b, {"open_lenders": hi - lo, "hard_inquiries_30d": 1,
                                          "total_debt": (hi - lo) * between(2000, 8000)})
                x += between(5, 15)
            if rand() < 0.4:
                self.bureau_change(x + between(30, 70), b, {
                    "open_lenders": between(2, 4) - rise - int(b.report["open_lenders"]),
                    "hard_inquiries_30d": -len(cuts) - 1})
        elif seg == "application_burst":
            span, inquiries = between(1, 4) * DAY - 9 * HOUR, between(3, 8)
            for _ in range(between(8, 15)):
                t = self.t0 + x * DAY + 8 * HOUR + int(rand() * span)
                kind = "drawdown" if rand() < 0.8 else "limit_increase"
                self.schedule(t, self.on_apply, b, (kind, between(5, 100) * 100))
            self.bureau_change(x + 1, b, {"hard_inquiries_30d": inquiries})
            self.bureau_change(x + between(31, 35), b, {"hard_inquiries_30d": -inquiries})
        elif seg == "score_collapse":
            drop, steps = between(100, 250), between(3, 5)
            self.bureau_change(x, b, {"credit_score": -drop})
            for _ in range(steps):
                x += between(15, 30)
                self.bureau_change(x, b, {"credit_score": drop // steps})
        elif seg == "over_leveraged":
            excess = round(12 * income * (1.7 + 1.3 * rand()) - b.report["total_debt"], 2)
            if rand() < 0.5:  # already over-leveraged in the first report
                b.report["total_debt"] = round(b.report["total_debt"] + excess, 2)
            else:
                self.bureau_change(x, b, {"total_debt": excess})
        elif seg == "external_delinquency":
            accounts = between(1, 3)
            self.bureau_change(x, b, {"delinquent_accounts": accounts,
                                      "credit_score": -between(20, 60)})
            if rand() < 0.4:
                self.bureau_change(x + between(30, 90), b, {"delinquent_accounts": -accounts})

    # -- what happens on a day -----------------------------------------------------------
    def report(self, t: int, b: Borrower, changes: dict[str, float] | None) -> None:
        """A credit_report: the full file the first time, afterwards only what changed."""
        body: dict[str, Any] = {"bureau": b.bureau}
        if changes is None:  # the initial report; bureau drift follows every month or two
            body.update(b.report)
            self.schedule(t + self.between(35, 80) * DAY, self.drift, b)
        for name, delta in (changes or {}).items():
            old = b.report[name]
            if name == "credit_score":
                new: float = max(300, min(950, int(old + delta)))
            elif name in ("total_debt", "monthly_income"):
                new = round(max(0.0, old + delta), 2)
            else:
                new = max(0, int(old + delta))
            if new != old:
                body[name] = b.report[name] = new
        if len(body) > 1:
            self.emit(t, b, "credit_report", body)

    def drift(self, t: int, b: Borrower, _: None) -> None:
        rand = self.rng.random
        low = -30 if b.segment == "chronic_delinquent" else -15
        changes: dict[str, float] = {"credit_score": self.between(low, 15)}
        if rand() < 0.5:
            changes["total_debt"] = b.report["total_debt"] * (0.16 * rand() - 0.08)
        if rand() < 0.1:
            changes["monthly_income"] = b.report["monthly_income"] * (0.2 * rand() - 0.1)
        self.report(t, b, changes)
        self.schedule(t + self.between(35, 80) * DAY, self.drift, b)

    def on_apply(self, t: int, b: Borrower, request: tuple[str, int]) -> None:
        b.applications += 1
        self.emit(t, b, "application", {
            "application_id": f"{b.user_id}-a{b.applications}", "product": "cash_loan",
            "kind": request[0], "requested_amount": request[1],
            "channel": CHANNELS[self.between(0, 4)]})

    def on_loan(self, t: int, b: Borrower, _: None) -> None:
        """A drawdown application, then (unless in arrears) the loan's installment schedule."""
        rand, between, day = self.rng.random, self.between, (t - self.t0) // DAY
        cash = rand() < 0.55
        product = "cash_loan" if cash else "pay_later"
        principal = between(5, 200) * 100 if cash else between(10, 300) * 10
        b.applications += 1
        self.emit(t, b, "application", {
            "application_id": f"{b.user_id}-a{b.applications}", "product": product,
            "kind": "drawdown", "requested_amount": principal,
            "channel": CHANNELS[between(0, 4)]})
        if rand() < 0.5:
            self.schedule(self.at(day + between(45, 150)), self.on_loan, b)
        if b.defaulted and (b.cure_at is None or t < b.cure_at):
            return  # declined: the user is in arrears
        n = (3, 3, 6, 6, 12)[between(0, 4)]
        b.loans += 1
        stop = n + 1
        if b.segment == "chronic_delinquent" and b.loans == 1:
            stop = between(1, 2)
            if rand() < 0.4:
                b.cure_at = self.at(day + 30 * stop + between(35, 130), 9, 20)
        loan = Loan(f"{b.user_id}-l{b.loans}", b.loans, product, n, day + 30,
                    round(principal * (1 + 0.015 * n) / n, 2), stop)
        for k in range(1, n + 1):
            self.emit(t + 120 + 5 * k, b, "repayment", self.ledger(loan, k, 0.0, None))
        self.schedule(self.t0 + (loan.first_due - 10) * DAY, self.on_due, b, (loan, 1))

    def ledger(self, loan: Loan, k: int, paid: float, paid_at: int | None) -> dict[str, Any]:
        return {"loan_id": loan.loan_id, "installment": k, "product": loan.product,
                "due_date": self.dates[loan.first_due + 30 * (k - 1)],
                "amount_due": loan.amount_due, "amount_paid": paid,
                "paid_at": None if paid_at is None else self.stamp(paid_at)}

    def on_due(self, t: int, b: Borrower, job: tuple[Loan, int]) -> None:
        """Ten days before an installment falls due: decide when (and if) it is paid."""
        rand, between, seg, (loan, k) = self.rng.random, self.between, b.segment, job
        due_end = self.t0 + (loan.first_due + 30 * k - 29) * DAY  # 24:00 of the due date
        paid_at = due_end - between(0, 4) * DAY - between(HOUR, 17 * HOUR)
        recorded = paid_at
        if k < loan.installments:
            self.schedule(t + 30 * DAY, self.on_due, b, (loan, k + 1))
        if seg == "chronic_delinquent" and k >= loan.stop_at and (
            b.cure_at is None or b.cure_at > paid_at
        ):
            b.defaulted = True
            if b.cure_at is None:
                return
            paid_at = recorded = b.cure_at + 60 * k  # the arrears, paid off in one go
        elif (seg == "occasional_late" and rand() < 0.3) or (
            seg not in ("good", "data_sync_correction") and rand() < 0.03
        ):
            late = between(1, 20 if seg == "occasional_late" else 5)  # days past due
            paid_at = recorded = due_end + (late - 1) * DAY + between(7 * HOUR, 23 * HOUR)
        elif seg == "data_sync_correction" and (loan.number == k == 1 or rand() < 0.15):
            recorded = due_end + between(1, 39) * DAY + between(7 * HOUR, 23 * HOUR)
        if recorded == paid_at and rand() < 0.05:  # a partial payment first
            part = round(loan.amount_due * (0.3 + 0.4 * rand()), 2)
            self.schedule(paid_at - between(1, 4) * DAY, self.on_paid, b, (loan, k, part, None))
        self.schedule(recorded, self.on_paid, b, (loan, k, loan.amount_due, paid_at))

    def on_paid(self, t: int, b: Borrower, payment: tuple[Loan, int, float, int | None]) -> None:
        self.emit(t, b, "repayment", self.ledger(*payment))


OPERATORS = ("ops-ana", "ops-ben", "ops-chen")
OVERRIDE_REASONS = ("appeal under review", "payment made at a branch, not yet in the ledger",
                    "bureau file disputed", "hardship programme")
OVERRIDE_DUPLICATE = 0.1  # overrides written twice (a redelivery right after)


def _plan_overrides(sim: _Simulation, users: list[Borrower], share: float, seed: int
                    ) -> dict[int, list[Stamped]]:
    """Overrides by day (each as the simulation stamps an event), from a random stream of
    their own: an episode for `share` of the users (ten times that share of the chronic
    delinquents), and a few overrides for users that do not exist (one per twenty
    episodes, at least one)."""
    rng = random.Random(f"{seed}/overrides")

    def between(low: int, high: int) -> int:
        return low + int(rng.random() * (high - low + 1))

    end = sim.t0 + sim.days * DAY
    out: dict[int, list[Stamped]] = {}
    seq = 1 << 40  # after the day's simulated events in a tie (never compares the dicts)

    def add(t: int, user_id: str, n: int, action: str, until: int | None = None) -> None:
        nonlocal seq
        if t >= end:
            return
        event: dict[str, Any] = {
            "event_id": f"{user_id}-o{n}", "event_type": "override", "user_id": user_id,
            "occurred_at": sim.stamp(t), "schema_version": 1, "action": action,
            "operator": OPERATORS[between(0, 2)],
            "reason": OVERRIDE_REASONS[between(0, len(OVERRIDE_REASONS) - 1)]}
        if until is not None:
            event["until"] = sim.stamp(t + until)
        seq += 1
        out.setdefault((t - sim.t0) // DAY, []).append((t + rng.random() * JITTER, seq, t, event))

    def office(day: int) -> int:
        return sim.t0 + day * DAY + 9 * HOUR + int(rng.random() * 9 * HOUR)

    episodes = 0
    for b in users:
        closed = b.segment == "chronic_delinquent"
        if rng.random() >= (10 * share if closed else share):
            continue
        episodes += 1
        low = 120 if closed else 7  # closed from about day 120 (90 days past due)
        t = office(between(low, max(low, sim.days - 1)))
        kind, length = rng.random(), between(7, 45) * DAY
        later = t + between(1, length // DAY - 1) * DAY
        if kind < 0.15:  # a restore alone
            add(t, b.user_id, 1, "restore")
            continue
        add(t, b.user_id, 1, "hold", length)
        if kind < 0.4:  # released early
            add(later, b.user_id, 2, "release")
        elif kind < 0.65:  # the appeal upheld: restored, and held a month more
            add(later, b.user_id, 2, "restore", 30 * DAY)
        elif kind < 0.75:  # extended
            add(later, b.user_id, 2, "hold", length)
    width = max(6, len(str(len(users) - 1)))
    for i in range(max(1, episodes // 20)):
        add(office(between(0, sim.days - 1)), f"x{i:0{width}d}", 1, "hold", between(7, 30) * DAY)
    return out


def _malformed(rng: random.Random, event: dict[str, Any], line: bytes) -> bytes:
    """A line that is not a valid v1 event, made from a real one."""
    kind, bad = rng.randrange(11), dict(event)
    required, number, bounded, out_of_range = DAMAGE[event["event_type"]]
    if kind == 0:
        return rng.choice(NOT_JSON)
    if kind == 1:  # truncated
        return line[: rng.randrange(1, len(line) - 1)] + b"\n"
    if kind == 2:
        return orjson.dumps([event], option=orjson.OPT_APPEND_NEWLINE)
    if kind == 3:
        return line.replace(b'"user_id":"', b'"user_id":"\xff\xfe', 1)
    if kind == 4:
        bad["event_type"] = rng.choice(("payment_reminder", "Repayment", "login"))
    elif kind == 5:
        del bad[rng.choice(("event_id", "user_id", "occurred_at", "event_type", required))]
    elif kind == 6:
        bad[number] = str(bad.get(number, 700))
    elif kind == 7:
        bad[bounded] = out_of_range
    elif kind == 8:
        bad["occurred_at"] = rng.choice(("yesterday", event["occurred_at"][:-1]))
    elif kind == 9:
        bad["user_id"] = ""
    else:
        bad["event_id"] = event["event_id"] + "-" + "x" * 128
    return orjson.dumps(bad, option=orjson.OPT_APPEND_NEWLINE)


def _gap(rng: random.Random, share: float) -> int:
    """Events until the next one picked with probability `share` (geometric)."""
    if share <= 0:
        return NEVER
    if share >= 1:
        return 1
    return 1 + int(math.log(1.0 - rng.random()) / math.log(1.0 - share))


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Full cyclic collections over the live tasks and borrowers would cost a third of the
    run, and the simulation leaves no garbage cycles before it ends: pause the collector."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@_collector_paused()
def generate_log(out: IO[bytes], *, seed: int = 1, users: int = 10_000, days: int = 180,
                 start: str = "2026-01-01", malformed_share: float = 0.002,
                 duplicate_share: float = 0.01, override_share: float = 0.0,
                 progress: Callable[[int], None] | None = None) -> GenerateSummary:
    """Write a synthetic JSONL event log to `out`; the same arguments give the same bytes."""
    sim = _Simulation(random.Random(seed), date.fromisoformat(start), days)
    by_segment = sim.enrol(users)
    overrides = (_plan_overrides(sim, sim.borrowers, override_share, seed)
                 if override_share > 0 else {})
    if overrides:
        sim.by_type["override"] = 0
    noise = random.Random(f"{seed}/noise")  # the events do not depend on the shares
    twice = random.Random(f"{seed}/overrides/noise")
    dumps, option = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    lines = events = malformed = 0
    skew = 0  # override lines written: the noise counts the other lines only
    next_duplicate, next_malformed = _gap(noise, duplicate_share), _gap(noise, malformed_share)
    pending: list[tuple[int, int, bytes]] = []  # (write by line, write by time, line)
    by_line = by_time = NEVER  # the earliest of each over `pending`
    next_progress = PROGRESS_EVERY
    for day, today in enumerate(sim.run()):
        if day in overrides:
            today = sorted(today + overrides.pop(day))
        chunk: list[bytes] = []
        for _, _, t, event in today:
            if event["event_type"] == "override":  # no noise, and never brings a duplicate on
                line = dumps(event, option=option)
                chunk.append(line)
                sim.by_type["override"] += 1
                skew += 1
                if twice.random() < OVERRIDE_DUPLICATE:
                    chunk.append(line)  # redelivered
                    skew += 1
                continue
            if t > by_time or lines + len(chunk) - skew >= by_line:  # a duplicate is due
                written = lines + len(chunk) - skew
                chunk.extend(p[2] for p in pending if written >= p[0] or t > p[1])
                pending = [p for p in pending if written < p[0] and t <= p[1]]
                by_line = min((p[0] for p in pending), default=NEVER)
                by_time = min((p[1] for p in pending), default=NEVER)
            line = dumps(event, option=option)
            chunk.append(line)
            events += 1
            if events == next_duplicate:
                next_duplicate += _gap(noise, duplicate_share)
                pending.append((lines + len(chunk) - skew + noise.randint(3, 300),
                                t + DUPLICATE_WINDOW, line))
                by_line, by_time = min(by_line, pending[-1][0]), min(by_time, pending[-1][1])
            if events == next_malformed:
                next_malformed += _gap(noise, malformed_share)
                chunk.append(_malformed(noise, event, line))
                malformed += 1
        out.write(b"".join(chunk))
        lines += len(chunk)
        if progress is not None and lines >= next_progress:
            progress(lines)
            next_progress = (lines // PROGRESS_EVERY + 1) * PROGRESS_EVERY
    out.write(b"".join(p[2] for p in pending))
    lines += len(pending)
    events += sim.by_type.get("override", 0)
    duplicates = lines - events - malformed
    return GenerateSummary(users, events, duplicates, malformed, lines, sim.by_type, by_segment)

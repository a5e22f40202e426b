"""Factory-built events for core tests: times are days after T0 (2026-01-01 00:00 UTC),
and `encode` to write one as the JSON record a producer sends. Every factory takes the
user's `region` (None: the record names none)."""

from __future__ import annotations

import itertools
from typing import Any

import orjson

from streams.events import (
    BUREAU_FIELDS,
    DAY,
    Application,
    CreditReport,
    Event,
    Override,
    Repayment,
    format_date,
    format_time,
)

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
_ids = itertools.count(1)


def day(n: float) -> float:
    return T0 + n * DAY


def _id(prefix: str) -> str:
    return f"{prefix}{next(_ids)}"


def repayment(at: float, *, due: float, user: str = "u1", loan: str = "L1", n: int = 1,
              paid_at: float | None = None, amount_due: float = 100.0,
              amount_paid: float | None = None, event_id: str | None = None,
              region: str | None = None) -> Repayment:
    """`at`, `due` and `paid_at` in days after T0; `due` is a whole day."""
    paid = amount_paid if amount_paid is not None else (amount_due if paid_at is not None else 0.0)
    return Repayment(event_id or _id("r"), user, day(at), loan, n, "cash_loan", day(int(due)),
                     amount_due, paid, None if paid_at is None else day(paid_at), region)


def application(at: float, *, user: str = "u1", kind: str = "drawdown",
                event_id: str | None = None, region: str | None = None) -> Application:
    return Application(event_id or _id("a"), user, day(at), _id("app"), "cash_loan", kind, 1000.0,
                       region=region)


def report(at: float, *, user: str = "u1", event_id: str | None = None,
           region: str | None = None, **fields: Any) -> CreditReport:
    return CreditReport(event_id or _id("c"), user, day(at), "bureau-a", **fields, region=region)


def override(at: float, action: str, *, user: str = "u1", until: float | None = None,
             operator: str = "ops-1", reason: str = "appeal under review",
             event_id: str | None = None, region: str | None = None) -> Override:
    """An operator's override; `at` and `until` in days after T0."""
    return Override(event_id or _id("o"), user, day(at), action, operator, reason,
                    None if until is None else day(until), region)


def encode(event: Event) -> bytes:
    """The event as its input record (schema v1, JSON): what decodes back to it."""
    body: dict[str, Any] = {"event_id": event.event_id, "event_type": event.event_type,
                            "user_id": event.user_id,
                            "occurred_at": format_time(event.occurred_at),
                            "schema_version": 1}
    if isinstance(event, Repayment):
        body |= {"loan_id": event.loan_id, "installment": event.installment,
                 "product": event.product, "due_date": format_date(event.due_date),
                 "amount_due": event.amount_due, "amount_paid": event.amount_paid,
                 "paid_at": None if event.paid_at is None else format_time(event.paid_at)}
    elif isinstance(event, Application):
        body |= {"application_id": event.application_id, "product": event.product,
                 "kind": event.kind, "requested_amount": event.requested_amount}
        if event.channel is not None:
            body["channel"] = event.channel
    elif isinstance(event, Override):
        body |= {"action": event.action, "operator": event.operator, "reason": event.reason}
        if event.until is not None:
            body["until"] = format_time(event.until)
    else:
        body["bureau"] = event.bureau
        body |= {f: getattr(event, f) for f in BUREAU_FIELDS if getattr(event, f) is not None}
    if event.region is not None:  # only when set: a record without one is as it was
        body["region"] = event.region
    return orjson.dumps(body)

"""Factory-built events for core tests: times are days after T0 (2026-01-01 00:00 UTC)."""

from __future__ import annotations

import itertools
from typing import Any

from streams.events import DAY, Application, CreditReport, Repayment

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
_ids = itertools.count(1)


def day(n: float) -> float:
    return T0 + n * DAY


def _id(prefix: str) -> str:
    return f"{prefix}{next(_ids)}"


def repayment(at: float, *, due: float, user: str = "u1", loan: str = "L1", n: int = 1,
              paid_at: float | None = None, amount_due: float = 100.0,
              amount_paid: float | None = None, event_id: str | None = None) -> Repayment:
    """`at`, `due` and `paid_at` in days after T0; `due` is a whole day."""
    paid = amount_paid if amount_paid is not None else (amount_due if paid_at is not None else 0.0)
    return Repayment(event_id or _id("r"), user, day(at), loan, n, "cash_loan", day(int(due)),
                     amount_due, paid, None if paid_at is None else day(paid_at))


def application(at: float, *, user: str = "u1", kind: str = "drawdown",
                event_id: str | None = None) -> Application:
    return Application(event_id or _id("a"), user, day(at), _id("app"), "cash_loan", kind, 1000.0)


def report(at: float, *, user: str = "u1", event_id: str | None = None, **fields: Any
           ) -> CreditReport:
    return CreditReport(event_id or _id("c"), user, day(at), "bureau-a", **fields)

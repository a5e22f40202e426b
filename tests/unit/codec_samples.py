"""Valid events of each type, and any JSON value: what the decoder tests (the Python
decoder against the schemas, tests/unit/test_codec.py, and against the compiled one,
tests/unit/test_engine_codec.py) change, damage and decode."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

REPAYMENT: dict[str, Any] = {
    "event_id": "r-1", "event_type": "repayment", "user_id": "u1",
    "occurred_at": "2026-01-05T10:00:00Z", "loan_id": "L1", "installment": 1,
    "product": "cash_loan", "due_date": "2026-01-01", "amount_due": 100.0,
    "amount_paid": 100, "paid_at": "2026-01-04T09:30:00+08:00",
}
APPLICATION: dict[str, Any] = {
    "event_id": "a-1", "event_type": "application", "user_id": "u1",
    "occurred_at": "2026-01-05T10:00:00.123+01:00", "application_id": "app-1",
    "product": "pay_later", "kind": "limit_increase", "requested_amount": 500,
    "channel": "app",
}
CREDIT_REPORT: dict[str, Any] = {
    "event_id": "c-1", "event_type": "credit_report", "user_id": "u1",
    "occurred_at": "2026-01-05T10:00:00-05:00", "schema_version": 1, "bureau": "bureau-a",
    "credit_score": 640, "open_lenders": 2, "hard_inquiries_30d": 0,
    "delinquent_accounts": 0, "total_debt": 1200.5, "monthly_income": 3000,
}
OVERRIDE: dict[str, Any] = {
    "event_id": "o-1", "event_type": "override", "user_id": "u1",
    "occurred_at": "2026-01-05T10:00:00+02:00", "action": "hold", "operator": "ops-7",
    "reason": "appeal #12: the bureau file is under review",
    "until": "2026-01-20T00:00:00.250-03:00",
}
BASES = {"repayment": REPAYMENT, "application": APPLICATION, "credit_report": CREDIT_REPORT,
         "override": OVERRIDE}

short_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
_scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
            | st.floats(allow_nan=False, allow_infinity=False) | short_text)
json_values = st.recursive(
    _scalars, lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(short_text, inner, max_size=4), max_leaves=8)

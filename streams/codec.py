"""Bytes in, typed events out; bad input becomes a `Rejection`, never an exception.

The checks here are the JSON Schemas in `schemas/` written as code (a test feeds
the same samples to both). `decode` never raises: whatever the bytes, the
result is an event or a rejection with a reason code (a small fixed set, fit
for a metric label) and a detail naming the field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson

from streams.events import (
    APPLICATION_KINDS,
    EVENT_TYPES,
    PRODUCTS,
    Application,
    CreditReport,
    Event,
    Repayment,
)

MAX_RECORD_BYTES = 64 * 1024
MAX_AMOUNT = 1e12
REJECT_REASONS = ("not_utf8", "not_json", "oversize", "not_object", "unknown_type",
                  "unsupported_version", "schema", "key_mismatch")
# RFC 3339 date-time: full date, 'T', time, and a mandatory offset ('Z' or +hh:mm);
# upper-case 'T' and 'Z' only, as the schemas' pattern says.
_TIMESTAMP = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_date_cache: dict[str, float] = {}
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str  # one of REJECT_REASONS
    detail: str
    event_type: str | None = None  # one of EVENT_TYPES when the record names a known one

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


class _Invalid(Exception):
    pass


def decode(raw: bytes) -> Event | Rejection:
    """One record's bytes to an event, or the reason it is not a valid v1 event."""
    if len(raw) > MAX_RECORD_BYTES:
        return Rejection("oversize", f"record of {len(raw)} bytes (limit {MAX_RECORD_BYTES})")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        message = str(exc)
        if "UTF-8" in message:
            return Rejection("not_utf8", "record is not valid UTF-8")
        return Rejection("not_json", message[:200])
    if not isinstance(obj, dict):
        return Rejection("not_object", f"a JSON {type(obj).__name__} is not an event object")
    return decode_object(obj)


def decode_object(obj: dict[str, Any]) -> Event | Rejection:
    event = _fast(obj)
    if event is not None:
        return event
    return _decode_checked(obj)


def _decode_checked(obj: dict[str, Any]) -> Event | Rejection:
    """Every check in turn, naming the first that fails."""
    kind = obj.get("event_type")
    builder = _BUILDERS.get(kind) if isinstance(kind, str) else None
    if builder is None:
        shown = repr(kind)[:60]
        return Rejection("unknown_type",
                         f"event_type {shown} is not one of {', '.join(EVENT_TYPES)}")
    version = obj.get("schema_version", 1)
    if version != 1 or isinstance(version, bool):
        return Rejection("unsupported_version", f"schema_version {version!r}: only 1 is known",
                         kind)
    try:
        return builder(obj)
    except _Invalid as exc:
        return Rejection("schema", str(exc), kind)


def _text(obj: dict[str, Any], name: str, limit: int) -> str:
    value = obj.get(name)
    if not isinstance(value, str):
        raise _Invalid(f"{name}: required string" if value is None else f"{name}: not a string")
    if not 1 <= len(value) <= limit:
        raise _Invalid(f"{name}: length {len(value)} outside 1..{limit}")
    return value


def _time(obj: dict[str, Any], name: str, *, nullable: bool = False) -> float | None:
    value = obj.get(name)
    if value is None and nullable and name in obj:
        return None
    if not isinstance(value, str) or _TIMESTAMP.fullmatch(value) is None:
        raise _Invalid(f"{name}: not an RFC 3339 date-time with offset")
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError as exc:
        raise _Invalid(f"{name}: {exc}") from None


def _date(obj: dict[str, Any], name: str) -> float:
    value = obj.get(name)
    if not isinstance(value, str):
        raise _Invalid(f"{name}: required YYYY-MM-DD date")
    cached = _date_cache.get(value)
    if cached is not None:
        return cached
    if _DATE.fullmatch(value) is None:
        raise _Invalid(f"{name}: not a YYYY-MM-DD date")
    try:
        day = date.fromisoformat(value)
    except ValueError as exc:
        raise _Invalid(f"{name}: {exc}") from None
    epoch = (day.toordinal() - _EPOCH_ORDINAL) * 86_400.0
    if len(_date_cache) < 100_000:
        _date_cache[value] = epoch
    return epoch


def _number(obj: dict[str, Any], name: str, *, positive: bool = False) -> float:
    value = obj.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(f"{name}: required number" if value is None else f"{name}: not a number")
    if not math.isfinite(value) or value > MAX_AMOUNT:
        raise _Invalid(f"{name}: {value!r} over {MAX_AMOUNT:g}")
    if value < 0 or (positive and value == 0):
        raise _Invalid(f"{name}: must be {'> 0' if positive else '>= 0'}")
    return float(value)


def _integer(obj: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = obj.get(name)
    if value is None and name not in obj:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON Schema: 3.0 is an integer
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(f"{name}: not an integer")
    if not low <= value <= high:
        raise _Invalid(f"{name}: {value} outside {low}..{high}")
    return value


def _choice(obj: dict[str, Any], name: str, options: tuple[str, ...]) -> str:
    value = obj.get(name)
    if value not in options or not isinstance(value, str):
        raise _Invalid(f"{name}: must be one of {', '.join(options)}")
    return value


def _common(obj: dict[str, Any]) -> tuple[str, str, float]:
    at = _time(obj, "occurred_at")
    assert at is not None
    return _text(obj, "event_id", 128), _text(obj, "user_id", 64), at


def _repayment(obj: dict[str, Any]) -> Repayment:
    event_id, user_id, at = _common(obj)
    if "paid_at" not in obj:
        raise _Invalid("paid_at: required (RFC 3339 date-time or null)")
    installment = _integer(obj, "installment", 1, 10_000)
    if installment is None:
        raise _Invalid("installment: required integer")
    return Repayment(event_id, user_id, at, _text(obj, "loan_id", 128), installment,
                     _choice(obj, "product", PRODUCTS), _date(obj, "due_date"),
                     _number(obj, "amount_due"), _number(obj, "amount_paid"),
                     _time(obj, "paid_at", nullable=True))


def _application(obj: dict[str, Any]) -> Application:
    event_id, user_id, at = _common(obj)
    channel = obj.get("channel")
    if channel is not None and (not isinstance(channel, str) or len(channel) > 64):
        raise _Invalid("channel: must be a string of at most 64 characters")
    return Application(event_id, user_id, at, _text(obj, "application_id", 128),
                       _choice(obj, "product", PRODUCTS), _choice(obj, "kind", APPLICATION_KINDS),
                       _number(obj, "requested_amount", positive=True), channel)


def _optional_number(obj: dict[str, Any], name: str) -> float | None:
    return _number(obj, name) if obj.get(name) is not None or name in obj else None


def _credit_report(obj: dict[str, Any]) -> CreditReport:
    event_id, user_id, at = _common(obj)
    return CreditReport(event_id, user_id, at, _text(obj, "bureau", 64),
                        _integer(obj, "credit_score", 300, 950),
                        _integer(obj, "open_lenders", 0, 10_000),
                        _integer(obj, "hard_inquiries_30d", 0, 10_000),
                        _integer(obj, "delinquent_accounts", 0, 10_000),
                        _optional_number(obj, "total_debt"),
                        _optional_number(obj, "monthly_income"))


_BUILDERS: dict[str, Callable[[dict[str, Any]], Event]] = {
    "repayment": _repayment, "application": _application, "credit_report": _credit_report}


# --- the fast path ----------------------------------------------------------------------
# Records as producers write them, checked in fewer steps: `_fast` returns the event only
# when every check above would pass and give the same values, else None, and the record
# goes through `_decode_checked` (which also names what is wrong). Times take the fast
# path in the common "YYYY-MM-DDTHH:MM:SSZ" form only; the date and hour are validated
# once by `datetime.fromisoformat` and cached.

_hour_cache: dict[str, float] = {}
# ":MM:SSZ" -> its seconds into the hour, for every valid minute and second: one lookup
# both checks the rest of the time and converts it.
_MINUTE_SECOND = {f":{m:02d}:{s:02d}Z": float(m * 60 + s) for m in range(60) for s in range(60)}


def _fast_time(value: Any) -> float | None:
    if value.__class__ is not str or len(value) != 20:
        return None
    hour = _hour_cache.get(value[:13])
    if hour is None:
        hour = _hour(value[:13])
        if hour is None:
            return None
    rest = _MINUTE_SECOND.get(value[13:])
    if rest is None:
        return None
    return hour + rest  # whole seconds < 2**53: exact as a float


def _hour(prefix: str) -> float | None:
    """The epoch second of "YYYY-MM-DDTHH" (UTC), if a valid date and hour; cached."""
    if _TIMESTAMP.fullmatch(prefix + ":00:00Z") is None or not prefix.isascii():
        return None
    try:
        hour = float(int(datetime.fromisoformat(prefix + ":00:00+00:00").timestamp()))
    except ValueError:
        return None
    if len(_hour_cache) < 100_000:
        _hour_cache[prefix] = hour
    return hour


def _fast_amount(value: Any) -> float | None:
    """A number >= 0 and <= MAX_AMOUNT, as float; None when not plainly so."""
    cls = value.__class__
    if (cls is float or cls is int) and 0 <= value <= MAX_AMOUNT:
        return float(value)
    return None


def _fast_count(obj: dict[str, Any], name: str, value: Any) -> bool:
    """Whether obj[name] (value, None if absent) is absent or an integer in 0..10000."""
    if value.__class__ is int:
        return 0 <= value <= 10_000
    return value is None and name not in obj


def _fast(obj: dict[str, Any]) -> Event | None:
    get: Any = obj.get  # values are Any, not Any | None: each is checked before use
    kind = get("event_type")
    version = get("schema_version", 1)
    if version.__class__ is not int or version != 1:
        return None
    event_id = get("event_id")
    user_id = get("user_id")
    if not (event_id.__class__ is str and 0 < len(event_id) <= 128
            and user_id.__class__ is str and 0 < len(user_id) <= 64):
        return None
    at = _fast_time(get("occurred_at"))
    if at is None:
        return None
    if kind == "repayment":
        loan_id = get("loan_id")
        installment = get("installment")
        product = get("product")
        due = get("due_date")
        if not (loan_id.__class__ is str and 0 < len(loan_id) <= 128
                and installment.__class__ is int
                and 1 <= installment <= 10_000 and product.__class__ is str
                and product in PRODUCTS and due.__class__ is str):
            return None
        due_at = _date_cache.get(due)
        amount_due = _fast_amount(get("amount_due"))
        amount_paid = _fast_amount(get("amount_paid"))
        if due_at is None or amount_due is None or amount_paid is None or "paid_at" not in obj:
            return None
        paid = obj["paid_at"]
        paid_at = None
        if paid is not None:
            paid_at = _fast_time(paid)
            if paid_at is None:
                return None
        return Repayment(event_id, user_id, at, loan_id, installment, product, due_at,
                         amount_due, amount_paid, paid_at)
    if kind == "application":
        application_id = get("application_id")
        product = get("product")
        kind_ = get("kind")
        channel = get("channel")
        amount = _fast_amount(get("requested_amount"))
        if not (application_id.__class__ is str and 0 < len(application_id) <= 128
                and product.__class__ is str
                and product in PRODUCTS and kind_.__class__ is str
                and kind_ in APPLICATION_KINDS and amount is not None and amount > 0
                and (channel is None or (channel.__class__ is str and len(channel) <= 64))):
            return None
        return Application(event_id, user_id, at, application_id, product, kind_, amount,
                           channel)
    if kind == "credit_report":
        bureau = get("bureau")
        if not (bureau.__class__ is str and 0 < len(bureau) <= 64):
            return None
        score = get("credit_score")
        if score is None:
            if "credit_score" in obj:
                return None
        elif score.__class__ is not int or not 300 <= score <= 950:
            return None
        lenders = get("open_lenders")
        inquiries = get("hard_inquiries_30d")
        delinquent = get("delinquent_accounts")
        if not (_fast_count(obj, "open_lenders", lenders)
                and _fast_count(obj, "hard_inquiries_30d", inquiries)
                and _fast_count(obj, "delinquent_accounts", delinquent)):
            return None
        debt = get("total_debt")
        if debt is not None:
            debt = _fast_amount(debt)
            if debt is None:
                return None
        elif "total_debt" in obj:
            return None
        income = get("monthly_income")
        if income is not None:
            income = _fast_amount(income)
            if income is None:
                return None
        elif "monthly_income" in obj:
            return None
        return CreditReport(event_id, user_id, at, bureau, score, lenders, inquiries,
                            delinquent, debt, income)
    return None

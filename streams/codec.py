"""Bytes in, typed events out; bad input becomes a `Rejection`, never an exception.

The checks here are the JSON Schemas in `schemas/` written as code (a test feeds
the same samples to both). `decode` never raises: whatever the bytes, the
result is an event or a rejection with a reason code (a small fixed set, fit
for a metric label) and a detail naming the field. Records as producers write
them take the fast path at the end (msgspec parses and checks them in C against
structs stating the same constraints); anything it refuses goes through the
checks written out below, which decide and name what is wrong.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, Literal, TypeVar

import msgspec
import orjson
from msgspec import UNSET, Meta, Struct, UnsetType

from streams.events import (
    APPLICATION_KINDS,
    EVENT_TYPES,
    OVERRIDE_ACTIONS,
    PRODUCTS,
    Application,
    CreditReport,
    Event,
    Override,
    Repayment,
)

MAX_RECORD_BYTES = 64 * 1024
MAX_AMOUNT = 1e12
# unknown_user is not the decoder's: an override for a user with no state is rejected
# when it is applied (the engine's partition), and counted and dead-lettered the same way.
REJECT_REASONS = ("not_utf8", "not_json", "oversize", "not_object", "unknown_type",
                  "unsupported_version", "schema", "key_mismatch", "unknown_user",
                  "policy_refused")
# RFC 3339 date-time: full date, 'T', time, and a mandatory offset ('Z' or +hh:mm, the
# hours 00-23 and minutes 00-59); upper-case 'T' and 'Z' only, as the schemas' pattern
# says. Years 1000 to 8999: every time derived from an event's (a deadline, a notice's
# `effective_at`, at most ten years on: policy.MAX_DAYS) is then a four-digit year too.
_TIMESTAMP = re.compile(
    r"[1-8]\d{3}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)")
_DATE = re.compile(r"[1-8]\d{3}-\d{2}-\d{2}")
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
    event = _fast(raw)
    if event is not None:
        return event
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        message = str(exc)
        if "not valid UTF-8" in message:  # (a byte order mark is valid UTF-8: not_json)
            return Rejection("not_utf8", "record is not valid UTF-8")
        return Rejection("not_json", message[:200])
    if not isinstance(obj, dict):
        return Rejection("not_object", f"a JSON {type(obj).__name__} is not an event object")
    return _decode_checked(obj)


def _decode_checked(obj: dict[str, Any]) -> Event | Rejection:
    """Every check in turn, naming the first that fails."""
    kind = obj.get("event_type")
    builder = _BUILDERS.get(kind) if isinstance(kind, str) else None
    if builder is None:
        shown = _repr(kind)[:60]
        return Rejection("unknown_type",
                         f"event_type {shown} is not one of {', '.join(EVENT_TYPES)}")
    version = obj.get("schema_version", 1)
    if version != 1 or isinstance(version, bool):
        return Rejection("unsupported_version",
                         f"schema_version {_repr(version)}: only 1 is known", kind)
    try:
        return builder(obj)
    except _Invalid as exc:
        return Rejection("schema", str(exc), kind)


def _repr(value: Any) -> str:
    """`repr`, also of a value nested as deep as orjson reads (1,024 levels), which
    Python's own recursion limit would refuse."""
    try:
        return repr(value)
    except RecursionError:
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(limit + 2_100)
        try:
            return repr(value)
        finally:
            sys.setrecursionlimit(limit)


def _text(obj: dict[str, Any], name: str, limit: int) -> str:
    value = obj.get(name)
    if not isinstance(value, str):
        raise _Invalid(f"{name}: required string" if value is None else f"{name}: not a string")
    if not 1 <= len(value) <= limit:
        raise _Invalid(f"{name}: length {len(value)} outside 1..{limit}")
    return value


def _optional_text(obj: dict[str, Any], name: str, limit: int) -> str | None:
    """`_text` for an optional field: absent or null is None."""
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Invalid(f"{name}: not a string")
    if not 1 <= len(value) <= limit:
        raise _Invalid(f"{name}: length {len(value)} outside 1..{limit}")
    return value


def _time(obj: dict[str, Any], name: str, *, nullable: bool = False) -> float | None:
    value = obj.get(name)
    if value is None and nullable and name in obj:
        return None
    return _time_value(value, name)


def _time_value(value: Any, name: str) -> float:
    """An RFC 3339 date-time with an offset, as an epoch second (`name` for the detail)."""
    if not isinstance(value, str) or _TIMESTAMP.fullmatch(value) is None:
        raise _Invalid(f"{name}: not an RFC 3339 date-time with offset")
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError as exc:
        raise _Invalid(f"{name}: {exc}") from None


def _date(obj: dict[str, Any], name: str) -> float:
    return _date_value(obj.get(name), name)


def _date_value(value: Any, name: str) -> float:
    """A YYYY-MM-DD date as the epoch second of its 00:00 UTC; cached."""
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
    at = _time_value(obj.get("occurred_at"), "occurred_at")
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
                     _time(obj, "paid_at", nullable=True), _region(obj))


def _application(obj: dict[str, Any]) -> Application:
    event_id, user_id, at = _common(obj)
    channel = obj.get("channel")
    if channel is not None and (not isinstance(channel, str) or len(channel) > 64):
        raise _Invalid("channel: must be a string of at most 64 characters")
    return Application(event_id, user_id, at, _text(obj, "application_id", 128),
                       _choice(obj, "product", PRODUCTS), _choice(obj, "kind", APPLICATION_KINDS),
                       _number(obj, "requested_amount", positive=True), channel,
                       _region(obj))


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
                        _optional_number(obj, "monthly_income"), _region(obj))


def _override(obj: dict[str, Any]) -> Override:
    event_id, user_id, at = _common(obj)
    action = _choice(obj, "action", OVERRIDE_ACTIONS)
    operator = _text(obj, "operator", 128)
    reason = _text(obj, "reason", 500)
    value = obj.get("until")
    until: float | None
    if action == "hold":
        until = _time_value(value, "until")  # required
    elif value is None:  # absent or null
        until = None
    elif action == "restore":
        until = _time_value(value, "until")
    else:
        raise _Invalid("until: only a hold or a restore takes one")
    if until is not None and until <= at:
        raise _Invalid("until: must be after occurred_at")
    return Override(event_id, user_id, at, action, operator, reason, until, _region(obj))


def _region(obj: dict[str, Any]) -> str | None:
    """The user's region, optional in every type. Checked last (each builder reads it
    after all its own fields and their checks), so a record with another error too
    is rejected for that one, as before regions existed."""
    return _optional_text(obj, "region", 64)


_BUILDERS: dict[str, Callable[[dict[str, Any]], Event]] = {
    "repayment": _repayment, "application": _application, "credit_report": _credit_report,
    "override": _override}


# --- the fast path ----------------------------------------------------------------------
# Records as producers write them are parsed and checked by msgspec, in C, straight from
# the bytes into the structs below, which say what the schemas say (a record with a field
# they do not name goes through the full checks: msgspec does not check what it skips,
# such as bytes that are not UTF-8 or a number beyond a double); then the times are
# read: the common "YYYY-MM-DDTHH:MM:SSZ" form by lookup (each date and hour validated
# once by `datetime.fromisoformat`, then cached), any other form as `_time` reads it. A
# record msgspec refuses, or an invalid time, goes through the checks above, which decide
# and name what is wrong: the fast path only ever accepts what those checks accept, with
# the same values (tests/unit/test_codec.py). Overrides, a few a day, have no struct here:
# msgspec refuses their tag and they always take the checks above.

_Id = Annotated[str, Meta(min_length=1, max_length=128)]
_ShortId = Annotated[str, Meta(min_length=1, max_length=64)]
_Amount = Annotated[float, Meta(ge=0, le=MAX_AMOUNT)]
_Count = Annotated[int, Meta(ge=0, le=10_000)]
_Product = Literal["cash_loan", "pay_later"]  # PRODUCTS (a test checks they agree)


class _RepaymentRecord(Struct, forbid_unknown_fields=True, tag="repayment",
                       tag_field="event_type", gc=False):
    event_id: _Id
    user_id: _ShortId
    occurred_at: str
    loan_id: _Id
    installment: Annotated[int, Meta(ge=1, le=10_000)]
    product: _Product
    due_date: str
    amount_due: _Amount
    amount_paid: _Amount
    paid_at: str | None  # required, may be null
    schema_version: Literal[1] = 1
    region: _ShortId | None = None

    def event(self) -> Repayment | None:
        at = _any_time(self.occurred_at)
        due = _fast_date(self.due_date)
        paid_at = None
        if self.paid_at is not None:
            paid_at = _any_time(self.paid_at)
            if paid_at is None:
                return None
        if at is None or due is None:
            return None
        return Repayment(self.event_id, self.user_id, at, self.loan_id, self.installment,
                         self.product, due, self.amount_due, self.amount_paid, paid_at,
                         self.region)


class _ApplicationRecord(Struct, forbid_unknown_fields=True, tag="application",
                         tag_field="event_type", gc=False):
    event_id: _Id
    user_id: _ShortId
    occurred_at: str
    application_id: _Id
    product: _Product
    kind: Literal["drawdown", "limit_increase"]  # APPLICATION_KINDS
    requested_amount: Annotated[float, Meta(gt=0, le=MAX_AMOUNT)]
    channel: Annotated[str, Meta(max_length=64)] | None = None
    schema_version: Literal[1] = 1
    region: _ShortId | None = None

    def event(self) -> Application | None:
        at = _any_time(self.occurred_at)
        if at is None:
            return None
        return Application(self.event_id, self.user_id, at, self.application_id, self.product,
                           self.kind, self.requested_amount, self.channel, self.region)


class _CreditReportRecord(Struct, forbid_unknown_fields=True, tag="credit_report",
                          tag_field="event_type", gc=False):
    # Every bureau field is optional but not nullable: UNSET when absent, and an explicit
    # null is refused (and then rejected by the checks above).
    event_id: _Id
    user_id: _ShortId
    occurred_at: str
    bureau: _ShortId
    credit_score: Annotated[int, Meta(ge=300, le=950)] | UnsetType = UNSET
    open_lenders: _Count | UnsetType = UNSET
    hard_inquiries_30d: _Count | UnsetType = UNSET
    delinquent_accounts: _Count | UnsetType = UNSET
    total_debt: _Amount | UnsetType = UNSET
    monthly_income: _Amount | UnsetType = UNSET
    schema_version: Literal[1] = 1
    region: _ShortId | None = None  # absent or null: None, as in the checks above

    def event(self) -> CreditReport | None:
        at = _any_time(self.occurred_at)
        if at is None:
            return None
        return CreditReport(self.event_id, self.user_id, at, self.bureau,
                            _set(self.credit_score), _set(self.open_lenders),
                            _set(self.hard_inquiries_30d), _set(self.delinquent_accounts),
                            _set(self.total_debt), _set(self.monthly_income), self.region)


_T = TypeVar("_T")


def _set(value: _T | UnsetType) -> _T | None:
    return None if value is UNSET else value


_read_record = msgspec.json.Decoder(
    _RepaymentRecord | _ApplicationRecord | _CreditReportRecord).decode


def _fast(raw: bytes) -> Event | None:
    """The event, when msgspec's checks and the fast time forms suffice; else None."""
    try:
        record = _read_record(raw)
    except (msgspec.MsgspecError, ValueError, RecursionError):  # not UTF-8; nested too deep
        return None
    return record.event()


_hour_cache: dict[str, float] = {}
# ":MM:SSZ" -> its seconds into the hour, for every valid minute and second: one lookup
# both checks the rest of the time and converts it.
_MINUTE_SECOND = {f":{m:02d}:{s:02d}Z": float(m * 60 + s) for m in range(60) for s in range(60)}


def _fast_time(value: str) -> float | None:
    if len(value) != 20:
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


def _any_time(value: str) -> float | None:
    """A valid RFC 3339 time's epoch second, as `_time_value` gives it; None if not valid.
    The plain "...Z" form by lookup, any other (offsets, fractions) by `_time_value`."""
    at = _fast_time(value)
    if at is None:
        try:
            at = _time_value(value, "")
        except _Invalid:
            return None
    return at


def _fast_date(value: str) -> float | None:
    """A YYYY-MM-DD date's epoch second, as `_date_value` gives it; None if not valid."""
    try:
        return _date_value(value, "")
    except _Invalid:
        return None

"""Records, times and dates that probe the decoder: what engine/tests/gen_codec.py writes
to the compiled decoder's fixture, and what tests/unit/test_engine_codec.py decodes with both
decoders at test time.

Every builder is deterministic (fixed seeds): the same arguments give the same cases.
The counts of the random kinds (damaged records, prefixes, random times and dates) are
arguments, so a run can be made larger than the defaults.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Iterator
from typing import Any

import orjson

from streams import codec
from streams.codec import Rejection, decode
from streams.generate import generate_log

# --- records built from parts -----------------------------------------------------------

MISSING = object()


class Raw(str):
    """JSON text used as is."""


def js(v: Any) -> str:
    """A Python value as JSON text (non-ASCII kept as UTF-8)."""
    return json.dumps(v, ensure_ascii=False)


def record(base: dict[str, Any], **changes: Any) -> str:
    """`base` as JSON, fields replaced (a `Raw` as its text), MISSING ones removed."""
    items = dict(base)
    items.update(changes)
    parts = []
    for k, v in items.items():
        if v is MISSING:
            continue
        parts.append(f"{js(k)}:{v if isinstance(v, Raw) else js(v)}")
    return "{" + ",".join(parts) + "}"


def with_float(obj: dict[str, Any]) -> dict[str, Any]:
    """A credit report whose integers are written as floats (msgspec's fast path refuses
    it)."""
    return {**obj, "credit_score": float(obj.get("credit_score", 700))}


# --- the generator's records --------------------------------------------------------------

def generated_lines(*, users: int = 300, days: int = 60, seed: int = 1,
                    malformed_share: float = 0.05) -> list[bytes]:
    """The lines `closure-monitor generate` writes with these arguments, valid and not."""
    out = io.BytesIO()
    generate_log(out, seed=seed, users=users, days=days, malformed_share=malformed_share)
    return out.getvalue().splitlines()


def bases(lines: list[bytes]) -> dict[str, dict[str, Any]]:
    """Valid records of each type from `lines`, that the edge cases change one field of."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict) and not isinstance(decode(line), Rejection):
            by_type.setdefault(obj["event_type"], []).append(obj)
    credit = by_type["credit_report"][0]
    return {
        "repayment": next(b for b in by_type["repayment"] if b["paid_at"] is not None),
        "repayment_unpaid": next(b for b in by_type["repayment"] if b["paid_at"] is None),
        "application": by_type["application"][0],
        "credit_report": credit,
        "credit_min": {k: credit[k] for k in ("event_id", "event_type", "user_id",
                                               "occurred_at", "bureau")},
    }


# Overrides: the generator writes them only when asked, so their bases are written here.
OVERRIDES: dict[str, dict[str, Any]] = {
    "override": {"event_id": "o-1", "event_type": "override", "user_id": "u000001",
                 "occurred_at": "2026-02-01T10:00:00Z", "schema_version": 1,
                 "action": "hold", "operator": "ops-ana", "reason": "appeal under review",
                 "until": "2026-02-15T10:00:00Z"},
    "override_restore": {"event_id": "o-2", "event_type": "override", "user_id": "u000002",
                         "occurred_at": "2026-02-01T10:00:00.5+08:00", "action": "restore",
                         "operator": "ops-ben", "reason": "payment made at a branch",
                         "until": "2026-03-01T00:00:00-05:00"},
    "override_release": {"event_id": "o-3", "event_type": "override", "user_id": "u000003",
                         "occurred_at": "2026-02-01T10:00:00Z", "action": "release",
                         "operator": "ops-chen", "reason": "appeal upheld"},
}


# --- edge values --------------------------------------------------------------------------

GENERIC: list[Any] = [
    Raw("null"), Raw("true"), Raw("false"), Raw("0"), Raw("-0"), Raw("1"), Raw("-1"),
    Raw("0.0"), Raw("-0.0"), Raw("0.5"), Raw("1.0"), Raw("3.0"), Raw("1.5"), Raw("[]"),
    Raw("{}"), Raw("[1]"), Raw('{"a":1}'), Raw("1e300"), Raw("-1e300"), Raw("1e-300"),
    Raw("5e-324"), Raw("99999999999999999999"), Raw("18446744073709551615"),
    Raw("-9223372036854775808"), Raw("-9223372036854775809"), Raw("1e2"), Raw("1E2"),
    "", "x", "1", "a" * 64, "a" * 65, "a" * 128, "a" * 129, "é" * 64, "é" * 65,
    "日" * 128, "日" * 129, "😀" * 64, "😀" * 65, "😀" * 128, "😀" * 129, "cash_loan",
    "pay_later", "drawdown", "limit_increase", "2026-01-01", "2026-01-01T00:00:00Z",
    "2026-01-01T00:00:00+05:30", "repayment", "\u0000", "a\nb", "null",
]
INTEGERS = [Raw(x) for x in (
    "0", "1", "2", "299", "300", "300.0", "950", "950.0", "951", "10000", "10000.0",
    "10001", "10000.5", "3.5", "100.000", "1e2", "1E2", "1e-2", "0.1e1", "-0.0", "-0",
    "950.0000000000001", "299.99999999999994", "1e300", "-1e300", "1.7976931348623157e308",
    "99999999999999999999", "-9223372036854775809", "18446744073709551616",
    "9223372036854775807", "-9223372036854775808", "18446744073709551615", "5e-324",
    "123456789012345678901234567890", "-1e20", "4503599627370497.0", "1e15", "1e16",
    '"5"', "true", "false", "null", "[]", "{}", "[300]")]
NUMBERS = [Raw(x) for x in (
    "0", "-0", "0.0", "-0.0", "1", "-1", "-0.01", "0.01", "1e12", "1000000000000",
    "1000000000001", "1000000000000.0001", "1000000000000.00001", "1000000000000.0",
    "999999999999.9999", "1e-400", "-1e-400", "123.456", "0.1", "0.30000000000000004",
    "1.7976931348623157e308", "4.9e-324", "2.2250738585072011e-308", "9007199254740993",
    "0.1000000000000000055511151231257827021181583404541015625",
    "1.00000000000000011102230246251565404236316680908203125",
    "1.00000000000000011102230246251565404236316680908203126",
    "12345.678901234567890123456789", "7.038531e-26", "5294.67", "55563.31", "18510.0",
    "1e1", "1E+1", "1e-1", "10000000000000000000000", "18446744073709551615",
    "-9223372036854775808", "99999999999999999999", "1e300", "2e12", "1e13", '"100"',
    "true", "false", "null", "[]", "{}", "[1]",
    "0." + "0" * 400 + "1", "1" + "0" * 11 + "." + "0" * 300 + "1",
    "0.000000000000000000000000000000000000000000000000000000000000000000000000001e75")]
TIMES = [
    "2026-01-01T00:00:00Z", "2026-12-31T23:59:59Z", "2024-02-29T12:00:00Z",
    "2026-02-29T00:00:00Z", "2026-01-01T00:00:00+00:00", "2026-01-01T00:00:00-00:00",
    "2026-01-01T00:00:00+23:59", "2026-01-01T00:00:00-23:59", "2026-01-01T00:00:00+24:00",
    "2026-01-01T00:00:00+05:60", "2026-01-01T00:00:00+05:30", "2026-01-01T00:00:00-09:45",
    "2026-01-01T24:00:00Z", "2026-01-01T23:60:00Z", "2026-01-01T23:59:60Z",
    "2026-13-01T00:00:00Z", "2026-00-01T00:00:00Z", "2026-01-00T00:00:00Z",
    "2026-04-31T00:00:00Z", "2026-13-32T25:61:61Z", "2026-01-32T25:00:00Z",
    "2026-01-01T25:61:00Z", "2026-01-01T00:61:61Z", "1900-02-29T00:00:00Z",
    "2000-02-29T00:00:00Z", "0999-12-31T23:59:59Z", "1000-01-01T00:00:00Z",
    "1000-01-01T00:00:00+23:59", "8999-12-31T23:59:59Z", "8999-12-31T23:59:59.999999-23:59",
    "9000-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z",
    "2026-01-01t00:00:00Z", "2026-01-01T00:00:00z", "2026-01-01 00:00:00Z",
    "2026-01-01T00:00:00", "2026-01-01", "20260101T000000Z", "2026-01-01T00:00:00Z\n",
    " 2026-01-01T00:00:00Z", "2026-01-01T00:00:00ZZ", "2026-01-01T00:00:00.Z",
    "2026-01-01T00:00:00,5Z", "2026-01-01T1:00:00Z", "2026-01-01T00:00:0Z",
    "2026-01-01T00:00:00+0530", "2026-01-01T00:00:00+05", "2026-01-01T00:00:00.5+05:30",
    "yesterday", "",
    *(f"2026-01-01T00:00:00.{'123456789'[:n]}Z" for n in range(1, 10)),
    *(f"2026-01-01T00:00:00.{'987654321'[:n]}-03:00" for n in range(1, 10)),
    "2026-01-01T00:00:00.1234567890Z", "2026-01-01T00:00:00.9999999Z",
    "2026-01-01T00:00:00.999999999+01:00", "2026-01-01T00:00:00.000001Z",
    "2026-01-01T00:00:00.0000001Z", "2026-01-01T00:00:00.000000Z",
    # Unicode digits (Nd): `\d` matches them, fromisoformat mostly does not.
    "٢026-01-01T00:00:00Z", "2٠٢٦-01-01T00:00:00Z", "2026-0١-01T00:00:00Z",
    "2026-01-0١T00:00:00Z", "2026-01-01T0١:00:00Z", "2026-01-01T01:0١:00Z",
    "2026-01-01T01:00:0١Z", "2026-01-01T00:00:00.١Z", "2026-01-01T00:00:00.12345١Z",
    "2026-01-01T00:00:00.123456١Z", "2026-01-01T00:00:00.123456١٢٣Z",
    "2026-01-01T00:00:00.1234567١+01:00", "2026-01-01T00:00:00.1234567𝟎+01:00",
    "2026-01-01T00:00:00.123456٧٨-01:00", "2026-01-01T00:00:00+0١:00",
    "2026-01-01T00:00:00+01:0١", "2026-01-01T00:00:00.123456１２３Z",
    "2026-01-01T00:00:00.१२३४५६७८९Z", "2026-01-01T00:00:00.123456７Z",
    "2026-01-01T00:00:00.123456²Z", "2026-01-01T00:00:00.1234567890١Z",
    "१९९९-01-01T00:00:00Z", "2026-01-01T00:00:00.123456\U0001FBF9Z",
]
DATES = [
    "2026-01-01", "2026-02-28", "2026-02-29", "2024-02-29", "1900-02-29", "2000-02-29",
    "2026-13-01", "2026-00-10", "2026-01-00", "2026-01-32", "2026-04-31", "2026-13-32",
    "0999-12-31", "1000-01-01", "8999-12-31", "9000-01-01", "9999-12-31", "20260101",
    "2026-01-01T00:00:00Z", "2026-1-01", "2026-01-1", " 2026-01-01", "2026-01-01\n",
    "2026-W01-1", "2026-001", "", "x", "2026/01/01",
    "2026-0١-01", "٢026-01-01", "2٠26-01-01", "2026-01-٠1", "2026-01-0１", "१९९९-01-01",
]
# Strings and values whose repr() a rejection's detail shows (event_type, schema_version).
ODD_STRINGS = [
    "loan", "Repayment", "repayment ", " repayment", "", "it's", 'say "hi"', "'\"", "\\",
    "a\nb\tc\rd", "".join(map(chr, range(0, 32))), "\x7f\x80\x9f\xa0\xa9\xad\xff",
    "é", "\u0378", "\u2028\u2029", "\u200b\u200e", "\ufeff", "\ue000", "\uffff",
    "\U0001F600", "\U000E0001", "\U0010FFFF", "\U0001FBF9", "\U0001F6DD", "\U0001FAE8",
    "\u3000", "\u00a0x", "x" * 59, "x" * 60, "x" * 61, "\x00" * 30, "é" * 70,
    "'" * 70, "\U0001F600" * 70, "repayment\x00", "𝟎𝟏", "\u061c", "\u0600", "\u180e",
    "".join(chr(c) for c in range(0x80, 0x100)), "\ud7ff\ue000",
]
ODD_VALUES = [Raw(x) for x in (
    "null", "true", "false", "0", "1", "-0", "1.0", "-0.0", "1e300", "1e-7", "1e16",
    "123456789012345678", "18446744073709551615", "-9223372036854775808",
    "99999999999999999999", "0.1", "1e22", "1e-5", "0.0001", "[]", "{}", '["repayment"]',
    '{"event_type":"repayment"}', '[1,[2,[3,{"a":[4,{"b":null}]}]]]',
    '{"a":1,"b":2,"a":3}', '{"b":1,"a":2}', '[true,false,null,1.5,"x"]',
    '{"k\\"ey":"v\'al","\\u00e9":"\\ud83d\\ude00"}', "[" * 100 + "]" * 100,
    "[" * 500 + "]" * 500, "[" * 990 + "]" * 990, '{"a":' * 300 + "1" + "}" * 300,
    "[" + ",".join(str(i) for i in range(100)) + "]",
    "{" + ",".join(f'"k{i}":{i}' for i in range(50)) + ',"k3":"x"}',
    '"repayment"', '"\\u0072epayment"', '"credit_report"')]
VERSIONS = [Raw(x) for x in (
    "1", "1.0", "1e0", "10e-1", "0.1e1", "1.0000000000000002", "0.9999999999999999",
    "1.00000000000000001", "2", "0", "-1", "1E0", '"1"', "[1]", '{"v":1}')]
TEXT_LIMITS = {"event_id": 128, "user_id": 64, "loan_id": 128, "application_id": 128,
               "bureau": 64}
# The fields each edge value is tried in, per base record.
FIELDS = {
    "repayment": ("event_id", "user_id", "occurred_at", "loan_id", "installment",
                  "product", "due_date", "amount_due", "amount_paid", "paid_at"),
    "repayment_unpaid": ("paid_at", "amount_paid", "installment"),
    "application": ("event_id", "user_id", "occurred_at", "application_id", "product",
                    "kind", "requested_amount", "channel"),
    "credit_report": ("event_id", "user_id", "occurred_at", "bureau", "credit_score",
                      "open_lenders", "hard_inquiries_30d", "delinquent_accounts",
                      "total_debt", "monthly_income"),
    "credit_min": ("credit_score", "open_lenders", "total_debt", "monthly_income", "bureau"),
}
OVERRIDE_FIELDS = {
    "override": ("event_id", "user_id", "occurred_at", "action", "operator", "reason", "until"),
    "override_restore": ("occurred_at", "action", "until"),
    "override_release": ("action", "until", "operator", "reason"),
}
OVERRIDE_TEXT = ["a" * 500, "a" * 501, "é" * 500, "é" * 501, "😀" * 500, "😀" * 501,
                 Raw('"\\ud800"'), Raw('"\\ud83d\\ude00"'), Raw('"a\\u0000b"'), "\ud800"]
# The user's region, optional in every type (1 to 64 characters, or null): values beyond
# GENERIC's lengths (64 and 65 of one-, two- and four-byte characters).
REGIONS = ["north", " ", "\\", '"', "\t", "a" * 63 + "é", "\U0010FFFF" * 64, "\U0010FFFF" * 65,
           "\x7f", "\u2028", Raw('"no\\u0072th"'), Raw('"\\ud83d\\ude00"'), Raw('"\\ud800"'),
           Raw('"a\\u0000b"'), "\ud800", Raw('"\\u00e9"'), Raw('""'), Raw("64"),
           Raw('["north"]'), Raw('{"region":"north"}')]
# Around the bases' occurred_at (2026-02-01T10:00:00Z): until at it, a hair before or
# after it, the same instant at another offset.
UNTILS = ["2026-02-01T10:00:00Z", "2026-02-01T10:00:00.000001Z", "2026-02-01T09:59:59.999999Z",
          "2026-02-01T10:00:00.0000001Z", "2026-02-01T10:00:00.000000999Z",
          "2026-02-01T11:00:00+01:00", "2026-02-01T11:00:00.000001+01:00",
          "2026-02-01T05:00:00-05:00", "2026-02-01T10:00:01Z", "2026-02-01T02:00:00.5-08:00",
          "2026-02-01T18:00:00.5+08:00", "2026-02-01T18:00:00.4+08:00"]


def field_values(name: str) -> list[Any]:
    """The edge values tried in field `name`: MISSING, the generic ones, its own kind's."""
    values: list[Any] = [MISSING, *GENERIC]
    if name in ("installment", "credit_score", "open_lenders", "hard_inquiries_30d",
                "delinquent_accounts"):
        values += INTEGERS
    if name in ("amount_due", "amount_paid", "requested_amount", "total_debt",
                "monthly_income"):
        values += NUMBERS
    if name in ("occurred_at", "paid_at", "until"):
        values += TIMES
    if name == "until":
        values += UNTILS
    if name in ("operator", "reason"):
        values += OVERRIDE_TEXT
    if name == "action":
        values += ["restore", "hold", "release", "Hold", "hold ", "RELEASE", "cancel",
                   Raw('"h\\u006fld"')]
    if name == "due_date":
        values += DATES
    if name == "region":
        values += REGIONS
    if name in TEXT_LIMITS or name in ("channel", "operator", "reason"):
        values += ["\\", '"', "\t", "a" * 63 + "é", "\U0010FFFF" * 64, "\x7f"]
    if name in ("product", "kind"):
        values += [Raw('"cash\\u005floan"'), Raw('"pay\\u005Flater"'), "Cash_loan",
                   "cash_loan ", "drawdown", "limit_increase", "refinance"]
    return values


# --- the record cases -----------------------------------------------------------------------

def record_cases(lines: list[bytes], *, generated: int | None = None, prefix_step: int = 1,
                 damaged: int = 1200, random_times: int = 600
                 ) -> Iterator[tuple[str, bytes]]:
    """(name, record) pairs, the name "<kind>/<detail>". `lines` are the generator's
    (`generated_lines`); of them the first `generated` and every one `decode` rejects are
    cases (all of them if None). Every `prefix_step`-th prefix of a record of each type,
    `damaged` records with random bytes changed, and records with one in four of the
    `random_times` random times (see `time_cases`). May repeat a record."""
    b = bases(lines)
    repayment, credit, application = b["repayment"], b["credit_report"], b["application"]

    # 1. What the generator writes, valid and malformed.
    for i, line in enumerate(lines):
        if generated is None or i < generated or isinstance(decode(line), Rejection):
            yield f"generated/{i}", line

    # 2. Every field of every type set to edge values.
    for kind, names in FIELDS.items():
        for name in names:
            for i, v in enumerate(field_values(name)):
                yield f"field/{kind}/{name}/{i}", _utf8(record(b[kind], **{name: v}))

    # 3. event_type and schema_version: the repr() in their details.
    for kind in ("repayment", "application", "credit_report"):
        for i, v in enumerate(ODD_STRINGS + ODD_VALUES):
            yield f"event_type/{kind}/{i}", _utf8(record(b[kind], event_type=v))
        versions = [MISSING, *ODD_VALUES, *VERSIONS, *ODD_STRINGS[:12], "x" * 1000]
        for i, v in enumerate(versions):
            yield f"schema_version/{kind}/{i}", _utf8(record(b[kind], schema_version=v))
    yield "event_type/missing", _utf8(record(credit, event_type=MISSING))

    # 4. Duplicate keys, escaped keys, unknown fields.
    r = orjson.dumps(repayment).decode()
    c = orjson.dumps(credit).decode()
    keys = [
        c[:-1] + ',"event_id":"c-2"}', c[:-1] + ',"bureau":"b2","bureau":"b3"}',
        c[:-1] + ',"credit_score":400,"credit_score":500}',
        c[:-1] + ',"credit_score":4000,"credit_score":500}',
        c[:-1] + ',"credit_score":400,"credit_score":5000}',
        c[:-1] + ',"credit_score":"x","credit_score":500}',
        c[:-1] + ',"event_type":"application"}', c[:-1] + ',"event_type":"loan"}',
        c[:-1] + ',"event_type":"credit_report"}', '{"event_type":"loan",' + c[1:],
        c[:-1] + ',"schema_version":2,"schema_version":1}',
        c[:-1] + ',"schema_version":1,"schema_version":2}',
        c[:-1] + ',"total_debt":null,"total_debt":5}',
        c[:-1] + ',"total_debt":5,"total_debt":null}',
        r[:-1] + ',"paid_at":null}', r[:-1] + ',"paid_at":"2026-01-01T00:00:00Z"}',
        c.replace('"event_type"', '"event\\u005ftype"'),
        c.replace('"bureau"', '"\\u0062ureau"'),
        c.replace('"user_id"', '"user_id "'), c[:-1] + ',"extra":{"ignored":[1,2,{"a":null}]}}',
        c[:-1] + ',"x":"\\ud83d\\ude00","y":"\\u0000","z":"\\/\\b\\f\\n\\r\\t\\"\\\\"}',
        c[:-1] + ',"x":"\x7f\u0080\u2028"}', c[:-1] + ',"":1}', c[:-1] + ',"x":1E+2}',
        c[:-1] + ',"x":123456789012345678901234567890e-10}',
    ]
    for i, text in enumerate(keys):
        yield f"keys/{i}", _utf8(text)

    # 5. JSON itself: syntax, UTF-8, whitespace, nesting, numbers.
    for i, raw in enumerate(_json_cases(repayment, credit)):
        yield f"json/{i}", raw

    # 6. Size: the limit, a byte over, junk over.
    body = orjson.dumps({**application, "padding": ""})
    exact = orjson.dumps({**application, "padding": "x" * (codec.MAX_RECORD_BYTES - len(body))})
    assert len(exact) == codec.MAX_RECORD_BYTES
    yield "size/exact", exact
    yield "size/over", exact[:-2] + b'x"}'
    yield "size/junk", b"\xff" * (codec.MAX_RECORD_BYTES + 1)
    half = codec.MAX_RECORD_BYTES // 2
    yield "size/deep-at-limit", b"[" * half + b"]" * half

    # 7. Prefixes of a few records, and random byte damage.
    for name in ("repayment", "application", "credit_report"):
        line = orjson.dumps(b[name])
        for n in range(0, len(line), prefix_step):
            yield f"prefix/{name}/{n}", line[:n]
    rng = random.Random("damaged")
    pool = list(lines) + [orjson.dumps(x) for x in b.values()]
    alphabet = b'{}[],:"\\ \t\n0123456789.eE+-tfnulrsa\xff\xc3\xa9\x00\x1f'
    for i in range(damaged):
        line = bytearray(rng.choice(pool).rstrip(b"\n"))
        for _ in range(rng.randint(1, 3)):
            op, at = rng.randrange(3), rng.randrange(len(line))
            if op == 0:
                line[at] = rng.choice(alphabet)
            elif op == 1:
                line.insert(at, rng.choice(alphabet))
            else:
                del line[at]
        yield f"damaged/{i}", bytes(line)

    # 8. Times far from the epoch with fractions, in a record.
    for i, value in enumerate(_random_times(random_times)):
        if i % 4 == 0:
            yield f"time-record/{i}", _utf8(record(credit, occurred_at=value))

    # 9. Overrides: each base, every field set to edge values, the type's reprs, prefixes,
    # damage, and random times as until.
    for kind, base in OVERRIDES.items():
        yield f"override/base/{kind}", orjson.dumps(base)
    for kind, names in OVERRIDE_FIELDS.items():
        for name in names:
            for i, v in enumerate(field_values(name)):
                yield f"field/{kind}/{name}/{i}", _utf8(record(OVERRIDES[kind], **{name: v}))
    hold = OVERRIDES["override"]
    for i, v in enumerate([*ODD_STRINGS[:12], "override ", "Override", "overrides"]):
        yield f"event_type/override/{i}", _utf8(record(hold, event_type=v))
    for i, v in enumerate([MISSING, *VERSIONS]):
        yield f"schema_version/override/{i}", _utf8(record(hold, schema_version=v))
    for kind, base in OVERRIDES.items():
        line = orjson.dumps(base)
        for n in range(0, len(line), prefix_step):
            yield f"prefix/{kind}/{n}", line[:n]
    rng = random.Random("damaged overrides")
    pool = [orjson.dumps(x) for x in OVERRIDES.values()]
    for i in range(damaged // 10):
        line = bytearray(rng.choice(pool))
        for _ in range(rng.randint(1, 3)):
            op, at = rng.randrange(3), rng.randrange(len(line))
            if op == 0:
                line[at] = rng.choice(alphabet)
            elif op == 1:
                line.insert(at, rng.choice(alphabet))
            else:
                del line[at]
        yield f"damaged/override/{i}", bytes(line)
    for i, value in enumerate(_random_times(random_times)):
        if i % 4 == 1:
            yield f"until-record/{i}", _utf8(record(hold, occurred_at="1000-01-01T00:00:00Z",
                                                    until=value))

    # 10. The user's region (after all the above, whose names and places stay as they
    # were): in every base record, absent, null and the edge values; a bad region with
    # a bad own field (the own field is named: region is checked last); repeated and
    # escaped keys.
    regional = {**{k: b[k] for k in FIELDS}, **OVERRIDES}
    for kind, base in regional.items():
        for i, v in enumerate(field_values("region")):
            yield f"field/{kind}/region/{i}", _utf8(record(base, region=v))
    own = {**FIELDS, **OVERRIDE_FIELDS}
    for kind, base in regional.items():
        for name in own[kind]:
            for i, v in enumerate((MISSING, Raw("[]"), "")):
                for j, region in enumerate((Raw("7"), "", "r" * 65, "north")):
                    yield (f"region-last/{kind}/{name}/{i}/{j}",
                           _utf8(record(base, **{name: v, "region": region})))
    hold_text = orjson.dumps(hold).decode()
    for i, text in enumerate([
            c[:-1] + ',"region":"north","region":7}', c[:-1] + ',"region":7,"region":"north"}',
            c[:-1] + ',"region":"north","region":null}', c[:-1] + ',"region":null,"region":""}',
            c[:-1] + ',"\\u0072egion":"north"}', c[:-1] + ',"Region":7}',
            c[:-1] + ',"region ":7}', c[:-1] + ',"region":"north","extra":1}',
            r[:-1] + ',"region":"north","paid_at":null}', '{"region":"north",' + c[1:],
            hold_text[:-1] + ',"region":"north","region":[]}',
            hold_text[:-1] + ',"region":"north","until":"2026-02-01T10:00:00Z"}',
            orjson.dumps(with_float(credit)).decode()[:-1] + ',"region":"north"}']):
        yield f"region-keys/{i}", _utf8(text)


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _json_cases(repayment: dict[str, Any], credit: dict[str, Any]) -> list[bytes]:
    cb = orjson.dumps(credit)
    cases: list[bytes] = [
        b"", b" ", b"\n", b"\xef\xbb\xbf", b"\xef\xbb\xbf" + cb, b"\xef\xbb\xbf\xff",
        b"\xef\xbb\xbf{}", b"\xff", b'{"a":\xff}', b"\xff{}", b"{}\xff", b"\xff\xfe{}",
        b'"\xed\xa0\x80"', b"\xc0\x80", b'"\xf4\x90\x80\x80"', b"1\xff", b"[1,2\xff]",
        b"\xc3\x28", b'{"event_id": "\xc3\x28"}', b"\xe2\x82", b"{\xe2\x82\xac}",
        b"{}", b"[]", b"null", b"true", b"false", b"0", b"-0", b"-0.0", b"1", b"1.5",
        b"1e400", b"-1e400", b"1e-400", b"99999999999999999999", b"18446744073709551615",
        b"18446744073709551616", b"-9223372036854775808", b"-9223372036854775809",
        b'"repayment"', b'""', b"[1,2]", b"[{}]", b"01", b"-", b"1.", b".5", b"1e", b"+1",
        b"1.5e", b"1e+", b"NaN", b"Infinity", b"-Infinity", b"nul", b"tru", b"True",
        b"[1,]", b'{"a":1,}', b'{"a":1 "b":2}', b'{"a" 1}', b"{a:1}", b"{'a':1}",
        b'{"a":1}{"b":2}', b'{"a":1}x', b"{}\x00", b"\x00", b"\x0c{}", b"{}\x0c",
        b"\t\n\r {} \t\n\r", b"\xc2\xa0{}", b"\xe2\x80\xa8{}", b'"\x00"', b'"\x1f"',
        b'"\x7f"', b'"\\x"', b'"\\u00e9"', b'"\\u00E9"', b'"\\/"', b'"\\U0041"', b'"\\u12"',
        b'"\\ud800"', b'"\\udc00"', b'"\\ud800\\u0041"', b'"\\ud83d\\ude00"',
        b'"\\ud800\\ud800"', b'"\\udbff\\udfff"', b'"\\ud800x"', b'"\\ud800\\"',
        b'"\\u0000"', b'"abc', b'"abc\\', b"[", b"{", b'{"a"', b'{"a":', b"[1", b"[1,",
        b'{"event_type":"repayment"', b"[" * 1024 + b"]" * 1024, b"[" * 1025 + b"]" * 1025,
        b'{"a":' * 1024 + b"1" + b"}" * 1024, b'{"a":' * 1025 + b"1" + b"}" * 1025,
        b"[" * 1023 + b"{}" + b"]" * 1023, b"[" * 1024 + b"{}" + b"]" * 1024,
        b"[" * 5000, b"]", b"}", b",", b":",
        b"0." + b"0" * 5000 + b"1", b"1" + b"0" * 308, b"1" + b"0" * 309,
        b"123456789012345678901234567890e-20",
        b"0.000000000000000000000000000000000000000001e400",
        b"1e-99999999999999999999", b"0e99999999999999999999", b"-0e-0", b"0.0e0", b"1e+0",
        b"1" + b"0" * 400 + b"e-300", b"1" + b"0" * 400 + b"e-91", b"1" + b"0" * 400 + b"e-92",
        b"0." + b"0" * 400 + b"1e400", b"1.7976931348623157e308", b"1.7976931348623158e308",
        b"1.7976931348623159e308", b"-1.797693134862316e308", b"2.4703282292062327e-324",
        b"2.4703282292062328e-324", b"4.9406564584124654e-324", b"1E-2", b"1e01", b"-1.5E+03",
        b"00", b"-00", b"0x10", b"1_000", b"\\u0031", b"[-]", b"[1e]", b"[1.e1]", b"[.1]",
    ]
    for depth in (1022, 1023, 1024, 1025):  # the top object is one level
        arrays = b"[" * (depth - 1) + b"]" * (depth - 1)
        cases += [
            cb[:-1] + b',"x":' + arrays + b"}",
            cb[:-1] + b',"x":' + b'{"a":' * (depth - 1) + b"1" + b"}" * (depth - 1) + b"}",
            b'{"event_type":' + arrays + b"}",
            cb[:-1] + b',"schema_version":' + arrays + b"}",
            cb[:-1] + b',"credit_score":' + arrays + b"}",
        ]
    # Mixed nesting inside an unknown field, and malformed nesting.
    cases += [cb[:-1] + b',"x":' + x + b"}" for x in (
        b'[{"a":[1,{"b":[]},{}],"c":{"d":[[],[{}]]}},[],{}]', b'[{"a":1],"b":2}', b"[1,2}",
        b'{"a":1]', b"[1 2]", b'{"a" 1}', b"{1:2}", b"[,1]", b"{,}", b"[1,,2]",
        b'{"a":1,,"b":2}', b"[[]]]", b"[[]")]
    # Invalid UTF-8 or an infinite number in a field the schema does not name: msgspec
    # skips those unchecked, so the fast path must leave such records to the full checks.
    for extra in (b',"x":"\xff"', b',"x\xff":1', b',"x":"\xed\xa0\x80"', b',"x":["\xff"]',
                  b',"x":{"\xff":1}', b',"x":"\xc0\x80"', b',"x":"\xe2\x82"', b',"x":1e400',
                  b',"x":-1e400', b',"x":{"a":1e400}', b',"x":1e99999999999999999999999',
                  b',"x":1e309', b',"x":123456789e300', b',"x":"\\ud800"', b',"x":"\x01"',
                  b',"x":01', b',"x":1.', b',"x":-'):
        cases += [cb[:-1] + extra + b"}", orjson.dumps(repayment)[:-1] + extra + b"}",
                  orjson.dumps(with_float(credit))[:-1] + extra + b"}"]
    return cases


# --- times and dates, read directly ---------------------------------------------------------

def _random_times(n: int) -> list[str]:
    """Valid and invalid times far from the epoch, with fractions (where rounding to a
    float is delicate) and offsets."""
    rng = random.Random("times")
    out = []
    for _ in range(n):
        year = rng.choice((rng.randint(1000, 1969), rng.randint(2255, 8999),
                           rng.randint(1970, 2254)))
        frac = "".join(rng.choice("0123456789") for _ in range(rng.randint(0, 9)))
        sign = rng.choice("+-")
        out.append(f"{year:04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T"
                   f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:"
                   f"{rng.randint(0, 59):02d}" + (f".{frac}" if frac else "")
                   + rng.choice(("Z", f"{sign}{rng.randint(0, 23):02d}:"
                                      f"{rng.randint(0, 59):02d}")))
    return out


def time_cases(*, random_times: int = 600, digits: int = 400, ranges: int = 300
               ) -> Iterator[tuple[str, str]]:
    """(name, value) pairs for the time parser: the edge values, `random_times` random
    times, `digits` with digits from other scripts, `ranges` with fields out of range."""
    for i, value in enumerate(TIMES):
        yield f"edge/{i}", value
    for i, value in enumerate(_random_times(random_times)):
        yield f"random/{i}", value
    rng = random.Random("digits")
    others = "0123456789٠١٢٣٤٥٦٧٨٩０１２３４５６７８９𝟎𝟏"
    for i in range(digits):
        chars = list("2026-03-15T12:34:56.123456789+05:30")
        for _ in range(rng.randint(1, 2)):
            at = rng.randrange(len(chars))
            if chars[at].isdigit():
                chars[at] = rng.choice(others)
        if rng.random() < 0.3:
            chars[20:29] = list("123456789"[: rng.randint(1, 9)])
        yield f"digits/{i}", "".join(chars)
    for i, value in enumerate(_random_dates(ranges)):
        rng = random.Random(f"range/{i}")
        yield f"range/{i}", (f"{value}T{rng.randint(0, 25):02d}:{rng.randint(0, 61):02d}:"
                             f"{rng.randint(0, 61):02d}Z")


def _random_dates(n: int) -> list[str]:
    rng = random.Random("dates")
    return [f"{rng.randint(990, 9010):04d}-{rng.randint(0, 13):02d}-{rng.randint(0, 32):02d}"
            for _ in range(n)]


def date_cases(*, random_dates: int = 300) -> Iterator[tuple[str, str]]:
    """(name, value) pairs for the date parser: the edge values and random ones, many
    out of range."""
    for i, value in enumerate(DATES):
        yield f"edge/{i}", value
    for i, value in enumerate(_random_dates(random_dates)):
        yield f"random/{i}", value

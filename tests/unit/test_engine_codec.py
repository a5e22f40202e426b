"""The compiled decoder against the Python one, at test time: `streams._engine.decode_fields`
and `streams.codec.decode` on the same bytes give the same event, field for field (floats
bit for bit, integers as integers), or the same rejection.

The records are tests/codec_cases.py's (engine/tests/gen_codec.py writes a sample of them,
with Python's results, to the Rust tests' fixture; here all of them are decoded by both),
and Hypothesis's: random bytes, random JSON, events with fields changed or damaged, and
the generator's logs.
"""

from __future__ import annotations

import io
import struct
from dataclasses import fields
from functools import cache
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams._engine import decode_fields
from streams.codec import Rejection, decode
from streams.generate import generate_log
from tests import codec_cases
from tests.codec_cases import MISSING, Raw, record
from tests.unit.codec_samples import BASES, json_values


def python_fields(raw: bytes) -> tuple[Any, ...]:
    """`decode`'s result in `decode_fields`'s shape: (event_type, *the dataclass's fields)
    or ("rejected", reason, detail, event_type)."""
    result = decode(raw)
    if isinstance(result, Rejection):
        return ("rejected", result.reason, result.detail, result.event_type)
    return (result.event_type, *(getattr(result, f.name) for f in fields(result)))


def comparable(result: tuple[Any, ...]) -> tuple[Any, ...]:
    """Each item with its type (an int is not a float, a bool not an int), floats by their
    bits (-0.0 is not 0.0). The detail of not_json is the parser's own text: the Rust
    parser's equals orjson's for a record cut short ("unexpected end of data" at the same
    place: the generator's truncated lines, nearly every prefix of a record), but mostly
    not for a wrong byte inside one (orjson: "unexpected character, expected ',' or '}'",
    the Rust parser: "expected ',' or '}' after object value"), so only its length counts."""
    if result[:2] == ("rejected", "not_json"):
        assert isinstance(result[2], str) and len(result[2]) <= 200, result
        result = (*result[:2], "(not_json detail)", *result[3:])
    return tuple((type(x).__name__, struct.pack(">d", x).hex() if type(x) is float else x)
                 for x in result)


def differs(raw: bytes) -> str | None:
    """None if both decoders agree on `raw`, else what each gives."""
    want, got = python_fields(raw), decode_fields(raw)
    if comparable(got) == comparable(want):
        return None
    return f"{raw[:300]!r}\n  python: {want}\n  engine: {got}"


def assert_agree(raw: bytes) -> None:
    problem = differs(raw)
    assert problem is None, problem


# --- the case builders' cases ---------------------------------------------------------------

@cache
def _lines() -> list[bytes]:
    return codec_cases.generated_lines()


@cache
def _bases() -> dict[str, dict[str, Any]]:
    return codec_cases.bases(_lines())


def _check_all(cases: list[tuple[str, bytes]]) -> None:
    assert cases
    problems = [f"{name}: {problem}" for name, raw in cases
                if (problem := differs(raw)) is not None]
    assert not problems, f"{len(problems)} of {len(cases)} differ:\n" + "\n".join(problems[:20])


def test_every_record_case() -> None:
    # All of them: every generated line and prefix, every field's every edge value.
    _check_all(list(codec_cases.record_cases(_lines())))


def test_every_time_case_in_a_record() -> None:
    credit = _bases()["credit_report"]
    repayment = _bases()["repayment"]
    cases = []
    for name, value in codec_cases.time_cases():
        cases.append((f"occurred_at/{name}", record(credit, occurred_at=value).encode()))
        cases.append((f"paid_at/{name}", record(repayment, paid_at=value).encode()))
    _check_all(cases)


def test_every_date_case_in_a_record() -> None:
    repayment = _bases()["repayment"]
    _check_all([(f"due_date/{name}", record(repayment, due_date=value).encode())
                for name, value in codec_cases.date_cases()])


def test_comparison_is_exact() -> None:
    """The comparison itself: floats by their bits, types kept."""
    assert comparable(("x", 0.0)) != comparable(("x", -0.0))
    assert comparable(("x", 1)) != comparable(("x", 1.0))
    assert comparable(("x", 1)) != comparable(("x", True))
    assert comparable(("rejected", "not_json", "a", None)) == comparable(
        ("rejected", "not_json", "b", None))
    assert comparable(("rejected", "schema", "a", None)) != comparable(
        ("rejected", "schema", "b", None))
    event = decode_fields(record(_bases()["credit_report"], total_debt=Raw("-0.0")).encode())
    assert event[0] == "credit_report" and struct.pack(">d", event[9]) == struct.pack(">d", -0.0)


# --- Hypothesis -----------------------------------------------------------------------------

_SETTINGS = settings(max_examples=200, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
_FIELDS = sorted({f for base in BASES.values() for f in base}
                 | {f for names in codec_cases.FIELDS.values() for f in names}
                 | {"schema_version", "event_type", "region", "x"})
# Edge values as JSON text (a `Raw`) or Python values (dumped as JSON).
_EDGES = st.sampled_from([*codec_cases.GENERIC, *codec_cases.INTEGERS, *codec_cases.NUMBERS,
                          *codec_cases.TIMES, *codec_cases.DATES, *codec_cases.ODD_STRINGS,
                          *codec_cases.ODD_VALUES, *codec_cases.VERSIONS,
                          *codec_cases.REGIONS])
_BYTES = b'{}[],:"\\ \t\n0123456789.eE+-tfnulrsa\xff\xc3\xa9\x00\x1f'


@st.composite
def _events(draw: st.DrawFn) -> bytes:
    """A valid event (the generator's, or tests/unit/codec_samples.py's with offsets and
    fractions of a second) with up to three fields changed, added or removed."""
    bases = {**{f"test_codec/{k}": v for k, v in BASES.items()}, **_bases()}
    base = bases[draw(st.sampled_from(sorted(bases)))]
    changes = draw(st.lists(st.tuples(st.sampled_from(_FIELDS),
                                      st.just(MISSING) | _EDGES | json_values), max_size=3))
    return record(base, **dict(changes)).encode("utf-8", "surrogatepass")


@st.composite
def _damaged(draw: st.DrawFn, records: st.SearchStrategy[bytes]) -> bytes:
    """`records` with up to three bytes changed, inserted or removed."""
    line = bytearray(draw(records))
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(("set", "insert", "delete")))
        at = draw(st.integers(0, max(len(line) - 1, 0)))
        byte = draw(st.sampled_from(_BYTES) | st.integers(0, 255))
        if op == "insert":
            line.insert(at, byte)
        elif line and op == "set":
            line[at] = byte
        elif line:
            del line[at]
    return bytes(line)


@_SETTINGS
@given(st.binary(max_size=300) | st.binary(max_size=16).map(lambda b: b * 20))
def test_random_bytes(raw: bytes) -> None:
    assert_agree(raw)


@settings(_SETTINGS, max_examples=150)
@given(json_values.map(orjson.dumps)
       | st.dictionaries(st.sampled_from(_FIELDS) | st.text(max_size=8), json_values | _EDGES,
                         max_size=8).map(lambda obj: record(obj).encode("utf-8", "surrogatepass")))
def test_random_json(raw: bytes) -> None:
    assert_agree(raw)


@_SETTINGS
@given(_events())
def test_events_with_fields_changed(raw: bytes) -> None:
    assert_agree(raw)


@_SETTINGS
@given(_damaged(_events() | st.sampled_from(_lines())))
def test_damaged_records(raw: bytes) -> None:
    assert_agree(raw)


@settings(_SETTINGS, max_examples=50)
@given(seed=st.integers(0, 2**32 - 1), users=st.integers(1, 20), days=st.integers(1, 40),
       malformed_share=st.sampled_from([0.0, 0.01, 0.2, 1.0]))
def test_generated_logs(seed: int, users: int, days: int, malformed_share: float) -> None:
    out = io.BytesIO()
    generate_log(out, seed=seed, users=users, days=days, malformed_share=malformed_share)
    for line in out.getvalue().splitlines(keepends=True):
        assert_agree(line)


@pytest.mark.parametrize("raw", [
    pytest.param(b"", id="empty"),
    pytest.param(b"\xff" * 70_000, id="oversize"),
    pytest.param(b'{"event_type":' + b"[" * 1023 + b"]" * 1023 + b"}", id="deep-type"),
])
def test_odd_records(raw: bytes) -> None:
    assert_agree(raw)

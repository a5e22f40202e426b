"""Write tests/data/codec.jsonl: records and what Python's `streams.codec.decode` makes of them.

Run from the repository with the project's Python (it needs `streams` importable):

    .venv/bin/python engine/tests/gen_codec.py            # writes the fixture
    .venv/bin/python engine/tests/gen_codec.py --tables   # prints codec.rs's Unicode tables
    .venv/bin/python engine/tests/gen_codec.py --large --output /tmp/big.jsonl
        # a larger run elsewhere: CODEC_FIXTURE=/tmp/big.jsonl cargo test --test codec

The cases are tests/codec_cases.py's: tests/unit/test_engine_codec.py decodes all of them with
both decoders at test time; this fixture, for `cargo test` without Python, keeps every edge
case (of a field's edge values, one of each that the checks treat alike) and a sample of
the random ones (`--generated`, `--prefix-step`, `--damaged`, `--random`; `--large` for
every field value, generated line and prefix, and many random cases). `tests/codec.rs`
decodes every record with the Rust port and compares. One JSON object a line:

    {"case": "<kind/name>", "raw": <bytes>, "want": <result>}
    {"case": "time/...", "time": "<str>", "want": {"ok": "<bits>"} | {"err": "<detail>"}}
    {"case": "date/...", "date": "<str>", "want": ...}

<bytes> is a string (its UTF-8) or a list of pieces, concatenated: a string; {"b64":
"<base64>"} (bytes that are not UTF-8); {"repeat": <piece>, "times": n}; ["<case>", i, j]
(bytes i..j of an earlier case's record: most records are one of the "base/..." records
with a field changed, or a prefix of one).

A result is what `streams._engine.decode_fields` gives: [event_type, *the dataclass's
fields in order] (floats as their 64 bits in hex, "0x...", so they compare exactly) or
["rejected", reason, detail, event_type]. It is `decode`'s result, and also what orjson
and the full checks (`_decode_checked`) give without msgspec's fast path: the script stops
if the two differ on any record (the fast path may only take a shortcut to the same
result).

Deterministic: the generator's seed and the cases' are fixed; the same Python and
packages give the same file.
"""

from __future__ import annotations

import argparse
import base64
import json
import struct
import sys
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: `tests`
from streams import codec
from streams.codec import Rejection, decode
from tests import codec_cases

HERE = Path(__file__).resolve().parent
OUT = HERE / "data" / "codec.jsonl"
CODEC_RS = HERE.parent / "src" / "codec.rs"

# --- the Unicode tables in codec.rs -------------------------------------------------------

def _ranges(pred: Any) -> list[tuple[int, int]]:
    out, start = [], None
    for c in range(0x110000):
        if pred(chr(c)):
            if start is None:
                start = c
        elif start is not None:
            out.append((start, c - 1))
            start = None
    if start is not None:
        out.append((start, 0x10FFFF))
    return out


def _rust_table(name: str, doc: str, ranges: list[tuple[int, int]]) -> str:
    lines = [f"/// {doc}", "#[rustfmt::skip]", f"const {name}: [(u32, u32); {len(ranges)}] = ["]
    row = "   "
    for a, b in ranges:
        item = f" (0x{a:X}, 0x{b:X}),"
        if len(row) + len(item) > 96:
            lines.append(row)
            row = "   "
        row += item
    lines += [row, "];"]
    return "\n".join(lines) + "\n"


def tables() -> str:
    import unicodedata
    version = unicodedata.unidata_version
    return (_rust_table("NOT_PRINTABLE", f"Code points for which Python 3.11's `str.isprintable()`"
                        f" is false (Unicode {version}).",
                        _ranges(lambda c: not c.isprintable()))
            + "\n"
            + _rust_table("DECIMAL", f"Code points for which Python 3.11's `str.isdecimal()` is"
                          f" true (Unicode {version}): what `\\d` matches in a `str` pattern.",
                          _ranges(str.isdecimal)))


# --- results ------------------------------------------------------------------------------

def _bits(x: float) -> str:
    return "0x" + struct.pack(">d", x).hex()


def result(r: Any) -> list[Any]:
    """What `streams._engine.decode_fields` gives: [event_type, *fields] (floats as their
    bits) or ["rejected", reason, detail, event_type]."""
    if isinstance(r, Rejection):
        return ["rejected", r.reason, r.detail, r.event_type]
    assert is_dataclass(r)
    out: list[Any] = [r.event_type]
    for f in fields(r):
        v = getattr(r, f.name)
        assert v is None or type(v) in (str, int, float), (f.name, v)
        out.append(_bits(v) if type(v) is float else v)
    return out


def checked(raw: bytes) -> Any:
    """`decode` without msgspec's fast path: orjson, then the full checks."""
    if len(raw) > codec.MAX_RECORD_BYTES:
        return decode(raw)
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        message = str(exc)
        if "not valid UTF-8" in message:
            return Rejection("not_utf8", "record is not valid UTF-8")
        return Rejection("not_json", message[:200])
    if not isinstance(obj, dict):
        return Rejection("not_object", f"a JSON {type(obj).__name__} is not an event object")
    return codec._decode_checked(obj)


def field_key(name: str, got: Any) -> tuple[str, str, str]:
    """For "field/<base>/<field>/<i>": the field, its value's JSON type (a number written
    as an integer or not), and the rejection's detail or the field's value in the event."""
    _, _, field, i = name.split("/")
    value = codec_cases.field_values(field)[int(i)]
    if value is codec_cases.MISSING:
        kind = "missing"
    elif isinstance(value, codec_cases.Raw):
        number = "integer" if value.lstrip("-").isdigit() else "float"
        kind = {"n": "null", "t": "bool", "f": "bool", "[": "array", "{": "object",
                "\"": "string"}.get(value[0], number)
    else:
        kind = "string"
    if isinstance(got, Rejection):
        return field, kind, f"{got.reason}: {got.detail}"
    read = getattr(got, field)
    return field, kind, _bits(read) if type(read) is float else repr(read)


def parsed(parse: Any, value: str) -> dict[str, str]:
    try:
        return {"ok": _bits(parse(value, "n"))}
    except codec._Invalid as exc:
        return {"err": str(exc).removeprefix("n: ")}


# --- the records, compactly ---------------------------------------------------------------

MIN_COPY = 24  # bytes shared with a base record worth a "copy" piece
MIN_RUN = 24  # bytes of a repeated unit worth a "repeat" piece


def encode(raw: bytes, bases: dict[str, bytes]) -> Any:
    """`raw` as the fixture writes it: copies of a base's start and end, repeats, text."""
    best = (0, "", 0, 0)
    for name, base in bases.items():
        start = _common(raw, base)
        end = _common(raw[start:][::-1], base[start:][::-1])
        if start + end > best[0]:
            best = (start + end, name, start, end)
    pieces: list[Any] = []
    shared, name, start, end = best
    if shared < MIN_COPY:
        start = end = 0
    elif raw[start:start + 1] not in (b"", b",", b"}"):  # a changed value whole
        start = max(raw.rfind(b":", 0, start), raw.rfind(b",", 0, start)) + 1
    if end:
        stops = [i for i in (raw.find(b",", len(raw) - end), raw.find(b"}", len(raw) - end))
                 if i >= 0]
        end = len(raw) - min(stops) if stops else 0
    if start:
        pieces.append([name, 0, start])
    pieces += _literal(raw[start:len(raw) - end])
    if end:
        pieces.append([name, len(bases[name]) - end, len(bases[name])])
    if not pieces:
        return ""
    return pieces[0] if len(pieces) == 1 and isinstance(pieces[0], str) else pieces


def decoded(raw: Any, records: dict[str, bytes]) -> bytes:
    """The bytes `encode` wrote as `raw` (as tests/codec.rs reads them)."""
    if isinstance(raw, str):
        return raw.encode()
    if isinstance(raw, dict):
        if "b64" in raw:
            return base64.b64decode(raw["b64"])
        return decoded(raw["repeat"], records) * raw["times"]
    if len(raw) == 3 and isinstance(raw[0], str) and isinstance(raw[1], int):
        return records[raw[0]][raw[1]:raw[2]]
    return b"".join(decoded(piece, records) for piece in raw)


def _common(a: bytes, b: bytes) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _literal(data: bytes) -> list[Any]:
    pieces: list[Any] = []
    text = bytearray()
    i = 0
    while i < len(data):
        unit, times = _run(data, i)
        if unit * times >= MIN_RUN:
            pieces += _text(bytes(text))
            text.clear()
            (piece,) = _text(data[i:i + unit])
            pieces.append({"repeat": piece, "times": times})
            i += unit * times
        else:
            text.append(data[i])
            i += 1
    return pieces + _text(bytes(text))


def _run(data: bytes, i: int) -> tuple[int, int]:
    """The unit length (1 to 8 bytes) and count of the longest repetition at `i`."""
    best = (1, 1)
    for unit in range(1, 9):
        piece = data[i:i + unit]
        if len(piece) < unit:
            break
        times = 1
        while data[i + times * unit:i + (times + 1) * unit] == piece:
            times += 1
        if unit * times > best[0] * best[1]:
            best = (unit, times)
    return best


def _text(data: bytes) -> list[Any]:
    """UTF-8 runs as strings, the rest as base64."""
    pieces: list[Any] = []
    while data:
        try:
            pieces.append(data.decode("utf-8"))
            break
        except UnicodeDecodeError as exc:
            if exc.start:
                pieces.append(data[:exc.start].decode("utf-8"))
            bad = data[exc.start:exc.end]
            if pieces and isinstance(pieces[-1], dict):
                bad = base64.b64decode(pieces.pop()["b64"]) + bad
            pieces.append({"b64": base64.b64encode(bad).decode()})
            data = data[exc.end:]
    return pieces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", action="store_true", help="print codec.rs's tables")
    parser.add_argument("--generated", type=int, default=50,
                        help="the generator's first lines kept (and every rejected one)")
    parser.add_argument("--prefix-step", type=int, default=3,
                        help="every n-th prefix of a record of each type")
    parser.add_argument("--damaged", type=int, default=100, help="randomly damaged records")
    parser.add_argument("--random", type=int, default=100,
                        help="random times and dates of each kind")
    parser.add_argument("--large", action="store_true",
                        help="every field value, generated line and prefix, 100,000 damaged "
                             "records and 5,000 random times and dates of each kind")
    parser.add_argument("--output", type=Path, default=OUT)
    args = parser.parse_args()
    if args.tables:
        sys.stdout.write(tables())
        return
    if tables() not in CODEC_RS.read_text(encoding="utf-8"):
        sys.exit("codec.rs's Unicode tables are not what this Python has: "
                 "replace them with the output of --tables")
    if args.large:
        args.generated, args.prefix_step, args.damaged, args.random = None, 1, 100_000, 5_000

    cases: list[dict[str, Any]] = []
    seen: set[bytes] = set()
    bases: dict[str, bytes] = {}
    differ: list[str] = []
    field_results: set[tuple[str, str, str]] = set()

    def add(name: str, raw: bytes) -> None:
        if raw in seen:
            return
        got = decode(raw)
        if name.startswith("field/") and not args.large:
            # A field's values that the checks treat alike (the same JSON type, and the
            # same rejection or the same value read: `field_key`) are written once, from
            # the first base record that has the field; tests/unit/test_engine_codec.py tries
            # them all.
            key = field_key(name, got)
            if key in field_results:
                return
            field_results.add(key)
        seen.add(raw)
        want = result(got)
        if result(checked(raw)) != want:
            differ.append(f"{name}: {raw[:200]!r}\n  decode:  {want}\n"
                          f"  checked: {result(checked(raw))}")
        cases.append({"case": name, "raw": encode(raw, bases), "want": want})
        assert decoded(cases[-1]["raw"], bases) == raw, name

    lines = codec_cases.generated_lines()
    for kind, obj in codec_cases.bases(lines).items():
        raw = codec_cases.record(obj).encode()
        add(f"base/{kind}", raw)
        bases[f"base/{kind}"] = raw
    for name, raw in codec_cases.record_cases(
            lines, generated=args.generated, prefix_step=args.prefix_step,
            damaged=args.damaged, random_times=args.random):
        add(name, raw)
    for name, value in codec_cases.time_cases(random_times=args.random, digits=args.random,
                                              ranges=args.random):
        cases.append({"case": f"time/{name}", "time": value,
                      "want": parsed(codec._time_value, value)})
    for name, value in codec_cases.date_cases(random_dates=args.random):
        cases.append({"case": f"date/{name}", "date": value,
                      "want": parsed(codec._date_value, value)})
    if differ:
        sys.exit("decode and its full checks differ (the fast path decides these "
                 "differently):\n" + "\n".join(differ))

    args.output.parent.mkdir(parents=True, exist_ok=True)
    with args.output.open("w", encoding="utf-8") as out:
        for case in cases:
            out.write(json.dumps(case, ensure_ascii=False, separators=(",", ":")) + "\n")
    kinds: dict[str, int] = {}
    for case in cases:
        key = case["case"].split("/")[0]
        kinds[key] = kinds.get(key, 0) + 1
    print(f"{len(cases)} cases, {args.output.stat().st_size:,} bytes, to {args.output}: "
          f"{kinds}", file=sys.stderr)


if __name__ == "__main__":
    main()

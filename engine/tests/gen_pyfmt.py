"""Write tests/data/pyfmt.tsv: Python's own output for what src/pyfmt.rs reproduces.

Run with the project's interpreter (CPython 3.11, orjson 3.13), from anywhere:

    .venv/bin/python engine/tests/gen_pyfmt.py            # the committed fixture
    .venv/bin/python engine/tests/gen_pyfmt.py --scale 200 --out /tmp/big.tsv
    PYFMT_FIXTURE=/tmp/big.tsv cargo test --test pyfmt    # a bigger one-off check

Each row is `function <TAB> input <TAB> expected`. Floats are given as the hex
of their IEEE-754 bits (big-endian) so they are exact; strings as the hex of
their UTF-8. `ERROR` as expected means Python raises: the Rust side must then
only not panic. The values are edge cases plus random ones from a fixed seed.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import random
import struct
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from streams.events import format_date, format_time

EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
FIRST_SECOND = int(datetime(1, 1, 1, tzinfo=UTC).timestamp())  # -62135596800
END_SECOND = int(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()) + 1


def bits(x: float) -> str:
    return struct.pack(">d", x).hex()


def from_bits(n: int) -> float:
    return float(struct.unpack(">d", struct.pack(">Q", n))[0])


def floats(text: str) -> list[float]:
    """Whitespace-separated float literals (`inf`, `nan` included)."""
    return [float(word) for word in text.split()]


def neighbours(x: float, n: int = 1) -> list[float]:
    """x and the n doubles either side of it."""
    out = [x]
    up = down = x
    for _ in range(n):
        up = math.nextafter(up, math.inf)
        down = math.nextafter(down, -math.inf)
        out += [up, down]
    return out


def random_double(rng: random.Random) -> float:
    """Uniform over bit patterns, so over all magnitudes (and some NaN/inf)."""
    return from_bits(rng.getrandbits(64))


def human(rng: random.Random) -> float:
    """A value such as an amount or a ratio: few digits, moderate size."""
    x = rng.uniform(-1, 1) * 10 ** rng.randint(-9, 18)
    if rng.random() < 0.5:
        x = round(x, rng.randint(0, 9))
    return float(x)


def float_cases(rng: random.Random, scale: int) -> list[float]:
    """Edge cases for repr / 'g' / orjson, plus random doubles."""
    xs = floats("""
        0.0 -0.0 inf -inf nan 5e-324 -5e-324 1e-323 2.2250738585072014e-308
        2.225073858507201e-308 1.7976931348623157e308 1.0 -1.0 0.1 0.2 0.3 100.0
        1700000000.0 1.5e-7 1e21 1e22 1e23 9007199254740992.0 9007199254740993.0
        4503599627370496.5 9999999999999998.0 999999999999999.9 1234567890123456.7
        123456789012345.67 0.00001 0.0001 0.00009999999999999999 0.000099999 0.0000099999
        1.2345678901234568e20 12345678901234567890.0 1.5e16 1.5e15 1e-7 999999.5 999999.4
        999999.6 99999.95 9.9999995e-05 9.999995e-05 0.000123456789 123456.5 123457.5
        1234565.0 1234575.0 0.5 2.5 1e100 1e-100 1e300 1e-300 123e-320
    """)
    xs += [1 / 3, 2 / 3, math.pi, math.e, -math.pi * 1e10]
    for k in range(-325, 309):
        xs.append(float(f"1e{k}"))
    for k in range(-9, 24):
        for m in (1.0, 1.5, 9.5, 9.99, 9.999999, 9.9999999999, 1.2345678901234567):
            xs += neighbours(m * 10.0**k)
    for k in range(-60, 80):
        xs += neighbours(2.0**k)
    for _ in range(120 * scale):
        xs.append(random_double(rng))
    for _ in range(120 * scale):
        xs.append(human(rng))
    for _ in range(20 * scale):
        xs.append(from_bits(rng.getrandbits(52)))  # subnormal
        xs.append(-from_bits(rng.getrandbits(52)))
    return xs


def g_ties(rng: random.Random, count: int) -> list[float]:
    """Doubles whose exact value has 7 significant digits ending in 5: a tie
    when rounded to 6 digits. N * 10**q with N = 5**k * odd, -k <= q <= 8."""
    out: list[float] = []
    while len(out) < count:
        k = rng.randint(1, 10)
        n = 5**k * rng.randrange(1, 10_000_000 // 5**k + 1, 2)
        if not 1_000_000 <= n < 10_000_000:
            continue
        q = rng.randint(-k, 8)
        x = float(n * 10**q) if q >= 0 else n / 10**-q  # exact: a dyadic rational
        out += [x, -x]
    return out


def round_cases(rng: random.Random, scale: int) -> list[tuple[float, int]]:
    cases = []
    fixed = floats("""
        2.675 1.0005 0.125 0.375 2.5 0.5 1.5 -0.5 -2.5 0.285 1.005 -0.4 -0.0 0.0 5e-324
        -5e-324 1e-7 -1e-7 1e300 -1e300 1e16 4503599627370495.5 2251799813685247.75
        1000000000000000.5 999999.9999995 0.0000005 0.0000015 1.7976931348623157e308 inf
        -inf nan 1700000000.123456789 12345.678949999999 0.045 0.055 1.45 2.345 -1.0005
        99.995 0.00049999
    """)
    for x in fixed:
        for nd in range(0, 7):
            cases.append((x, nd))
    # Exact ties at nd places: odd / 2**(nd+1), any integer part.
    for _ in range(60 * scale):
        nd = rng.randint(0, 6)
        odd = rng.randrange(1, 2 ** rng.randint(1, 52), 2) | 1
        x = math.ldexp(odd, -(nd + 1))
        if rng.random() < 0.5:
            x = -x
        for y in neighbours(x):
            cases.append((y, nd))
    for _ in range(60 * scale):
        cases.append((human(rng), rng.randint(0, 6)))
    for _ in range(15 * scale):
        cases.append((random_double(rng), rng.randint(0, 6)))
    for _ in range(8 * scale):
        cases.append((human(rng), rng.randint(-4, -1)))
    # Negative ndigits, around ties and powers of ten (1e23 is just below 10**23).
    for x in floats("""
        5 15 25 50 500 5000 4999.999999 5e22 6e22 5e30 4.5 45 1.7976931348623157e308 0.5 150
        250 1e-300 1e22 1e23 1e100 5e-324
    """):
        for nd in (-1, -2, -3, -4, -22, -23, -24, -30, -100, -101, -308, -309, 324):
            cases.append((x, nd))
            cases.append((-x, nd))
    return cases


TRICKY_FRACTIONS = floats(
    "0.0005 0.9999995 0.0000005 0.4999995 0.5 0.9995 0.0015 0.1234565 0.0000015 0.999"
)


def time_cases(rng: random.Random, scale: int) -> list[float]:
    ts = floats("""
        0.0 -0.0 1e-7 -1e-7 5e-7 -5e-7 4.9999e-7 1.5e-6 -1.5e-6 0.0005 -0.0005 0.9999995
        -0.9999995 0.9999994 0.9999996 0.001 0.0001 0.000999 -0.001 1700000000.0
        1700000000.0005 1700000000.9999995 1700000000.0000005 1700000000.4999995
        1700000000.999 1700000000.9995 1700000000.0001 951782400.0 951868799.999999
        4102444800.0 -2208988800.0 -86400.0 -86399.5 -1.0 -0.5 86399.9999999 2147483648
        -2147483648 4294967296 9007199254.740992 9007199254.740993 4503599627.370496
        18014398509.481984 1e11 -1e11 1e12 -1e12 1e13 1e19 1e20 -1e20 9.3e18 -9.3e18 1e300
        -1e300 5e-324 -5e-324 inf -inf nan
    """)
    # The first and the last second datetime holds (0001-01-01, 9999-12-31).
    for offset in floats("0 0.5 -1e-7 -5e-7 -4e-7 -1"):
        ts.append(FIRST_SECOND + offset)
    for offset in floats("0 0.5 -1 -0.000001 -0.0000004 -0.0000005"):
        ts.append(END_SECOND + offset)
    for t in list(ts):
        if math.isfinite(t):
            ts += neighbours(t, 2)
    first, end = float(FIRST_SECOND), float(END_SECOND)
    year_1000 = datetime(1000, 1, 1, tzinfo=UTC).timestamp()
    year_9000 = datetime(9000, 1, 1, tzinfo=UTC).timestamp()
    for _ in range(100 * scale):
        ts.append(rng.uniform(year_1000, year_9000))
    for _ in range(40 * scale):
        ts.append(rng.uniform(first, end))
    for _ in range(40 * scale):
        ts.append(rng.uniform(-3e9, 5e9))
    for _ in range(20 * scale):
        # Fractions that land on or near a half microsecond.
        n = rng.randrange(-2_000_000_000, 5_000_000_000)
        f = rng.choice(TRICKY_FRACTIONS)
        for t in neighbours(n + f, 2):
            ts.append(t)
    for _ in range(20 * scale):
        # Exact ties: odd / 128 seconds is a whole microsecond plus a half.
        n = rng.randrange(-60_000_000_000, 250_000_000_000)
        ts.append(n + rng.randrange(1, 128, 2) / 128)
    for _ in range(30 * scale):
        # Around 2**53 microseconds, where the fraction has few bits left.
        ts.append(rng.uniform(2.0**52, 2.0**54) / 1e6 * rng.choice([1, -1]))
    for _ in range(10 * scale):
        ts.append(rng.uniform(1e11, 2.6e11))
    for _ in range(10 * scale):
        ts.append(random_double(rng))
    for _ in range(10 * scale):
        ts.append(float(rng.randrange(FIRST_SECOND, END_SECOND)))
    return ts


def string_cases(rng: random.Random, scale: int) -> list[str]:
    out = [chr(c) for c in range(0, 0x80)]
    out += ["", "plain", 'say "hi"', "back\\slash", "a/b", "\u2028\u2029", "\u0085", "\ufeff"]
    out += ["é", "日本語", "\U0001f600", "\x7f\x80\xff", "tab\there\nnew\r", "\x00\x1f\x20"]
    out += ["\\u0000", "\ud7ff\ue000\uffff", "\U0010ffff"]
    alphabet = [chr(c) for c in range(0, 0x80)]
    alphabet += list("éß\u2028\u00a0€日\U0001f600\ufffd\u0300\x85\x9f")
    for _ in range(15 * scale):
        out.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 24))))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=2, help="random cases multiplier")
    parser.add_argument("--seed", type=int, default=20260509)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent / "data" / "pyfmt.tsv"
    )
    args = parser.parse_args()
    rng = random.Random(args.seed)
    rows: list[tuple[str, str, str]] = []

    floats = float_cases(rng, args.scale)
    for x in floats:
        rows.append(("repr", bits(x), repr(x)))
    for x in floats + g_ties(rng, 100 * args.scale):
        rows.append(("g", bits(x), format(x, "g")))
    for x in floats:
        rows.append(("json_float", bits(x), orjson.dumps(x).decode()))

    for x, nd in round_cases(rng, args.scale):
        try:
            expected = bits(round(x, nd))
        except OverflowError:
            expected = "ERROR"
        rows.append(("round", f"{bits(x)}:{nd}", expected))

    for s in string_cases(rng, args.scale):
        rows.append(("json_str", s.encode().hex(), orjson.dumps(s).hex()))

    times = time_cases(rng, args.scale)
    for t in times:
        try:
            expected = format_time(t)
        except (ValueError, OverflowError, OSError):
            expected = "ERROR"
        rows.append(("time", bits(t), expected))
    for t in times[::3]:
        try:
            expected = format_date(t)
        except (ValueError, OverflowError, OSError):
            expected = "ERROR"
        rows.append(("date", bits(t), expected))

    first_day = date(1, 1, 1).toordinal() - EPOCH_ORDINAL
    last_day = date(9999, 12, 31).toordinal() - EPOCH_ORDINAL
    days = [
        first_day,
        last_day,
        0,
        -1,
        1,
        59,
        60,
        -719162 + 58,
        11016,
        11017,
        11047,
        -25509,
        -25508,
        157036,
        157037,
    ]
    days += [rng.randint(first_day, last_day) for _ in range(100 * args.scale)]
    for y in (1, 4, 100, 200, 400, 1600, 1700, 1900, 2000, 2100, 2400, 9996, 9999):
        for m, d in ((1, 1), (2, 28), (2, 29), (3, 1), (12, 31)):
            with contextlib.suppress(ValueError):
                days.append(date(y, m, d).toordinal() - EPOCH_ORDINAL)
    for n in days:
        dt = date.fromordinal(n + EPOCH_ORDINAL)
        rows.append(("days_to_civil", str(n), f"{dt.year}-{dt.month}-{dt.day}"))
        rows.append(("civil_to_days", f"{dt.year}-{dt.month}-{dt.day}", str(n)))

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8", newline="\n") as f:
        f.write(
            f"# written by tests/gen_pyfmt.py (CPython {sys.version.split()[0]}, "
            f"orjson {orjson.__version__}, seed {args.seed}, scale {args.scale})\n"
        )
        f.write("# function\tinput\texpected\n")
        for row in rows:
            f.write("\t".join(row) + "\n")
    print(f"{len(rows)} rows -> {args.out}")


if __name__ == "__main__":
    main()

"""Replay, backtest and generate through the console script, and properties of replay."""

from __future__ import annotations

import gzip
import io
import json
import os
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams import _engine
from streams.codec import Rejection, decode
from streams.compiled import compiled_policy
from streams.errors import ConfigError
from streams.generate import generate_log
from streams.policy import load_policy
from streams.replay import compiled, open_log
from tests.factories import application, day, encode, repayment, report
from tests.helpers import CLI, ROOT, cli, stricter_policy, usage_error

POLICY = load_policy()


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("logs") / "log.jsonl"
    with path.open("wb") as out:
        generate_log(out, seed=3, users=1500, days=150, malformed_share=0.01)
    return path


def lines_of(data: bytes) -> list[dict]:
    return [json.loads(x) for x in data.splitlines()]


def test_replay_cli_outputs_decisions_and_accounts_for_every_line(log: Path, tmp_path: Path):
    dead = tmp_path / "dead.jsonl"
    result = cli("replay", str(log), "--dead-letter", str(dead))
    assert result.returncode == 0, result.stderr
    decisions = lines_of(result.stdout)
    assert {d["action"] for d in decisions} == {"warn", "downgrade", "close", "restore"}
    codes = {r["code"] for d in decisions for r in d["reasons"]}
    assert {"OVERDUE", "DATA_CORRECTION", "CURED", "MULTI_LENDER"} <= codes
    rejected = lines_of(dead.read_bytes())
    total = sum(1 for line in log.read_bytes().splitlines() if line.strip())
    stderr = result.stderr.decode()
    summary = stderr.splitlines()[0]
    assert summary.startswith(f"events read {total:,}:"), stderr
    assert "UNACCOUNTED" not in stderr
    assert f"rejected {len(rejected):,}" in summary
    # every rejected line names its line number, and that line really is invalid
    raw_lines = log.read_bytes().splitlines()
    for r in rejected:
        assert r["source"] == str(log)
        raw = raw_lines[r["line"] - 1]
        assert isinstance(decode(raw), Rejection)
        assert r["reason"] and r["detail"]


def test_replay_is_byte_for_byte_deterministic(log: Path):
    first, second = cli("replay", str(log)), cli("replay", str(log))
    assert first.returncode == second.returncode == 0
    assert first.stdout == second.stdout and first.stdout


def test_replay_reads_gzip_and_stdin_alike(log: Path, tmp_path: Path):
    gz = tmp_path / "log.jsonl.gz"
    gz.write_bytes(gzip.compress(log.read_bytes()))
    plain = cli("replay", str(log)).stdout
    assert cli("replay", str(gz)).stdout == plain
    assert cli("replay", "-", stdin=log.read_bytes()).stdout == plain


def test_replay_of_logs_split_by_type_equals_the_mixed_log(log: Path, tmp_path: Path):
    by_type: dict[str, list[bytes]] = {}
    for line in log.read_bytes().splitlines():
        ev = decode(line)
        by_type.setdefault(getattr(ev, "event_type", "bad"), []).append(line)
    paths = []
    for kind, lines in by_type.items():
        path = tmp_path / f"{kind}.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        paths.append(str(path))
    mixed = cli("replay", str(log)).stdout
    split = cli("replay", *paths).stdout
    assert sorted(split.splitlines()) == sorted(mixed.splitlines())


def test_decisions_match_the_decision_schema(log: Path):
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((ROOT / "schemas/decision.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    for d in lines_of(cli("replay", str(log)).stdout):
        errors = list(validator.iter_errors(d))
        assert not errors, (d, errors[0].message)


def test_bad_arguments_exit_non_zero_with_one_line(tmp_path: Path):
    result = cli("replay", str(tmp_path / "missing.jsonl"))
    assert result.returncode == 2
    assert result.stderr.decode().strip().count("\n") == 0
    assert "missing.jsonl" in result.stderr.decode()


def _one_line_error(result: subprocess.CompletedProcess[bytes], *parts: str) -> str:
    assert result.returncode == 2, result.stderr
    message = result.stderr.decode()
    assert message.count("\n") == 1 and message.startswith("closure-monitor: "), message
    for part in parts:
        assert part in message, message
    return message


def test_an_output_that_is_the_log_is_refused_and_the_log_kept(log: Path, tmp_path: Path):
    copy = tmp_path / "in.jsonl"
    copy.write_bytes(log.read_bytes())
    for flags in (["-o", str(copy)], ["-o", "/dev/null", "--dead-letter", str(copy)],
                  ["-o", str(tmp_path / "x" / ".." / "in.jsonl")],
                  ["--metrics", str(copy)]):
        _one_line_error(cli("replay", str(copy), *flags), "is the log being read")
        assert copy.read_bytes() == log.read_bytes()


def test_one_file_for_two_outputs_is_refused(log: Path, tmp_path: Path):
    same = tmp_path / "same.jsonl"
    _one_line_error(cli("replay", str(log), "-o", str(same), "--dead-letter", str(same)),
                    "--dead-letter", "is also --output's file")
    assert not same.exists()
    # A device takes any number of writers.
    assert cli("replay", str(log), "-o", "/dev/null", "--dead-letter", "/dev/null"
               ).returncode == 0


def test_an_unwritable_output_is_found_before_any_output_is_opened(log: Path, tmp_path: Path):
    kept = tmp_path / "decisions.jsonl"
    kept.write_bytes(b"earlier decisions\n")
    _one_line_error(cli("replay", str(log), "-o", str(kept), "--dead-letter",
                        str(tmp_path / "missing" / "dead.jsonl")), "--dead-letter",
                    "cannot write there")
    assert kept.read_bytes() == b"earlier decisions\n"


def test_devices_and_writable_files_are_outputs_for_any_user(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch):
    # As an unprivileged user sees it: /dev and a read-only folder are not writable,
    # /dev/null and a 0666 file in that folder are. (Root may write anywhere.)
    from streams import cli as cli_module

    out = tmp_path / "out.jsonl"
    out.touch()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: (
        not os.path.isdir(path) and real_access(path, mode)))
    cli_module._check_logs([], [("--output", "/dev/null"), ("--dead-letter", "/dev/null"),
                                ("--metrics", str(out))])
    with pytest.raises(ConfigError, match="cannot write there"):
        cli_module._check_logs([], [("--output", str(tmp_path / "new.jsonl"))])


def test_metrics_never_replace_a_device_or_pipe(log: Path, tmp_path: Path):
    # The metrics file is written by replacing it: as root, --metrics /dev/null would
    # have put a regular file in /dev/null's place. A pipe stands in for the device.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    _one_line_error(cli("replay", str(log), "--jobs", "1", "--metrics", str(fifo)),
                    "--metrics", "must be a regular file")
    assert stat.S_ISFIFO(fifo.stat().st_mode)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_is_one_line(log: Path):
    _one_line_error(cli("replay", str(log), "--jobs", "1", "-o", "/dev/full"),
                    "/dev/full: cannot write")
    _one_line_error(cli("generate", "--users", "300", "-o", "/dev/full"),
                    "/dev/full: cannot write")


@pytest.mark.parametrize("jobs", ["1", "2", "3"])
def test_a_cut_gzip_log_stops_with_one_line_after_what_it_held(log: Path, tmp_path: Path,
                                                              jobs: str):
    data = gzip.compress(log.read_bytes())
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out.jsonl"
    message = _one_line_error(cli("replay", str(cut), "--jobs", jobs, "-o", str(out)),
                              str(cut), "unreadable after line")
    full = cli("replay", str(log), "--jobs", jobs).stdout.splitlines()
    written = out.read_bytes().splitlines()
    # What came before is decided and written, in order, for any number of jobs.
    assert written and written == full[: len(written)]
    assert int(message.split("after line ")[1].split(":")[0].replace(",", "")) > 0
    junk = tmp_path / "junk.jsonl.gz"
    junk.write_bytes(b"\x1f\x8b" + b"not gzip at all")
    _one_line_error(cli("replay", str(junk), "--jobs", jobs), str(junk), "after line 0")


def test_a_pipe_is_read_once_by_one_process(log: Path):
    # As bash's <(zcat log.gz) hands it over: a path that is no regular file.
    read, write = os.pipe()
    with subprocess.Popen([CLI, "replay", f"/dev/fd/{read}", "--jobs", "2"], pass_fds=[read],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        os.close(read)

        def feed() -> None:
            with os.fdopen(write, "wb") as pipe:
                pipe.write(log.read_bytes())

        feeder = threading.Thread(target=feed)  # while communicate reads the output
        feeder.start()
        out, err = proc.communicate(timeout=120)
        feeder.join()
    assert proc.returncode == 0, err
    assert out == cli("replay", str(log), "--jobs", "2").stdout


class _Trickle(io.RawIOBase):
    """A pipe that hands over one byte first, then the rest."""

    def __init__(self, data: bytes) -> None:
        self.parts = [data[:1], data[1:]]

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while self.parts and not self.parts[0]:
            self.parts.pop(0)
        if not self.parts:
            return 0
        part = self.parts[0]
        n = min(len(buffer), len(part))
        buffer[:n] = part[:n]
        self.parts[0] = part[n:]
        return n


def test_gzip_on_a_pipe_that_hands_over_one_byte_first(log: Path,
                                                       monkeypatch: pytest.MonkeyPatch):
    for data in (gzip.compress(log.read_bytes()), log.read_bytes()):
        stdin = io.BufferedReader(_Trickle(data))
        assert len(stdin.peek(2)) == 1  # as the pipe would have it
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(stdin))
        assert open_log("-").read() == log.read_bytes()


def test_gzip_on_stdin_is_read_as_gzip(log: Path):
    plain = cli("replay", str(log)).stdout
    assert cli("replay", "-", stdin=gzip.compress(log.read_bytes())).stdout == plain


def test_generate_checks_start_before_opening_its_output(tmp_path: Path):
    kept = tmp_path / "log.jsonl"
    kept.write_bytes(b"earlier log\n")
    usage_error(cli("generate", "--users", "20", "-o", str(kept), "--start", "2026-02-30"),
                 "generate", "--start", "'2026-02-30' is not a YYYY-MM-DD date")
    usage_error(cli("generate", "--users", "20", "-o", str(kept), "--start", "8999-12-01"),
                 "generate", "--start 8999-12-01", "within the years 1000 to 8999")
    assert kept.read_bytes() == b"earlier log\n"


REJECTED = (b'not json\n{"event_type": "loan_offer", "user_id": "u1"}\n\n'
            b'{"event_id": "r-1", "event_type": "repayment", "user_id": "u1"}\n')


@pytest.mark.parametrize("command", ["replay", "backtest"])
def test_a_log_of_nothing_but_rejected_lines_warns_and_exits_1(command: str, log: Path,
                                                               tmp_path: Path):
    """The wrong file, most likely: it says so, and the status says it to scripts; the
    run still ends as any other (dead letters written, the summary or report given).
    An empty log, or one with a line applied, is no such case."""
    bad = tmp_path / "not-events.jsonl"
    bad.write_bytes(REJECTED)
    dead = tmp_path / "dead.jsonl"
    flags = (["--dead-letter", str(dead)] if command == "replay"
             else ["--policy", str(ROOT / "deploy/policies/default.yaml")])
    result = cli(command, str(bad), *flags)
    assert result.returncode == 1, result.stderr
    stderr = result.stderr.decode().splitlines()
    assert stderr[-1].startswith("closure-monitor: warning: every one of the 3 lines read "
                                 "was rejected: is this a closure-monitor event log?"), stderr
    if command == "replay":
        assert result.stdout == b"" and stderr[0].startswith("events read 3:"), stderr
        assert [d["line"] for d in lines_of(dead.read_bytes())] == [1, 2, 4]
    else:
        assert "rejected 3" in result.stdout.decode()
    one = tmp_path / "one.jsonl"
    one.write_bytes(b"not json\n")
    result = cli(command, str(one), *flags)
    assert result.returncode == 1
    assert "the one line read was rejected" in result.stderr.decode()

    empty, blank, mixed = (tmp_path / name for name in ("empty", "blank", "mixed"))
    empty.write_bytes(b"")
    blank.write_bytes(b"\n  \n")
    mixed.write_bytes(REJECTED + log.read_bytes().splitlines(keepends=True)[0])
    for path in (empty, blank, mixed):
        result = cli(command, str(path), *flags)
        assert result.returncode == 0, result.stderr
        assert b"warning" not in result.stderr and b"rejected:" not in result.stderr


def test_backtest_reports_differences(log: Path, tmp_path: Path):
    strict = stricter_policy(tmp_path)
    result = cli("backtest", str(log), "--policy", str(strict), "--json")
    assert result.returncode == 0, result.stderr
    report_ = json.loads(result.stdout)
    rows = {(r["action"], r["reason"]): r for r in report_["decisions"]}
    assert rows["close", "OVERDUE"]["policy"] > rows["close", "OVERDUE"]["baseline"]
    assert report_["users_differing"] > 0 and report_["examples"]
    lines = report_["lines"]
    assert lines["rejected"] > 0 and lines["duplicates"] > 0
    assert lines["read"] == lines["applied"] + lines["duplicates"] + lines["rejected"]
    table = cli("backtest", str(log), "--policy", str(strict)).stdout.decode()
    assert "strict" in table and "users whose decisions differ" in table
    assert f"rejected {lines['rejected']:,}" in table
    # One pass over the log: it can come on stdin, with no copy kept.
    piped = cli("backtest", "-", "--policy", str(strict), "--json", stdin=log.read_bytes())
    assert piped.returncode == 0, piped.stderr
    assert json.loads(piped.stdout) == report_


def test_generate_cli_is_seeded(tmp_path: Path):
    a = cli("generate", "--users", "50", "--days", "30", "--seed", "9").stdout
    b = cli("generate", "--users", "50", "--days", "30", "--seed", "9").stdout
    assert a == b and len(a.splitlines()) > 50


# --- properties -----------------------------------------------------------------------------

def _replay_lines(lines: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    with tempfile.NamedTemporaryFile(suffix=".jsonl") as f:
        f.write(b"\n".join(lines) + b"\n")
        f.flush()
        compiled([POLICY], [f.name], on_decisions=[out.extend])
    return out


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000))
def test_delivering_every_event_twice_changes_nothing(seed: int):
    buf = io.BytesIO()
    generate_log(buf, seed=seed, users=40, days=120, malformed_share=0, duplicate_share=0)
    lines = buf.getvalue().splitlines()
    doubled = [x for line in lines for x in (line, line)]
    assert _replay_lines(doubled) == _replay_lines(lines)


@settings(max_examples=10, deadline=None)
@given(years=st.integers(2, 8), seed=st.integers(0, 1000))
def test_state_stays_bounded_as_a_user_ages(years: int, seed: int):
    import random

    rng = random.Random(seed)
    engine = compiled_policy(POLICY)
    state: bytes | None = None
    sizes = []
    for month in range(12 * years):
        d = month * 30
        events = [application(d + rng.random(), user="old"),
                  repayment(d, due=d + 20, user="old", loan=f"L{month}", n=1),
                  repayment(d + 20 + rng.randint(0, 5), due=d + 20, user="old", loan=f"L{month}",
                            n=1, paid_at=d + 20 + rng.randint(0, 5)),
                  report(d + 2, user="old", credit_score=rng.randint(500, 800),
                         hard_inquiries_30d=rng.randint(0, 3))]
        for e in events:
            state, _, rejected = _engine.step(engine, state, raw=encode(e))
            assert rejected is None
        assert state is not None
        sizes.append(len(state))
    assert max(sizes) < 16_384
    # after the first year, the state no longer grows with age
    assert max(sizes[24:] or sizes) <= 2 * max(sizes[:24])
    assert state is not None and len(orjson.loads(state)["e"]) <= POLICY.dedupe_ids


def test_generated_duplicates_are_counted_not_applied(log: Path):
    [tally] = compiled([POLICY], [str(log)], on_decisions=[lambda batch: None])
    assert sum(tally.duplicates.values()) > 0
    assert tally.accounted == tally.read
    raw = [orjson.loads(x) for x in log.read_bytes().splitlines()
           if not isinstance(decode(x), Rejection)]
    assert sum(tally.applied.values()) == len({r["event_id"] for r in raw})


def test_an_event_at_the_watermark_after_its_equals_were_released_is_late():
    # Lateness 600 s; the input's latest event is 600 s after X, so the watermark is X and
    # the event "b" at X is released. "a" at X, which orders before "b", then arrives: it
    # cannot be applied in order any more, and says so.
    from streams.reorder import ReorderBuffer

    buf: ReorderBuffer[int] = ReorderBuffer(600.0)
    buf.add_input(0)
    assert not buf.push(0, repayment(3, due=1, event_id="b"), 1)
    assert not buf.push(0, report(3 + 600 / 86_400, user="u2", event_id="c"), 2)
    assert [h for _, h in buf.release()] == [1] and buf.watermark == day(3)
    assert buf.push(0, repayment(3, due=1, event_id="a"), 3)  # late: "b" went first
    assert not buf.push(0, report(3.5, user="u2", event_id="d"), 4)

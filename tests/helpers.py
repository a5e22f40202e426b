"""Helpers more than one test module uses: the repository's root, the console script,
its errors' form, a stricter policy and a generated log.

Shared elsewhere: events built for core tests (tests/factories.py), records that probe
the decoder (tests/codec_cases.py), the operators' artefacts (tests/deployment.py), the
Python engine that is the compiled engine's oracle (tests/oracle/), and what the
broker tests use (tests/live/helpers.py, tests/live/conftest.py).
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from streams.generate import generate_log
from streams.policy import Policy, load_policy
from streams.replay import DEFAULT_LATENESS
from streams.tally import Tally

ROOT = Path(__file__).resolve().parent.parent
CLI = str(Path(sys.executable).parent / "closure-monitor")


def cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """The console script with these arguments."""
    return subprocess.run([CLI, *args], input=stdin, capture_output=True, timeout=120)


def usage_error(result: subprocess.CompletedProcess[bytes], command: str, *parts: str) -> str:
    """argparse's form, from the command's own parser: its usage, then one line
    "closure-monitor COMMAND: error: ..." naming the problem; returns that line."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.decode().splitlines()
    assert lines[0].startswith(f"usage: closure-monitor {command} "), lines
    assert all(line.startswith(" ") for line in lines[1:-1]), lines  # the usage, wrapped
    assert lines[-1].startswith(f"closure-monitor {command}: error: "), lines
    for part in parts:
        assert part in lines[-1], lines
    return lines[-1]


def stricter_policy(tmp: Path) -> Path:
    """The default policy, but closing at 45 days past due instead of 90: "strict"."""
    text = (ROOT / "deploy/policies/default.yaml").read_text()
    text = text.replace('version: "2026.11-default"', 'version: "strict"')
    stricter = text.replace("{threshold: 90, action: close}", "{threshold: 45, action: close}")
    assert stricter != text
    path = tmp / "strict.yaml"
    path.write_text(stricter)
    return path


def generated_lines(**kwargs: Any) -> list[bytes]:
    """The lines of a generated log (`generate_log`'s arguments), blank lines left out."""
    out = io.BytesIO()
    generate_log(out, **kwargs)
    return [line for line in out.getvalue().split(b"\n") if line.strip()]


def final_states(path: Path | str, policy: Policy | None = None,
                 lateness: float = DEFAULT_LATENESS) -> dict[bytes, bytes]:
    """Every user's stored state (the table's bytes, by key) after one partition of
    the engine took the whole log, as `replay` of it does."""
    from streams.compiled import CompiledPartition
    from streams.transfer import log_lines

    part: CompiledPartition[int] = CompiledPartition(policy or load_policy(None), lateness)
    part.add_input("log")
    for n, line in enumerate(log_lines([str(path)])):
        part.take("log", line, None, n, 1, 0)
    part.set_idle("log", True)
    return dict(part.states.take_dirty())


def tally_counts(t: Tally) -> dict[str, Any]:
    """A tally's counts as plain dicts, the form the engine reports them in."""
    return {"read": t.read, "applied": dict(t.applied), "duplicates": dict(t.duplicates),
            "late": dict(t.late), "rejected": dict(t.rejected),
            "rejected_types": dict(t.rejected_types), "decisions": dict(t.decisions)}


def dead_letter_key(record: bytes) -> bytes:
    """A dead-letter record to compare, but for a `not_json` detail (each parser's
    own message): its fields in one order."""
    d = orjson.loads(record)
    if d["reason"] == "not_json":
        d["detail"] = None
    return orjson.dumps(d, option=orjson.OPT_SORT_KEYS)

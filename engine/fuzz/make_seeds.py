"""Writes the fuzz targets' seed inputs (seeds/decode, seeds/state) from the Python side.

Run from the repository root with the project's virtualenv:

    .venv/bin/python engine/fuzz/make_seeds.py

decode: one record of each event type as the generator writes it, a few of its
malformed ones, and two at the nesting limit. state: stored states
(`tests.oracle.state.dump`) of users while a generated log goes through
`tests.oracle.core.step` with the default policy: the smallest one of each status
reached, one with a ledger of paid and unpaid installments, one with notices
pending, and one stored before "W" existed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))  # the repository root, for tests.oracle

from streams.codec import Rejection, decode  # noqa: E402
from streams.policy import load_policy  # noqa: E402
from tests.oracle.core import step  # noqa: E402
from tests.oracle.state import UserState, dump  # noqa: E402


def generated(users: int, days: int, seed: int, malformed: float) -> list[bytes]:
    out = subprocess.run(
        [str(Path(sys.executable).parent / "closure-monitor"), "generate", "--users", str(users),
         "--days", str(days), "--seed", str(seed), "--malformed-share", str(malformed), "-o", "-"],
        check=True, capture_output=True).stdout
    return [line for line in out.splitlines() if line]


def main() -> None:
    decode_dir = HERE / "seeds" / "decode"
    state_dir = HERE / "seeds" / "state"
    decode_dir.mkdir(parents=True, exist_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)

    records = generated(users=60, days=180, seed=1, malformed=0.05)
    kept: dict[str, bytes] = {}
    for raw in records:
        result = decode(raw)
        key = (f"reject-{result.reason}" if isinstance(result, Rejection)
               else f"{result.event_type}-{'paid' if getattr(result, 'paid_at', None) else 'x'}")
        kept.setdefault(key, raw)
    for key, raw in sorted(kept.items()):
        (decode_dir / f"{key}.json").write_bytes(raw)
    # At orjson's nesting limit (1024 levels, the object included): one level too many
    # in a field that is skipped, and just as many as allowed in one kept whole.
    (decode_dir / "deep-skipped.json").write_bytes(b'{"x":' + b"[" * 1024 + b"]" * 1024 + b"}")
    (decode_dir / "deep-kept.json").write_bytes(
        b'{"event_type":' + b"[" * 1023 + b"]" * 1023 + b"}")

    policy = load_policy()
    states: dict[str, UserState] = {}
    kinds: dict[str, bytes] = {}  # the smallest stored state of each kind seen along the way
    for raw in records:
        event = decode(raw)
        if isinstance(event, Rejection):
            continue
        state, _ = step(policy, states.get(event.user_id), event)
        assert state is not None
        states[event.user_id] = state
        stored = dump(state)
        tags = [state.status]
        if any(i.paid_at is None for i in state.ledger.values()) and any(
                i.paid_at is not None for i in state.ledger.values()):
            tags.append("ledger")
        if state.pending:
            tags.append("pending")
        for tag in tags:
            if tag not in kinds or len(stored) < len(kinds[tag]):
                kinds[tag] = stored
    for tag, stored in sorted(kinds.items()):
        (state_dir / f"{tag}.json").write_bytes(stored)
    older = orjson.loads(min(kinds.values(), key=len))
    older.pop("W", None)
    (state_dir / "before-W.json").write_bytes(orjson.dumps(older))


if __name__ == "__main__":
    main()

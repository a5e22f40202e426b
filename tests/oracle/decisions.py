"""Decisions, schema v1: the values the core returns and the JSON they travel as."""

from __future__ import annotations

from dataclasses import dataclass
from hashlib import blake2b
from typing import Any

import orjson

from streams.events import format_time


@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    message: str
    observed: float | int
    threshold: float | int

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "observed": self.observed,
                "threshold": self.threshold}


@dataclass(frozen=True, slots=True)
class Decision:
    decision_id: str
    user_id: str
    action: str  # warn | downgrade | close | restore | hold | release
    status_before: str
    status_after: str
    limit_factor: float | None
    reasons: tuple[Reason, ...]
    policy_version: str
    trigger_event_id: str | None  # None when a deadline fired it
    event_time: float
    effective_at: float | None  # warn: when it acts; hold: when the hold ends
    supersedes: str | None
    operator: str | None = None  # who made an override's decision; None when automatic

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "decision_id": self.decision_id,
            "user_id": self.user_id,
            "action": self.action,
            "status_before": self.status_before,
            "status_after": self.status_after,
            "limit_factor": self.limit_factor,
            "reasons": [r.as_dict() for r in self.reasons],
            "policy_version": self.policy_version,
            "trigger_event_id": self.trigger_event_id,
            "event_time": format_time(self.event_time),
            "effective_at": None if self.effective_at is None else format_time(self.effective_at),
            "supersedes": self.supersedes,
        }
        if self.operator is not None:  # last, and only on an operator's decision
            d["operator"] = self.operator
        return d

    def to_json(self) -> bytes:
        return orjson.dumps(self.as_dict())


def decision_id(policy_version: str, user_id: str, seq: int, action: str, at: float) -> str:
    """Deterministic: the same events under the same policy give the same id."""
    text = f"{policy_version}\x1f{user_id}\x1f{seq}\x1f{action}\x1f{at!r}"
    return "d-" + blake2b(text.encode(), digest_size=10).hexdigest()

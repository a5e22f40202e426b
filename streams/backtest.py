"""What a new policy would decide on a recorded log, against a baseline policy.

Both policies decide over the same log in one pass, each exactly as its own
`replay` would: the numbers are what the worker would have done under each.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.policy import Policy
from streams.replay import compiled
from streams.tally import Tally

EXAMPLES = 10


@dataclass
class Run:
    policy: Policy
    tally: Tally
    final: dict[str, str] = field(default_factory=dict)  # user -> status after its last decision
    actions: dict[str, list[str]] = field(default_factory=dict)  # user -> "action:REASON"...

    def record_all(self, batch: list[bytes]) -> None:
        """Decisions as the engine hands them out: JSON, a batch at a time."""
        for line in batch:
            d = orjson.loads(line)
            user = d["user_id"]
            self.final[user] = d["status_after"]
            self.actions.setdefault(user, []).append(f"{d['action']}:{d['reasons'][0]['code']}")


@dataclass
class Report:
    new: Run
    baseline: Run

    def differing_users(self) -> list[str]:
        users = set(self.new.actions) | set(self.baseline.actions)
        return sorted(u for u in users
                      if self.new.actions.get(u, []) != self.baseline.actions.get(u, []))

    def status_moves(self) -> Counter[tuple[str, str]]:
        moves: Counter[tuple[str, str]] = Counter()
        for u in self.differing_users():
            moves[self.baseline.final.get(u, "active"), self.new.final.get(u, "active")] += 1
        return moves

    def as_dict(self) -> dict[str, Any]:
        keys = sorted(set(self.new.tally.decisions) | set(self.baseline.tally.decisions))
        differing = self.differing_users()
        return {
            "policy": self.new.policy.version,
            "baseline": self.baseline.policy.version,
            "events_read": self.new.tally.read,
            # Every line accounted for (the same for both policies: one pass, one decoder).
            "lines": {"read": self.new.tally.read,
                      "applied": sum(self.new.tally.applied.values()),
                      "duplicates": sum(self.new.tally.duplicates.values()),
                      "rejected": sum(self.new.tally.rejected.values()),
                      "late": sum(self.new.tally.late.values())},
            "decisions": [
                {"action": a, "reason": r, "baseline": self.baseline.tally.decisions[a, r],
                 "policy": self.new.tally.decisions[a, r],
                 "delta": self.new.tally.decisions[a, r] - self.baseline.tally.decisions[a, r]}
                for a, r in keys
            ],
            "final_status": {
                "baseline": dict(Counter(self.baseline.final.values())),
                "policy": dict(Counter(self.new.final.values())),
            },
            "users_differing": len(differing),
            "status_moves": [{"from": a, "to": b, "users": n}
                             for (a, b), n in sorted(self.status_moves().items())],
            "examples": [
                {"user_id": u, "baseline": self.baseline.actions.get(u, []),
                 "policy": self.new.actions.get(u, [])}
                for u in differing[:EXAMPLES]
            ],
        }

    def table(self) -> str:
        data = self.as_dict()
        lines = data["lines"]
        out = [f"backtest: policy {data['policy']} against baseline {data['baseline']} "
               f"on {lines['read']:,} lines: applied {lines['applied']:,}, duplicates "
               f"{lines['duplicates']:,}, rejected {lines['rejected']:,}; late {lines['late']:,}",
               "",
               f"{'action':<10}{'reason':<22}{'baseline':>10}{'policy':>10}{'delta':>9}"]
        for row in data["decisions"]:
            out.append(f"{row['action']:<10}{row['reason']:<22}{row['baseline']:>10,}"
                       f"{row['policy']:>10,}{row['delta']:>+9,}")
        out += ["", f"users whose decisions differ: {data['users_differing']:,}"]
        for move in data["status_moves"]:
            out.append(f"  final status {move['from']:>10} -> {move['to']:<10} "
                       f"{move['users']:>8,} users")
        if data["examples"]:
            out += ["", "examples:"]
            for ex in data["examples"]:
                out.append(f"  {ex['user_id']}: baseline {' '.join(ex['baseline']) or '-'}")
                out.append(f"  {'':{len(ex['user_id'])}}  policy   {' '.join(ex['policy']) or '-'}")
        return "\n".join(out)


def backtest(policy: Policy, baseline: Policy, paths: Sequence[str], *, lateness: float,
             progress: Callable[[int], None] | None = None, jobs: int = 1) -> Report:
    """Both policies over the log in one pass of the engine (`compiled`): each line is
    read and decoded once, and each policy decides as its own replay would."""
    new, base = Run(policy, Tally()), Run(baseline, Tally())
    new.tally, base.tally = compiled([policy, baseline], paths, lateness=lateness,
                                     on_decisions=[new.record_all, base.record_all],
                                     progress=progress, jobs=jobs)
    return Report(new, base)

"""What a new policy would decide on a recorded log, against a baseline policy.

Both policies decide over the same log in one pass, each exactly as its own
`replay` would: the numbers are what the worker would have done under each.
Besides the totals, each run keeps what the HTML report (`streams.report`) plots:
decisions per day and action, and the days from warning to action, as counters
(memory stays bounded by days and users, not by decisions).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import takewhile
from typing import Any

import orjson

from streams.policy import Policy
from streams.replay import compiled
from streams.tally import Tally

EXAMPLES = 10
ACTIONS = ("warn", "downgrade", "close", "restore", "hold", "release")
SECONDS_A_DAY = 86_400


@dataclass
class Run:
    policy: Policy
    tally: Tally
    final: dict[str, str] = field(default_factory=dict)  # user -> status after its last decision
    actions: dict[str, list[str]] = field(default_factory=dict)  # user -> "action:REASON"...
    by_day: Counter[tuple[str, str]] = field(default_factory=Counter)  # (YYYY-MM-DD, action)
    # user -> event times of the warnings since the user was last not warned
    warned: dict[str, list[str]] = field(default_factory=dict)
    # whole days from a warning to the downgrade or close that ended its warned spell
    warning_to_action: Counter[int] = field(default_factory=Counter)

    def record_all(self, batch: list[bytes]) -> None:
        """Decisions as the engine hands them out: JSON, a batch at a time."""
        for line in batch:
            self.record(orjson.loads(line))

    def record(self, d: dict[str, Any]) -> None:
        """One decision, in the order the engine made the user's decisions."""
        user, action, at = d["user_id"], d["action"], d["event_time"]
        self.final[user] = d["status_after"]
        self.actions.setdefault(user, []).append(f"{action}:{d['reasons'][0]['code']}")
        self.by_day[at[:10], action] += 1
        if d["status_after"] == "warned":
            if action == "warn":
                self.warned.setdefault(user, []).append(at)
            return
        # The warned spell ends here: by the action it announced, or by a restore.
        warnings = self.warned.pop(user, None)
        if warnings and action in ("downgrade", "close") and d["status_before"] == "warned":
            for warned_at in warnings:
                self.warning_to_action[_days_between(warned_at, at)] += 1


def _days_between(earlier: str, later: str) -> int:
    """Whole days between two RFC 3339 times, rounded down: a notice of 14 days
    acts on the 14th day."""
    seconds = (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()
    return int(seconds // SECONDS_A_DAY)


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

    def differing_by_reason(self) -> Counter[str]:
        """Users whose decisions differ, by the reason codes involved: each user once
        under every code that `changed_reasons` finds in their two sequences."""
        users: Counter[str] = Counter()
        for u in self.differing_users():
            users.update(changed_reasons(self.baseline.actions.get(u, []),
                                         self.new.actions.get(u, [])))
        return users

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
            # The series the HTML report plots (`--report`).
            "decisions_by_day": [
                {"day": day, "action": a, "baseline": self.baseline.by_day[day, a],
                 "policy": self.new.by_day[day, a]}
                for day, a in sorted(set(self.new.by_day) | set(self.baseline.by_day),
                                     key=lambda k: (k[0], ACTIONS.index(k[1])))
            ],
            "users_differing_by_reason": [
                {"reason": r, "users": n}
                for r, n in sorted(self.differing_by_reason().items(), key=lambda x: (-x[1], x[0]))
            ],
            "warning_to_action_days": [
                {"days": n, "baseline": self.baseline.warning_to_action[n],
                 "policy": self.new.warning_to_action[n]}
                for n in sorted(set(self.baseline.warning_to_action)
                                | set(self.new.warning_to_action))
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


def changed_reasons(baseline: list[str], policy: list[str]) -> set[str]:
    """The reason codes of the decisions ("action:REASON") one sequence has and the
    other has not; when both hold the same decisions in another order, those of the
    decisions from where the sequences part."""
    a, b = Counter(baseline), Counter(policy)
    changed = list((a - b) + (b - a))
    if not changed:
        same = sum(1 for _ in takewhile(lambda pair: pair[0] == pair[1],
                                        zip(baseline, policy, strict=False)))
        changed = baseline[same:] + policy[same:]
    return {item.split(":", 1)[1] for item in changed}


def backtest(policy: Policy, baseline: Policy, paths: Sequence[str], *, lateness: float,
             progress: Callable[[int], None] | None = None, jobs: int = 1) -> Report:
    """Both policies over the log in one pass of the engine (`compiled`): each line is
    read and decoded once, and each policy decides as its own replay would."""
    new, base = Run(policy, Tally()), Run(baseline, Tally())
    new.tally, base.tally = compiled([policy, baseline], paths, lateness=lateness,
                                     on_decisions=[new.record_all, base.record_all],
                                     progress=progress, jobs=jobs)
    return Report(new, base)

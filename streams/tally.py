"""What happened to every input record of a run or a partition: applied, duplicate,
rejected or late, and the decisions made, by action and first reason. The engine
counts (`streams._engine`); replay's summary, backtest's report, the worker's
progress records and the metrics read the counts from here.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streams.codec import Rejection


@dataclass
class Tally:
    """What happened to every input record: applied, duplicate or rejected (and late)."""

    read: int = 0
    applied: Counter[str] = field(default_factory=Counter)  # by event_type
    duplicates: Counter[str] = field(default_factory=Counter)
    late: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)  # by rejection reason
    decisions: Counter[tuple[str, str]] = field(default_factory=Counter)  # (action, reason)
    rejected_types: Counter[str] = field(default_factory=Counter)  # by event_type or "unknown"

    def count_rejection(self, r: Rejection) -> None:
        self.rejected[r.reason] += 1
        self.rejected_types[r.event_type or "unknown"] += 1

    def add(self, other: Tally) -> None:
        """Count another tally's records here too (partitions of one run)."""
        self.read += other.read
        for mine, theirs in ((self.applied, other.applied), (self.duplicates, other.duplicates),
                             (self.late, other.late), (self.rejected, other.rejected),
                             (self.rejected_types, other.rejected_types)):
            mine.update(theirs)
        self.decisions.update(other.decisions)

    @classmethod
    def from_engine(cls, counts: dict[str, Any]) -> Tally:
        """A tally from the compiled engine's counts (`streams._engine`)."""
        return cls(read=counts["read"], applied=Counter(counts["applied"]),
                   duplicates=Counter(counts["duplicates"]), late=Counter(counts["late"]),
                   rejected=Counter(counts["rejected"]),
                   decisions=Counter(counts["decisions"]),
                   rejected_types=Counter(counts["rejected_types"]))

    @property
    def accounted(self) -> int:
        return (sum(self.applied.values()) + sum(self.duplicates.values())
                + sum(self.rejected.values()))


"""The risk policy: a YAML file, validated and compiled once at load.

A policy names, for every reason code, graded tiers: a threshold on the rule's
observed value, the action taken when it is crossed, the notice period before
that action takes effect, and the limit factor of a downgrade. Errors name the
rule and the field, e.g. ``rules.OVERDUE.tiers[1].notice_days: must be >= 0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from streams.errors import PolicyError

ACTION_RANK = {"warn": 1, "downgrade": 2, "close": 3}
ADVERSE_CODES = (
    "OVERDUE",
    "REPEATED_LATENESS",
    "SCORE_BELOW_MIN",
    "SCORE_DROP",
    "MULTI_LENDER",
    "APPLICATION_BURST",
    "EXTERNAL_DELINQUENCY",
    "OVER_LEVERAGE",
    "DORMANT",
)
RULE_BIT = {code: 1 << i for i, code in enumerate(ADVERSE_CODES)}
RESTORE_CODES = ("CURED", "DATA_CORRECTION")
# Rules whose condition is "observed below threshold"; every other rule is "at or above".
BELOW_RULES = frozenset({"SCORE_BELOW_MIN"})
# Rules that need a window, and its default in days.
WINDOW_RULES = {"REPEATED_LATENESS": 180, "SCORE_DROP": 180, "APPLICATION_BURST": 30}
REPAYMENT_CODES = frozenset({"OVERDUE", "REPEATED_LATENESS"})
# deploy/policies/default.yaml, shipped in the package through a symlink.
DEFAULT_POLICY = Path(__file__).resolve().parent / "policies" / "default.yaml"

_DAY = 86_400.0
# The longest window, notice or cooling-off a policy may set: ten years. Event times
# stop at the year 8999 (the schemas' pattern), so every time the core derives from
# them (a deadline, an `effective_at`) stays within RFC 3339's four-digit years.
MAX_DAYS = 3650


@dataclass(frozen=True, slots=True)
class Tier:
    key: str  # "OVERDUE/2": rule code and tier number, the name of its pending notice
    threshold: float
    action: str
    rank: int
    notice: float  # seconds; 0 = acts at once
    limit_factor: float | None


@dataclass(frozen=True, slots=True)
class Rule:
    code: str
    below: bool
    window: float  # seconds, 0 where the rule has none
    tiers: tuple[Tier, ...]  # mildest first


@dataclass(frozen=True, slots=True)
class Policy:
    version: str
    cooling_off: float  # seconds of no adverse condition before CURED
    late_after_days: int  # an installment counts as late from this many days past due
    dedupe_ids: int  # event ids remembered per user
    rules: tuple[Rule, ...]  # enabled rules, in file order (the tie-break of reason ranking)
    disabled: tuple[str, ...]
    # Derived in __post_init__, never passed in: rules by code, and the days past due
    # at which an unpaid installment changes a rule's view.
    by_code: dict[str, Rule] = field(init=False, repr=False, compare=False)
    day_marks: tuple[int, ...] = field(init=False, repr=False, compare=False)
    # The notice of every enabled tier by its key, and a bit per enabled rule (its
    # position in ADVERSE_CODES): what an event of a kind can change is a mask of these.
    notice_of: dict[str, float] = field(init=False, repr=False, compare=False)
    rule_bits: tuple[int, ...] = field(init=False, repr=False, compare=False)
    # Windows of the rules that have one, None where the rule is disabled.
    lateness_window: float | None = field(init=False, repr=False, compare=False)
    burst_window: float | None = field(init=False, repr=False, compare=False)
    drop_window: float | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_code", {r.code: r for r in self.rules})
        overdue = self.by_code.get("OVERDUE")
        marks = {self.late_after_days}
        if overdue is not None:
            marks |= {whole_days(t.threshold) for t in overdue.tiers}
        object.__setattr__(self, "day_marks", tuple(sorted(marks)))
        object.__setattr__(self, "notice_of",
                           {t.key: t.notice for r in self.rules for t in r.tiers})
        object.__setattr__(self, "rule_bits", tuple(RULE_BIT[r.code] for r in self.rules))
        for name, code in (("lateness_window", "REPEATED_LATENESS"),
                           ("burst_window", "APPLICATION_BURST"), ("drop_window", "SCORE_DROP")):
            rule = self.by_code.get(code)
            object.__setattr__(self, name, None if rule is None else rule.window)

    def rule(self, code: str) -> Rule | None:
        return self.by_code.get(code)

    def engine_json(self) -> bytes:
        """The compiled policy as the engine (`streams._engine.Policy`) takes it."""
        return orjson.dumps({
            "version": self.version, "cooling_off": self.cooling_off,
            "late_after_days": self.late_after_days, "dedupe_ids": self.dedupe_ids,
            "rules": [{"code": r.code, "window": r.window,
                       "tiers": [{"threshold": t.threshold, "action": t.action,
                                  "notice": t.notice, "limit_factor": t.limit_factor}
                                 for t in r.tiers]}
                      for r in self.rules]})


def load_policy(path: str | Path | None = None) -> Policy:
    """Read, validate and compile a policy file (the shipped default when None)."""
    source = Path(path) if path is not None else DEFAULT_POLICY
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"policy {source}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise PolicyError(f"policy {source}: not UTF-8 text (byte {exc.start})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"policy {source}: {_yaml_problem(exc, text)}") from None
    try:
        return compile_policy(data)
    except PolicyError as exc:
        raise PolicyError(f"policy {source}: {exc}") from None


def _yaml_problem(exc: yaml.YAMLError, text: str) -> str:
    """A YAML error on one line, where it is first: "line 3, column 5: could not find
    expected ':' (not valid YAML: while scanning a simple key started at line 2,
    column 1)". Lines and columns count from 1, as editors do."""
    def at(mark: Any) -> str:
        return f"line {mark.line + 1}, column {mark.column + 1}"

    if isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not allow
        before = text[:exc.position]
        line, column = before.count("\n"), exc.position - (before.rfind("\n") + 1)
        problem = str(exc).splitlines()[0]
        return f"line {line + 1}, column {column + 1}: {problem} (not valid YAML)"
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem and exc.problem_mark:
        why = "not valid YAML"
        if exc.context:
            why += f": {exc.context}"
            if exc.context_mark is not None:
                why += f" started at {at(exc.context_mark)}"
        return f"{at(exc.problem_mark)}: {exc.problem} ({why})"
    return f"not valid YAML: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"


def compile_policy(data: Any) -> Policy:
    if not isinstance(data, dict):
        raise PolicyError("top level: must be a mapping")
    _known(data, "", {"version", "description", "cooling_off_days", "late_after_days",
                      "dedupe_ids", "rules"})
    version = data.get("version")
    if (not isinstance(version, str) or not version.strip() or len(version) > 64
            or not version.isprintable()):
        raise PolicyError("version: must be a non-empty string of at most 64 printable "
                          "characters")
    cooling = _number(data.get("cooling_off_days", 30), "cooling_off_days", minimum=0,
                      maximum=MAX_DAYS)
    late_after = _number(data.get("late_after_days", 1), "late_after_days", minimum=1)
    if late_after != int(late_after):
        raise PolicyError("late_after_days: must be a whole number of days")
    dedupe = _number(data.get("dedupe_ids", 128), "dedupe_ids", minimum=1)
    if dedupe != int(dedupe) or dedupe > 4096:
        raise PolicyError("dedupe_ids: must be a whole number from 1 to 4096")
    rules_data = data.get("rules")
    if not isinstance(rules_data, dict):
        raise PolicyError("rules: must be a mapping of reason code to rule")
    rules: list[Rule] = []
    disabled: list[str] = []
    for code, body in rules_data.items():
        if code not in ADVERSE_CODES:
            known = ", ".join(ADVERSE_CODES)
            raise PolicyError(f"rules.{code}: unknown reason code (known: {known})")
        rule = _rule(str(code), body)
        (rules if rule is not None else disabled).append(rule or code)  # type: ignore[arg-type]
    missing = [c for c in ADVERSE_CODES if c not in rules_data]
    if missing:
        raise PolicyError("rules: every reason code needs a rule (enabled or not); "
                          f"missing {', '.join(missing)}")
    return Policy(str(version), cooling * _DAY, int(late_after), int(dedupe), tuple(rules),
                  tuple(disabled))


def _rule(code: str, body: Any) -> Rule | None:
    where = f"rules.{code}"
    if not isinstance(body, dict):
        raise PolicyError(f"{where}: must be a mapping")
    _known(body, where, {"enabled", "window_days", "tiers", "description"})
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        raise PolicyError(f"{where}.enabled: must be true or false")
    window = 0.0
    if code in WINDOW_RULES:
        window = _number(body.get("window_days", WINDOW_RULES[code]), f"{where}.window_days",
                         minimum=1, maximum=MAX_DAYS) * _DAY
    elif "window_days" in body:
        raise PolicyError(f"{where}.window_days: {code} has no window")
    tiers_data = body.get("tiers")
    if not isinstance(tiers_data, list) or not tiers_data:
        raise PolicyError(f"{where}.tiers: must be a non-empty list")
    below = code in BELOW_RULES
    tiers: list[Tier] = []
    for i, t in enumerate(tiers_data):
        tiers.append(_tier(code, i, t, below, tiers[-1] if tiers else None))
    return Rule(code, below, window, tuple(tiers)) if enabled else None


def _tier(code: str, i: int, t: Any, below: bool, prev: Tier | None) -> Tier:
    where = f"rules.{code}.tiers[{i}]"
    if not isinstance(t, dict):
        raise PolicyError(f"{where}: must be a mapping")
    _known(t, where, {"threshold", "action", "notice_days", "limit_factor"})
    if "threshold" not in t:
        raise PolicyError(f"{where}.threshold: required")
    threshold = _number(t["threshold"], f"{where}.threshold", minimum=0)
    action = t.get("action")
    if action not in ACTION_RANK:
        raise PolicyError(f"{where}.action: must be one of warn, downgrade, close (got {action!r})")
    notice = _number(t.get("notice_days", 0), f"{where}.notice_days", minimum=0,
                     maximum=MAX_DAYS)
    if action == "warn" and notice:
        raise PolicyError(f"{where}.notice_days: a warn tier takes effect at once; remove it")
    factor = t.get("limit_factor")
    if action == "downgrade":
        factor = _number(factor, f"{where}.limit_factor", minimum=0)
        if not 0 < factor < 1:
            raise PolicyError(f"{where}.limit_factor: must be in (0, 1) for a downgrade")
    elif factor is not None:
        raise PolicyError(f"{where}.limit_factor: only a downgrade tier has one")
    if prev is not None:
        if (threshold >= prev.threshold) if below else (threshold <= prev.threshold):
            order = "decrease" if below else "increase"
            raise PolicyError(f"{where}.threshold: thresholds must strictly {order} tier by tier")
        if ACTION_RANK[action] < prev.rank:
            raise PolicyError(f"{where}.action: a stricter tier cannot take a milder action")
    return Tier(f"{code}/{i}", threshold, action, ACTION_RANK[action], notice * _DAY, factor)


def whole_days(threshold: float) -> int:
    """A day count observed as a whole number reaches `threshold` at its ceiling."""
    return int(threshold) + (threshold % 1 > 0)


def _number(value: Any, where: str, *, minimum: float, maximum: float = 1e15) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PolicyError(f"{where}: must be a number (got {value!r})")
    if isinstance(value, int) and not -maximum <= value <= maximum:  # before float() overflows
        raise PolicyError(f"{where}: must be <= {maximum:g} (got an integer of "
                          f"{value.bit_length()} bits)")
    if not math.isfinite(value):
        raise PolicyError(f"{where}: must be a number (got {value!r})")
    if value < minimum:
        raise PolicyError(f"{where}: must be >= {minimum:g} (got {value!r})")
    if value > maximum:
        raise PolicyError(f"{where}: must be <= {maximum:g} (got {value!r})")
    return float(value)


def _known(data: dict[str, Any], where: str, allowed: set[str]) -> None:
    extra = sorted(set(map(str, data)) - allowed)
    if extra:
        prefix = f"{where}." if where else ""
        known = ", ".join(sorted(allowed))
        raise PolicyError(f"{prefix}{extra[0]}: unknown field (allowed: {known})")

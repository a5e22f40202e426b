"""The policies the engine is checked under: the shipped default, and variants that
enable, disable and re-shape rules (a dormancy rule, fractional thresholds and
cooling-off, rules switched off, tighter windows and a small dedupe window)."""

from __future__ import annotations

from typing import Any

from streams.policy import DEFAULT_POLICY, compile_policy


def _policies() -> list[Any]:
    import yaml

    base = yaml.safe_load(DEFAULT_POLICY.read_text())
    out = [compile_policy(base)]
    dormant = yaml.safe_load(DEFAULT_POLICY.read_text())
    dormant["rules"]["DORMANT"] = {"enabled": True, "tiers": [
        {"threshold": 20.5, "action": "warn"},
        {"threshold": 45, "action": "close", "notice_days": 10}]}
    dormant["cooling_off_days"] = 7.5
    out.append(compile_policy(dormant))
    lean = yaml.safe_load(DEFAULT_POLICY.read_text())
    for code in ("REPEATED_LATENESS", "APPLICATION_BURST", "SCORE_DROP"):
        lean["rules"][code]["enabled"] = False
    lean["late_after_days"] = 3
    lean["rules"]["OVERDUE"]["tiers"] = [
        {"threshold": 2.5, "action": "warn"},
        {"threshold": 12, "action": "downgrade", "limit_factor": 0.4, "notice_days": 3}]
    out.append(compile_policy(lean))
    tight = yaml.safe_load(DEFAULT_POLICY.read_text())
    tight["rules"]["REPEATED_LATENESS"]["window_days"] = 20
    tight["rules"]["APPLICATION_BURST"]["window_days"] = 3
    tight["rules"]["APPLICATION_BURST"]["tiers"] = [
        {"threshold": 2, "action": "warn"},
        {"threshold": 3, "action": "downgrade", "limit_factor": 0.8, "notice_days": 1}]
    tight["rules"]["SCORE_DROP"]["window_days"] = 10
    tight["rules"]["SCORE_DROP"]["tiers"] = [
        {"threshold": 20, "action": "warn"},
        {"threshold": 40, "action": "close", "notice_days": 2}]
    tight["dedupe_ids"] = 2
    out.append(compile_policy(tight))
    return out


POLICIES = _policies()

"""Policy loading: broken policies fail with a message naming the rule and the field."""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from streams.errors import PolicyError
from streams.policy import ADVERSE_CODES, compile_policy, load_policy
from tests.helpers import ROOT

DEFAULT_YAML = ROOT / "deploy" / "policies" / "default.yaml"
DEFAULT: dict[str, Any] = yaml.safe_load(DEFAULT_YAML.read_text(encoding="utf-8"))


def mutated(change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    data = copy.deepcopy(DEFAULT)
    change(data)
    return data


def _tier(code: str, i: int) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda d: d["rules"][code]["tiers"][i]


BROKEN = [
    pytest.param(lambda d: d.pop("version"), "version", id="missing-version"),
    pytest.param(lambda d: d.update(version=""), "version", id="empty-version"),
    pytest.param(lambda d: d.update(version="2026\nstrict"), "version", id="version-newline"),
    pytest.param(lambda d: d["rules"].update(LATE_NIGHT={"tiers": [
        {"threshold": 1, "action": "warn"}]}), "rules.LATE_NIGHT", id="unknown-rule-code"),
    pytest.param(lambda d: d["rules"].pop("MULTI_LENDER"), "MULTI_LENDER", id="missing-rule"),
    pytest.param(lambda d: d.pop("rules"), "rules", id="missing-rules"),
    pytest.param(lambda d: _tier("OVERDUE", 2)(d).update(action="ban"),
                 "rules.OVERDUE.tiers[2].action", id="action-ban"),
    pytest.param(lambda d: _tier("OVERDUE", 1)(d).pop("limit_factor"),
                 "rules.OVERDUE.tiers[1].limit_factor", id="downgrade-without-factor"),
    pytest.param(lambda d: _tier("OVERDUE", 1)(d).update(limit_factor=1.5),
                 "rules.OVERDUE.tiers[1].limit_factor", id="factor-1.5"),
    pytest.param(lambda d: _tier("OVERDUE", 1)(d).update(limit_factor=0),
                 "rules.OVERDUE.tiers[1].limit_factor", id="factor-0"),
    pytest.param(lambda d: _tier("OVERDUE", 2)(d).update(limit_factor=0.5),
                 "rules.OVERDUE.tiers[2].limit_factor", id="factor-on-close"),
    pytest.param(lambda d: _tier("OVERDUE", 2)(d).update(threshold=20),
                 "rules.OVERDUE.tiers[2].threshold", id="thresholds-not-increasing"),
    pytest.param(lambda d: _tier("SCORE_BELOW_MIN", 1)(d).update(threshold=600),
                 "rules.SCORE_BELOW_MIN.tiers[1].threshold", id="below-thresholds-not-decreasing"),
    pytest.param(lambda d: _tier("OVERDUE", 2)(d).update(action="warn"),
                 "rules.OVERDUE.tiers[2].action", id="milder-action-later"),
    pytest.param(lambda d: _tier("OVERDUE", 0)(d).update(notice_days=7),
                 "rules.OVERDUE.tiers[0].notice_days", id="notice-on-warn"),
    pytest.param(lambda d: _tier("REPEATED_LATENESS", 1)(d).update(notice_days=-1),
                 "rules.REPEATED_LATENESS.tiers[1].notice_days", id="negative-notice"),
    pytest.param(lambda d: _tier("OVERDUE", 0)(d).update(threshold="1"),
                 "rules.OVERDUE.tiers[0].threshold", id="threshold-string"),
    pytest.param(lambda d: _tier("OVERDUE", 0)(d).update(colour="red"),
                 "rules.OVERDUE.tiers[0].colour", id="unknown-tier-field"),
    pytest.param(lambda d: d["rules"]["OVERDUE"].update(window_days=30),
                 "rules.OVERDUE.window_days", id="window-on-windowless-rule"),
    pytest.param(lambda d: d["rules"]["DORMANT"].update(enabled="no"),
                 "rules.DORMANT.enabled", id="enabled-not-bool"),
    pytest.param(lambda d: d["rules"]["SCORE_DROP"].update(tiers=[]),
                 "rules.SCORE_DROP.tiers", id="no-tiers"),
    pytest.param(lambda d: d.update(owner="risk"), "owner", id="unknown-top-field"),
    # Durations a run would overflow on (a deadline past the year 9999): ten years at most.
    pytest.param(lambda d: _tier("OVERDUE", 1)(d).update(notice_days=3651),
                 "rules.OVERDUE.tiers[1].notice_days", id="notice-over-ten-years"),
    pytest.param(lambda d: _tier("OVERDUE", 1)(d).update(notice_days=1e306),
                 "rules.OVERDUE.tiers[1].notice_days", id="notice-1e306"),
    pytest.param(lambda d: d["rules"]["SCORE_DROP"].update(window_days=1e306),
                 "rules.SCORE_DROP.window_days", id="window-1e306"),
    pytest.param(lambda d: d.update(cooling_off_days=4000), "cooling_off_days",
                 id="cooling-off-over-ten-years"),
    # An integer too large for a float: a line, not an OverflowError.
    pytest.param(lambda d: _tier("OVERDUE", 2)(d).update(threshold=10 ** 400),
                 "rules.OVERDUE.tiers[2].threshold", id="threshold-huge-integer"),
]


@pytest.mark.parametrize(("change", "path"), BROKEN)
def test_broken_policy_names_field(change: Callable[[dict[str, Any]], object], path: str
                                   ) -> None:
    with pytest.raises(PolicyError) as info:
        compile_policy(mutated(change))
    message = str(info.value)
    assert path in message, message
    assert "\n" not in message


@pytest.mark.parametrize(("change", "path"), BROKEN[:12])
def test_load_policy_prefixes_file(change: Callable[[dict[str, Any]], object], path: str,
                                   tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(mutated(change)), encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        load_policy(bad)
    message = str(info.value)
    assert message.startswith(f"policy {bad}: "), message
    assert path in message and "\n" not in message


def test_not_yaml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: [unclosed\nrules: {\n", encoding="utf-8")
    with pytest.raises(PolicyError, match="not valid YAML") as info:
        load_policy(bad)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text, where", [
    pytest.param("version: x\ncooling_off_days 3\nrules: 2\n",
                 "line 3, column 1: could not find expected ':' (not valid YAML: while "
                 "scanning a simple key started at line 2, column 1)", id="missing-colon"),
    pytest.param("version: x\nrules:\n    OVERDUE\n    enabled: true\n",
                 "line 4, column 12: mapping values are not allowed here (not valid YAML)",
                 id="bad-indent"),
    pytest.param("version: [unclosed\nrules: {\n",
                 "line 2, column 6: expected ',' or ']', but got ':' (not valid YAML: while "
                 "parsing a flow sequence started at line 1, column 10)", id="unclosed"),
    pytest.param("version: x\n\trules: 3\n",
                 "line 2, column 1: found character '\\t' that cannot start any token",
                 id="tab"),
    pytest.param("version: x\nrules: \x07\n",
                 "line 2, column 8: unacceptable character #x0007", id="control-character"),
])
def test_a_yaml_error_names_its_line_and_column(text: str, where: str, tmp_path: Path) -> None:
    """Counted from 1, as editors count; the file named first, as for every policy error."""
    bad = tmp_path / "policy.yaml"
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        load_policy(bad)
    message = str(info.value)
    assert message.startswith(f"policy {bad}: {where}"), message
    assert "not valid YAML" in message and "\n" not in message


@pytest.mark.parametrize("text", ["", "- just\n- a list\n", "42\n"])
def test_not_a_mapping(text: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError, match="top level: must be a mapping"):
        load_policy(bad)


def test_not_utf8(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(DEFAULT_YAML.read_bytes().replace(b"version:", b"# r\xe9vision\nversion:", 1))
    with pytest.raises(PolicyError, match="not UTF-8") as info:
        load_policy(bad)
    assert "\n" not in str(info.value)


def test_longest_durations_load() -> None:
    def longest(d: dict[str, Any]) -> None:
        d.update(cooling_off_days=3650)
        _tier("OVERDUE", 1)(d).update(notice_days=3650)
        d["rules"]["SCORE_DROP"].update(window_days=3650)
    policy = compile_policy(mutated(longest))
    assert policy.cooling_off == 3650 * 86_400.0


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "nowhere.yaml")


def test_default_loads() -> None:
    for policy in (load_policy(), load_policy(DEFAULT_YAML), compile_policy(DEFAULT)):
        assert policy.version == DEFAULT["version"]
        assert policy.disabled == ("DORMANT",)
        assert policy.rule("DORMANT") is None
        enabled = {rule.code for rule in policy.rules}
        assert enabled | set(policy.disabled) == set(ADVERSE_CODES)
        assert len(policy.rules) + len(policy.disabled) == len(ADVERSE_CODES)
    assert set(DEFAULT["rules"]) == set(ADVERSE_CODES)


def test_default_tiers_compiled() -> None:
    overdue = compile_policy(DEFAULT).rule("OVERDUE")
    assert overdue is not None
    assert [t.action for t in overdue.tiers] == ["warn", "downgrade", "close"]
    assert overdue.tiers[1].limit_factor == 0.5
    assert [t.key for t in overdue.tiers] == ["OVERDUE/0", "OVERDUE/1", "OVERDUE/2"]


# --- CLI ---------------------------------------------------------------------------------

_EVENT = {"event_id": "c-1", "event_type": "credit_report", "user_id": "u1",
          "occurred_at": "2026-01-05T10:00:00Z", "bureau": "bureau-a", "credit_score": 640}


def _bad_factor(tmp: Path) -> Path:
    path = tmp / "factor.yaml"
    data = mutated(lambda d: _tier("OVERDUE", 1)(d).update(limit_factor=1.5))
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _not_yaml(tmp: Path) -> Path:
    path = tmp / "broken.yaml"
    path.write_text("version: [unclosed\nrules: {\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("make_bad", [
    pytest.param(_bad_factor, id="limit-factor"),
    pytest.param(_not_yaml, id="not-yaml"),
    pytest.param(lambda tmp: tmp / "missing.yaml", id="missing-file"),
])
def test_cli_bad_policy_exits_2_with_one_line(make_bad: Callable[[Path], Path],
                                              tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    log.write_bytes(orjson.dumps(_EVENT) + b"\n")
    bad = make_bad(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "replay", str(log), "--policy", str(bad)],
        capture_output=True, cwd=ROOT, timeout=60, check=False)
    stderr = done.stderr.decode()
    assert done.returncode == 2, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("closure-monitor: policy"), stderr
    assert done.stdout == b""
    if make_bad is _not_yaml:
        assert lines[0].startswith(f"closure-monitor: policy {bad}: line 2, column 6: "), stderr

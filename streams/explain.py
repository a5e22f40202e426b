"""Why a user stands where they stand: `closure-monitor explain` and the worker's
`/users/{user_id}`.

The explanation itself is the engine's (`streams._engine.explain`: the same
observations the rules decide on, read from the user's stored state under the
policy); this module finds the state (a replay of a log, or a worker's partition),
adds the user's decisions, and shows the result as text for a terminal or as a
small HTML page for customer service. docs/customer-service.md describes every field.
"""

from __future__ import annotations

import html
import unicodedata
from collections.abc import Sequence
from typing import Any

import orjson

from streams.errors import ConfigError, MonitorError
from streams.policy import Policy

# The schema's bound on user_id (schemas/event.schema.json).
MAX_USER_ID = 64
# Decisions a worker keeps per user, the latest, while its user endpoint is on.
HISTORY_LIMIT = 20


class BadUserId(ValueError):
    """A user id no event could carry: empty, too long, or with control characters."""


def check_user_id(user_id: str) -> str:
    """The id as given, or BadUserId saying what is wrong with it."""
    if not user_id:
        raise BadUserId("a user id is 1 to 64 characters; this one is empty")
    if len(user_id) > MAX_USER_ID:
        raise BadUserId(f"a user id is 1 to 64 characters; this one has {len(user_id)}")
    odd = next((c for c in user_id if unicodedata.category(c) in ("Cc", "Cs", "Cf")), None)
    if odd is not None:
        raise BadUserId(f"a user id has no control or format characters; this one has "
                        f"U+{ord(odd):04X}")
    return user_id


def merge_history(current: bytes | None, new: Sequence[bytes],
                  limit: int = HISTORY_LIMIT) -> bytes:
    """A user's stored decisions (JSON lines, oldest first) with new ones appended,
    the latest `limit` kept. A decision already there (the same id: a redelivery
    decided again) is not added twice."""
    lines = current.split(b"\n") if current else []
    ids = {orjson.loads(line)["decision_id"] for line in lines}
    for raw in new:
        decision_id = orjson.loads(raw)["decision_id"]
        if decision_id not in ids:
            ids.add(decision_id)
            lines.append(raw)
    return b"\n".join(lines[-limit:])


def history_decisions(stored: bytes | None) -> list[dict[str, Any]]:
    """The decisions of a stored history, oldest first."""
    return [orjson.loads(line) for line in stored.split(b"\n")] if stored else []


def explanation(policy: Policy, state: bytes,
                decisions: Sequence[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The engine's explanation of a stored state, with the user's decisions (oldest
    first) when they are known; `decisions` None says they are not."""
    from streams._engine import explain
    from streams.compiled import compiled_policy

    view: dict[str, Any] = orjson.loads(explain(compiled_policy(policy), state))
    view["decisions"] = list(decisions) if decisions is not None else None
    return view


def explain_log(user_id: str, paths: Sequence[str], policy: Policy, *, lateness: float,
                jobs: int = 1, schedule: Sequence[tuple[float, str, Policy, str | None]] = ()
                ) -> dict[str, Any] | None:
    """Replay the logs (exactly as `replay` does, with a policy history's switches
    when given) and explain the user as the log leaves them, under the policy then in
    force for them, with every decision the log led to for them; None when the log
    has no event of theirs."""
    from streams import _engine
    from streams.compiled import compiled_policy

    needle = b'"user_id":' + orjson.dumps(user_id) + b","
    mine: list[dict[str, Any]] = []

    def decisions(which: int, batch: list[bytes]) -> None:
        for raw in batch:
            if needle in raw:
                d = orjson.loads(raw)
                if d.get("user_id") == user_id:
                    mine.append(d)

    history = [(at, pid, compiled_policy(p), region) for at, pid, p, region in schedule]
    ends = _engine.replay([compiled_policy(policy)], list(paths), lateness, jobs,
                          decisions, keep=[user_id], schedule=history)
    state = ends[0]["states"].get(user_id)
    if state is None:
        return None
    return explanation(in_force(policy, schedule, orjson.loads(state).get("G")), state, mine)


def in_force(policy: Policy, schedule: Sequence[tuple[float, str, Policy, str | None]],
             region: str | None) -> Policy:
    """The policy deciding a user of `region` once every switch of a history is
    applied: their region's latest, else the latest unscoped one, else `policy`."""
    def latest(scope: str | None) -> Policy | None:
        switches = [(at, pid, p) for at, pid, p, r in schedule if r == scope]
        return max(switches, key=lambda s: (s[0], s[1]))[2] if switches else None

    return (latest(region) if region is not None else None) or latest(None) or policy


# -- text ----------------------------------------------------------------------------

def _tier_text(rule: dict[str, Any], tier: dict[str, Any]) -> str:
    sign = "<" if rule["comparison"] == "below" else ">="
    action = tier["action"]
    if tier["limit_factor"] is not None and action == "downgrade":
        action += f" x{tier['limit_factor']:g}"
    if tier["notice_days"]:
        action += f" after {tier['notice_days']:g} d notice"
    return f"{sign}{tier['threshold']} {action}"


def _limit(view: dict[str, Any]) -> str:
    if view["status"] == "downgraded":
        return f" (limit x{view['limit_factor']:g})"
    return ""


def render_text(view: dict[str, Any]) -> str:
    """The explanation for a terminal."""
    lines = [f"{view['user_id']}: {view['status']}{_limit(view)}, as of {view['as_of']} "
             f"(policy {view['policy_version']})"]
    if view.get("set_by"):
        s = view["set_by"]
        lines.append(f"  set by decision {s['decision_id']} ({', '.join(s['reasons'])})")
    if view.get("held_until"):
        lines.append(f"  automatic action on hold until {view['held_until']}")
    lines.append("")
    lines.append("rules (x: crossed)")
    width = max((len(r["code"]) for r in view["rules"]), default=0)
    for r in view["rules"]:
        mark = "x" if r["crossed"] else " "
        observed = "no data" if r["observed"] is None else str(r["observed"])
        tiers = ", ".join(_tier_text(r, t) for t in r["tiers"])
        lines.append(f"  {mark} {r['code']:<{width}}  {observed:>8}   tiers: {tiers}")
        if r["crossed"]:
            lines.append(f"    {'':<{width}}  {r['message']}")
            lines.append(f"    {'':<{width}}  clears {r['clears']}")
    if view["notices"]:
        lines.append("")
        lines.append("notices running")
        for n in view["notices"]:
            shown = "announced" if n["announced"] else "not yet announced"
            lines.append(f"  {n['rule']} tier {n['tier']}: {n['action']} at {n['acts_at']} "
                         f"if it still holds (since {n['since']}, {shown})")
    if view["lift"]:
        lines.append("")
        lines.append("what lifts it")
        lines += [f"  {x}" if i else x for i, x in enumerate(view["lift"])]
    if view.get("next_review"):
        lines.append(f"next review without a new event: {view['next_review']}")
    decisions = view.get("decisions")
    lines.append("")
    if decisions is None:
        lines.append("decisions: not kept here")
    else:
        kept = view.get("decisions_kept")
        latest = f", the latest {kept} kept" if kept and len(decisions) >= kept else ""
        lines.append(f"decisions ({len(decisions)}{latest})")
        for d in decisions:
            codes = ",".join(x["code"] for x in d["reasons"])
            first = d["reasons"][0]["message"] if d["reasons"] else ""
            lines.append(f"  {d['event_time']}  {d['action']:<9} {d['status_before']} -> "
                         f"{d['status_after']}  {codes}: {first}")
    return "\n".join(lines) + "\n"


# -- HTML ----------------------------------------------------------------------------

_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:60em;color:#222}
h1{font-size:1.4em;margin-bottom:.2em} .meta{color:#666}
.status{display:inline-block;padding:.1em .6em;border-radius:.8em;color:#fff}
.active{background:#2e7d32}.warned{background:#ef6c00}.downgraded{background:#c62828}
.closed{background:#4a148c}
table{border-collapse:collapse;width:100%;margin:.5em 0 1.5em}
th,td{border-bottom:1px solid #ddd;padding:.35em .5em;text-align:left;vertical-align:top}
tr.crossed td{background:#fff3e0} code{font-size:.9em}
"""


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def render_html(view: dict[str, Any]) -> str:
    """A self-contained page for customer service (no script, no outside resource)."""
    status = view["status"]
    out = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
           f"<title>{_e(view['user_id'])}: {_e(status)}</title><style>{_STYLE}</style>",
           "</head><body>",
           f"<h1>{_e(view['user_id'])} <span class='status {_e(status)}' id='status'>"
           f"{_e(status)}{_e(_limit(view))}</span></h1>",
           f"<p class='meta'>as of <time>{_e(view['as_of'])}</time>, policy "
           f"<code>{_e(view['policy_version'])}</code>"]
    if view.get("set_by"):
        s = view["set_by"]
        out.append(f"; set by decision <code>{_e(s['decision_id'])}</code> "
                   f"({_e(', '.join(s['reasons']))})")
    out.append("</p>")
    if view["lift"]:
        out.append("<h2>What lifts it</h2><ul id='lift'>")
        out += [f"<li>{_e(x)}</li>" for x in view["lift"]]
        out.append("</ul>")
    out.append("<h2>Rules</h2><table id='rules'><tr><th>rule</th><th>observed</th>"
               "<th>tiers</th><th>now</th></tr>")
    for r in view["rules"]:
        observed = "no data" if r["observed"] is None else r["observed"]
        tiers = "<br>".join(_e(_tier_text(r, t)) for t in r["tiers"])
        now = (f"{_e(r['message'])}<br>clears {_e(r['clears'])}" if r["crossed"]
               else "not crossed")
        out.append(f"<tr class='{'crossed' if r['crossed'] else ''}' data-code='{_e(r['code'])}'>"
                   f"<td>{_e(r['code'])}</td><td>{_e(observed)}</td><td>{tiers}</td>"
                   f"<td>{now}</td></tr>")
    out.append("</table>")
    if view["notices"]:
        out.append("<h2>Notices running</h2><table id='notices'><tr><th>rule</th>"
                   "<th>action</th><th>acts at</th><th>since</th><th>announced</th></tr>")
        for n in view["notices"]:
            out.append(f"<tr><td>{_e(n['rule'])} tier {_e(n['tier'])}</td>"
                       f"<td>{_e(n['action'])}</td><td>{_e(n['acts_at'])}</td>"
                       f"<td>{_e(n['since'])}</td>"
                       f"<td>{'yes' if n['announced'] else 'no'}</td></tr>")
        out.append("</table>")
    decisions = view.get("decisions")
    out.append("<h2>Decisions</h2>")
    if decisions is None:
        out.append("<p>Not kept here.</p>")
    else:
        out.append("<table id='decisions'><tr><th>event time</th><th>action</th>"
                   "<th>status</th><th>reasons</th><th>decision</th></tr>")
        for d in reversed(decisions):
            reasons = "<br>".join(f"<b>{_e(x['code'])}</b> {_e(x['message'])}"
                                  for x in d["reasons"])
            out.append(f"<tr><td>{_e(d['event_time'])}</td><td>{_e(d['action'])}</td>"
                       f"<td>{_e(d['status_before'])} &rarr; {_e(d['status_after'])}</td>"
                       f"<td>{reasons}</td><td><code>{_e(d['decision_id'])}</code></td></tr>")
        out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# -- a running worker -----------------------------------------------------------------

def read_token(path: str, flag: str) -> str:
    """A bearer token from a file (its first line, stripped); ConfigError naming the
    flag and the file when it cannot be read or is empty."""
    try:
        with open(path, encoding="utf-8") as handle:
            token = handle.readline().strip()
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: cannot read: {exc.strerror}") from exc
    if not token:
        raise ConfigError(f"{flag} {path}: no token in the file")
    return token


def fetch_remote(base_url: str, user_id: str, token: str | None, *,
                 timeout: float = 10.0) -> dict[str, Any] | None:
    """The worker's explanation of a user (`GET {base_url}/users/{user_id}`); None for
    an unknown user (404). Raises `RemoteError` with one line for anything else."""
    import urllib.error
    import urllib.parse
    import urllib.request

    url = f"{base_url.rstrip('/')}/users/{urllib.parse.quote(user_id, safe='')}"
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        detail = exc.read().decode("utf-8", "replace").strip()[:200]
        raise RemoteError(f"{url}: {exc.code} {exc.reason}"
                          + (f": {detail}" if detail else "")) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RemoteError(f"{url}: cannot reach the worker: {reason}") from None
    try:
        view: dict[str, Any] = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise RemoteError(f"{url}: the answer is not JSON") from None
    return view


class RemoteError(MonitorError):
    """A worker did not answer an explain request usefully."""

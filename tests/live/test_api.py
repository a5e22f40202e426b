"""The worker's user endpoint on the real (embedded) broker: `/users/{user_id}` and
`closure-monitor explain --worker`, answered by whichever worker holds the user."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

import orjson
import pytest

from streams.explain import HISTORY_LIMIT, explanation
from streams.policy import load_policy
from tests.helpers import cli, final_states
from tests.live.helpers import Expected, Live
from tests.live.test_live import run_to_completion, scrape

pytestmark = pytest.mark.broker

TOKEN = "s3cret-token-for-tests"


def get(port: int, path: str, token: str | None = TOKEN,
        accept: str = "application/json") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                     headers={"Accept": accept})
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def user_path(user_id: str) -> str:
    return "/users/" + urllib.parse.quote(user_id, safe="")


def api_counts(port: int) -> Counter[str]:
    counts: Counter[str] = Counter()
    for family in scrape(port):
        for s in family.samples:
            if s.name == "closure_monitor_api_requests_total":
                counts[s.labels["outcome"]] += int(s.value)
    return counts


async def test_any_worker_explains_any_user_as_replay_leaves_them(
        live: Live, live_log: Path, tmp_path: Path) -> None:
    token_file = tmp_path / "api.token"
    token_file.write_text(TOKEN + "\n")
    expected = Expected.of(live_log)
    await live.create_topics()
    workers = [live.start_worker("--api-token-file", str(token_file)) for _ in range(2)]
    for worker in workers:
        await live.wait_web(worker)
    sent = await live.produce_lines(live_log)
    await run_to_completion(live, expected, sent)

    policy = load_policy(None)
    states = {k.decode(): v for k, v in final_states(live_log).items() if k.startswith(b"u")}
    users = sorted(states)[:40]
    by_user: dict[str, list[dict]] = {}
    for d in expected.decisions.values():
        by_user.setdefault(d["user_id"], []).append(d)
    for user in users:
        # The user's latest decisions, as replay made them (in replay's order).
        decisions = sorted(by_user.get(user, []), key=lambda d: d["event_time"])
        want = explanation(policy, states[user], decisions[-HISTORY_LIMIT:])
        want["decisions_kept"] = HISTORY_LIMIT
        for worker in workers:
            status, headers, body = get(worker.web_port, user_path(user))
            assert status == 200, body
            assert headers["Content-Type"].startswith("application/json")
            assert orjson.loads(body) == want, user
    assert any(by_user.get(u) for u in users)
    counts = [api_counts(w.web_port) for w in workers]
    # Each worker answered the users it holds and passed the others on.
    assert all(c["ok"] > 0 and c["forwarded"] > 0 for c in counts), counts
    assert sum(c["ok"] for c in counts) == 2 * len(users)  # the owner's, asked or passed on
    assert sum(c["forwarded"] for c in counts) == len(users)

    first = workers[0].web_port
    # A page for a browser; JSON for anything else.
    status, headers, body = get(first, user_path(users[0]), accept="text/html,*/*")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert body.startswith(b"<!doctype html>") and users[0].encode() in body
    # Unknown users, on either worker: 404, never an empty record.
    for worker in workers:
        status, _, body = get(worker.web_port, user_path("u-nobody-at-all"))
        assert status == 404 and b"no such user" in body
    # Odd ids: 400 with the reason; no token or a wrong one: 401.
    status, _, body = get(first, user_path("x" * 65))
    assert status == 400 and b"1 to 64 characters" in body
    status, _, body = get(first, user_path("a\u200bb"))
    assert status == 400 and b"U+200B" in body
    status, headers, _ = get(first, user_path(users[0]), token=None)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    status, _, _ = get(first, user_path(users[0]), token="wrong")
    assert status == 401
    counts_after = api_counts(first)
    assert counts_after["unauthorized"] == 2
    assert counts_after["bad_request"] == 2
    # The unknown user was asked of both: its partition's owner said 404 twice.
    assert sum(api_counts(w.web_port)["not_found"] for w in workers) == 2

    # The command line asks a worker the same way.
    done = cli("explain", users[1], "--worker", f"http://127.0.0.1:{first}",
               "--token-file", str(token_file), "--format", "json")
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout) == orjson.loads(get(first, user_path(users[1]))[2])
    text = cli("explain", users[1], "--worker", f"http://127.0.0.1:{first}",
               "--token-file", str(token_file))
    assert text.stdout.decode().startswith(f"{users[1]}: ")
    missing = cli("explain", "u-nobody-at-all", "--worker", f"http://127.0.0.1:{first}",
                  "--token-file", str(token_file))
    assert missing.returncode == 1
    refused = cli("explain", users[1], "--worker", f"http://127.0.0.1:{first}")
    assert refused.returncode == 2
    assert "401" in refused.stderr.decode()
    for worker in workers:
        assert worker.stop() == 0


async def test_without_a_token_the_user_endpoint_is_off(live: Live) -> None:
    await live.create_topics()
    worker = live.start_worker()
    await live.wait_web(worker)
    status, _, _ = get(worker.web_port, "/users/u000001")
    assert status == 404
    assert api_counts(worker.web_port) == Counter()  # nothing served, nothing counted
    assert worker.stop() == 0

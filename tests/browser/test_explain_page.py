"""The customer-service page of a running worker (`/users/{user_id}`) in Chromium:
asked with the bearer token, it shows the user's status, rules, what lifts the
restriction and their decisions as the worker decided them; without it, 401."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from streams.explain import HISTORY_LIMIT
from streams.generate import generate_log
from streams.kafka import EmbeddedBroker
from tests.browser.helpers import extra_headers
from tests.live.helpers import Expected, Live

pytestmark = [pytest.mark.browser, pytest.mark.broker]

TOKEN = "page-test-token"


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    with EmbeddedBroker(log_path=str(tmp_path / "tansu.log")) as broker:
        setup = Live(broker, tmp_path)
        yield setup
        for worker in setup.workers:
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait()


async def test_the_users_page_in_a_browser(live: Live, tmp_path: Path,
                                           browser: WebDriver) -> None:
    log = tmp_path / "log.jsonl"
    with log.open("wb") as out:
        generate_log(out, seed=21, users=120, days=120)
    expected = Expected.of(log)
    history: dict[str, list[dict]] = {}
    for d in sorted(expected.decisions.values(), key=lambda d: d["event_time"]):
        history.setdefault(d["user_id"], []).append(d)
    user, decisions = next((u, ds) for u, ds in sorted(history.items())
                           if ds[-1]["status_after"] in ("downgraded", "closed"))
    token_file = tmp_path / "api.token"
    token_file.write_text(TOKEN)
    await live.create_topics()
    worker = live.start_worker("--api-token-file", str(token_file))
    await live.wait_web(worker)
    sent = await live.produce_lines(log)
    await live.wait_committed(sent)

    url = f"http://127.0.0.1:{worker.web_port}/users/{urllib.parse.quote(user)}"
    with extra_headers(browser, {"Authorization": f"Bearer {TOKEN}"}):
        browser.get(url)
        status = WebDriverWait(browser, 30).until(
            lambda b: b.find_element(By.ID, "status"))
        assert status.text.startswith(decisions[-1]["status_after"])
        assert browser.title == f"{user}: {decisions[-1]['status_after']}"
        rules = browser.find_elements(By.CSS_SELECTOR, "#rules tr[data-code]")
        assert len(rules) == 8  # the default policy's enabled rules
        crossed = browser.find_elements(By.CSS_SELECTOR, "#rules tr.crossed")
        lift = browser.find_elements(By.CSS_SELECTOR, "#lift li")
        assert lift and lift[0].text.startswith(("The full line is restored",
                                                 "No adverse condition since"))
        assert bool(crossed) == lift[0].text.startswith("The full line is restored")
        rows = browser.find_elements(By.CSS_SELECTOR, "#decisions tr")[1:]
        shown = decisions[-HISTORY_LIMIT:]
        assert len(rows) == len(shown)
        # Newest first, each with its id and reasons.
        for row, d in zip(rows, reversed(shown), strict=True):
            assert d["decision_id"] in row.text
            assert d["reasons"][0]["message"] in row.text
    # The same address without the token: refused, nothing of the user shown.
    browser.get(url)
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "a bearer token is needed" in body and user not in body
    assert worker.stop() == 0

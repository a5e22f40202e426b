"""What browser tests share: pages opened with extra HTTP headers (a worker's pages
want a bearer token, which a browser's address bar cannot give), and the requests a
page made, from the browser's performance log."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver


@contextmanager
def extra_headers(driver: WebDriver, headers: dict[str, str]) -> Iterator[WebDriver]:
    """Every request the browser makes inside the block carries `headers` (the page's
    own, and what its scripts fetch after it loaded), through Chrome's DevTools
    Network domain; none after it, as the browser is the session's:

        with extra_headers(browser, {"Authorization": f"Bearer {token}"}):
            browser.get(f"{worker}/users/u000041")
            ...
    """
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": headers})
    try:
        yield driver
    finally:
        # The domain stays enabled: disabling it would also stop the network events
        # of the performance log (`requested_urls`).
        driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {}})


def open_with_headers(driver: WebDriver, url: str, headers: dict[str, str]) -> None:
    """Open one page with `headers` on its requests, until it has loaded (a page
    whose scripts fetch more wants `extra_headers` around what it does)."""
    with extra_headers(driver, headers):
        driver.get(url)


def requested_urls(driver: WebDriver) -> list[str]:
    """The URLs the browser asked for since the last call (the performance log, which
    the `browser` fixture keeps, is emptied by reading it)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = orjson.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls

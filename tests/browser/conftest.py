"""The browser tests' fixture: one headless Chromium for the session, driven by
Selenium through chromedriver, both Debian's (chromium, chromium-driver; .ci/run
installs them).

The driver is named by its path, so Selenium Manager never looks for a browser or
a driver to download. Without the packages the browser tests fail, saying what to
install: skipped, they would pass unseen in CI. Selenium is imported when a test
first asks for the browser, not when this file is read (collecting the fast suite
reads it).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM = "/usr/bin/chromium"
ARGUMENTS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--window-size=1280,1024")


@pytest.fixture(scope="session")
def browser() -> Iterator[WebDriver]:
    """Headless Chromium. Its performance log holds every request a page makes
    (Chrome's DevTools events), for tests that check what a page fetched."""
    driver_path = shutil.which("chromedriver")
    missing = [package for package, found in (("chromium", os.access(CHROMIUM, os.X_OK)),
                                              ("chromium-driver", driver_path is not None))
               if not found]
    if missing:
        pytest.fail(f"the browser tests need Debian's {' and '.join(missing)} package "
                    f"({CHROMIUM}, chromedriver on PATH): apt-get install chromium "
                    "chromium-driver (.ci/run installs them)", pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for argument in ARGUMENTS:
        options.add_argument(argument)
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()

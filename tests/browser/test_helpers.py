"""The browser helpers themselves, against a small local HTTP server that keeps the
headers of every request it gets."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.helpers import extra_headers, open_with_headers, requested_urls

pytestmark = pytest.mark.browser

# A page whose script fetches more after it loaded, as a worker's page may.
PAGE = b"""<!doctype html><html><head><meta charset='utf-8'><title>t</title>
<link rel="icon" href="data:,"></head><body><p id='state'>loading</p><script>
fetch('/data').then(r => r.text()).then(t => { document.getElementById('state').textContent = t; });
</script></body></html>"""


class Recorder(BaseHTTPRequestHandler):
    """Serves PAGE at / (with any query), and "fetched" anywhere else; keeps (path,
    headers) of each request on its server."""

    server: Server

    def do_GET(self) -> None:
        self.server.seen.append((self.path, dict(self.headers.items())))
        page = self.path.partition("?")[0] == "/"
        body = PAGE if page else b"fetched"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8" if page else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    seen: list[tuple[str, dict[str, str]]]


@pytest.fixture
def server() -> Iterator[Server]:
    httpd = Server(("127.0.0.1", 0), Recorder)
    httpd.seen = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_extra_headers_reach_the_page_and_what_it_fetches_and_stop_after(
        browser: WebDriver, server: Server):
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    token = {"Authorization": "Bearer s3cret-token"}
    with extra_headers(browser, token):
        browser.get(url)
        WebDriverWait(browser, 20).until(
            lambda d: d.find_element(By.ID, "state").text == "fetched")
    got = {path: headers for path, headers in server.seen}
    assert set(got) == {"/", "/data"}, server.seen
    for path in ("/", "/data"):
        assert got[path].get("Authorization") == "Bearer s3cret-token", (path, got[path])

    # Once the block is left, the browser (the session's) sends the header no more.
    server.seen.clear()
    browser.get(url + "?again")
    WebDriverWait(browser, 20).until(lambda d: d.find_element(By.ID, "state").text == "fetched")
    assert [path for path, _ in server.seen] == ["/?again", "/data"]
    assert not [h for _, h in server.seen if "Authorization" in h], server.seen


def test_open_with_headers_and_the_requests_a_page_made(browser: WebDriver, server: Server):
    requested_urls(browser)  # what earlier tests left in the log
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    open_with_headers(browser, url, {"X-Probe": "one"})
    assert server.seen[0][0] == "/"
    assert server.seen[0][1].get("X-Probe") == "one"
    WebDriverWait(browser, 20).until(lambda d: d.find_element(By.ID, "state").text == "fetched")
    urls = requested_urls(browser)
    assert url in urls and url + "data" in urls, urls

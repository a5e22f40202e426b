"""The test suite, by what a test needs:

- tests/unit/: the decoder, the core rules and the policy, the compiled engine
  against the Python one (tests/oracle/), replay, backtest and generate through the
  console script, metrics, settings, the command line and `dev`'s output; nothing
  but this machine.
- tests/shell/: the worker's shell around the engine (`streams.shell`,
  `streams.compiled`), driven by hand, without a broker.
- tests/deploy/: the operators' artefacts (deploy/, docker-compose.yml), checked
  with promtool and docker-compose.
- tests/live/: the worker and the commands on the embedded Tansu broker (marked
  `broker`), and Prometheus scraping a worker (also marked `prometheus`); their
  fixtures are in tests/live/conftest.py, their helpers in tests/live/helpers.py.
- tests/browser/: pages in headless Chromium through Selenium (marked `browser`):
  the backtest report; the browser fixture is in tests/browser/conftest.py, its
  helpers (extra HTTP headers, the requests a page made) in
  tests/browser/helpers.py.

Shared: tests/helpers.py, tests/factories.py, tests/codec_cases.py,
tests/deployment.py, and the Python engine that is the compiled engine's oracle
(tests/oracle/). `pytest -m "not broker and not prometheus and not browser"` runs
all but tests/live/ and tests/browser/, and collects without importing Faust
(tests/unit/test_suite.py).
"""

"""The worker and the commands reach the broker over TLS, with a client certificate
the broker's side asks for: the embedded broker behind stunnel (Debian's stunnel4),
which terminates TLS and is the only address the broker advertises.

Tansu's own TLS listener (0.6.0) is not usable: its `--cert` and `--key` options
refuse each other. SASL is configured through the same settings (tests/unit
test_security.py); Tansu's SASL does not check a SCRAM proof (tansu-io/tansu#694),
so a live SASL test here would show nothing.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from streams.kafka import EmbeddedBroker, free_port, port_open
from tests.live.helpers import CLI, Expected, wait_for

pytestmark = pytest.mark.broker


def _certificate(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (openssl, from Debian)."""
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2",
                    "-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


class TlsBroker:
    """Tansu on a loopback port, and stunnel accepting TLS (requiring a client
    certificate signed by `client_ca`) on the port Tansu advertises."""

    def __init__(self, tmp: Path) -> None:
        stunnel = shutil.which("stunnel4") or shutil.which("stunnel")
        assert stunnel, "stunnel is not installed (Debian's stunnel4; .ci/run installs it)"
        self.server_cert, self.server_key = _certificate(tmp, "broker")
        self.client_cert, self.client_key = _certificate(tmp, "client")
        self.tls_port = free_port()
        self.broker = EmbeddedBroker(log_path=str(tmp / "tansu.log"),
                                     advertised_port=self.tls_port).start()
        config = tmp / "stunnel.conf"
        config.write_text(
            "foreground = yes\npid =\ndebug = notice\n"
            f"output = {tmp / 'stunnel.log'}\n"
            "[kafka]\n"
            f"accept = 127.0.0.1:{self.tls_port}\n"
            f"connect = 127.0.0.1:{self.broker.port}\n"
            f"cert = {self.server_cert}\nkey = {self.server_key}\n"
            f"CAfile = {self.client_cert}\nverifyPeer = yes\n")
        self.stunnel = subprocess.Popen([stunnel, str(config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        self.url = f"kafka://127.0.0.1:{self.tls_port}"

    def flags(self, client_cert: bool = True) -> list[str]:
        flags = ["--broker", self.url, "--broker-ca", str(self.server_cert)]
        if client_cert:
            flags += ["--broker-cert", str(self.client_cert),
                      "--broker-key", str(self.client_key)]
        return flags

    def stop(self) -> None:
        self.stunnel.terminate()
        self.stunnel.wait(10)
        self.broker.stop()


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[TlsBroker]:
    broker = TlsBroker(tmp_path)
    try:
        yield broker
    finally:
        broker.stop()


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*CLI, *args], capture_output=True, timeout=timeout)


async def test_the_worker_and_the_commands_over_tls(tls_broker: TlsBroker, tmp_path: Path,
                                                    live_log: Path) -> None:
    await wait_for(_up(tls_broker.tls_port), 10, "stunnel's port")
    prefix = ["--topic-prefix", "tls."]
    # Without the broker's CA, or without the client certificate, nothing gets through.
    plain = run("produce", str(live_log), "--broker", tls_broker.url, *prefix, timeout=60)
    assert plain.returncode == 2 and b"cannot reach the Kafka broker" in plain.stderr
    anonymous = run("produce", str(live_log), *tls_broker.flags(client_cert=False), *prefix,
                    timeout=60)
    assert anonymous.returncode == 2, anonymous.stderr

    port = free_port()
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            [*CLI, "worker", *tls_broker.flags(), *prefix, "--partitions", "4",
             "--app-id", "tls-monitor", "--web-port", str(port), "--tansu",
             "--strict-order", "--data-dir", str(tmp_path / "data")],
            stdout=out, stderr=subprocess.STDOUT)
    try:
        async def worker_up() -> bool:
            assert worker.poll() is None, log.read_text()[-3000:]
            return port_open("127.0.0.1", port)
        await wait_for(worker_up, 60, "the worker over TLS")
        sent = run("produce", str(live_log), *tls_broker.flags(), *prefix)
        assert sent.returncode == 0, sent.stderr
        expected = Expected.of(live_log)

        decisions = tmp_path / "decisions.jsonl"

        async def all_decided() -> bool:
            done = run("record", *tls_broker.flags(), "--topic", "tls.credit.decisions",
                       "--output", str(decisions), timeout=60)
            assert done.returncode == 0, done.stderr
            ids = {orjson.loads(x)["decision_id"] for x in decisions.read_bytes().splitlines()}
            return ids >= set(expected.decisions)
        await wait_for(all_decided, 120, "every decision, read back over TLS", poll=2)
        got = {(d := orjson.loads(x))["decision_id"]: d
               for x in decisions.read_bytes().splitlines()}
        assert got == expected.decisions
    finally:
        worker.terminate()
        worker.wait(60)
    assert worker.returncode == 0, log.read_text()[-3000:]


def _up(port: int):
    async def check() -> bool:
        return port_open("127.0.0.1", port)
    return check


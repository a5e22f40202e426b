"""The broker's TLS and SASL settings: what aiokafka and Faust are given."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest

from streams.errors import ConfigError
from streams.security import BrokerSecurity


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "c.pem", directory / "c.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def test_nothing_configured_is_plain() -> None:
    plain = BrokerSecurity().check()
    assert plain.protocol == "PLAINTEXT"
    assert plain.client_settings() == {} and plain.faust_settings() == {}


def test_tls_with_a_client_certificate(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    tls = BrokerSecurity(ca_file=str(cert), cert_file=str(cert), key_file=str(key)).check()
    settings = tls.client_settings()
    assert settings["security_protocol"] == "SSL"
    context = settings["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    credentials = tls.faust_settings()["broker_credentials"]
    assert credentials.protocol.name == "SSL"


def test_sasl_over_tls_and_plain(certificate: tuple[Path, Path]) -> None:
    cert, _ = certificate
    sasl = BrokerSecurity(ca_file=str(cert), sasl_mechanism="SCRAM-SHA-512",
                          sasl_username="monitor", sasl_password="pw").check()
    settings = sasl.client_settings()
    assert settings["security_protocol"] == "SASL_SSL"
    assert (settings["sasl_mechanism"], settings["sasl_plain_username"],
            settings["sasl_plain_password"]) == ("SCRAM-SHA-512", "monitor", "pw")
    credentials = sasl.faust_settings()["broker_credentials"]
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert credentials.ssl_context is not None
    clear = BrokerSecurity(sasl_mechanism="PLAIN", sasl_username="u", sasl_password="p")
    assert clear.check().client_settings()["security_protocol"] == "SASL_PLAINTEXT"


@pytest.mark.parametrize(("settings", "error"), [
    ({"cert_file": "x.pem"}, "--broker-cert and --broker-key go together"),
    ({"sasl_mechanism": "GSSAPI", "sasl_username": "u", "sasl_password": "p"},
     "not one of PLAIN"),
    ({"sasl_mechanism": "PLAIN"}, "needs --sasl-username"),
    ({"sasl_username": "u"}, "need --sasl-mechanism"),
    ({"ca_file": "/nonexistent/ca.pem"}, "cannot load the certificates"),
])
def test_incomplete_settings_are_refused_with_the_reason(settings: dict, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        BrokerSecurity(**settings).check()

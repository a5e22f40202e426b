"""How the worker and the commands reach the broker: TLS (the broker's CA, and a
client certificate where the broker asks for one) and SASL, through aiokafka's and
Faust's own settings.

Nothing configured is a plain connection, as before. Every setting comes from a flag
or the environment (`CLOSURE_MONITOR_BROKER_CA` and so on, as a container has it);
the SASL password comes from a file, never the command line. `use(security)` makes
it the settings of every client a command starts (`client_settings`); the worker
passes `faust_settings` to its app.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

from streams.errors import ConfigError

SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class BrokerSecurity:
    ca_file: str | None = None  # the CA that signed the broker's certificate: TLS
    cert_file: str | None = None  # this client's certificate (mutual TLS), PEM
    key_file: str | None = None  # its private key, PEM
    sasl_mechanism: str | None = None  # one of SASL_MECHANISMS
    sasl_username: str | None = None
    sasl_password: str | None = None

    @property
    def tls(self) -> bool:
        return bool(self.ca_file or self.cert_file)

    @property
    def sasl(self) -> bool:
        return self.sasl_mechanism is not None

    def check(self) -> BrokerSecurity:
        """The settings, or ConfigError naming what is missing or unreadable."""
        if bool(self.cert_file) != bool(self.key_file):
            raise ConfigError("--broker-cert and --broker-key go together")
        if self.sasl_mechanism is not None:
            if self.sasl_mechanism not in SASL_MECHANISMS:
                raise ConfigError(f"--sasl-mechanism {self.sasl_mechanism}: not one of "
                                  f"{', '.join(SASL_MECHANISMS)}")
            if not self.sasl_username or self.sasl_password is None:
                raise ConfigError("--sasl-mechanism needs --sasl-username and "
                                  "--sasl-password-file")
        elif self.sasl_username or self.sasl_password is not None:
            raise ConfigError("--sasl-username and --sasl-password-file need --sasl-mechanism")
        if self.tls:
            self.ssl_context()  # readable certificates, or the error now
        return self

    def ssl_context(self) -> ssl.SSLContext:
        """A client context verifying the broker (its CA, else the system's CAs), with
        this client's certificate when one is set."""
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
            if self.cert_file:
                context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"broker TLS: cannot load the certificates: {exc}") from None
        return context

    @property
    def protocol(self) -> str:
        """Kafka's security.protocol."""
        if self.sasl:
            return "SASL_SSL" if self.tls else "SASL_PLAINTEXT"
        return "SSL" if self.tls else "PLAINTEXT"

    def client_settings(self) -> dict[str, Any]:
        """aiokafka's settings of a producer, consumer or admin client."""
        if not (self.tls or self.sasl):
            return {}
        settings: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            settings["ssl_context"] = self.ssl_context()
        if self.sasl:
            settings.update(sasl_mechanism=self.sasl_mechanism,
                            sasl_plain_username=self.sasl_username,
                            sasl_plain_password=self.sasl_password)
        return settings

    def faust_settings(self) -> dict[str, Any]:
        """The Faust app's `broker_credentials`."""
        import faust

        if self.sasl:
            return {"broker_credentials": faust.SASLCredentials(
                username=self.sasl_username, password=self.sasl_password,
                ssl_context=self.ssl_context() if self.tls else None,
                mechanism=self.sasl_mechanism)}
        if self.tls:
            return {"broker_credentials": faust.SSLCredentials(self.ssl_context())}
        return {}


_current = BrokerSecurity()


def use(security: BrokerSecurity) -> None:
    """Every client started from now on reaches the broker this way."""
    global _current
    _current = security.check()


def current() -> BrokerSecurity:
    return _current


def client_settings() -> dict[str, Any]:
    return _current.client_settings()


def read_password(path: str) -> str:
    """A password from a file (its first line, without the line end)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.readline().rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"--sasl-password-file {path}: cannot read: {exc.strerror}") from None

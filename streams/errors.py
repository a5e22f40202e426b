"""The project's exceptions: one root, a few children an operator can act on."""

from __future__ import annotations


class MonitorError(Exception):
    """Root of closure-monitor's own errors; the CLI prints it as one line and exits 2."""

    retriable = False


class PolicyError(MonitorError):
    """The policy file is unusable: fix the rule and field named in the message."""


class ConfigError(MonitorError):
    """A command-line flag or environment variable is unusable: fix the value named."""


class UsageError(ConfigError):
    """A command's flags are unusable as given: the command's usage is shown above the
    flag named."""


class LogError(MonitorError):
    """A log file cannot be read to its end (a cut or damaged gzip file): the file and
    line are named; decisions before it are written (with `--jobs` > 1, those the
    merge of the processes' output had released)."""


class BrokerError(MonitorError):
    """The Kafka broker cannot be reached or refused a request: check the URL and the broker."""

    retriable = True


class PortInUseError(MonitorError):
    """A port the worker must bind is taken: choose another with the flag named."""

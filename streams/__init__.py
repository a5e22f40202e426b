"""closure-monitor: a real-time credit-line monitor (see README.md)."""

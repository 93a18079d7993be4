"""Structured log lines (logfmt: ``key=value`` pairs) on stderr, one event per line.

Both daemons and the CLI log through :func:`log`, so an operator greps (or Loki parses) one
format whichever process wrote the line.  The logger keeps its historical name,
``biometrics.exporter``, so existing logging configurations still find it.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

__all__ = ["LEVELS", "LOGGER", "LogfmtFormatter", "configure", "log"]

LOGGER = logging.getLogger("biometrics.exporter")
LEVELS = ("debug", "info", "warning", "error")


def _quote(value: object) -> str:
    text = str(value)
    if text and not any(c in text for c in ' "=\\\n\t'):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


class LogfmtFormatter(logging.Formatter):
    """``ts=... level=... event=... key=value ...``: greppable, and parseable by Loki or jq."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        fields: dict[str, Any] = getattr(record, "fields", {})
        parts = [
            f"ts={stamp}.{int(record.msecs):03d}Z",
            f"level={record.levelname.lower()}",
            f"event={_quote(record.getMessage())}",
            *(f"{k}={_quote(v)}" for k, v in fields.items()),
        ]
        if record.exc_info:
            parts.append(f"exception={_quote(self.formatException(record.exc_info))}")
        return " ".join(parts)


def configure(level: str = "info", stream: TextIO | None = None) -> logging.Handler:
    """Send the exporter's events at ``level`` and above to ``stream`` (stderr by default)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    LOGGER.handlers[:] = [handler]
    LOGGER.setLevel(level.upper())
    LOGGER.propagate = False
    return handler


def log(level: int, event: str, **fields: object) -> None:
    """Log ``event`` with ``fields`` as key=value pairs."""
    if LOGGER.isEnabledFor(level):
        LOGGER.log(level, event, extra={"fields": fields})

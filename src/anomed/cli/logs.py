"""Log records on the terminal: one line each, never a traceback.

Third-party libraries log exceptions with their traceback (pydicom logs every failed pixel
decoder with `exc_info`); the failure that matters already reaches the user as an error row or
an `anomed: error:` line, so a traceback on stderr only buries it. Each record becomes
"LEVEL: logger: first line of the message (ExceptionType)".
"""

from __future__ import annotations

import logging
import sys


class OneLineFormatter(logging.Formatter):
    """A record as one line: no traceback, no stack; the exception's type name only."""

    def format(self, record: logging.LogRecord) -> str:
        lines = record.getMessage().strip().splitlines() or [""]
        text = lines[0] + (" ..." if len(lines) > 1 else "")
        if not record.name.startswith("anomed") and record.name != "root":
            text = f"{record.name}: {text}"
        if record.exc_info and record.exc_info[1] is not None:
            text += f" ({type(record.exc_info[1]).__name__})"
        return f"{record.levelname}: {text}"


class _StderrHandler(logging.StreamHandler):
    """Writes to the `sys.stderr` of the moment (callers and tests may redirect it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure_logging(level: int = logging.WARNING) -> None:
    """Warnings and errors of every logger to stderr, one line each (idempotent); handlers a
    caller installed on the root logger that print to a stream get the same one-line format."""
    root = logging.getLogger()
    for handler in root.handlers:
        if type(handler) is logging.StreamHandler:
            handler.setFormatter(OneLineFormatter())
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(OneLineFormatter())
        handler.setLevel(level)
        root.addHandler(handler)
        if root.level == logging.NOTSET or root.level > level:
            root.setLevel(level)

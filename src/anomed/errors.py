"""User-facing errors: one message that names the file and the fix."""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class AnomedError(Exception):
    """An error caused by the user's input or environment, not by a bug.

    The CLI prints its message on one line and exits with status 2 instead of a traceback.
    """


def display_text(text: str) -> str:
    """`text` as printable, one-line UTF-8: bytes of a file name that are not UTF-8 (held as
    surrogates by Python) shown as \\xNN, control characters (a newline in a name) as \\n."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that did not come from a file name
        raw = text.encode("utf-8", "backslashreplace")
    text = raw.decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)

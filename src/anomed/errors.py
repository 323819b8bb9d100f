"""User-facing errors: one message that names the file and the fix."""

from __future__ import annotations


class AnomedError(Exception):
    """An error caused by the user's input or environment, not by a bug.

    The CLI prints its message on one line and exits with status 2 instead of a traceback.
    """

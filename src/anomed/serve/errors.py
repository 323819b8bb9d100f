"""The one error shape of the service: an HTTP status, a short code and a one-line message.

Every refusal (bad upload, missing token, unknown model) is raised as an `ApiError` and answered
as JSON `{"error": code, "message": text}`; a client never sees a traceback or a server path.
"""

from __future__ import annotations

from pathlib import Path

from anomed.errors import AnomedError

CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    500: "internal",
    503: "unavailable",
}


class ApiError(Exception):
    """A request the service refuses; `status` is the HTTP status."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or CODES.get(status, "error")
        self.message = message

    def payload(self) -> dict[str, str]:
        return {"error": self.code, "message": self.message}


def public_message(exc: AnomedError, paths: list[Path], label: str) -> str:
    """An AnomedError's message with server paths replaced by the client's file label, so
    an answer names the user's file and never reveals where the server keeps it."""
    text = " ".join(str(exc).split())
    for path in sorted((str(p) for p in paths), key=len, reverse=True):
        text = text.replace(path, label)
    return text

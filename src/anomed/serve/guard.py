"""An ASGI layer in front of every route: the bearer token and the request-size cap.

Both are checked before the application reads a byte of the body: a request without the token
is answered 401 at once, one that declares a larger Content-Length 413 at once, and one that
streams more than the cap (chunked, or lying about its length) is answered 413 the moment the
cap is passed; the application then sees a disconnect and its own answer is dropped.
"""

from __future__ import annotations

import hmac
import json

from anomed.serve.errors import ApiError

SLACK = 1 << 20  # multipart framing and form fields on top of the files themselves
HEADERS = [  # on every answer: no type guessing by browsers, no framing by other sites
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


def _header(scope: dict, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value
    return None


async def send_error(send, error: ApiError) -> None:
    """Answer with the service's one JSON error shape."""
    body = json.dumps(error.payload()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if error.status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    if error.status == 413:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """Token check on `/api/` paths and a body cap on every request."""

    def __init__(self, app, token: str | None, max_bytes: int) -> None:
        self.app = app
        self.token = token
        self.max_bytes = max_bytes + SLACK
        self.limit_mb = max_bytes / 2**20

    def authorized(self, scope: dict) -> bool:
        if not self.token or not scope["path"].startswith("/api/"):
            return True
        scheme, _, value = (
            (_header(scope, b"authorization") or b"").decode("latin-1").partition(" ")
        )
        return scheme.lower() == "bearer" and hmac.compare_digest(
            value.strip().encode(), self.token.encode()
        )

    def too_large(self) -> ApiError:
        return ApiError(413, f"the request is larger than the {self.limit_mb:g} MiB upload limit.")

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if not self.authorized(scope):
            return await send_error(
                send, ApiError(401, "missing or wrong token. Fix: send 'Authorization: Bearer T'.")
            )
        declared = _header(scope, b"content-length")
        try:
            length = None if declared is None else int(declared)
        except ValueError:
            return await send_error(send, ApiError(400, "Content-Length is not a number."))
        if length is not None and length > self.max_bytes:
            return await send_error(send, self.too_large())
        state = {"received": 0, "refused": False, "started": False}

        async def capped_receive():
            if state["refused"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.max_bytes:
                    state["refused"] = True
                    if not state["started"]:
                        await send_error(send, self.too_large())
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            if state["refused"]:  # after a 413 the application's own answer is dropped
                return
            if message["type"] == "http.response.start":
                state["started"] = True
                message = {**message, "headers": [*message.get("headers", []), *HEADERS]}
            await send(message)

        await self.app(scope, capped_receive, guarded_send)

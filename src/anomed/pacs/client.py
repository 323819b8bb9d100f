"""A DICOMweb client for one PACS: QIDO-RS search, WADO-RS retrieve, STOW-RS store.

Wraps `dicomweb_client` with what a worker left running beside a PACS needs:
- authentication by basic auth (`user:password`) or a bearer token, held by the HTTP session
  only: never in a URL, a log line or an error message (credentials written into the URL are
  moved into the session and the URL is shown without them);
- retries with exponential backoff for what a restart or an overloaded server gives
  (connection refused or reset, timeouts, 5xx, 429); other answers (4xx) fail at once;
- `PacsUnavailable` when the server stays away through all retries, so the caller can tell
  "the PACS is down" (nothing is the series' fault) from "this series failed".
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import pydicom

from anomed.errors import AnomedError

try:
    import dicomweb_client  # noqa: F401
    import requests
except ImportError as exc:  # raised where the CLI turns it into one line
    raise AnomedError(f"anomed pacs needs {exc.name}. Fix: pip install 'anomed[pacs]'.") from exc

T = TypeVar("T")
SERIES_FIELDS = (
    "StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesDescription", "BodyPartExamined",
    "Manufacturer", "NumberOfSeriesRelatedInstances", "StudyDate",
)  # fmt: skip
PAGE = 500  # QIDO results asked for at a time


class PacsError(AnomedError):
    """The PACS answered with a refusal (4xx) or something unusable."""


class PacsUnavailable(PacsError):
    """The PACS could not be reached (`down`) or kept answering 5xx through every retry."""

    def __init__(self, message: str, down: bool = True) -> None:
        super().__init__(message)
        self.down = down


@dataclass
class RetryPolicy:
    """How long to keep trying one request: `tries` attempts, waiting `base_s`, 2x, 4x, ...
    at most `max_s` between them."""

    tries: int = 6
    base_s: float = 0.5
    max_s: float = 10.0

    def delays(self) -> list[float]:
        return [min(self.max_s, self.base_s * 2**i) for i in range(max(0, self.tries - 1))]


@dataclass
class SeriesInfo:
    """One series as QIDO-RS describes it."""

    study_uid: str
    series_uid: str
    modality: str
    description: str
    body_part: str
    manufacturer: str
    n_instances: int | None


def _value(item: dict, keyword: str) -> Any:
    """A QIDO JSON attribute's first value (None when absent or empty)."""
    tag = f"{pydicom.datadict.tag_for_keyword(keyword):08X}"
    values = item.get(tag, {}).get("Value") or [None]
    return values[0]


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """(url without user:password, the pair or None)."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, None
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return clean, (parts.username, parts.password or "")


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return True
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        code = exc.response.status_code
        return code >= 500 or code == 429
    return False


def _reason(exc: BaseException) -> str:
    """A short reason without URLs' query strings or headers (so nothing secret leaks)."""
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code} {exc.response.reason or ''}".strip()
    if isinstance(exc, requests.ConnectionError):
        return "connection refused or lost"
    if isinstance(exc, requests.Timeout):
        return "timed out"
    return f"{type(exc).__name__}: {str(exc)[:200]}"


class PacsClient:
    """One DICOMweb server (`url` is its root, e.g. http://127.0.0.1:8042/dicom-web)."""

    def __init__(
        self,
        url: str,
        user: str | None = None,
        token: str | None = None,
        retry: RetryPolicy | None = None,
        timeout_s: float = 60.0,
        stop: threading.Event | None = None,
        on_retry: Callable[[str, str, float], None] | None = None,
    ) -> None:
        from dicomweb_client.api import DICOMwebClient

        if not urlsplit(url).scheme.startswith("http"):
            raise AnomedError(f"--url {url!r}: not an http(s) URL. Fix: pass e.g. "
                              "http://127.0.0.1:8042/dicom-web")  # fmt: skip
        self.url, in_url = split_credentials(url.rstrip("/"))
        self.retry = retry or RetryPolicy()
        self.stop = stop or threading.Event()
        self.on_retry = on_retry
        session = requests.Session()
        if token:
            session.headers["Authorization"] = f"Bearer {token}"
        elif user or in_url:
            name, _, password = user.partition(":") if user else ("", "", "")
            session.auth = in_url if not user else (name, password)
        session.request = _with_timeout(session.request, timeout_s)  # type: ignore[method-assign]
        self._web = DICOMwebClient(url=self.url, session=session)
        self._web.set_http_retry_params(retry=False)  # one backoff: ours (stop-aware)

    def __repr__(self) -> str:  # never the credentials
        return f"PacsClient({self.url!r})"

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """`fn()` with retries; PacsUnavailable after the last, PacsError on a refusal."""
        delays = self.retry.delays()
        for attempt in range(len(delays) + 1):
            try:
                return fn()
            except requests.RequestException as exc:
                if not _retryable(exc):
                    raise PacsError(f"{self.url}: {what}: {_reason(exc)}") from None
                if attempt == len(delays) or self.stop.is_set():
                    raise PacsUnavailable(
                        f"{self.url}: {what}: {_reason(exc)} after {attempt + 1} tries. Fix: "
                        "check that the PACS is running and the URL is its DICOMweb root.",
                        down=not isinstance(exc, requests.HTTPError),
                    ) from None
                if self.on_retry is not None:
                    self.on_retry(what, _reason(exc), delays[attempt])
                self.stop.wait(delays[attempt])
        raise AssertionError("unreachable")

    def find_series(
        self, modality: str | None = None, since: str | None = None
    ) -> list[SeriesInfo]:
        """Every series (of `modality`, of studies dated `since` YYYYMMDD or later), paged."""
        filters: dict[str, str] = {}
        if modality:
            filters["Modality"] = modality
        if since:
            filters["StudyDate"] = f"{since}-"
        found, offset = [], 0
        while True:
            page = self.call(
                "search series",
                lambda at=offset: self._web.search_for_series(
                    search_filters=filters, fields=list(SERIES_FIELDS), offset=at, limit=PAGE
                ),
            )
            found += [_series_info(item) for item in page]
            if len(page) < PAGE:
                return found
            offset += len(page)

    def instance_uids(self, study_uid: str, series_uid: str) -> list[str]:
        """The SOP Instance UIDs of one series (an empty list when it does not exist)."""
        items = self.call(
            f"list series {series_uid}",
            lambda: self._web.search_for_instances(
                study_instance_uid=study_uid, series_instance_uid=series_uid
            ),
        )
        return [str(_value(item, "SOPInstanceUID")) for item in items]

    def retrieve_series(self, study_uid: str, series_uid: str) -> list[pydicom.Dataset]:
        return self.call(
            f"retrieve series {series_uid}",
            lambda: self._web.retrieve_series(
                study_instance_uid=study_uid, series_instance_uid=series_uid
            ),
        )

    def store(self, datasets: list[pydicom.Dataset], study_uid: str) -> None:
        """STOW-RS into `study_uid`; a refusal of any instance is a PacsError."""
        answer = self.call(
            f"store {len(datasets)} instance(s)",
            lambda: self._web.store_instances(datasets=datasets, study_instance_uid=study_uid),
        )
        failed = answer.get("FailedSOPSequence") if answer is not None else None
        if failed:
            raise PacsError(f"{self.url}: the PACS refused {len(failed)} stored instance(s)")


def _series_info(item: dict) -> SeriesInfo:
    count = _value(item, "NumberOfSeriesRelatedInstances")
    return SeriesInfo(
        study_uid=str(_value(item, "StudyInstanceUID") or ""),
        series_uid=str(_value(item, "SeriesInstanceUID") or ""),
        modality=str(_value(item, "Modality") or ""),
        description=str(_value(item, "SeriesDescription") or ""),
        body_part=str(_value(item, "BodyPartExamined") or ""),
        manufacturer=str(_value(item, "Manufacturer") or ""),
        n_instances=None if count is None else int(count),
    )


def _with_timeout(request: Callable, timeout_s: float) -> Callable:
    """The session's request with a default timeout (requests has none: a hung PACS would
    hang the worker)."""

    def call(method: str, url: str, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", timeout_s)
        return request(method, url, **kwargs)

    return call

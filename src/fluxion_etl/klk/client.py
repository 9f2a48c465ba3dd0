"""The KLK REST client: the calls of SPEC §3, with timeouts and retries on transient failures only.

One ``httpx.Client`` underneath (thread-safe; the runner calls from worker threads). Each call
returns a ``Fetched`` with the decoded record *and* the raw bytes, so failed payloads can be kept
and extract time told apart from decode time.

Retried (exponential backoff, full jitter): connection errors, connect/read timeouts, HTTP 502,
503 and 504. Everything else fails at once: other statuses, ``{"error"}`` bodies, bad payloads and
count mismatches would come back the same on a second try.
"""

from __future__ import annotations

import random
import time as _time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, time
from types import TracebackType
from typing import Any, Generic, Literal, Self, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import httpx
import orjson

from fluxion_etl.domain.records import (
    Catalogue,
    KlkWarehouse,
    KnownArticles,
    KnownLines,
    SalesBatch,
)
from fluxion_etl.domain.states import ErrorCategory
from fluxion_etl.errors import (
    BadInputError,
    ConfigError,
    KlkBadPayloadError,
    KlkError,
    KlkHttpStatusError,
    KlkNetworkError,
    KlkTimeoutError,
)
from fluxion_etl.klk import decode
from fluxion_etl.settings import Settings

T = TypeVar("T")

TRANSIENT_STATUSES = frozenset({502, 503, 504})
WarehouseKind = Literal["Reposicion", "pisoventa"]


@dataclass(frozen=True, slots=True)
class KlkTimeouts:
    """Seconds. A catalogue takes 1-2 s; a busy store's sales can take minutes."""

    connect: float = 5.0
    catalogue_read: float = 30.0
    sales_read: float = 600.0

    def __post_init__(self) -> None:
        for name in ("connect", "catalogue_read", "sales_read"):
            if not getattr(self, name) > 0:
                raise ConfigError("KlkTimeouts", name, getattr(self, name), "must be > 0 seconds")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``attempts`` includes the first try. Wait before retry n (1-based) is
    ``min(max_wait, initial_wait * 2**(n-1))``, of which a ``jitter`` fraction is random
    (1.0 = "full jitter": uniform between 0 and the backoff)."""

    attempts: int = 3
    initial_wait: float = 0.5
    max_wait: float = 10.0
    jitter: float = 1.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ConfigError("RetryPolicy", "attempts", self.attempts, "must be >= 1")
        if not (self.initial_wait >= 0 and self.max_wait >= 0):
            raise ConfigError("RetryPolicy", "waits", self.initial_wait, "must be >= 0 seconds")
        if not 0 <= self.jitter <= 1:
            raise ConfigError("RetryPolicy", "jitter", self.jitter, "must be between 0 and 1")

    def wait(self, retry: int, unit_random: float) -> float:
        backoff = min(self.max_wait, self.initial_wait * 2.0 ** (retry - 1))
        return backoff * (1 - self.jitter * unit_random)


@dataclass(frozen=True, slots=True)
class RequestEvent:
    """One HTTP attempt, for metrics and logs. ``category`` is None when the attempt succeeded;
    on the last attempt it includes decode failures (error body, bad payload, count mismatch)."""

    call: str
    attempt: int
    seconds: float
    category: ErrorCategory | None
    status_code: int | None = None


@dataclass(frozen=True, slots=True)
class Fetched(Generic[T]):
    """A decoded value with the bytes it came from.

    ``seconds`` is the whole call (attempts, waits between them, decoding); ``decode_seconds`` the
    decoding part of it.
    """

    value: T
    raw: bytes
    seconds: float
    decode_seconds: float
    attempts: int

    @property
    def extract_seconds(self) -> float:
        return self.seconds - self.decode_seconds


@dataclass(frozen=True, slots=True)
class _Request:
    call: str
    method: Literal["GET", "POST"]
    path: str
    read_timeout: float
    params: Mapping[str, str] | None = None
    body: object = None


@dataclass(frozen=True, slots=True)
class _Response:
    body: bytes
    attempts: int
    status_code: int
    seconds: float


class _Transient(Exception):
    """An attempt failed in a way a retry may fix; carries the error to raise if none does."""

    def __init__(self, error: KlkError) -> None:
        super().__init__(str(error))
        self.error = error


class KlkClient:
    """Talks to one KLK server. Safe to share between threads; close it (or use ``with``)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeouts: KlkTimeouts | None = None,
        retry: RetryPolicy | None = None,
        http_client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        on_request: Callable[[RequestEvent], None] | None = None,
        sleep: Callable[[float], None] = _time.sleep,
        unit_random: Callable[[], float] = random.random,
    ) -> None:
        self.base_url = _checked_base_url(base_url)
        self.timeouts = timeouts or KlkTimeouts()
        self.retry = retry or RetryPolicy()
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(
            transport=transport, headers={"Accept": "application/json"}
        )
        self._on_request = on_request
        self._sleep = sleep
        self._unit_random = unit_random

    @classmethod
    def from_settings(
        cls, settings: Settings, transport: httpx.BaseTransport | None = None, **kwargs: Any
    ) -> KlkClient:
        """The client the service uses: base URL, timeouts and retries from ``FLUXION_KLK_*``."""
        return cls(
            settings.klk_base_url,
            timeouts=KlkTimeouts(
                connect=settings.klk_connect_timeout,
                catalogue_read=settings.klk_catalogue_read_timeout,
                sales_read=settings.klk_sales_read_timeout,
            ),
            retry=RetryPolicy(
                attempts=settings.klk_retry_attempts,
                initial_wait=settings.klk_retry_initial_wait,
                max_wait=settings.klk_retry_max_wait,
            ),
            transport=transport,
            **kwargs,
        )

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- the KLK calls ---------------------------------------------------------------------------

    def warehouses(
        self, kind: WarehouseKind, branch_code: str | None = None
    ) -> Fetched[list[KlkWarehouse]]:
        """``GET /maestra/almacenes/{kind}``, optionally for one branch (``?sucursal=``)."""
        call = f"almacenes/{kind}"
        request = _Request(
            call,
            "GET",
            f"/maestra/almacenes/{kind}",
            self.timeouts.catalogue_read,
            params=None if branch_code is None else {"sucursal": branch_code},
        )
        return self._fetch(request, lambda body: decode.decode_warehouses(body, call))

    def catalogue(
        self,
        warehouse_code: str,
        *,
        unchanged_if: str | None = None,
        known: Callable[[], KnownArticles | None] | None = None,
    ) -> Fetched[Catalogue]:
        """``POST /maestra/articulos/almacen``: a warehouse's every article, zero stock included.

        ``unchanged_if``: the digest of the article list last loaded; an identical list is not
        decoded. ``known``: what the warehouse holds, asked for when the list changed; only its
        new or changed articles are decoded (``decode.decode_catalogue``)."""
        call = "articulos/almacen"
        request = _Request(
            call,
            "POST",
            "/maestra/articulos/almacen",
            self.timeouts.catalogue_read,
            body={"Codigoalmacen": warehouse_code},
        )
        return self._fetch(
            request,
            lambda body: decode.decode_catalogue(
                body,
                warehouse_code=warehouse_code,
                call=call,
                unchanged_if=unchanged_if,
                known=known,
            ),
        )

    def catalogue_by_branch(self, branch_code: str) -> Fetched[Catalogue]:
        """``POST /maestra/articulos/reposicion``: the branch's replenishment catalogue.

        KLK answers for every replenishment warehouse of the branch at once (stock summed). The
        result is labelled with the warehouse when ``meta.almacences_filtrados`` names exactly
        one, else with the branch code: it is a branch-wide view, not one warehouse's stock, so
        inventory sync uses ``catalogue(warehouse_code)``.
        """
        call = "articulos/reposicion"
        request = _Request(
            call,
            "POST",
            "/maestra/articulos/reposicion",
            self.timeouts.catalogue_read,
            body={"CodigoSucursal": branch_code},
        )
        return self._fetch(request, lambda body: _branch_catalogue(body, branch_code, call))

    def sales(
        self,
        *,
        branch_code: str,
        warehouse_code: str,
        day: date,
        start: time | None = None,
        end: time | None = None,
        zone: ZoneInfo,
        seed: int | None = None,
        known: Callable[[], KnownLines | None] | None = None,
    ) -> Fetched[SalesBatch]:
        """``POST /ventas`` for one warehouse and one local day, optionally between two local
        times (inclusive, as KLK reads ``hora_desde``/``hora_hasta``).

        ``seed``: the lines' fingerprints are computed with it; ``known``: the stored lines the
        answer may send again, asked for when it can help; the lines sent exactly as a stored
        one was loaded from are not decoded (``decode.decode_sales``)."""
        body = _sales_body(branch_code, warehouse_code, day, start, end)
        request = _Request("ventas", "POST", "/ventas", self.timeouts.sales_read, body=body)
        return self._fetch(
            request,
            lambda raw: decode.decode_sales(
                raw, warehouse_code=warehouse_code, zone=zone, seed=seed, known=known
            ),
        )

    # --- machinery -------------------------------------------------------------------------------

    def _fetch(self, request: _Request, decoder: Callable[[bytes], T]) -> Fetched[T]:
        started = _time.perf_counter()
        response = self._send(request)
        decode_started = _time.perf_counter()
        try:
            value = decoder(response.body)
        except KlkError as exc:
            self._report(request.call, response, exc.category)
            raise
        finished = _time.perf_counter()
        self._report(request.call, response, None)
        return Fetched(
            value=value,
            raw=response.body,
            seconds=finished - started,
            decode_seconds=finished - decode_started,
            attempts=response.attempts,
        )

    def _send(self, request: _Request) -> _Response:
        """Try up to ``retry.attempts`` times; only ``_Transient`` failures are tried again."""
        for attempt in range(1, self.retry.attempts + 1):
            try:
                return self._attempt(request, attempt)
            except _Transient as failure:
                if attempt == self.retry.attempts:
                    raise failure.error from failure.__cause__
                self._sleep(self.retry.wait(attempt, self._unit_random()))
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    def _attempt(self, request: _Request, attempt: int) -> _Response:
        """One HTTP exchange; raises ``_Transient`` for what a retry may fix, KlkError otherwise."""
        started = _time.perf_counter()
        try:
            response = self._exchange(request)
        except httpx.HTTPError as exc:
            error = _transport_error(request.call, exc, self.base_url)
            seconds = _time.perf_counter() - started
            self._emit(RequestEvent(request.call, attempt, seconds, error.category))
            raise (_Transient(error) if _is_transient(exc) else error) from exc
        seconds = _time.perf_counter() - started
        result = _Response(response.content, attempt, response.status_code, seconds)
        if response.status_code != httpx.codes.OK:
            self._report(request.call, result, ErrorCategory.HTTP_STATUS)
            error = KlkHttpStatusError(request.call, response.status_code, raw=response.content)
            raise _Transient(error) if response.status_code in TRANSIENT_STATUSES else error
        return result

    def _exchange(self, request: _Request) -> httpx.Response:
        try:
            return self._http.request(
                request.method,
                self.base_url + request.path,
                params=request.params,
                content=None if request.body is None else orjson.dumps(request.body),
                headers=None if request.body is None else {"Content-Type": "application/json"},
                timeout=self._timeout(request.read_timeout),
            )
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise ConfigError("KlkClient", "base_url", self.base_url, str(exc)) from exc

    def _timeout(self, read: float) -> httpx.Timeout:
        """Connect short; read (and waiting for a pooled connection) per call type."""
        return httpx.Timeout(
            connect=self.timeouts.connect, read=read, write=self.timeouts.connect, pool=read
        )

    def _report(self, call: str, response: _Response, category: ErrorCategory | None) -> None:
        event = RequestEvent(
            call, response.attempts, response.seconds, category, response.status_code
        )
        self._emit(event)

    def _emit(self, event: RequestEvent) -> None:
        if self._on_request is not None:
            self._on_request(event)


def _checked_base_url(base_url: str) -> str:
    """A malformed base URL is a configuration mistake, not a network failure."""
    fix = "must be an http(s) URL with a host, e.g. http://10.0.0.5:7002"
    try:
        parts = urlsplit(base_url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise ConfigError("KlkClient", "base_url", base_url, fix) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("KlkClient", "base_url", base_url, fix)
    if parts.query or parts.fragment:
        raise ConfigError("KlkClient", "base_url", base_url, "must not have a query or fragment")
    return base_url.rstrip("/")


def _sales_body(
    branch_code: str, warehouse_code: str, day: date, start: time | None, end: time | None
) -> dict[str, str]:
    """SPEC §3 request keys. Always one day and always ``almacen`` (else warehouses merge)."""
    if start is not None and end is not None and start > end:
        raise BadInputError("start", f"{start} is after end {end}; a sales call stays in one day")
    if not warehouse_code:
        raise BadInputError("warehouse_code", "is required: without it KLK merges warehouses")
    body = {
        "sucursal": branch_code,
        "fecha_desde": day.isoformat(),
        "fecha_hasta": day.isoformat(),
        "almacen": warehouse_code,
    }
    if start is not None:
        body["hora_desde"] = start.strftime("%H:%M:%S")
    if end is not None:
        body["hora_hasta"] = end.strftime("%H:%M:%S")
    return body


def _branch_catalogue(body: bytes, branch_code: str, call: str) -> Catalogue:
    codes = decode.catalogue_warehouses(body, call=call)
    label = codes[0] if len(codes) == 1 else branch_code
    return decode.decode_catalogue(body, warehouse_code=label, call=call, one_warehouse=False)


def _is_transient(exc: httpx.HTTPError) -> bool:
    return isinstance(exc, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError)


def _transport_error(call: str, exc: httpx.HTTPError, base_url: str) -> KlkError:
    """Map httpx's exception tree onto ours (see errors.py)."""
    if isinstance(exc, httpx.TimeoutException):
        return KlkTimeoutError(call, f"{type(exc).__name__} talking to {base_url}")
    if isinstance(exc, httpx.DecodingError):
        return KlkBadPayloadError(call, f"response body could not be decompressed: {exc}")
    return KlkNetworkError(call, f"{type(exc).__name__} talking to {base_url}: {exc}")

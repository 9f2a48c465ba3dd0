"""KlkClient retries and error mapping through httpx.MockTransport: which failures are retried,
how often, how long it waits, and what the caller gets back."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date, time
from zoneinfo import ZoneInfo

import httpx
import pytest
from klk_builders import article, catalogue_body

from fluxion_etl.domain.states import ErrorCategory
from fluxion_etl.errors import (
    BadInputError,
    ConfigError,
    KlkBadPayloadError,
    KlkCountMismatchError,
    KlkError,
    KlkErrorBodyError,
    KlkHttpStatusError,
    KlkNetworkError,
    KlkTimeoutError,
)
from fluxion_etl.klk.client import KlkClient, KlkTimeouts, RequestEvent, RetryPolicy
from fluxion_etl.settings import load_settings

CATALOGUE = catalogue_body([article("1"), article("2")])
Step = int | bytes | type[Exception]


class Script:
    """A transport handler answering from a list: a status, a 200 body, or an httpx error class.

    The last step repeats once the list runs out.
    """

    def __init__(self, *steps: Step) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, type):
            raise step("scripted failure", request=request)  # type: ignore[call-arg]
        if isinstance(step, bytes):
            return httpx.Response(200, content=step)
        return httpx.Response(step, content=b"upstream says no")


class Harness:
    def __init__(self, script: Script, attempts: int = 3) -> None:
        self.script = script
        self.sleeps: list[float] = []
        self.events: list[RequestEvent] = []
        self.client = KlkClient(
            "http://klk.test:7002",
            retry=RetryPolicy(attempts=attempts, initial_wait=0.5, max_wait=10.0, jitter=1.0),
            transport=httpx.MockTransport(script),
            on_request=self.events.append,
            sleep=self.sleeps.append,
            unit_random=lambda: 0.5,
        )

    @property
    def categories(self) -> list[ErrorCategory | None]:
        return [event.category for event in self.events]


def test_503_twice_then_200_succeeds_on_the_third_attempt() -> None:
    harness = Harness(Script(503, 503, CATALOGUE))

    fetched = harness.client.catalogue("APP-TPF")
    assert fetched.attempts == 3
    assert len(harness.script.requests) == 3
    assert [item.sku for item in fetched.value.items] == ["1", "2"]
    assert fetched.raw == CATALOGUE
    assert harness.sleeps == [0.25, 0.5]  # half of 0.5 s, then half of 1 s (unit_random = 0.5)
    assert harness.categories == [ErrorCategory.HTTP_STATUS, ErrorCategory.HTTP_STATUS, None]
    assert [event.attempt for event in harness.events] == [1, 2, 3]


@pytest.mark.parametrize(
    ("step", "error"),
    [
        (502, KlkHttpStatusError),
        (503, KlkHttpStatusError),
        (504, KlkHttpStatusError),
        (httpx.ReadTimeout, KlkTimeoutError),
        (httpx.ConnectTimeout, KlkTimeoutError),
        (httpx.PoolTimeout, KlkTimeoutError),
        (httpx.ConnectError, KlkNetworkError),
        (httpx.ReadError, KlkNetworkError),
        (httpx.RemoteProtocolError, KlkNetworkError),
    ],
    ids=str,
)
def test_transient_failures_are_tried_attempts_times(step: Step, error: type[KlkError]) -> None:
    harness = Harness(Script(step), attempts=4)

    with pytest.raises(error) as caught:
        harness.client.catalogue("APP-TPF")
    assert len(harness.script.requests) == 4
    assert len(harness.sleeps) == 3
    assert harness.categories == [caught.value.category] * 4


@pytest.mark.parametrize("status", [500, 400, 404, 401, 301, 204])
def test_other_statuses_fail_at_once(status: int) -> None:
    harness = Harness(Script(status, CATALOGUE))

    with pytest.raises(KlkHttpStatusError) as caught:
        harness.client.catalogue("APP-TPF")
    assert caught.value.status_code == status
    assert len(harness.script.requests) == 1
    assert harness.sleeps == []
    assert harness.events[0].status_code == status


def test_http_status_error_keeps_the_body() -> None:
    harness = Harness(Script(500))

    with pytest.raises(KlkHttpStatusError) as caught:
        harness.client.catalogue("APP-TPF")
    assert caught.value.raw == b"upstream says no"
    assert "HTTP 500 upstream says no" in str(caught.value)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"error": "base de datos no disponible"}', KlkErrorBodyError),
        (b'{"meta": {"total_articulos": 3}, "articulos": []}', KlkCountMismatchError),
        (b"<html>", KlkBadPayloadError),
    ],
)
def test_payload_failures_are_not_retried(body: bytes, error: type[KlkError]) -> None:
    harness = Harness(Script(body, CATALOGUE))

    with pytest.raises(error) as caught:
        harness.client.catalogue("APP-TPF")
    assert len(harness.script.requests) == 1
    assert caught.value.raw == body
    assert harness.categories == [caught.value.category]


def test_unsupported_scheme_at_request_time_is_a_config_error() -> None:
    client = KlkClient("http://klk.test", http_client=httpx.Client(base_url="http://other"))
    client.base_url = "ftp://klk.test"  # what a misbehaving caller could still do

    with pytest.raises(ConfigError):
        client.catalogue("APP-TPF")


def test_fetched_times_the_call_and_its_decoding() -> None:
    fetched = Harness(Script(CATALOGUE)).client.catalogue("APP-TPF")

    assert fetched.seconds >= fetched.decode_seconds > 0
    assert fetched.extract_seconds == pytest.approx(fetched.seconds - fetched.decode_seconds)
    assert fetched.attempts == 1


# --- backoff -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry", "unit_random", "expected"),
    [
        (1, 0.0, 0.5),
        (2, 0.0, 1.0),
        (3, 0.0, 2.0),
        (10, 0.0, 10.0),  # capped at max_wait
        (3, 0.75, 0.5),
        (3, 0.999, pytest.approx(0.002)),
    ],
)
def test_backoff_is_exponential_with_full_jitter(
    retry: int, unit_random: float, expected: float
) -> None:
    policy = RetryPolicy(attempts=10, initial_wait=0.5, max_wait=10.0, jitter=1.0)

    assert policy.wait(retry, unit_random) == expected


def test_backoff_without_jitter_is_deterministic() -> None:
    policy = RetryPolicy(initial_wait=1.0, max_wait=3.0, jitter=0.0)

    assert [policy.wait(n, 0.9) for n in (1, 2, 3)] == [1.0, 2.0, 3.0]


# --- construction --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "base_url",
    ["klk:7002", "http://", "ftp://klk:7002", "http://klk:port", "http://klk:7002/?x=1", ""],
)
def test_malformed_base_url_is_a_config_error(base_url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        KlkClient(base_url)
    assert "base_url" in str(caught.value)


@pytest.mark.parametrize(
    "build",
    [
        lambda: RetryPolicy(attempts=0),
        lambda: RetryPolicy(initial_wait=-1),
        lambda: RetryPolicy(jitter=1.5),
        lambda: KlkTimeouts(connect=0),
        lambda: KlkTimeouts(sales_read=-5),
    ],
)
def test_impossible_retry_or_timeout_settings_are_config_errors(
    build: Callable[[], object],
) -> None:
    with pytest.raises(ConfigError):
        build()


def test_from_settings_takes_timeouts_and_retries_from_the_environment() -> None:
    settings = load_settings(
        klk_base_url="http://10.0.0.5:7002/",
        klk_connect_timeout=2.0,
        klk_catalogue_read_timeout=20.0,
        klk_sales_read_timeout=300.0,
        klk_retry_attempts=5,
        klk_retry_initial_wait=0.1,
        klk_retry_max_wait=4.0,
    )
    script = Script(CATALOGUE)

    with KlkClient.from_settings(settings, transport=httpx.MockTransport(script)) as client:
        assert client.timeouts == KlkTimeouts(connect=2.0, catalogue_read=20.0, sales_read=300.0)
        assert (client.retry.attempts, client.retry.initial_wait, client.retry.max_wait) == (
            5, 0.1, 4.0,
        )  # fmt: skip
        client.catalogue("APP-TPF")
    assert str(script.requests[0].url) == "http://10.0.0.5:7002/maestra/articulos/almacen"


@pytest.mark.parametrize(
    ("call", "read"),
    [
        (lambda c: c.catalogue("APP-TPF"), 30.0),
        (lambda c: c.warehouses("pisoventa"), 30.0),
        (
            lambda c: c.sales(
                branch_code="SUC001", warehouse_code="APP-TPF", day=date(2025, 11, 17),
                zone=ZoneInfo("America/Caracas"),
            ),
            600.0,
        ),
    ],
    ids=["catalogue", "warehouses", "sales"],
)  # fmt: skip
def test_each_call_type_has_its_own_read_timeout(
    call: Callable[[KlkClient], object], read: float
) -> None:
    script = Script(503)
    client = KlkClient(
        "http://klk.test",
        timeouts=KlkTimeouts(connect=5.0, catalogue_read=30.0, sales_read=600.0),
        retry=RetryPolicy(attempts=1),
        transport=httpx.MockTransport(script),
    )

    with pytest.raises(KlkHttpStatusError):
        call(client)
    timeouts = script.requests[0].extensions["timeout"]
    assert (timeouts["connect"], timeouts["read"]) == (5.0, read)


def test_sales_refuses_a_window_that_ends_before_it_starts() -> None:
    script = Script(b"{}")
    client = KlkClient("http://klk.test", transport=httpx.MockTransport(script))

    with pytest.raises(BadInputError):
        client.sales(
            branch_code="SUC001",
            warehouse_code="APP-TPF",
            day=date(2025, 11, 17),
            start=time(14, 0),
            end=time(13, 0),
            zone=ZoneInfo("America/Caracas"),
        )
    assert script.requests == []


def test_client_is_safe_to_share_between_threads() -> None:
    script = Script(CATALOGUE)
    client = KlkClient("http://klk.test", transport=httpx.MockTransport(script))

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: client.catalogue("APP-TPF"), range(64)))
    assert all(len(fetched.value.items) == 2 for fetched in results)
    assert len(script.requests) == 64


def test_close_leaves_a_passed_in_http_client_open() -> None:
    http = httpx.Client(transport=httpx.MockTransport(Script(CATALOGUE)))

    with KlkClient("http://klk.test", http_client=http) as client:
        client.catalogue("APP-TPF")
    assert not http.is_closed
    http.close()


def test_undecompressable_body_is_a_bad_payload_not_retried() -> None:
    requests: list[httpx.Request] = []

    def gzip_garbage(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, content=b"not gzip", headers={"Content-Encoding": "gzip"})

    client = KlkClient("http://klk.test", transport=httpx.MockTransport(gzip_garbage))

    with pytest.raises(KlkBadPayloadError):
        client.catalogue("APP-TPF")
    assert len(requests) == 1

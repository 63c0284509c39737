"""The Genstore REST client against the fake Genstore (a real HTTP server): paging by the `Link`
header, retries of 429 (after `Retry-After`), 500 and hangs with a bound, a wrong token failing
at once, the per-run budget, and the token never in a repr, an error or a log line."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fake_genstore import FakeGenstore, FakeShop, refund

from genstore_api.client import (
    Budget,
    BudgetExhausted,
    GenstoreClient,
    Retries,
    Unauthorized,
    Unavailable,
)

pytestmark = pytest.mark.unit

SHOP = "shop-one.example"
TOKEN = "gst-secret-token-one"  # noqa: S105 - a test token


@pytest.fixture
def fake() -> Iterator[FakeGenstore]:
    refunds = [refund(f"70{n:02d}", "9001" if n < 5 else "9002", "in_progress", "10.00",
                      f"2025-03-01T10:{n:02d}:00Z") for n in range(7)]
    server = FakeGenstore({SHOP: FakeShop(TOKEN, refunds)}).start()
    yield server
    server.stop()


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client(fake: FakeGenstore, token: str = TOKEN, **options: object) -> GenstoreClient:
    values: dict[str, object] = {"base_url": fake.url, "budget": Budget(100, 0.0),
                                 "retries": Retries(3, 0.01, 0.05), "read_timeout": 2.0}
    values.update(options)
    return GenstoreClient(SHOP, token, **values)  # type: ignore[arg-type]


def test_every_page_is_read_and_later_pages_carry_only_the_page_token(
        fake: FakeGenstore) -> None:
    refunds = client(fake).order_refunds("9001", limit=2)
    assert [r["id"] for r in refunds] == ["7000", "7001", "7002", "7003", "7004"]
    queries = [query for _, _, query in fake.requests]
    assert queries[0] == {"limit": ["2"]}
    assert len(queries) == 3 and all(set(q) == {"pageToken"} for q in queries[1:])


def test_the_order_list_is_read_for_the_window(fake: FakeGenstore) -> None:
    ids = client(fake).order_ids(updated_at_min=datetime(2025, 3, 1, 10, 5, tzinfo=UTC),
                                 limit=1)
    assert ids == ["9002"]
    assert fake.requests[0][2]["updatedAtMin"] == ["2025-03-01T10:05:00+00:00"]


def test_refund_details_by_ids(fake: FakeGenstore) -> None:
    found = client(fake).refunds(ids=["7001", "7006"])
    assert [(r["id"], r["orderId"]) for r in found] == [("7001", "9001"), ("7006", "9002")]


def test_a_429_waits_its_retry_after_and_a_500_is_retried_then_the_call_completes(
        fake: FakeGenstore) -> None:
    # given Genstore throttles once, then fails once
    fake.fail_next("429", retry_after=0.02)
    fake.fail_next("500")
    sleeps = Sleeps()
    # when the refunds are asked for
    refunds = client(fake, sleep=sleeps).order_refunds("9002")
    # then the call succeeds on the third request, having waited the Retry-After first
    assert [r["id"] for r in refunds] == ["7005", "7006"]
    assert len(fake.requests) == 3
    assert sleeps[0] == pytest.approx(0.02) and 0 <= sleeps[1] <= 0.02


def test_a_500_on_every_attempt_gives_up_after_the_last(fake: FakeGenstore) -> None:
    fake.fail_next("500", times=10)
    with pytest.raises(Unavailable, match="HTTP 500 on each of 3 attempts"):
        client(fake, sleep=Sleeps()).order_refunds("9001")
    assert len(fake.requests) == 3


def test_a_hang_hits_the_read_timeout(fake: FakeGenstore) -> None:
    fake.fail_next("hang", times=10, hang_seconds=3)
    started = time.monotonic()
    with pytest.raises(Unavailable, match="ReadTimeout"):
        client(fake, read_timeout=0.3, retries=Retries(2, 0.01, 0.01)).order_refunds("9001")
    assert time.monotonic() - started < 2


def test_a_wrong_token_is_reported_at_once_and_never_shown(
        fake: FakeGenstore, caplog: pytest.LogCaptureFixture) -> None:
    wrong = "gst-wrong-token-xyz"  # noqa: S105
    caplog.set_level(logging.DEBUG)
    genstore = client(fake, token=wrong)
    with pytest.raises(Unauthorized, match="HTTP 401") as raised:
        genstore.order_refunds("9001")
    assert len(fake.requests) == 1
    shown = str(raised.value) + repr(raised.value) + repr(genstore) + caplog.text
    assert wrong not in shown and fake.tokens_seen == [wrong]


def test_retries_log_the_shop_and_problem_but_never_the_token(
        fake: FakeGenstore, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake.fail_next("500", times=2)
    client(fake).order_refunds("9001")
    assert "HTTP 500" in caplog.text and SHOP in caplog.text
    assert TOKEN not in caplog.text


def test_the_budget_caps_and_spaces_the_requests(fake: FakeGenstore) -> None:
    sleeps = Sleeps()
    genstore = client(fake, budget=Budget(max_requests=2, min_interval=5.0), sleep=sleeps)
    genstore.order_refunds("9001")
    genstore.order_refunds("9002")
    with pytest.raises(BudgetExhausted, match="budget of 2 requests"):
        genstore.order_refunds("9001")
    assert len(fake.requests) == 2
    assert len(sleeps) == 1 and 4 < sleeps[0] <= 5.0

"""What is logged per delivery: a worker's one INFO summary per list it applies, counted by
outcome; each applied or duplicate delivery, and each delivery the ingest queued, at
REFUND_SINK_DELIVERY_LOG_LEVEL (DEBUG unless chosen); each dead letter as a warning whatever
that level."""

from __future__ import annotations

import logging

import fakeredis
import pytest
from conftest import SECRET, make_settings
from deliveries import delivery
from fake_redis import REDIS_URL
from payloads import camel_event, to_body
from signing import genstore_headers

from ingest import create_app
from refunds.settings import ConfigError, Settings
from worker.handling import DeliveryHandler

pytestmark = pytest.mark.unit


def apply_three(sqlite_url: str, caplog: pytest.LogCaptureFixture,
                **options: object) -> dict[str, list[logging.LogRecord]]:
    """A list of three: one applied, one duplicate (the same content again), one invalid."""
    caplog.set_level(logging.DEBUG, logger="refund_sink.worker")
    first = delivery(camel_event(refund_id="1"))
    again = delivery(camel_event(refund_id="1"))
    broken = delivery(b"{not json")
    DeliveryHandler(make_settings(sqlite_url, **options)).handle([first, again, broken])
    events: dict[str, list[logging.LogRecord]] = {}
    for record in caplog.records:
        events.setdefault(record.__dict__.get("event", ""), []).append(record)
    return events


def test_a_list_is_summarized_at_info_and_its_deliveries_are_debug(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    events = apply_three(sqlite_url, caplog)
    [summary] = events["deliveries applied"]
    assert summary.levelno == logging.INFO
    assert (summary.deliveries, summary.applied, summary.duplicates,  # type: ignore[attr-defined]
            summary.dead_lettered) == (3, 1, 1, 1)  # type: ignore[attr-defined]
    assert [r.levelno for r in events["delivery applied"]] == [logging.DEBUG]
    assert [r.levelno for r in events["delivery duplicate"]] == [logging.DEBUG]
    # a dead letter is a warning whatever the delivery level
    assert [r.levelno for r in events["delivery dead-lettered"]] == [logging.WARNING]


def test_the_delivery_level_is_the_operators_choice(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    events = apply_three(sqlite_url, caplog, delivery_log_level=logging.INFO)
    assert [r.levelno for r in events["delivery applied"]] == [logging.INFO]
    assert events["delivery applied"][0].delivery_id  # type: ignore[attr-defined]


def test_a_list_of_one_names_its_delivery_in_the_summary(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="refund_sink.worker")
    raw = delivery(camel_event(refund_id="7"))
    DeliveryHandler(make_settings(sqlite_url)).handle([raw])
    [summary] = [r for r in caplog.records if r.__dict__.get("event") == "deliveries applied"]
    assert (summary.delivery_id, summary.refund_id) == (raw.delivery_id, "7")  # type: ignore[attr-defined]


def test_the_delivery_level_must_be_a_level() -> None:
    assert Settings.from_env({}).delivery_log_level == logging.DEBUG
    assert Settings.from_env({"REFUND_SINK_DELIVERY_LOG_LEVEL": "info"}).delivery_log_level \
        == logging.INFO
    with pytest.raises(ConfigError, match="REFUND_SINK_DELIVERY_LOG_LEVEL"):
        Settings.from_env({"REFUND_SINK_DELIVERY_LOG_LEVEL": "loud"})


def test_the_ingest_logs_a_queued_delivery_at_the_delivery_level(
    sqlite_url: str, fake_server: fakeredis.FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="refund_sink.ingest")
    body = to_body(camel_event())

    def accepted(**options: object) -> list[int]:
        caplog.clear()
        client = create_app(make_settings(sqlite_url, REDIS_URL, "unit:", **options)).test_client()
        assert client.post("/webhooks/genstore", data=body,
                           headers=genstore_headers(body, SECRET)).status_code == 202
        return [r.levelno for r in caplog.records if r.__dict__.get("event") == "delivery accepted"]

    assert accepted() == [logging.DEBUG]  # the accepted-deliveries metric counts them anyway
    assert accepted(delivery_log_level=logging.INFO) == [logging.INFO]

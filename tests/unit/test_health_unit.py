"""The readiness probes (`ingest.health`) against a fakeredis broker, SQLite and a spool
directory: which dependency each probe names, and when each says ready.

Left to integration tests against real servers: `tests/integration/test_ingest.py` (/readyz
naming a real Redis and an unreachable PostgreSQL), `test_broker_outage.py` (a real Redis
stopped and started again), `test_sentinel.py` (the probe through Sentinel)."""

from __future__ import annotations

from pathlib import Path

import fakeredis
import pytest
from conftest import make_settings
from deliveries import delivery
from fake_redis import REDIS_URL
from flask.testing import FlaskClient
from payloads import camel_event

from broker.spool import Spool
from ingest import create_app
from refunds.settings import Settings

pytestmark = pytest.mark.unit
UNREACHABLE_DB = "postgresql+psycopg://nobody@127.0.0.1:1/nowhere"  # nothing listens on 1


def probe(settings: Settings) -> FlaskClient:
    return create_app(settings).test_client()


@pytest.fixture
def settings(sqlite_url: str, fake_server: fakeredis.FakeServer) -> Settings:
    return make_settings(sqlite_url, REDIS_URL, "unit:")


def test_ready_while_broker_and_database_answer(settings: Settings) -> None:
    client = probe(settings)
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json() == {"status": "ready", "broker": "ok", "database": "ok",
                                "spool": "empty", "spooled": 0, "reconcile": {}}
    assert client.get("/readyz/webhooks").get_json() == {
        "status": "ready", "broker": "ok", "spool": "empty", "spooled": 0}
    assert client.get("/healthz").status_code == 200


def test_redis_away_is_unready_but_webhooks_are_taken_into_the_spool(
    settings: Settings, fake_server: fakeredis.FakeServer
) -> None:
    client = probe(settings)
    fake_server.connected = False
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json()["broker"] == "unavailable"
    assert ready.get_json()["database"] == "ok"
    webhooks = client.get("/readyz/webhooks")
    assert webhooks.status_code == 200
    assert webhooks.get_json() == {"status": "degraded", "broker": "unavailable",
                                   "spool": "empty", "spooled": 0}


def test_database_away_is_unready_without_reconcile_detail_and_webhooks_ready(
    fake_server: fakeredis.FakeServer
) -> None:
    client = probe(make_settings(UNREACHABLE_DB, REDIS_URL, "unit:"))
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json() == {"status": "unavailable", "broker": "ok",
                                "database": "unavailable", "spool": "empty", "spooled": 0}
    assert client.get("/readyz/webhooks").status_code == 200


def test_spooled_deliveries_show_in_both_probes(settings: Settings) -> None:
    client = probe(settings)
    Spool(settings.spool_dir).put(delivery(camel_event(refund_id="1")))
    assert client.get("/readyz").get_json()["spool"] == "in_use"
    assert client.get("/readyz/webhooks").get_json()["spooled"] == 1


def test_no_broker_and_no_writable_spool_refuses_webhooks(
    sqlite_url: str, tmp_path: Path, fake_server: fakeredis.FakeServer
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    client = probe(make_settings(sqlite_url, REDIS_URL, "unit:",
                                 spool_dir=str(blocker / "spool")))
    assert client.get("/readyz/webhooks").status_code == 200  # the broker alone will do
    fake_server.connected = False
    refused = client.get("/readyz/webhooks")
    assert refused.status_code == 503
    assert refused.get_json() == {"status": "unavailable", "broker": "unavailable",
                                  "spool": "empty", "spooled": 0}

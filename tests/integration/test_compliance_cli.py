"""`refund-sink export customer` as the operator runs it after a `customers/data_request`:
the customer's refunds, messages and deliveries with their contact details, in a file only
its owner reads; after a `customers/redact`, the same export holds no contact details. And
`refund-sink retention apply`, which drops old raw bodies once configured."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from deliveries import delivery, view
from payloads import camel_event, to_body
from processes import environment
from sqlalchemy import select

from refunds.apply import Outcome
from refunds.db import session_factory
from refunds.models import RawDeliveryRecord
from refunds.settings import Settings
from worker.handling import DeliveryHandler

pytestmark = pytest.mark.integration
CLI = [str(Path(sys.executable).parent / "refund-sink")]
ADA = {"id": "4242", "firstName": "Adelheid", "lastName": "Quenbyworth",
       "email": "adelheid.q@example.org", "phone": "+15550001111"}


def export(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "export", "customer", "--shop", "default", *args],
                          env=environment(settings), capture_output=True, text=True, timeout=60)


def given_ada_and_bob(settings: Settings) -> None:
    DeliveryHandler(settings).handle([
        delivery(camel_event("7001", status="in_progress", price="25.00", customer=ADA),
                 delivery_id="d-1"),
        delivery(camel_event("7001", status="refunded", price="25.00", customer=ADA,
                             update_time="2025-03-01T11:00:00Z"), delivery_id="d-2"),
        delivery(camel_event("7002", customerId="4242", price="5.00"), delivery_id="d-3"),
        delivery(camel_event("7003", customer={"id": "77", "email": "bart@example.org"}),
                 delivery_id="d-4"),
    ])


def test_the_export_holds_the_customers_refunds_and_contact_details(
    settings: Settings, tmp_path: Path,
) -> None:
    given_ada_and_bob(settings)
    out = tmp_path / "ada.json"

    done = export(settings, "--customer", "4242", "--out", str(out))

    assert done.returncode == 0, done.stderr
    assert done.stdout == f"2 refunds of customer 4242 written to {out}\n"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    data: dict[str, Any] = json.loads(out.read_text())
    assert data["customer"] == {"id": "4242", "email": "adelheid.q@example.org",
                                "first_name": "Adelheid",
                                "last_name": "Quenbyworth", "phone": "+15550001111"}
    assert data["refunds"] == [view(settings, "7001"), view(settings, "7002")]
    assert [(m["refund_id"], m["delivery_id"]) for m in data["messages"]] == [
        ("7001", "d-1"), ("7001", "d-2"), ("7002", "d-3")]
    assert [d["delivery_id"] for d in data["deliveries"]] == ["d-1", "d-2", "d-3"]
    assert data["deliveries"][0]["body"]["refund"]["customer"]["email"] == (
        "adelheid.q@example.org")
    assert "bart@example.org" not in out.read_text()


def test_by_e_mail_to_stdout(settings: Settings) -> None:
    given_ada_and_bob(settings)

    done = export(settings, "--email", "Adelheid.Q@example.org")

    assert done.returncode == 0, done.stderr
    assert [refund["id"] for refund in json.loads(done.stdout)["refunds"]] == ["7001"]


def test_after_a_redact_the_export_holds_the_refunds_without_contact_details(
    settings: Settings,
) -> None:
    given_ada_and_bob(settings)
    request = delivery(to_body({"shop_id": 1, "shop_domain": "default",
                                "customer": {"id": "4242"}}), topic="customers/redact")
    assert DeliveryHandler(settings).handle([request])[0].outcome is Outcome.APPLIED

    done = export(settings, "--customer", "4242")

    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert [refund["id"] for refund in data["refunds"]] == ["7001", "7002"]
    for detail in ADA.values():
        if detail != "4242":
            assert detail not in done.stdout


def test_neither_customer_nor_e_mail_is_a_one_line_error(settings: Settings) -> None:
    done = export(settings)

    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "refund-sink: export customer: give --customer ID or --email\n"


def retention(settings: Settings, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "retention", "apply"], env=environment(settings, **env),
                          capture_output=True, text=True, timeout=60)


def test_retention_apply_drops_the_old_applied_bodies_once_configured(
    settings: Settings,
) -> None:
    old = datetime.now(UTC) - timedelta(days=40)
    DeliveryHandler(settings).handle([
        delivery(camel_event("7001", customer=ADA), delivery_id="old", received_at=old),
        delivery(camel_event("7002", customer=ADA), delivery_id="new")])

    unset = retention(settings)
    done = retention(settings, REFUND_SINK_RAW_RETENTION_DAYS="30")

    assert (unset.returncode, unset.stdout) == (
        0, "REFUND_SINK_RAW_RETENTION_DAYS is not set: raw bodies are kept\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ("raw bodies dropped: 1 archived deliveries, 0 resolved dead letters "
                           "(older than 30 days)\n")
    with session_factory(settings)() as session:
        bodies = {delivery_id: body for delivery_id, body in session.execute(
            select(RawDeliveryRecord.delivery_id, RawDeliveryRecord.body))}
    assert bodies["old"] == b"" and bodies["new"] != b""

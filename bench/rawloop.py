"""The S3 baseline: the writes `apply_deliveries` makes for a list of one, by hand with
psycopg, one transaction per message, no ORM, no pydantic, no Celery: archive the raw
delivery, check its (shop, delivery id), create and lock the refund row, claim the delivery,
record the message, clear a dead letter, read the refund's messages back and update the
refund. Fed from memory (no broker), so the baseline is if anything faster than a fair one."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.types.json import Json

from bench.payloads import Signed

_DELIVERIES: Sequence[Signed] = ()


def apply_one(conn: psycopg.Connection[Any], delivery: Signed) -> None:
    now = datetime.now(UTC)
    shop = delivery.headers["X-Genstore-Shop-Domain"]
    headers = {k.lower(): v for k, v in delivery.headers.items()}
    digest = hashlib.sha256(delivery.body).hexdigest()
    key = (shop, delivery.delivery_id)
    with conn.transaction():
        conn.execute(
            "INSERT INTO raw_deliveries (shop, delivery_id, body_sha256, topic, headers, body,"
            " received_at, archived_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            (*key, digest, "refunds/create", Json(headers), delivery.body, now, now))
        if conn.execute("SELECT body_sha256 FROM deliveries WHERE shop = %s AND delivery_id = %s",
                        key).fetchone():
            return
        refund = json.loads(delivery.body)["refund"]
        occurred = datetime.strptime(refund["updateTime"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        price = Decimal(refund["refundPrice"])
        conn.execute(
            "INSERT INTO refunds (shop, refund_id, status, fund_changes, events_applied)"
            " VALUES (%s, %s, 'in_progress', '[]', 0) ON CONFLICT DO NOTHING", (shop, refund["id"]))
        conn.execute("SELECT * FROM refunds WHERE shop = %s AND refund_id = %s FOR UPDATE",
                     (shop, refund["id"])).fetchone()
        claimed = conn.execute(
            "INSERT INTO deliveries (shop, delivery_id, body_sha256, topic, refund_id, outcome,"
            " processed_at) VALUES (%s, %s, %s, %s, %s, 'applied', %s) ON CONFLICT DO NOTHING"
            " RETURNING delivery_id", (*key, digest, "refunds/create", refund["id"], now)
        ).fetchone()
        if claimed is None:
            return
        fingerprint = hashlib.sha256(json.dumps(refund, sort_keys=True).encode()).hexdigest()
        row = conn.execute(
            "INSERT INTO refund_messages (shop, refund_id, fingerprint, fingerprint_version,"
            " delivery_id, kind, occurred_at, created_at, price, order_id, currency, customer_id,"
            " note, line_items, message, recorded_at) VALUES (%s, %s, %s, 2, %s, 'refund', %s,"
            " %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING id",
            (shop, refund["id"], fingerprint, delivery.delivery_id, occurred, occurred, price,
             refund.get("orderId"), "USD", "1", refund.get("note"),
             Json(refund.get("lineItems")), Json(refund), now)).fetchone()
        if row is None:
            conn.execute("UPDATE deliveries SET outcome = 'duplicate_message'"
                         " WHERE shop = %s AND delivery_id = %s", key)
            return
        conn.execute("UPDATE deliveries SET message_id = %s WHERE shop = %s AND delivery_id = %s",
                     (row[0], *key))
        conn.execute("UPDATE dead_letters SET state = 'resolved', resolved_at = %s"
                     " WHERE shop = %s AND delivery_id = %s AND state <> 'resolved'", (now, *key))
        messages = conn.execute(
            "SELECT occurred_at, price, order_id, note, line_items FROM refund_messages"
            " WHERE shop = %s AND refund_id = %s", (shop, refund["id"])).fetchall()
        latest = max(messages, key=lambda m: m[0])
        conn.execute(
            "UPDATE refunds SET order_id = %s, refund_price = %s, currency = 'USD', note = %s,"
            " line_items = %s, created_at = %s, updated_at = %s, events_applied = %s,"
            " fund_changes = '[]', last_applied_at = %s WHERE shop = %s AND refund_id = %s",
            (latest[2], latest[1], latest[3], Json(latest[4]), min(m[0] for m in messages),
             latest[0], len(messages), now, shop, refund["id"]))


def _child(args: tuple[str, range]) -> int:
    url, indices = args
    with psycopg.connect(url, autocommit=True) as conn:
        for index in indices:
            apply_one(conn, _DELIVERIES[index])
    return len(indices)


def run(database_url: str, deliveries: Sequence[Signed], processes: int) -> float:
    """Messages applied per second by `processes` processes, one transaction each."""
    global _DELIVERIES
    _DELIVERIES = deliveries
    jobs = [(database_url, range(p, len(deliveries), processes)) for p in range(processes)]
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        done = sum(pool.map(_child, jobs))
    seconds = time.perf_counter() - started
    _DELIVERIES = ()
    return done / seconds

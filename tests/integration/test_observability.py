"""Metrics, logs and Flower after a mix of good, duplicate and bad deliveries, with a real
worker (and a real Flower) process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from base64 import b64encode
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from backing_services import stop
from conftest import SECRET, make_settings
from flask.testing import FlaskClient
from payloads import camel_event, doc_example_event, to_body
from processes import environment, wait_for, workers
from prometheus_client.parser import text_string_to_metric_families
from signing import genstore_headers
from sqlalchemy import func, select

from ingest import create_app
from refund_sink.servers import free_port
from refunds.db import session_factory
from refunds.models import DeadLetter, DeliveryClaim, Refund
from refunds.settings import Settings

pytestmark = pytest.mark.integration
PHONE, ADDRESS, EMAIL = "+16173034750", "1990 Poplar Ridge Road", "jane.doe@example.org"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def mixed_traffic() -> list[tuple[bytes, dict[str, str]]]:
    """3 distinct messages (one stale), a resent delivery, the same content under a new id,
    a bad signature, an oversized body, broken JSON and an unknown status."""
    customer = doc_example_event()["refund"]["customer"] | {"email": EMAIL}
    newer = to_body(camel_event(refund_id="1", update_time="2025-03-01T10:05:00Z",
                                customer=customer))
    older = to_body(camel_event(refund_id="1", update_time="2025-03-01T10:00:00Z"))
    other = to_body(doc_example_event())
    broken = b'{"refund": {"id": "9", "email": "' + EMAIL.encode() + b'"'
    unknown = to_body(camel_event(refund_id="2", status="exploded"))

    def signed(body: bytes, delivery_id: str) -> tuple[bytes, dict[str, str]]:
        return body, genstore_headers(body, SECRET, **{"X-Genstore-Webhook-Id": delivery_id})

    return [
        signed(newer, "m-newer"), signed(older, "m-older"), signed(other, "m-other"),
        signed(other, "m-other"), signed(other, "m-other-again"),
        (other, genstore_headers(other, "not-the-secret")),
        signed(b"x" * 5000, "m-big"), signed(broken, "m-broken"), signed(unknown, "m-unknown"),
    ]


@pytest.fixture(params=[1, 20], ids=["one", "batches"])
def run(pg_url: str, redis_url: str, key_prefix: str, tmp_path: Path,
        request: pytest.FixtureRequest) -> Iterator[tuple[Settings, FlaskClient, str, Path]]:
    port = free_port()
    settings = make_settings(pg_url, redis_url, key_prefix, max_body_bytes=4096,
                             metrics_port=port, batch_size=request.param)
    client = create_app(settings).test_client()
    (tmp_path / "metrics").mkdir()
    with workers(settings, tmp_path, concurrency=1,
                 PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics")) as [worker]:
        yield settings, client, f"http://127.0.0.1:{port}/metrics", worker.log


def test_worker_counts_add_up_without_a_metrics_dir_set(
    pg_url: str, redis_url: str, key_prefix: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    # as `refund-sink worker` and the deploy manifests run it: the worker creates the
    # directory before prometheus_client is first imported, or its counters stay per process
    port = free_port()
    settings = make_settings(pg_url, redis_url, key_prefix, metrics_port=port)
    client = create_app(settings).test_client()
    body = to_body(camel_event(refund_id="1"))

    def applied() -> float:
        try:
            return value(_get(f"http://127.0.0.1:{port}/metrics", {}),
                         "refund_sink_messages_applied_total")
        except OSError:
            return 0.0

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "refund_sink.cli", "worker", "--concurrency", "1"],
            env=environment(settings), stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "ready." in log.read_text(), 60, "worker not ready")
        client.post("/webhooks/genstore", data=body, headers=genstore_headers(body, SECRET))
        wait_for(lambda: applied() == 1, 30, "the pool process's count is not served")
    finally:
        stop(worker)


def test_metrics_count_each_kind_of_delivery(run: Any) -> None:
    settings, client, worker_metrics, _log = run
    before = client.get("/metrics").get_data(as_text=True)
    for body, headers in mixed_traffic():
        client.post("/webhooks/genstore", data=body, headers=headers)
    wait_for(lambda: _settled(worker_metrics), 60, "deliveries not processed")
    assert _counts(settings) == (4, 2)
    ingest = client.get("/metrics").get_data(as_text=True)

    def delta(name: str, **labels: str) -> float:
        return value(ingest, name, **labels) - value(before, name, **labels)

    assert delta("refund_sink_deliveries_accepted_total", via="queue") == 7
    assert delta("refund_sink_deliveries_rejected_total", reason="invalid_signature") == 1
    assert delta("refund_sink_deliveries_rejected_total", reason="body_too_large") == 1
    assert value(ingest, "refund_sink_queue_depth") == 0
    wait_for(lambda: value(client.get("/metrics").get_data(as_text=True),
                           "refund_sink_unsettled_deliveries") == 0, 10, "ledger not settled")
    assert value(ingest, "refund_sink_dead_letters", reason="invalid_json", state="dead") == 1
    assert value(ingest, "refund_sink_dead_letters", reason="unknown_status", state="dead") == 1
    assert value(ingest, "refund_sink_broker_up") == value(ingest, "refund_sink_database_up") == 1
    with urllib.request.urlopen(worker_metrics, timeout=5) as response:  # noqa: S310
        worker = response.read().decode()
    assert value(worker, "refund_sink_messages_applied_total") == 3
    assert value(worker, "refund_sink_stale_messages_total") == 1
    assert value(worker, "refund_sink_duplicates_total", kind="delivery") == 1
    assert value(worker, "refund_sink_duplicates_total", kind="message") == 1
    assert value(worker, "refund_sink_dead_lettered_total", reason="invalid_json") == 1
    assert value(worker, "refund_sink_dead_lettered_total", reason="unknown_status") == 1
    assert value(worker, "refund_sink_apply_seconds_count") == 7


def test_logs_are_json_events_without_secrets_or_contact_details(
    run: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _settings, client, worker_metrics, worker_log = run
    caplog.set_level("DEBUG")
    traffic = mixed_traffic()
    for body, headers in traffic:
        client.post("/webhooks/genstore", data=body, headers=headers)
    wait_for(lambda: _settled(worker_metrics), 60, "deliveries not processed")
    time.sleep(0.5)  # the worker's last log line
    worker_text = worker_log.read_text()
    events = [json.loads(line) for line in worker_text.splitlines() if line.startswith("{")]
    # one INFO summary per committed list; the per-delivery lines are DEBUG by default
    summaries = [e for e in events if e.get("event") == "deliveries applied"]
    totals = {key: sum(e[key] for e in summaries)
              for key in ("deliveries", "applied", "duplicates", "dead_lettered")}
    assert totals == {"deliveries": 7, "applied": 3, "duplicates": 2, "dead_lettered": 2}
    assert all("duration_ms" in e for e in summaries)
    assert not [e for e in events if e.get("event") == "delivery applied"]
    assert {e["reason"] for e in events if e.get("event") == "delivery dead-lettered"} == {
        "invalid_json", "unknown_status"}
    ingest_events = [r.__dict__.get("event") for r in caplog.records]
    assert ingest_events.count("delivery accepted") == 7
    signatures = [h["X-Genstore-Hmac-Sha256"] for _, h in traffic]
    for text in (worker_text, caplog.text):
        for secret in (SECRET, PHONE, ADDRESS, EMAIL, "Poplar", *signatures):
            assert secret not in text


def _settled(worker_metrics: str) -> bool:
    """All 7 accepted deliveries processed: 4 recorded, 1 resent id, 2 dead letters."""
    try:
        text = _get(worker_metrics, {})
    except OSError:
        return False
    return value(text, "refund_sink_apply_seconds_count") == 7


def _counts(settings: Settings) -> tuple[int, int]:
    with session_factory(settings)() as session:
        done = session.scalar(select(func.count()).select_from(DeliveryClaim)) or 0
        dead = session.scalar(select(func.count()).select_from(DeadLetter)) or 0
    return done, dead


@pytest.mark.parametrize("batch_size", [1, 20], ids=["one", "batches"])
def test_flower_shows_tasks_behind_basic_auth_and_cannot_apply(
    pg_url: str, redis_url: str, key_prefix: str, tmp_path: Path, batch_size: int
) -> None:
    settings = make_settings(pg_url, redis_url, key_prefix, batch_size=batch_size)
    client = create_app(settings).test_client()
    port = free_port()
    flower = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker", "flower", "--address=127.0.0.1",
         f"--port={port}", "--basic-auth=ops:s3cret"],
        env=environment(settings), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": "Basic " + b64encode(b"ops:s3cret").decode()}
    try:
        wait_for(lambda: _status(base + "/api/workers", auth) == 200, 60, "flower not up")
        with workers(settings, tmp_path) as [worker]:
            watched_by_flower(worker.log)
            body = to_body(doc_example_event())
            client.post("/webhooks/genstore", data=body, headers=genstore_headers(
                body, SECRET, **{"X-Genstore-Webhook-Id": "flower-1"}))
            wait_for(lambda: _task(base, auth).get("state") == "SUCCESS", 60,
                     "task not shown as succeeded")
        task = _task(base, auth)
        assert task["name"].startswith("refunds.apply_delivery")
        assert task["result"] == "'applied'"
        assert "Poplar" not in json.dumps(task) and PHONE not in json.dumps(task)
        assert _status(base + "/api/tasks", {}) == 401
        assert _status(base + "/api/task/async-apply/refunds.apply_delivery", auth,
                       method="POST") == 404
    finally:
        stop(flower)


def watched_by_flower(worker_log: Path) -> None:
    """Workers start with task events off; Flower turns them on by broadcast, every few
    seconds for workers started after it. What a worker applies before then, Flower never
    sees."""
    wait_for(lambda: "enabled by remote" in worker_log.read_text(), 30,
             "Flower did not turn the worker's task events on")


def _task(base: str, auth: dict[str, str], delivery_id: str = "flower-1") -> dict[str, Any]:
    tasks = json.loads(_get(base + "/api/tasks", auth))
    found = [t for t in tasks.values() if f"'{delivery_id}'" in (t.get("args") or "")]
    return found[0] if found else {}


@pytest.mark.parametrize("batch_size", [1, 20], ids=["one", "batches"])
def test_flower_shows_a_dead_letter_as_failed_and_a_retry_as_a_retry(
    pg_url: str, redis_url: str, key_prefix: str, tmp_path: Path, batch_size: int
) -> None:
    settings = make_settings(pg_url, redis_url, key_prefix, batch_size=batch_size,
                             max_retries=100, retry_base_seconds=0.5, retry_max_seconds=1)
    client = create_app(settings).test_client()
    port = free_port()
    flower = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker", "flower", "--address=127.0.0.1",
         f"--port={port}", "--basic-auth=ops:s3cret"], env=environment(settings),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": "Basic " + b64encode(b"ops:s3cret").decode()}

    def send(body: bytes, delivery_id: str) -> None:
        client.post("/webhooks/genstore", data=body, headers=genstore_headers(
            body, SECRET, **{"X-Genstore-Webhook-Id": delivery_id}))

    def task(delivery_id: str) -> dict[str, Any]:
        return _task(base, auth, delivery_id)

    try:
        wait_for(lambda: _status(base + "/api/workers", auth) == 200, 60, "flower not up")
        with workers(settings, tmp_path, concurrency=1) as [worker]:
            watched_by_flower(worker.log)
            # given a delivery that is dead-lettered at once
            send(b'{"refund": broken', "flower-dead")
            wait_for(lambda: task("flower-dead").get("state") in ("SUCCESS", "FAILURE"), 60,
                     "dead letter not shown")
            # then Flower shows it failed, with its reason
            dead = task("flower-dead")
            assert dead["state"] == "FAILURE", dead
            assert "invalid_json" in dead["exception"]
            # given a refund whose row another transaction holds past the lock timeout
            send(to_body(camel_event(refund_id="71")), "flower-first")
            wait_for(lambda: task("flower-first").get("state") == "SUCCESS", 60, "not applied")
            with session_factory(settings).begin() as session:
                session.execute(select(Refund).where(Refund.refund_id == "71").with_for_update())
                send(to_body(camel_event(refund_id="71", update_time="2025-03-01T11:00:00Z")),
                     "flower-retried")
                # then Flower shows the attempt that failed as a retry, with its cause
                wait_for(lambda: task("flower-retried").get("retried") is not None, 60,
                         "retry not shown")
            wait_for(lambda: task("flower-retried").get("state") == "SUCCESS", 60,
                     "retried delivery not applied")
            retried = task("flower-retried")
            assert "LockNotAvailable" in retried["exception"], retried
            assert retried["result"] == "'applied'"
    finally:
        stop(flower)


def _get(url: str, headers: dict[str, str]) -> str:
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        return response.read().decode()  # type: ignore[no-any-return]


def _status(url: str, headers: dict[str, str], method: str = "GET") -> int:
    request = urllib.request.Request(url, headers=headers, method=method,
                                     data=b"{}" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0


def test_worker_heartbeat_answers_the_liveness_probe(run: Any) -> None:
    settings = run[0]
    command = [str(Path(sys.executable).parent / "refund-sink"), "worker-alive"]
    env = environment(settings)
    wait_for(lambda: subprocess.run(command, env=env).returncode == 0, 30, "no heartbeat")
    stale = subprocess.run([*command, "--max-age", "0"], env=env, capture_output=True,
                           text=True)
    assert stale.returncode == 1 and "heartbeat is" in stale.stderr
    missing = subprocess.run(command, env=env | {"REFUND_SINK_HEARTBEAT_DIR": "/nonexistent"},
                             capture_output=True, text=True)
    assert missing.returncode == 1 and "no worker heartbeat" in missing.stderr


def test_a_stopped_worker_is_not_reported_alive_because_another_is(
    pg_url: str, redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    # given two workers on this host, sharing the heartbeat settings
    settings = make_settings(pg_url, redis_url, key_prefix)
    env = environment(settings)
    probe = [str(Path(sys.executable).parent / "refund-sink"), "worker-alive", "--max-age", "5"]

    def alive(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*probe, *args], env=env, capture_output=True, text=True)

    with workers(settings, tmp_path, count=2, concurrency=1) as [stopped, running]:
        wait_for(lambda: alive().returncode == 0, 30, "no heartbeat")
        # when one of them stops (frozen: its process is still there, its heartbeat is not)
        os.killpg(stopped.process.pid, signal.SIGSTOP)
        try:
            time.sleep(8)  # past --max-age; the other one beats every 2 s
            # then the probe names the stopped one, and still answers for the running one
            found = alive()
            assert found.returncode == 1
            assert f"pid {stopped.process.pid}" in found.stderr, found.stderr
            assert alive("--pid", str(stopped.process.pid)).returncode == 1
            assert alive("--pid", str(running.process.pid)).returncode == 0
        finally:
            os.killpg(stopped.process.pid, signal.SIGCONT)
        wait_for(lambda: alive().returncode == 0, 15, "the woken worker does not beat again")
        # and a worker that stops cleanly takes its heartbeat with it
        stopped.stop()
        assert alive("--pid", str(stopped.process.pid)).returncode == 1
        assert alive().returncode == 0

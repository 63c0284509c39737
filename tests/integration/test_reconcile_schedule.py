"""Reconcile on a schedule (issue 14): `--all-shops --window` over every registered shop, one
shop's failure never stopping the others; each run recorded in `reconcile_runs`, read back as
the counters of /metrics (also while the database is down: the scrape still answers), the
last run in /readyz's detail and on the console's pipeline page; `--every` looping until
SIGTERM. Against the fake Genstore, on SQLite and PostgreSQL, with the queue in the test's
Redis."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, get_args

import pytest
from conftest import make_settings
from cryptography.fernet import Fernet
from fake_genstore import FakeGenstore, FakeShop
from payloads import camel_event
from queued_messages import take_queued
from sqlalchemy import select
from test_console import sign_in

from genstore_api.reconcile import Outcome
from ingest import create_app
from refund_sink.cli import main
from refunds import shops
from refunds.db import session_factory
from refunds.models import ReconcileRun, Shop
from refunds.settings import Settings
from schemas.responses import LastReconcile

GOOD, BAD = "shop-good.example", "shop-bad.example"  # BAD sorts first: it fails first
TOKEN, WRONG = "gst-good-token", "gst-wrong-token"  # noqa: S105 - test tokens
KEY = Fernet.generate_key().decode()


def recent_refunds() -> list[dict[str, Any]]:
    """Two refunds updated an hour ago: inside a 48 h window."""
    hour_ago = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [camel_event(f"710{n}", f"910{n}", status="in_progress", price=f"2{n}.00",
                        update_time=hour_ago)["refund"] for n in range(2)]


@pytest.fixture
def fake() -> Iterator[FakeGenstore]:
    server = FakeGenstore({GOOD: FakeShop(TOKEN, recent_refunds()),
                           BAD: FakeShop(TOKEN, recent_refunds())}).start()
    yield server
    server.stop()


@pytest.fixture
def environment(api_settings: Settings, fake: FakeGenstore) -> dict[str, str]:
    """Both shops registered, BAD with a token Genstore refuses."""
    with session_factory(api_settings).begin() as session:
        for shop, token in ((GOOD, TOKEN), (BAD, WRONG)):
            shops.add(shop, token, keys=shops.cipher([KEY]), now=datetime.now(UTC),
                      session=session)
    return {"DATABASE_URL": api_settings.database_url, "REDIS_URL": api_settings.redis_url,
            "REFUND_SINK_REDIS_KEY_PREFIX": api_settings.redis_key_prefix,
            "REFUND_SINK_QUEUE": api_settings.queue, "GENSTORE_API_URL": fake.url,
            "REFUND_SINK_SECRET_KEY": KEY}


@pytest.fixture
def cli(api_settings: Settings, environment: dict[str, str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.chdir(tmp_path)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return api_settings


def runs(settings: Settings) -> list[tuple[str, str, int, int, int, int, bool]]:
    with session_factory(settings)() as session:
        return [(run.shop, run.outcome, run.missing, run.differs, run.only_local, run.applied,
                 run.error is not None)
                for run in session.scalars(select(ReconcileRun).order_by(ReconcileRun.id))]


def all_shops(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main(["reconcile", "--all-shops", "--window", "48h", *extra])
    out, err = capsys.readouterr()
    return code, out + err


def test_all_shops_reconciles_past_a_failing_shop_and_records_each_run(
        cli: Settings, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    # when every shop is reconciled over the last 48 h, BAD's token being refused
    code, shown = all_shops(capsys, "--apply")
    # then BAD failed and said so, GOOD's two refunds were found and queued all the same
    assert code == 1
    assert "reconcile: 1 of 2 shops failed: shop-bad.example (unauthorized)" in shown
    assert runs(cli) == [(BAD, "unauthorized", 0, 0, 0, 0, True),
                         (GOOD, "ok", 2, 0, 0, 2, False)]
    assert [(d.shop, d.origin.value) for d in take_queued(cli)] == [(GOOD, "pulled")] * 2
    with session_factory(cli)() as session:
        outcomes = {shop.domain: shop.last_reconcile_outcome
                    for shop in session.scalars(select(Shop))}
    assert outcomes == {BAD: "unauthorized", GOOD: "ok"}
    assert TOKEN not in shown + caplog.text and WRONG not in shown + caplog.text


def test_the_counters_of_metrics_are_the_recorded_runs(
        cli: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    # given two rounds over both shops, without --apply
    all_shops(capsys)
    all_shops(capsys)
    # when /metrics is scraped (a process that ran none of them)
    text = create_app(cli).test_client().get("/metrics").text
    # then it counts both rounds' runs and what they found
    counters = dict(re.findall(r'^(refund_sink_reconcile_\w+_total\{[^}]*\}) (\S+)$', text,
                               re.MULTILINE))
    assert counters == {
        f'refund_sink_reconcile_runs_total{{outcome="unauthorized",shop="{BAD}"}}': "2.0",
        f'refund_sink_reconcile_runs_total{{outcome="ok",shop="{GOOD}"}}': "2.0",
        **{f'refund_sink_reconcile_found_total{{kind="{kind}",shop="{BAD}"}}': "0.0"
           for kind in ("missing", "differs", "only_local", "applied")},
        f'refund_sink_reconcile_found_total{{kind="missing",shop="{GOOD}"}}': "4.0",
        f'refund_sink_reconcile_found_total{{kind="differs",shop="{GOOD}"}}': "0.0",
        f'refund_sink_reconcile_found_total{{kind="only_local",shop="{GOOD}"}}': "0.0",
        f'refund_sink_reconcile_found_total{{kind="applied",shop="{GOOD}"}}': "0.0",
    }


def test_the_scrape_answers_without_the_counters_while_the_database_is_down(
        redis_url: str, key_prefix: str, caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings("postgresql://refund_sink@127.0.0.1:1/nowhere", redis_url,
                             key_prefix)
    answer = create_app(settings).test_client().get("/metrics")
    assert answer.status_code == 200
    assert "refund_sink_broker_up 1.0" in answer.text
    assert "refund_sink_reconcile_" not in answer.text
    assert "reconcile metrics left out of this scrape: the database did not answer" in (
        caplog.text)


def test_readyz_and_the_pipeline_page_show_each_shop_s_last_run(
        cli: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    # given a round where BAD failed
    all_shops(capsys)
    client = create_app(cli).test_client()
    # then /readyz is ready and gives each shop's last run
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json is not None
    detail = ready.json["reconcile"]
    assert {shop: found["outcome"] for shop, found in detail.items()} == {
        BAD: "unauthorized", GOOD: "ok"}
    assert datetime.fromisoformat(detail[GOOD]["at"]) > datetime.now(UTC) - timedelta(minutes=1)
    # and the console's pipeline page a row per shop
    sign_in(client, cli, "read_refunds")
    page = client.get("/desk/pipeline/figures").text
    assert re.findall(r'data-testid="reconcile-row" data-shop="([^"]+)" data-outcome="(\w+)"',
                      page) == [(BAD, "unauthorized"), (GOOD, "ok")]
    assert "2 missing, 0 differ, 0 only local, 0 applied" in page


def test_the_readiness_model_names_every_outcome() -> None:
    outcome = LastReconcile.model_fields["outcome"].annotation
    assert set(get_args(outcome)) == {value.value for value in Outcome}


def test_every_loops_until_sigterm(api_settings: Settings, environment: dict[str, str],
                                   tmp_path: Path) -> None:
    # given the loop started as a deploy runs it
    child = subprocess.Popen(
        [sys.executable, "-m", "refund_sink.cli", "reconcile", "--all-shops", "--window", "48h",
         "--every", "15m", "--json"], env={**os.environ, **environment}, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while len(runs(api_settings)) < 2:  # its first round is over: it sleeps
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        # when it is told to stop
        stopped_at = time.monotonic()
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=5)
    finally:
        if child.poll() is None:
            child.kill()
    # then it stops at once, cleanly, after one round that went on past the failing shop
    assert child.returncode == 0 and time.monotonic() - stopped_at < 2
    assert [report["shop"] for report in json.loads(out)] == [BAD, GOOD]
    assert "1 of 2 shops failed" in err.decode()
    assert f"reconcile {GOOD}: ok, 2 orders checked, 2 missing" in err.decode()  # its log event


def test_a_round_without_a_registered_shop_does_nothing_and_needs_no_key(
        api_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", api_settings.database_url)
    monkeypatch.delenv("REFUND_SINK_SECRET_KEY", raising=False)
    assert main(["reconcile", "--all-shops", "--window", "48h", "--apply", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert runs(api_settings) == []

"""The ingest's gunicorn hooks work with and without a shared metrics directory."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from ingest import gunicorn_config

pytestmark = pytest.mark.unit


def test_a_worker_exit_without_a_metrics_directory_is_not_an_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    gunicorn_config.child_exit(None, SimpleNamespace(pid=os.getpid()))


def test_a_worker_exit_drops_its_live_gauges(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    live = tmp_path / "gauge_livesum_4242.db"
    kept = tmp_path / "counter_4242.db"
    live.write_bytes(b"")
    kept.write_bytes(b"")
    gunicorn_config.child_exit(None, SimpleNamespace(pid=4242))
    assert not live.exists() and kept.exists()

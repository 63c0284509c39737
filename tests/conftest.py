"""Fixtures: real databases (PostgreSQL and SQLite, migrated with Alembic), real Redis, and
settings that point the code under test at them. Each run uses its own database, key prefix
and queue, and removes them afterwards."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from backing_services import delete_keys, postgres_server, redis_server, scratch_database
from fake_redis import fake_client, fake_server  # noqa: F401  (the unit tier's Redis)
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from ingest import create_app
from refund_sink.operations import upgrade_database
from refunds.db import session_factory
from refunds.models import Base
from refunds.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SPOOL_ROOT = Path(tempfile.mkdtemp(prefix="refund-sink-test-spool-"))
TOOL_CACHES = {".hypothesis", ".mypy_cache", ".ruff_cache", ".pytest_cache", "__pycache__"}
SECRET = "test-genstore-secret"
OLD_SECRET = "test-genstore-secret-previous"
STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
# The fixtures that reach a PostgreSQL or Redis server (every fixture built on them lists them
# in its closure): a `unit` test must run with both stopped, so it may request none of them.
SERVER_FIXTURES = {"postgres_admin_url", "redis_url"}


def pytest_runtest_setup(item: pytest.Item) -> None:
    """The unit tier's promise (`pytest -m unit`: no PostgreSQL, no Redis server), kept: a
    `unit` test that asks for a server, or for `db_url`'s PostgreSQL half, fails before it
    starts one."""
    if item.get_closest_marker("unit") is None:
        return
    servers = SERVER_FIXTURES & set(getattr(item, "fixturenames", ()))
    callspec = getattr(item, "callspec", None)
    if callspec is not None and callspec.params.get("db_url") == "postgresql":
        servers.add("db_url[postgresql]")
    if servers:
        pytest.fail(f"a unit test needs no server, but this one requests {sorted(servers)}; "
                    "use sqlite_url and tests/fake_redis.py", pytrace=False)


def _no_process(args: object, *_rest: object, **_options: object) -> None:
    raise AssertionError(f"a unit test starts no process, but this one ran {args!r}")


@pytest.fixture(autouse=True)
def _unit_tests_start_no_process(request: pytest.FixtureRequest,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("unit") is not None:
        monkeypatch.setattr(subprocess, "Popen", _no_process)


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """A PostgreSQL server to create scratch databases on."""
    with postgres_server() as admin_url:
        yield admin_url


@pytest.fixture(scope="session")
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    with scratch_database(postgres_admin_url) as url:
        upgrade_database(Settings(database_url=url))
        yield url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    upgrade_database(Settings(database_url=f"sqlite:///{path}"))
    return path


@pytest.fixture(scope="session", autouse=True)
def _remove_spools() -> Iterator[None]:
    yield
    shutil.rmtree(SPOOL_ROOT, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _repository_root_untouched() -> Iterator[None]:
    """Tests write under their tmp paths only: a file left in the repository root (a relative
    SQLite URL, a command run without `cwd=`) fails the run, since it ends up committed."""
    before = set(os.listdir(ROOT))
    yield
    left = sorted(name for name in set(os.listdir(ROOT)) - before - TOOL_CACHES
                  if not name.startswith(".coverage"))
    if left:
        pytest.fail(f"the test suite left files in the repository root: {left}", pytrace=False)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture(scope="session")
def run_id() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def key_prefix(redis_url: str, run_id: str) -> Iterator[str]:
    prefix = f"refund-sink-test-{run_id}-{uuid.uuid4().hex[:6]}:"
    yield prefix
    delete_keys(redis_url, prefix)


def _clean(url: str) -> None:
    with session_factory(Settings(database_url=url)).begin() as session:
        for table in reversed(Base.metadata.sorted_tables):
            session.execute(text(f"DELETE FROM {table.name}"))


@pytest.fixture
def pg_url(postgres_url: str) -> Iterator[str]:
    _clean(postgres_url)
    yield postgres_url
    _clean(postgres_url)


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "refund-sink.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Domain tests run on both databases the sink supports."""
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    url: str = request.getfixturevalue(name)
    return url


def make_settings(database_url: str, redis_url: str = "redis://127.0.0.1:1/0",
                  prefix: str = "", **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "redis_url": redis_url,
        "genstore_secrets": (SECRET, OLD_SECRET),
        "standard_webhook_secret": STANDARD_SECRET,
        "redis_key_prefix": prefix,
        "queue": f"refunds-{prefix.rstrip(':')}" if prefix else "refunds",
        "retry_base_seconds": 0.05,
        "retry_max_seconds": 0.2,
        "lock_timeout_ms": 500,
        "spool_dir": str(SPOOL_ROOT / uuid.uuid4().hex),
        "metrics_port": 0,  # tests that scrape a worker choose a free port
        # a directory that does not exist yet: the worker creates it
        "heartbeat_dir": str(SPOOL_ROOT / uuid.uuid4().hex / "heartbeats"),
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(db_url: str) -> Settings:
    return make_settings(db_url)


@pytest.fixture
def session(settings: Settings) -> Iterator[Session]:
    with session_factory(settings)() as session:
        yield session


@pytest.fixture
def api_settings(db_url: str, redis_url: str, key_prefix: str) -> Settings:
    """Settings for an app under test: either database, real Redis under this test's prefix."""
    return make_settings(db_url, redis_url, key_prefix)


@pytest.fixture
def app(api_settings: Settings) -> Flask:
    return create_app(api_settings)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()

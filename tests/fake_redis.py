"""Redis for the unit tier: one fakeredis server per test, in this process, behind every
redis-py client the code under test makes (the ledger's, the start counter's, the ingest's
probe, kombu's publishing channel), whatever REDIS_URL says. Lua scripts run on lupa, as
fakeredis's `lua` extra provides. `fake_server.connected = False` is Redis gone: every
command then fails with a connection error, as against a stopped server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
import redis
from fakeredis import FakeRedisConnection
from kombu import pools

REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there: a leak would fail loudly


@pytest.fixture
def fake_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[fakeredis.FakeServer]:
    """Every connection pool opened during the test connects to this server: the clients are
    built by the code under test (`broker.redis_client`, kombu's channel), so the pool is
    where they meet."""
    server = fakeredis.FakeServer()
    original = redis.ConnectionPool.__init__

    def pool_init(self: redis.ConnectionPool, connection_class: Any = None,
                  max_connections: int | None = None, **options: Any) -> None:
        original(self, connection_class=FakeRedisConnection, max_connections=max_connections,
                 **(options | {"server": server}))

    monkeypatch.setattr(redis.ConnectionPool, "__init__", pool_init)
    # kombu keeps one connection per broker URL for the process, across Celery apps: one
    # opened for an earlier test would still reach that test's server
    pools.reset()
    yield server
    pools.reset()


@pytest.fixture
def fake_client(fake_server: fakeredis.FakeServer) -> Iterator[redis.Redis]:
    """A client of the fake server, to arrange and read back what the code under test sees."""
    client = fakeredis.FakeRedis(server=fake_server, decode_responses=True)
    yield client
    client.close()


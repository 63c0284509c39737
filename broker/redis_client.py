"""Reaching Redis from REDIS_URL, for every user of it: a redis-py client (the ledger and its
sweeper, the start counter, the ingest's probes) and the broker URL and transport options the
Celery app hands kombu. A plain `redis://` URL is used as it is; a `sentinel://` URL
(`refunds.redis_url`) becomes a client of whichever server the Sentinels name master, found
again on every new connection, so a failover needs no restart."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import redis
from redis.sentinel import Sentinel

from refunds.redis_url import SentinelUrl
from refunds.settings import Settings


def redis_client(settings: Settings, *, timeout: float, connect_timeout: float = 2,
                 **options: Any) -> redis.Redis:
    """A client of the Redis master; options (`decode_responses`, `retry`, ...) as for
    `redis.Redis`. Connects on first use, never here."""
    sentinel = settings.redis_sentinel
    if sentinel is None:
        return redis.Redis.from_url(settings.redis_url, socket_timeout=timeout,
                                    socket_connect_timeout=connect_timeout, **options)
    group = Sentinel(  # type: ignore[no-untyped-call]
        sentinel.hosts,
        sentinel_kwargs={"socket_timeout": timeout, "socket_connect_timeout": connect_timeout},
    )
    client: redis.Redis = group.master_for(  # type: ignore[no-untyped-call]
        sentinel.master, redis_class=redis.Redis, db=sentinel.db, username=sentinel.username,
        password=sentinel.password, socket_timeout=timeout,
        socket_connect_timeout=connect_timeout, **options,
    )
    return client


def broker_url(settings: Settings) -> str:
    """The URL in kombu's form: for Sentinel one `sentinel://` URL per Sentinel joined by `;`,
    the credentials and database on the first only (kombu reads them from there and prints
    only the first, password masked); the master name travels in `transport_options`."""
    sentinel = settings.redis_sentinel
    if sentinel is None:
        return settings.redis_url
    userinfo = ""
    if sentinel.username or sentinel.password:
        userinfo = f"{quote(sentinel.username or '', safe='')}:" \
                   f"{quote(sentinel.password or '', safe='')}@"
    urls = [f"sentinel://{_host(host)}:{port}/{sentinel.db}" for host, port in sentinel.hosts]
    urls[0] = urls[0].replace("sentinel://", f"sentinel://{userinfo}", 1)
    return ";".join(urls)


def sentinel_options(sentinel: SentinelUrl | None) -> dict[str, Any]:
    """kombu's `master_name` for Sentinel, and the replicas a published task message must
    reach (`broker.transport`): none for a lone server."""
    if sentinel is None:
        return {"confirm_replicas": 0}
    return {"master_name": sentinel.master, "confirm_replicas": sentinel.replicas}


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host

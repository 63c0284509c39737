"""The fault runner's Redis as a Sentinel group (`tests/sentinel_group.py`): a scenario's
processes get its `sentinel://` URL, and the runner's own client follows the master."""

from __future__ import annotations

from pathlib import Path

import redis
from sentinel_group import SentinelGroup

from broker.redis_client import redis_client
from refunds.settings import Settings

from .stack import Redis


class SentinelRedis(Redis):
    """A master, a replica and one Sentinel, started on entry and stopped on exit."""

    def __init__(self, directory: Path):
        super().__init__(directory)
        self.group = SentinelGroup(directory)

    @property
    def url(self) -> str:
        return self.group.url

    def start(self) -> None:
        self.group.start()

    def stop(self) -> None:
        self.group.stop()

    def client(self) -> redis.Redis:
        return redis_client(Settings(redis_url=self.url), timeout=10)

    def __enter__(self) -> SentinelRedis:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

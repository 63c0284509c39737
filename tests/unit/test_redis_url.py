"""REDIS_URL: a plain Redis URL passes as it is; a `sentinel://` URL names its Sentinels and
master, becomes kombu's form for the broker and a Sentinel-managed client for the rest, and a
malformed one fails at start-up naming REDIS_URL, never echoing the password."""

from __future__ import annotations

import pytest
from redis.sentinel import SentinelConnectionPool

from broker.app import make_celery, transport_options
from broker.redis_client import broker_url, redis_client
from refunds.redis_url import SentinelUrl
from refunds.settings import ConfigError, Settings

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("url", "expected"), [
    ("sentinel://s1/mymaster", SentinelUrl(hosts=(("s1", 26379),), master="mymaster")),
    ("sentinel://s1:5000,s2:5001,s3/mymaster/2",
     SentinelUrl(hosts=(("s1", 5000), ("s2", 5001), ("s3", 26379)), master="mymaster", db=2)),
    ("sentinel://:pa%2Fss@s1/m?replicas=0",
     SentinelUrl(hosts=(("s1", 26379),), master="m", password="pa/ss", replicas=0)),
    ("sentinel://sink:secret@[::1]:26380/m/1?replicas=2",
     SentinelUrl(hosts=(("::1", 26380),), master="m", db=1, username="sink", password="secret",
                 replicas=2)),
], ids=["one-sentinel", "three-sentinels-db", "quoted-password", "user-ipv6-replicas"])
def test_a_sentinel_url_names_its_sentinels_and_master(url: str, expected: SentinelUrl) -> None:
    # given / when
    found = Settings.from_env({"REDIS_URL": url}).redis_sentinel
    # then
    assert found == expected
    assert found is not None and found.password == expected.password


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://:pw@cache:6380/1",
                                 "unix:///run/redis.sock?db=0"])
def test_a_plain_redis_url_is_no_sentinel(url: str) -> None:
    settings = Settings.from_env({"REDIS_URL": url})
    assert settings.redis_sentinel is None
    assert broker_url(settings) == url


@pytest.mark.parametrize(("url", "says"), [
    ("sentinel://s1:26379;sentinel://s2:26379", "comma-separated"),
    ("sentinel://s1:26379", "/master"),
    ("sentinel://s1/m/0/extra", "/master"),
    ("sentinel://s1/m/zero", "database"),
    ("sentinel://s1:port/m", "Sentinel port"),
    ("sentinel://s1:70000/m", "out of range"),
    ("sentinel://s1,,s2/m", "host is empty"),
    ("sentinel://s1/m?replicas=all", "replicas"),
    ("sentinel://s1/m?master_name=m", "unknown option"),
    ("127.0.0.1:6379", "no scheme"),
    ("http://127.0.0.1:6379", "http://"),
], ids=lambda value: value if " " not in value else None)
def test_a_malformed_url_fails_naming_redis_url(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match="REDIS_URL") as raised:
        Settings.from_env({"REDIS_URL": url})
    assert says in str(raised.value)


def test_the_password_stays_out_of_errors_and_repr() -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"REDIS_URL": "sentinel://:hunter2/x@s1/m"})  # unquoted '/'
    assert "hunter2" not in str(raised.value)
    found = Settings(redis_url="sentinel://:hunter2@s1/m").redis_sentinel
    assert "hunter2" not in repr(found)


def test_kombu_gets_one_url_per_sentinel_and_the_master_as_a_transport_option() -> None:
    # given
    settings = Settings(redis_url="sentinel://sink:p%40ss@s1,[::1]:26380/mymaster/3")
    # when
    app = make_celery(settings)
    # then
    assert broker_url(settings) == ("sentinel://sink:p%40ss@s1:26379/3;"
                                    "sentinel://[::1]:26380/3")
    assert app.conf.broker_transport == "broker.consume:SentinelTransport"
    options = transport_options(settings)
    assert options["master_name"] == "mymaster" and options["confirm_replicas"] == 1
    assert transport_options(Settings())["confirm_replicas"] == 0
    assert make_celery(Settings()).conf.broker_transport == "broker.consume:Transport"


def test_the_client_asks_the_sentinels_for_the_master_without_connecting() -> None:
    settings = Settings(redis_url="sentinel://:pw@s1:5000,s2/mymaster/4")
    client = redis_client(settings, timeout=1)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "mymaster"
    assert pool.connection_kwargs["db"] == 4 and pool.connection_kwargs["password"] == "pw"
    hosts = [(s.connection_pool.connection_kwargs["host"],
              s.connection_pool.connection_kwargs["port"])
             for s in pool.sentinel_manager.sentinels]
    assert hosts == [("s1", 5000), ("s2", 26379)]

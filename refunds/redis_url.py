"""REDIS_URL: a Redis server (`redis://`, `rediss://`, `unix://`, as redis-py and kombu read
them) or a master found through Redis Sentinel, in one URL that names the master:

    sentinel://[[user]:password@]host[:port][,host[:port]...]/master[/db][?replicas=N]

Sentinel port 26379 and database 0 unless given. The password (URL-quoted) is the master's
and its replicas'; the Sentinels are reached without one. `replicas` (default 1) is how many
replicas must hold a task message before it counts as published (Redis `WAIT`): an accepted
delivery then survives a failover; 0 keeps accepting while no replica is up, at that risk.

Only the parsing lives here; `broker.redis_client` builds the clients."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

SCHEMES = ("redis", "rediss", "unix", "sentinel")
SENTINEL_FORM = "sentinel://[[user]:password@]host[:port][,host[:port]...]/master[/db][?replicas=N]"
SENTINEL_PORT = 26379


class MalformedRedisUrl(ValueError):
    """REDIS_URL cannot be used; the message says why, never the password."""


@dataclass(frozen=True)
class SentinelUrl:
    hosts: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    replicas: int = 1


def check_url(url: str) -> None:
    """MalformedRedisUrl unless url is a Redis URL of a known scheme, a Sentinel URL well-formed."""
    scheme = url.partition("://")[0] if "://" in url else ""
    if scheme not in SCHEMES:
        known = ", ".join(f"{name}://" for name in SCHEMES)
        raise MalformedRedisUrl(f"REDIS_URL must start with one of {known}, got "
                                f"{scheme + '://' if scheme else 'no scheme'}")
    sentinel_url(url)


def sentinel_url(url: str) -> SentinelUrl | None:
    """The Sentinel group and master a `sentinel://` URL names; None for any other URL."""
    if not url.startswith("sentinel://"):
        return None
    if ";" in url:  # kombu's own form: one URL per Sentinel, the master in a transport option
        raise _malformed("name the Sentinels once, comma-separated, and the master in the path")
    rest, _, query = url.removeprefix("sentinel://").partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, _, hosts = netloc.rpartition("@")
    parts = path.split("/")
    if not parts[0] or len(parts) > 2:
        raise _malformed("the path must be /master or /master/db")
    user, _, password = userinfo.partition(":")
    return SentinelUrl(
        hosts=tuple(_host_port(host) for host in hosts.split(",")),
        master=unquote(parts[0]),
        db=_whole(parts[1] if len(parts) == 2 else "0", "the database"),
        username=unquote(user) or None,
        password=unquote(password) or None,
        replicas=_replicas(query),
    )


def _host_port(text: str) -> tuple[str, int]:
    host, port = text, ""
    if text.startswith("["):  # an IPv6 address
        host, _, port = text[1:].partition("]")
        port = port.removeprefix(":")
    elif ":" in text:
        host, _, port = text.partition(":")
    if not host:
        raise _malformed("a Sentinel host is empty")
    number = _whole(port, "a Sentinel port") if port else SENTINEL_PORT
    if not 0 < number < 65536:
        raise _malformed(f"Sentinel port {number} is out of range")
    return host, number


def _replicas(query: str) -> int:
    options = dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(options) - {"replicas"})
    if unknown:
        raise _malformed("unknown option (only replicas is known)")
    return _whole(options.get("replicas", "1"), "replicas")


def _whole(text: str, what: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise _malformed(f"{what} must be a whole number")  # no value: it may be a password
    return int(text)


def _malformed(why: str) -> MalformedRedisUrl:
    return MalformedRedisUrl(f"REDIS_URL is not a Sentinel URL of the form {SENTINEL_FORM}: {why}")

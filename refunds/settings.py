"""Settings, read once from the environment so a bad value fails at start-up, not mid-delivery."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from refunds import risk_rules
from refunds.redis_url import MalformedRedisUrl, SentinelUrl, check_url, sentinel_url
from refunds.risk_rules import RiskRules

DEFAULT_DATABASE_URL = "sqlite:///./refund-sink.db"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_SPOOL_DIR = "./.refund-sink/spool"
DEFAULT_HEARTBEAT_DIR = "/tmp/refund-sink-heartbeats"  # noqa: S108 - a file per worker
DEFAULT_GENSTORE_API_URL = "https://{shop}.genmystore.com"


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str = DEFAULT_REDIS_URL
    genstore_secrets: tuple[str, ...] = field(default=(), repr=False)
    standard_webhook_secret: str | None = field(default=None, repr=False)
    max_body_bytes: int = 1_048_576
    max_retries: int = 8
    naive_tz: str = "UTC"
    queue: str = "refunds"
    redis_key_prefix: str = ""
    visibility_timeout: int = 300
    task_time_limit: int = 120
    retry_base_seconds: float = 1.0
    retry_max_seconds: float = 60.0
    lock_timeout_ms: int = 10_000
    spool_dir: str = DEFAULT_SPOOL_DIR
    max_redeliveries: int = 5
    heartbeat_dir: str = DEFAULT_HEARTBEAT_DIR
    metrics_port: int = 9191
    batch_size: int = 100
    batch_wait_ms: int = 50
    # the level of the ingest's line per queued delivery and a worker's per applied or
    # duplicate one; each list a worker applies gets a summary line at INFO, and spooled
    # deliveries, dead letters, conflicts and retries their own warnings
    delivery_log_level: int = logging.DEBUG
    # the console (desk.console): its session's signing key (None: derived from the webhook
    # secrets), lifetime, and whether its cookie is Secure on plain http too (behind TLS)
    desk_secret: str | None = field(default=None, repr=False)
    desk_session_minutes: int = 480
    desk_secure_cookie: bool = False
    flower_url: str | None = None  # linked from the console's pipeline page
    risk_rules: RiskRules = field(default=risk_rules.DEFAULTS, repr=False)
    # Fernet keys for the shops' access tokens at rest (refunds.shops): the first encrypts,
    # all decrypt, so a new key is put first and the old one dropped once re-encrypted
    secret_keys: tuple[str, ...] = field(default=(), repr=False)
    genstore_api_url: str = DEFAULT_GENSTORE_API_URL  # `{shop}` is replaced by the domain
    # days the raw bodies of applied deliveries are kept (`refund-sink retention apply`); 0: ever
    raw_retention_days: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        if env.get("REFUND_SINK_HEARTBEAT_FILE"):
            raise ConfigError("REFUND_SINK_HEARTBEAT_FILE is replaced by REFUND_SINK_HEARTBEAT_DIR"
                              " (each worker keeps its own heartbeat file there)")
        settings = cls(
            database_url=env.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
            redis_url=env.get("REDIS_URL") or DEFAULT_REDIS_URL,
            genstore_secrets=_split_secrets(env.get("GENSTORE_WEBHOOK_SECRET", "")),
            standard_webhook_secret=env.get("STANDARD_WEBHOOK_SECRET") or None,
            max_body_bytes=_int(env, "REFUND_SINK_MAX_BODY_BYTES", 1_048_576, minimum=1),
            max_retries=_int(env, "REFUND_SINK_MAX_RETRIES", 8, minimum=1),
            naive_tz=_zone(env.get("GENSTORE_NAIVE_TZ") or "UTC"),
            queue=env.get("REFUND_SINK_QUEUE") or "refunds",
            redis_key_prefix=env.get("REFUND_SINK_REDIS_KEY_PREFIX", ""),
            visibility_timeout=_int(env, "REFUND_SINK_VISIBILITY_TIMEOUT", 300, minimum=10),
            task_time_limit=_int(env, "REFUND_SINK_TASK_TIME_LIMIT", 120, minimum=1),
            retry_base_seconds=_float(env, "REFUND_SINK_RETRY_BASE_SECONDS", 1.0),
            retry_max_seconds=_float(env, "REFUND_SINK_RETRY_MAX_SECONDS", 60.0),
            lock_timeout_ms=_int(env, "REFUND_SINK_LOCK_TIMEOUT_MS", 10_000, minimum=1),
            spool_dir=env.get("REFUND_SINK_SPOOL_DIR") or DEFAULT_SPOOL_DIR,
            max_redeliveries=_int(env, "REFUND_SINK_MAX_REDELIVERIES", 5, minimum=1),
            heartbeat_dir=env.get("REFUND_SINK_HEARTBEAT_DIR") or DEFAULT_HEARTBEAT_DIR,
            metrics_port=_int(env, "REFUND_SINK_METRICS_PORT", 9191, minimum=0),
            batch_size=_int(env, "REFUND_SINK_BATCH_SIZE", 100, minimum=1),
            batch_wait_ms=_int(env, "REFUND_SINK_BATCH_WAIT_MS", 50, minimum=1),
            delivery_log_level=log_level("REFUND_SINK_DELIVERY_LOG_LEVEL",
                                         env.get("REFUND_SINK_DELIVERY_LOG_LEVEL") or "DEBUG"),
            desk_secret=env.get("REFUND_SINK_DESK_SECRET") or None,
            desk_session_minutes=_int(env, "REFUND_SINK_DESK_SESSION_MINUTES", 480, minimum=1),
            desk_secure_cookie=_flag(env, "REFUND_SINK_DESK_SECURE_COOKIE"),
            flower_url=env.get("REFUND_SINK_FLOWER_URL") or None,
            risk_rules=_risk_rules(env.get("REFUND_SINK_RISK_RULES")),
            secret_keys=_split_secrets(env.get("REFUND_SINK_SECRET_KEY", "")),
            genstore_api_url=env.get("GENSTORE_API_URL") or DEFAULT_GENSTORE_API_URL,
            raw_retention_days=_int(env, "REFUND_SINK_RAW_RETENTION_DAYS", 0, minimum=0),
        )
        settings.check_timeouts()
        settings.check_redis_url()
        return settings

    @property
    def redis_sentinel(self) -> SentinelUrl | None:
        """The Sentinel group and master REDIS_URL names (`refunds.redis_url`), or None for a
        plain Redis URL; ConfigError if it is malformed."""
        try:
            return sentinel_url(self.redis_url)
        except MalformedRedisUrl as error:
            raise ConfigError(str(error)) from None

    def check_redis_url(self) -> None:
        """A known scheme; a `sentinel://` URL in full."""
        try:
            check_url(self.redis_url)
        except MalformedRedisUrl as error:
            raise ConfigError(str(error)) from None

    def check_timeouts(self) -> None:
        """A message must finish (or be retried) before Redis hands it to another worker."""
        if self.task_time_limit >= self.visibility_timeout:
            raise ConfigError(
                "REFUND_SINK_TASK_TIME_LIMIT must be below REFUND_SINK_VISIBILITY_TIMEOUT"
            )
        if self.retry_max_seconds >= self.visibility_timeout:
            raise ConfigError(
                "REFUND_SINK_RETRY_MAX_SECONDS must be below REFUND_SINK_VISIBILITY_TIMEOUT"
            )

    def require_webhook_secret(self) -> None:
        if not self.genstore_secrets and not self.standard_webhook_secret:
            raise ConfigError(
                "GENSTORE_WEBHOOK_SECRET is not set: the ingest cannot verify deliveries"
            )


def _split_secrets(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not value > 0:
        raise ConfigError(f"{name} must be positive, got {raw!r}")
    return value


def log_level(name: str, raw: str) -> int:
    """The level a variable names (`info`, `WARNING`, ...); ConfigError naming the variable
    otherwise. Also read by `refunds.logs` for REFUND_SINK_LOG_LEVEL."""
    level = logging.getLevelName(raw.upper())
    if not isinstance(level, int):
        raise ConfigError(f"{name} is not a log level: {raw.upper()!r}")
    return level


def _risk_rules(path: str | None) -> RiskRules:
    """The rules file's rules, or every rule on with its defaults when none is named."""
    try:
        return risk_rules.load(path) if path else risk_rules.DEFAULTS
    except risk_rules.BadRiskRules as error:
        raise ConfigError(f"REFUND_SINK_RISK_RULES ({path}): {error}") from None


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = (env.get(name) or "false").strip().lower()
    if raw not in ("true", "false", "1", "0"):
        raise ConfigError(f"{name} must be true or false, got {raw!r}")
    return raw in ("true", "1")


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"GENSTORE_NAIVE_TZ is not a known time zone: {name!r}") from None
    return name

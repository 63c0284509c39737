"""Structured logs: one line per event of interest (accepted, applied, retried, dead-lettered,
requeued), JSON by default, with ids and timings as fields. Never bodies, secrets or customer
contact details: callers pass only the fields below."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

from pythonjsonlogger.json import JsonFormatter

from refunds.settings import ConfigError, log_level

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
JSON_FIELDS = {"asctime": "time", "levelname": "level", "name": "logger"}


def configure(env: Mapping[str, str] | None = None, *, force: bool = False) -> None:
    """REFUND_SINK_LOG_LEVEL (default INFO) and REFUND_SINK_LOG_FORMAT (json or text).
    Leaves logging alone if something (a test runner, an embedding app) set it up already."""
    env = os.environ if env is None else env
    root = logging.getLogger()
    if root.handlers and not force:
        return
    level = log_level("REFUND_SINK_LOG_LEVEL", env.get("REFUND_SINK_LOG_LEVEL", "INFO"))
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_formatter(env.get("REFUND_SINK_LOG_FORMAT", "json")))
    root.handlers = [handler]
    root.setLevel(level)


def _formatter(kind: str) -> logging.Formatter:
    if kind == "text":
        return logging.Formatter(TEXT_FORMAT)
    if kind == "json":
        return JsonFormatter(TEXT_FORMAT, rename_fields=JSON_FIELDS)
    raise ConfigError(f"REFUND_SINK_LOG_FORMAT must be json or text, got {kind!r}")


def event(logger: logging.Logger, name: str, level: int = logging.INFO,
          **fields: object) -> None:
    """`delivery applied delivery_id=... refund_id=...` in text; the same fields as JSON keys."""
    present = {key: value for key, value in fields.items() if value is not None}
    text = " ".join([name, *(f"{key}={value}" for key, value in present.items())])
    logger.log(level, text, extra={"event": name, **present})

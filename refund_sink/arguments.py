"""Argument types for the long-running commands: a bad value is an argparse error (exit 2,
one line naming the option) before anything starts."""

from __future__ import annotations

import argparse
import math
import urllib.parse


def port(text: str) -> int:
    value = _integer(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port (1-65535), got {value}")
    return value


def at_least_one(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value >= 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a number of seconds, 0 or more, got {text}")
    return value


def bind(text: str) -> str:
    """HOST:PORT as gunicorn takes it (`[::1]:8080` for IPv6), or `unix:PATH`."""
    if text.startswith("unix:") and len(text) > len("unix:"):
        return text
    host, colon, number = text.rpartition(":")
    if not colon or not host:
        raise argparse.ArgumentTypeError(f"must be HOST:PORT, got {text!r}")
    port(number)
    return text


def http_url(text: str) -> str:
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"must be an http(s) URL, got {text!r}")
    return text


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None

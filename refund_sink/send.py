"""`refund-sink send`: sign a payload file and POST it as Genstore would."""

from __future__ import annotations

import argparse
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ingest.signatures import genstore_signature
from refund_sink import arguments
from refund_sink.operations import CommandError
from refund_sink.state_folder import SECRET_FILE, SECRET_FROM_ENVIRONMENT, recorded
from refunds.settings import ConfigError

DEFAULT_URL = "http://127.0.0.1:8080/webhooks/genstore"


def add_command(commands: Any) -> None:
    send = commands.add_parser("send", help="sign and POST a payload file, as Genstore would")
    send.add_argument("file", type=Path)
    send.add_argument("--url", type=arguments.http_url,
                      help="default: the webhook of the `refund-sink run` in this folder, "
                      "else " + DEFAULT_URL)
    send.add_argument("--topic", default="refunds/create")
    send.add_argument("--secret", help="default: GENSTORE_WEBHOOK_SECRET, else the one "
                      "`refund-sink run` saved in ./" + str(SECRET_FILE))
    send.add_argument("--shop", help="X-Genstore-Shop-Domain")
    send.add_argument("--delivery-id", help="X-Genstore-Webhook-Id")
    send.set_defaults(handler=run_send)


def run_send(args: argparse.Namespace) -> int:
    body = _read(args.file)
    headers = {
        "Content-Type": "application/json",
        "X-Genstore-Topic": args.topic,
        "X-Genstore-Hmac-Sha256": genstore_signature(body, _secret(args.secret)),
    }
    if args.shop:
        headers["X-Genstore-Shop-Domain"] = args.shop
    if args.delivery_id:
        headers["X-Genstore-Webhook-Id"] = args.delivery_id
    record = recorded()
    url = args.url or (record.webhook_url if record else DEFAULT_URL)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            status, answer = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, answer = error.code, error.read()
    print(f"{status} {answer.decode('utf-8', errors='replace').strip()}")
    return 0 if 200 <= status < 300 else 1


def _read(path: Path) -> bytes:
    """A missing or unreadable file is not an argument error (the argument is well formed;
    the file is not there): exit 1, as for an unknown dead-letter id."""
    try:
        return path.read_bytes()
    except OSError as error:
        raise CommandError(f"cannot read {path}: {error.strerror or error}") from None


def _secret(given: str | None) -> str:
    """--secret, else GENSTORE_WEBHOOK_SECRET, else the secret `refund-sink run` keeps in this
    folder, unless the `run` here took its own from the environment."""
    if given:
        return given
    from_env = os.environ.get(SECRET_FROM_ENVIRONMENT, "").split(",")[0].strip()
    if from_env:
        return from_env
    record = recorded()
    if record and record.secret_source == SECRET_FROM_ENVIRONMENT:
        raise ConfigError(f"no secret: the `refund-sink run` in this folder took its secret from "
                          f"{SECRET_FROM_ENVIRONMENT}; set it here too, or pass --secret")
    if SECRET_FILE.exists():
        return SECRET_FILE.read_text().strip()
    raise ConfigError(f"no secret: pass --secret or set {SECRET_FROM_ENVIRONMENT}")

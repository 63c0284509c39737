"""POST /webhooks/genstore: authenticate, queue the raw delivery, answer. No parsing, no DB."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from ingest.services import services
from ingest.signatures import verify
from refunds import metrics
from refunds.delivery import RawDelivery
from refunds.logs import event

bp = Blueprint("webhooks", __name__)
log = logging.getLogger("refund_sink.ingest")


@bp.post("/webhooks/genstore")
def receive() -> tuple[Response, int]:
    found = services()
    settings = found.settings
    started = time.perf_counter()
    if (request.content_length or 0) > settings.max_body_bytes:
        raise RequestEntityTooLarge()
    body = read_body(settings.max_body_bytes)
    headers = {name.lower(): value for name, value in request.headers.items()}
    if not verify(body, headers, settings.genstore_secrets, settings.standard_webhook_secret):
        return _refuse("invalid_signature", 401)
    delivery = RawDelivery.from_request(body, headers, datetime.now(UTC))
    try:
        via = found.accept(delivery)
    except OSError as error:
        event(log, "delivery refused", logging.ERROR, delivery_id=delivery.delivery_id,
              error=f"neither broker nor spool can take it: {type(error).__name__}")
        return _refuse("unavailable", 503)
    metrics.ACCEPTED.labels(via).inc()
    # queued: at REFUND_SINK_DELIVERY_LOG_LEVEL (the metric counts them all); spooled: a warning
    level = logging.WARNING if via == "spool" else settings.delivery_log_level
    if log.isEnabledFor(level):
        event(log, "delivery accepted", level, delivery_id=delivery.delivery_id,
              topic=delivery.topic, shop=delivery.shop, via=via, bytes=len(body),
              duration_ms=round((time.perf_counter() - started) * 1000, 2))
    return jsonify(status="accepted", delivery_id=delivery.delivery_id), 202


def _refuse(reason: str, status: int) -> tuple[Response, int]:
    metrics.REJECTED.labels(reason).inc()
    event(log, "delivery rejected", reason=reason, status=status)
    return jsonify(error=reason), status


def read_body(limit: int) -> bytes:
    """The body, or RequestEntityTooLarge past `limit`. For a chunked body (no Content-Length)
    werkzeug stops reading at MAX_CONTENT_LENGTH and returns what it read, silently cut
    short (then answered 401, not 413): read it here, one byte past the limit to tell."""
    if request.content_length is not None or not request.environ.get("wsgi.input_terminated"):
        return request.get_data(cache=False)
    stream = request.environ["wsgi.input"]
    body = bytearray()
    while len(body) <= limit:
        chunk = stream.read(min(64 * 1024, limit + 1 - len(body)))
        if not chunk:
            break
        body += chunk
    if len(body) > limit:
        raise RequestEntityTooLarge()
    return bytes(body)


@bp.errorhandler(RequestEntityTooLarge)
def too_large(_error: RequestEntityTooLarge) -> tuple[Response, int]:
    """The webhook's own answer, a rejected delivery; a body too large for another endpoint
    is the API's JSON error (`ingest.errors`), not a delivery."""
    return _refuse("body_too_large", 413)

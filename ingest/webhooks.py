"""POST /webhooks/genstore: authenticate, queue the raw delivery, answer. No parsing, no DB."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from ingest.services import services
from ingest.signatures import verify
from refunds.delivery import RawDelivery

bp = Blueprint("webhooks", __name__)
log = logging.getLogger("refund_sink.ingest")


@bp.post("/webhooks/genstore")
def receive() -> tuple[Response, int]:
    found = services()
    settings = found.settings
    if (request.content_length or 0) > settings.max_body_bytes:
        raise RequestEntityTooLarge()
    body = request.get_data(cache=False)
    headers = {name.lower(): value for name, value in request.headers.items()}
    if not verify(body, headers, settings.genstore_secrets, settings.standard_webhook_secret):
        log.info("rejected delivery: invalid signature")
        return jsonify(error="invalid_signature"), 401
    delivery = RawDelivery.from_request(body, headers, datetime.now(UTC))
    try:
        where = found.accept(delivery)
    except OSError as error:
        log.error("delivery %s: neither the broker nor the spool can take it (%s)",
                  delivery.delivery_id, type(error).__name__)
        return jsonify(error="unavailable"), 503
    if where == "spool":
        log.warning("delivery %s spooled: broker unavailable", delivery.delivery_id)
    log.info("delivery %s accepted (topic %s, shop %s)", delivery.delivery_id, delivery.topic,
             delivery.shop)
    return jsonify(status="accepted", delivery_id=delivery.delivery_id), 202


@bp.app_errorhandler(RequestEntityTooLarge)
def too_large(_error: RequestEntityTooLarge) -> tuple[Response, int]:
    return jsonify(error="body_too_large"), 413

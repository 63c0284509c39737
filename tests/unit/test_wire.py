"""The delivery's wire form keeps where the delivery came from, and reads copies queued before
origins existed as webhooks."""

from __future__ import annotations

import dataclasses

import pytest
from deliveries import delivery
from payloads import camel_event

from broker.wire import MalformedDelivery, from_wire, to_wire
from refunds.delivery import Origin

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("origin", list(Origin), ids=str)
def test_the_origin_travels(origin: Origin) -> None:
    sent = dataclasses.replace(delivery(camel_event()), origin=origin)
    assert from_wire(to_wire(sent)) == sent


def test_a_copy_queued_before_origins_is_a_webhook() -> None:
    wire = to_wire(delivery(camel_event()))
    del wire["origin"]
    assert from_wire(wire).origin is Origin.WEBHOOK


def test_an_unknown_origin_is_not_a_delivery() -> None:
    wire = to_wire(delivery(camel_event())) | {"origin": "carrier-pigeon"}
    with pytest.raises(MalformedDelivery):
        from_wire(wire)

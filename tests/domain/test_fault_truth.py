"""The webhooks-lost scenario's truth (tests/faults/pulled.py): the fake Genstore must serve
each refund as the oracle ends it over every message sent, and the gap before a reconcile
must count what the sink never received, or the scenario's lost 0 would prove nothing."""

from __future__ import annotations

from genstore_api.client import GenstoreClient
from refunds.settings import Settings
from tests.deliveries import apply, delivery
from tests.faults import pulled
from tests.faults.traffic import Delivery
from tests.payloads import camel_event


def _sent(refund_id: str, number: int, status: str, price: str, note: str | None) -> Delivery:
    payload = camel_event(refund_id=refund_id, order_id=f"9{refund_id}", status=status,
                          price=price, update_time=f"2025-03-01T00:0{number}:00Z", note=note)
    return Delivery(f"sent-{refund_id}-{number}", refund_id, payload)


SENT = [
    _sent("1000000", 0, "in_progress", "10.00", "n1"),
    _sent("1000000", 1, "refunded", "12.00", None),
    _sent("1000000", 2, "fund_change", "15.00", None),
    _sent("2000000", 0, "in_progress", "7.50", None),
]


def test_the_fake_genstore_serves_each_refund_as_every_message_sent_ends_it() -> None:
    # given: the fake Genstore built from everything sent
    fake = pulled.genstore(SENT)
    client = GenstoreClient(pulled.SHOP, pulled.TOKEN, base_url=fake.url)
    try:
        # when: the reconcile's client asks for the first refund's order
        refunds = client.order_refunds("91000000")
    finally:
        client.close()
        fake.stop()
    # then: one refund, the oracle's final state, created at its first message, updated at
    # its last
    assert refunds == [{
        "id": "1000000", "orderId": "91000000", "status": "refunded", "refundPrice": "15.00",
        "note": "n1", "createTime": "2025-03-01T00:00:00Z", "updateTime": "2025-03-01T00:02:00Z",
    }]


def test_the_gap_counts_refunds_never_received_and_those_received_in_part(
        settings: Settings) -> None:
    # given: only the first message of refund 1000000 arrived, nothing of 2000000
    apply(settings, delivery(SENT[0].payload, delivery_id=SENT[0].delivery_id))
    # when
    gap = pulled.gap(settings, SENT)
    # then: 2000000 missing; 1000000 in_progress 10.00 where Genstore has refunded 15.00
    assert (gap.missing, gap.differs, gap.history, gap.note) == (1, 1, 1, 0)

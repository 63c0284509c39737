"""The read and operations API: token scopes and the refund shape."""

from __future__ import annotations

import pytest
from deliveries import apply, delivery
from flask.testing import FlaskClient
from payloads import camel_event, doc_example_event

from refunds import tokens
from refunds.db import session_factory
from refunds.settings import Settings


def token(settings: Settings, *scopes: str) -> dict[str, str]:
    with session_factory(settings).begin() as session:
        value = tokens.create(scopes, name="test", session=session)
    return {"Authorization": f"Bearer {value}"}


@pytest.mark.parametrize(
    ("path", "scope"),
    [("/refunds/10220473645", "read_refunds"), ("/dead-letters", "write_refunds")],
)
def test_no_token_401_wrong_scope_403_right_scope_200(
    client: FlaskClient, api_settings: Settings, path: str, scope: str
) -> None:
    apply(api_settings, delivery(doc_example_event()))
    assert client.get(path).status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer nope"}).status_code == 401
    if scope == "write_refunds":
        assert client.get(path, headers=token(api_settings, "read_refunds")).status_code == 403
    else:
        assert client.get("/dead-letters",
                          headers=token(api_settings, "read_refunds")).status_code == 403
    assert client.get(path, headers=token(api_settings, scope)).status_code == 200
    assert client.get(path, headers=token(api_settings, "write_refunds")).status_code == 200


def test_refund_shape_matches_the_spec(client: FlaskClient, api_settings: Settings) -> None:
    apply(api_settings, delivery(doc_example_event()))
    body = client.get("/refunds/10220473645", headers=token(api_settings, "read_refunds"))
    assert body.get_json() == {
        "shop": "default",
        "id": "10220473645",
        "order_id": "300141548096383",
        "status": "in_progress",
        "refund_price": "10.00",
        "currency": "USD",
        "customer_id": "1",
        "note": "Note",
        "created_at": "2024-12-31T00:00:00+00:00",
        "updated_at": "2024-12-31T00:00:00+00:00",
        "refunded_at": None,
        "line_items": [{"refund_line_id": None, "line_item_id": None, "product_id": "12901212",
                        "variant_id": "12901312", "sku": "128G;白色;", "quantity": 1,
                        "ordered_quantity": 1, "current_quantity": 1, "price": "10.00",
                        "subtotal": "1", "total_tax": "0.00",
                        "discount_allocations": [{"amount": "0.01"}],
                        "tax_lines": [{"price": "10.00"}], "location_id": None}],
        "fund_changes": [],
        "events_applied": 1,
        # the SPEC's example refunds 10.00 against one line whose subtotal is 1
        "flags": ["over_line_items"],
    }


def test_order_refunds_and_paged_listing(client: FlaskClient, api_settings: Settings) -> None:
    for number in range(5):
        apply(api_settings, delivery(camel_event(refund_id=str(number), order_id="77")))
    headers = token(api_settings, "read_refunds")
    listed = client.get("/orders/77/refunds", headers=headers).get_json()
    assert [refund["id"] for refund in listed["refunds"]] == ["0", "1", "2", "3", "4"]
    seen, cursor = [], None
    while True:
        query = "/refunds?order_id=77&limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(query, headers=headers).get_json()
        seen += [refund["id"] for refund in page["refunds"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["0", "1", "2", "3", "4"]
    assert client.get("/refunds?cursor=%%%", headers=headers).status_code == 400
    naive = client.get("/refunds?updated_since=2025-01-01", headers=headers)
    assert len(naive.get_json()["refunds"]) == 5
    later = client.get("/refunds?updated_since=2030-01-01T00:00:00%2B08:00", headers=headers)
    assert later.get_json()["refunds"] == []
    assert client.get("/refunds/nope", headers=headers).status_code == 404


def test_refund_in_two_shops_needs_a_shop(client: FlaskClient,
                                          api_settings: Settings) -> None:
    apply(api_settings, delivery(camel_event(price="1.00"), shop="a.example"))
    apply(api_settings, delivery(camel_event(price="2.00"), shop="b.example"))
    headers = token(api_settings, "read_refunds")
    ambiguous = client.get("/refunds/7001", headers=headers)
    assert ambiguous.status_code == 409
    assert ambiguous.get_json()["shops"] == ["a.example", "b.example"]
    named = client.get("/refunds/7001?shop=b.example", headers=headers).get_json()
    assert named["refund_price"] == "2.00"


def test_requeue_over_http(client: FlaskClient, api_settings: Settings) -> None:
    apply(api_settings, delivery(b"{", delivery_id="bad"))
    headers = token(api_settings, "write_refunds")
    [letter] = client.get("/dead-letters?reason=invalid_json", headers=headers).get_json()[
        "dead_letters"]
    response = client.post(f"/dead-letters/{letter['id']}/requeue", headers=headers)
    assert response.status_code == 202
    assert client.post("/dead-letters/424242/requeue", headers=headers).status_code == 404

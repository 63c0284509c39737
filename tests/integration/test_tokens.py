"""API tokens: expiry, revocation, and tokens scoped to one shop, which see that shop only
(refunds, orders, listings, dead letters) and never learn that other shops exist."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from deliveries import apply, delivery
from flask.testing import FlaskClient
from payloads import camel_event

from refunds import tokens
from refunds.db import session_factory
from refunds.settings import Settings


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def new_token(settings: Settings, *scopes: str, shop: str | None = None,
              expires_at: datetime | None = None) -> str:
    with session_factory(settings).begin() as session:
        return tokens.create(scopes, name="test", shop=shop, expires_at=expires_at,
                             session=session)


def two_shops(settings: Settings) -> None:
    """Refund 7001 in both shops, 7002 in b only, all of order 9001; a dead letter each."""
    apply(settings, delivery(camel_event(price="1.00"), shop="a.example"))
    apply(settings, delivery(camel_event(price="2.00"), shop="b.example"))
    apply(settings, delivery(camel_event(refund_id="7002"), shop="b.example"))
    apply(settings, delivery(b"{", delivery_id="bad-a", shop="a.example"))
    apply(settings, delivery(b"{", delivery_id="bad-b", shop="b.example"))


def test_a_grant_carries_scopes_shop_and_expiry(api_settings: Settings) -> None:
    soon = datetime.now(UTC) + timedelta(hours=1)
    value = new_token(api_settings, "write_refunds", shop=" Shop-A.Example ", expires_at=soon)
    with session_factory(api_settings)() as session:
        grant = tokens.grant_of(value, session=session)
        assert grant == tokens.Grant(scopes=frozenset({"read_refunds", "write_refunds"}),
                                     shop="shop-a.example")
        assert tokens.grant_of(value, session=session, now=soon) is None
        assert tokens.grant_of(value + "x", session=session) is None


def test_an_expired_or_revoked_token_is_401(client: FlaskClient,
                                            api_settings: Settings) -> None:
    expired = new_token(api_settings, "read_refunds",
                        expires_at=datetime.now(UTC) - timedelta(seconds=1))
    response = client.get("/refunds/7001", headers=bearer(expired))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.get_json()["error"] == "unauthorized"
    live = new_token(api_settings, "read_refunds")
    assert client.get("/refunds/7001", headers=bearer(live)).status_code == 404
    with session_factory(api_settings).begin() as session:
        [row] = [row for row in tokens.listing(session=session) if row.expires_at is None]
        assert tokens.revoke(row.id, session=session) is tokens.Revoked.NOW
    with session_factory(api_settings).begin() as session:
        assert tokens.revoke(row.id, session=session) is tokens.Revoked.ALREADY
        assert tokens.revoke(10**30, session=session) is tokens.Revoked.NOT_FOUND
    assert client.get("/refunds/7001", headers=bearer(live)).status_code == 401


def test_a_shop_token_sees_its_shop_only(client: FlaskClient, api_settings: Settings) -> None:
    # given refunds and dead letters in two shops, and a token for shop a
    two_shops(api_settings)
    shop_a = bearer(new_token(api_settings, "write_refunds", shop="A.example"))
    # then the refund in both shops is a's, with no 409 naming b
    refund = client.get("/refunds/7001", headers=shop_a)
    assert refund.status_code == 200 and refund.get_json()["refund_price"] == "1.00"
    # and b's refunds are unknown to it, whether asked for plainly or by shop
    for path in ("/refunds/7002", "/refunds/7002?shop=b.example", "/refunds/7001?shop=b.example"):
        response = client.get(path, headers=shop_a)
        assert response.status_code == 404, path
        assert "b.example" not in response.get_data(as_text=True)
    # and every listing holds a's rows only
    order = client.get("/orders/9001/refunds", headers=shop_a).get_json()
    assert [(r["shop"], r["id"]) for r in order["refunds"]] == [("a.example", "7001")]
    for path in ("/orders/9001/refunds?shop=b.example", "/refunds?shop=B.example",
                 "/dead-letters?shop=b.example"):
        assert client.get(path, headers=shop_a).status_code == 404, path
    listed = client.get("/refunds", headers=shop_a).get_json()
    assert [(r["shop"], r["id"]) for r in listed["refunds"]] == [("a.example", "7001")]
    letters = client.get("/dead-letters", headers=shop_a).get_json()["dead_letters"]
    assert [letter["delivery_id"] for letter in letters] == ["bad-a"]
    # and b's dead letter cannot be requeued through it
    everything = bearer(new_token(api_settings, "write_refunds"))
    all_letters = client.get("/dead-letters", headers=everything).get_json()["dead_letters"]
    [b_letter] = [letter for letter in all_letters if letter["shop"] == "b.example"]
    assert client.post(f"/dead-letters/{b_letter['id']}/requeue",
                       headers=shop_a).status_code == 404
    # while a token for every shop still hears of the ambiguity
    ambiguous = client.get("/refunds/7001", headers=everything)
    assert ambiguous.status_code == 409
    assert ambiguous.get_json()["shops"] == ["a.example", "b.example"]


@pytest.mark.parametrize(("text", "expected"), [
    ("30d", timedelta(days=30)), ("12h", timedelta(hours=12)), ("45m", timedelta(minutes=45)),
    ("90s", timedelta(seconds=90)), ("2w", timedelta(weeks=2)),
])
def test_expiry_durations(text: str, expected: timedelta) -> None:
    assert tokens.parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "30", "d", "-1d", "0h", "1.5d", "1y", "99999999999d"])
def test_bad_expiry_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        tokens.parse_duration(text)

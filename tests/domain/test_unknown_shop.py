"""Registered shops only, once shops are registered: Genstore's HMAC covers the body, not the
shop header, so a captured body replayed under another shop's name must not become that
shop's refund. Such a delivery is a dead letter `unknown_shop`, kept and requeueable."""

from __future__ import annotations

from datetime import UTC, datetime

from cryptography.fernet import Fernet
from deliveries import apply, delivery
from payloads import camel_event, to_body
from sqlalchemy import func, select

from refunds import dead_letters, shops
from refunds.apply import Outcome, apply_deliveries
from refunds.db import session_factory
from refunds.models import DeadLetter, Erasure, Refund
from refunds.settings import Settings

KEYS = shops.cipher([Fernet.generate_key().decode()])


def register(settings: Settings, domain: str) -> None:
    with session_factory(settings).begin() as session:
        shops.add(domain, "token", keys=KEYS, now=datetime.now(UTC), session=session)


def refunds_of(settings: Settings, shop: str) -> int:
    with session_factory(settings)() as session:
        return session.scalar(select(func.count()).select_from(Refund).where(
            Refund.shop == shop, Refund.events_applied > 0)) or 0


def test_every_shop_applies_while_none_is_registered(settings: Settings) -> None:
    assert apply(settings, delivery(camel_event(), shop="any.example")) is Outcome.APPLIED
    assert refunds_of(settings, "any.example") == 1


def test_once_shops_are_registered_another_shop_is_a_dead_letter(settings: Settings) -> None:
    # given one registered shop
    register(settings, "Mine.Example")
    # when the same body comes under its name and under another's
    assert apply(settings, delivery(camel_event(), shop="mine.example")) is Outcome.APPLIED
    replayed = delivery(camel_event(), shop="other.example")
    assert apply(settings, replayed) is Outcome.DEAD_LETTERED
    # then only the registered shop has the refund; the other is kept as a dead letter
    assert (refunds_of(settings, "mine.example"), refunds_of(settings, "other.example")) == (1, 0)
    with session_factory(settings)() as session:
        [letter] = session.scalars(select(DeadLetter)).all()
        assert (letter.shop, letter.reason, letter.state) == ("other.example", "unknown_shop",
                                                              "dead")
    # and once that shop is registered, a requeue applies it and resolves the letter
    register(settings, "other.example")
    result = dead_letters.requeue(session_factory(settings), lambda raw: apply(settings, raw),
                                  ids=[letter.id])
    assert result.requeued == [letter.id]
    assert refunds_of(settings, "other.example") == 1
    with session_factory(settings)() as session:
        assert session.scalars(select(DeadLetter.state)).one() == "resolved"


def test_a_compliance_request_for_another_shop_erases_nothing(settings: Settings) -> None:
    # given a registered shop with a refund, and the same shop id under an unregistered name
    register(settings, "mine.example")
    apply(settings, delivery(camel_event(), shop="mine.example"))
    redact = delivery(to_body({"shop_id": 1, "shop_domain": "mine.example"}),
                      topic="shop/redact", shop="other.example")
    # when a shop/redact comes under the unregistered name
    assert apply(settings, redact) is Outcome.DEAD_LETTERED
    # then nothing was erased anywhere
    assert refunds_of(settings, "mine.example") == 1
    with session_factory(settings)() as session:
        assert session.scalar(select(func.count()).select_from(Erasure)) == 0


def test_in_one_list_only_the_unknown_shops_deliveries_are_set_aside(settings: Settings) -> None:
    register(settings, "mine.example")
    mixed = [delivery(camel_event(refund_id=str(n)), shop=shop)
             for n, shop in enumerate(["mine.example", "other.example", "mine.example"])]
    with session_factory(settings).begin() as session:
        outcomes = [result.outcome for result in apply_deliveries(mixed, session=session,
                                                                  naive_tz="UTC")]
    assert outcomes == [Outcome.APPLIED, Outcome.DEAD_LETTERED, Outcome.APPLIED]
    assert (refunds_of(settings, "mine.example"), refunds_of(settings, "other.example")) == (2, 0)

"""Risk flags raised by the apply path and by the stuck check: each rule raises above its
threshold and not at it, once per rule and refund whatever is delivered again, and an
acknowledged flag stays acknowledged. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from deliveries import delivery
from payloads import camel_event
from prometheus_client import REGISTRY
from sqlalchemy import event, select

from refunds import flags
from refunds.apply import Outcome, Result, apply_deliveries
from refunds.db import session_factory
from refunds.delivery import RawDelivery
from refunds.models import RefundFlag
from refunds.risk_rules import (
    DEFAULTS,
    AmountOver,
    CustomerVelocity,
    OverLineItems,
    RaisedAfterRefunded,
    RiskRules,
    StuckInProgress,
)
from refunds.settings import Settings
from worker.handling import DeliveryHandler

T0 = datetime(2025, 3, 1, 10, tzinfo=UTC)
ALL_OFF = RiskRules(AmountOver(enabled=False), OverLineItems(enabled=False),
                    CustomerVelocity(enabled=False), RaisedAfterRefunded(enabled=False),
                    StuckInProgress(enabled=False))


def apply_list(settings: Settings, deliveries: list[RawDelivery],
               rules: RiskRules = DEFAULTS) -> list[Result]:
    with session_factory(settings).begin() as session:
        return apply_deliveries(deliveries, session=session, naive_tz="UTC", rules=rules)


def apply_each(settings: Settings, deliveries: list[RawDelivery]) -> list[Result]:
    return [result for raw in deliveries for result in apply_list(settings, [raw])]


def flag_rows(settings: Settings) -> list[tuple[str, str, str, str | None]]:
    with session_factory(settings)() as session:
        return sorted((f.shop, f.refund_id, f.rule, f.acknowledged_by)
                      for f in session.scalars(select(RefundFlag)))


def details(settings: Settings, refund_id: str, rule: str) -> dict[str, Any]:
    with session_factory(settings)() as session:
        found: dict[str, Any] = session.scalars(select(RefundFlag.details).where(
            RefundFlag.refund_id == refund_id, RefundFlag.rule == rule)).one()
        return found


def at(offset: timedelta = timedelta(0)) -> str:
    return (T0 + offset).isoformat()


def line(subtotal: str | None, tax: str) -> dict[str, Any]:
    return {"quantity": "1", "totalTax": tax, "lineItem": {"sku": "S1", "price": subtotal},
            **({"subtotal": subtotal} if subtotal is not None else {})}


def of_customer(refund_id: str, customer: str, created: timedelta) -> RawDelivery:
    return delivery(camel_event(refund_id=refund_id, customer={"id": customer},
                                create_time=at(created), update_time=at(created)))


# --- one test per rule: above its threshold, and just below -----------------------------------

def test_amount_over_raises_above_the_threshold_not_at_it(settings: Settings) -> None:
    # given a refund a cent over the default threshold (1000) and one at it
    over = delivery(camel_event(refund_id="1", price="1000.01", currency="USD"))
    level = delivery(camel_event(refund_id="2", price="1000.00", currency="USD"))
    # when both are applied in one list
    results = apply_list(settings, [over, level])
    # then the first is flagged, with its figures, and its delivery carries the rule
    assert [result.flags for result in results] == [("amount_over",), ()]
    assert flag_rows(settings) == [("default", "1", "amount_over", None)]
    assert details(settings, "1", "amount_over") == {
        "price": "1000.01", "currency": "USD", "threshold": "1000"}


def test_over_line_items_raises_above_subtotal_plus_tax(settings: Settings) -> None:
    # given line items worth 10.00 + 1.00 tax, refunded for a cent more, and for exactly that
    lines = [line("6.00", "1.00"), line("4.00", "0.00")]
    over = delivery(camel_event(refund_id="1", price="11.01", lineItems=lines))
    level = delivery(camel_event(refund_id="2", price="11.00", lineItems=lines))
    # and a refund whose line items lack a subtotal: no sum to compare with
    unknown = delivery(camel_event(refund_id="3", price="99.00",
                                   lineItems=[line(None, "0.00")]))
    # when they are applied
    results = apply_list(settings, [over, level, unknown])
    # then only the first is flagged
    assert [result.flags for result in results] == [("over_line_items",), (), ()]
    assert flag_rows(settings) == [("default", "1", "over_line_items", None)]
    assert details(settings, "1", "over_line_items") == {
        "price": "11.01", "line_items_total": "11.00", "line_items": 2}


def test_customer_velocity_raises_on_the_refund_that_makes_three_in_seven_days(
        settings: Settings) -> None:
    # given three refunds of c1 created within exactly 7 days, three of c2 within 7 days and
    # a second, and c3's three split over two shops
    week = timedelta(days=7)
    sent = [of_customer("a1", "c1", timedelta(0)), of_customer("a2", "c1", timedelta(days=3)),
            of_customer("a3", "c1", week),
            of_customer("b1", "c2", timedelta(0)), of_customer("b2", "c2", timedelta(days=3)),
            of_customer("b3", "c2", week + timedelta(seconds=1)),
            of_customer("c1", "c3", timedelta(0)), of_customer("c2", "c3", timedelta(days=1)),
            dataclasses.replace(of_customer("c3", "c3", timedelta(days=2)), shop="other")]
    # when they arrive one by one
    results = apply_each(settings, sent)
    # then only c1's third refund is flagged, with the span that holds the three
    assert [result.flags for result in results] == [(), (), ("customer_velocity",),
                                                    (), (), (), (), (), ()]
    assert flag_rows(settings) == [("default", "a3", "customer_velocity", None)]
    assert details(settings, "a3", "customer_velocity") == {
        "customer_id": "c1", "refunds": 3, "days": 7,
        "first_created_at": T0.isoformat(), "last_created_at": (T0 + week).isoformat()}


def test_customer_velocity_counts_a_refund_that_arrives_late(settings: Settings) -> None:
    # given c1's first and third refunds applied
    apply_each(settings, [of_customer("a1", "c1", timedelta(0)),
                          of_customer("a3", "c1", timedelta(days=6))])
    # when the one created between them arrives last
    [result] = apply_list(settings, [of_customer("a2", "c1", timedelta(days=2))])
    # then it is the one flagged
    assert result.flags == ("customer_velocity",)
    assert flag_rows(settings) == [("default", "a2", "customer_velocity", None)]


def test_raised_after_refunded_raises_on_a_higher_fund_change_after_refunded(
        settings: Settings) -> None:
    # given refund 1: in progress at 25.00, refunded (no price), then a fund change to 25.01,
    # delivered last first; refund 2 the same with a fund change to 25.00; refund 3 raised
    # to 30.00 before it was refunded
    def story(refund_id: str, changed_to: str, change_at: timedelta) -> list[RawDelivery]:
        return [delivery(camel_event(refund_id=refund_id, status="fund_change",
                                     price=changed_to, update_time=at(change_at))),
                delivery(camel_event(refund_id=refund_id, status="refunded", price=None,
                                     update_time=at(timedelta(minutes=5)))),
                delivery(camel_event(refund_id=refund_id, status="in_progress", price="25.00",
                                     update_time=at()))]
    sent = [*story("1", "25.01", timedelta(minutes=10)), *story("2", "25.00",
            timedelta(minutes=10)), *story("3", "30.00", timedelta(minutes=3))]
    # when they arrive one by one
    results = apply_each(settings, sent)
    # then refund 1 is flagged once the refold knows the price it was raised from
    assert [result.flags for result in results][:3] == [(), (), ("raised_after_refunded",)]
    assert flag_rows(settings) == [("default", "1", "raised_after_refunded", None)]
    assert details(settings, "1", "raised_after_refunded") == {
        "refunded_at": at(timedelta(minutes=5)), "at": at(timedelta(minutes=10)),
        "amount": "25.01", "previous_amount": "25.00"}


def test_stuck_in_progress_is_raised_by_the_check_after_the_hours(settings: Settings) -> None:
    # given a refund in progress since T0 and one refunded since T0
    apply_list(settings, [
        delivery(camel_event(refund_id="1", create_time=at(), update_time=at())),
        delivery(camel_event(refund_id="2", status="refunded", create_time=at(),
                             update_time=at()))])
    params = DEFAULTS.stuck_in_progress

    def check(now: datetime) -> dict[tuple[str, str], tuple[str, ...]]:
        with session_factory(settings).begin() as session:
            return flags.check_stuck(params, session=session, now=now)

    # when checked exactly 72 hours after, then a second later, then again
    assert check(T0 + timedelta(hours=72)) == {}
    assert check(T0 + timedelta(hours=72, seconds=1)) == {("default", "1"): ("stuck_in_progress",)}
    assert check(T0 + timedelta(hours=80)) == {}
    # then the refund in progress is flagged once; the refunded one never
    assert flag_rows(settings) == [("default", "1", "stuck_in_progress", None)]
    assert details(settings, "1", "stuck_in_progress")["hours"] == 72


def test_the_apply_path_leaves_stuck_in_progress_to_the_check(settings: Settings) -> None:
    # given a refund created years ago, still in progress, when it is applied
    apply_list(settings, [delivery(camel_event(create_time="2020-01-01T00:00:00Z"))])
    # then nothing is raised until the check runs
    assert flag_rows(settings) == []


# --- once per rule and refund ------------------------------------------------------------------

def test_redelivery_copies_and_refolds_never_raise_twice(settings: Settings) -> None:
    # given a refund over the threshold, flagged
    first = delivery(camel_event(price="2000.00", update_time=at()))
    assert apply_list(settings, [first])[0].flags == ("amount_over",)
    # when the same delivery comes again, the same message under a new id, and a later
    # message that refolds the refund (still over), in one list and then each alone
    again = [first, delivery(first.body),
             delivery(camel_event(price="2500.00", note="later", update_time=at(
                 timedelta(minutes=1))))]
    repeated = apply_list(settings, again) + apply_each(settings, again)
    # then each had its outcome, no flag was raised again, and there is still one row
    assert [result.outcome for result in repeated] == [
        Outcome.DUPLICATE_DELIVERY, Outcome.DUPLICATE_MESSAGE, Outcome.APPLIED,
        Outcome.DUPLICATE_DELIVERY, Outcome.DUPLICATE_DELIVERY, Outcome.DUPLICATE_DELIVERY]
    assert all(result.flags == () for result in repeated)
    assert flag_rows(settings) == [("default", "7001", "amount_over", None)]


def test_an_acknowledged_flag_is_not_raised_again(settings: Settings) -> None:
    # given a flagged refund whose flag was acknowledged
    apply_list(settings, [delivery(camel_event(price="2000.00", update_time=at()))])
    with session_factory(settings).begin() as session:
        [flag] = flags.find(session=session)
        acknowledged = flags.acknowledge(flag.id, by="risk desk", shop=None, session=session,
                                         now=T0)
        assert acknowledged is not None and acknowledged.acknowledged_by == "risk desk"
    # when a later message still over the threshold arrives
    [result] = apply_list(settings, [delivery(camel_event(price="3000.00", update_time=at(
        timedelta(minutes=1))))])
    # then nothing is raised: the one row keeps its acknowledgement
    assert result.flags == ()
    assert flag_rows(settings) == [("default", "7001", "amount_over", "risk desk")]


def test_a_second_acknowledgement_keeps_the_first(settings: Settings) -> None:
    apply_list(settings, [delivery(camel_event(price="2000.00"), shop="a.example")])
    with session_factory(settings).begin() as session:
        [flag] = flags.find(session=session)
        flags.acknowledge(flag.id, by="first", shop=None, session=session, now=T0)
    with session_factory(settings).begin() as session:
        second = flags.acknowledge(flag.id, by="second", shop=None, session=session,
                                   now=T0 + timedelta(hours=1))
        assert second is not None
        assert (second.acknowledged_by, second.acknowledged_at) == ("first", T0)
        assert flags.acknowledge(flag.id, by="x", shop="b.example", session=session,
                                 now=T0) is None
        assert flags.acknowledge(flag.id + 1000, by="x", shop=None, session=session,
                                 now=T0) is None
        assert flags.acknowledge(2**40, by="x", shop=None, session=session, now=T0) is None


# --- lists, the worker's counter and the cost ----------------------------------------------------

def test_a_list_raises_on_the_state_it_commits_and_reports_each_flag_once(
        settings: Settings) -> None:
    # given c1's three refunds in one list, the last refund twice (two messages)
    sent = [of_customer("a1", "c1", timedelta(0)), of_customer("a2", "c1", timedelta(days=1)),
            of_customer("a3", "c1", timedelta(days=2)),
            delivery(camel_event(refund_id="a3", customer={"id": "c1"}, create_time=at(
                timedelta(days=2)), update_time=at(timedelta(days=3)), note="later"))]
    # when the list is applied
    results = apply_list(settings, sent)
    # then all three are flagged (the list commits them together), each on the last delivery
    # that applied a message to its refund
    assert [result.flags for result in results] == [
        ("customer_velocity",), ("customer_velocity",), (), ("customer_velocity",)]
    assert [row[1] for row in flag_rows(settings)] == ["a1", "a2", "a3"]


def test_rules_that_are_off_raise_nothing(settings: Settings) -> None:
    apply_list(settings, [of_customer(str(n), "c1", timedelta(0)) for n in range(3)]
               + [delivery(camel_event(refund_id="9", price="5000.00"))], rules=ALL_OFF)
    assert flag_rows(settings) == []


def counted(rule: str) -> float:
    return REGISTRY.get_sample_value("refund_sink_flags_raised_total", {"rule": rule}) or 0.0


def test_the_worker_counts_each_flag_raised_once_committed(settings: Settings) -> None:
    # given the worker's handler and a list that raises two flags on one refund and one on
    # another, then the same list again
    handler = DeliveryHandler(settings)
    lines = [line("1.00", "0.00")]
    sent = [delivery(camel_event(refund_id="1", price="2000.00", lineItems=lines)),
            delivery(camel_event(refund_id="2", price="5.00", lineItems=lines))]
    before = {rule: counted(rule) for rule in ("amount_over", "over_line_items")}
    # when it handles the list twice
    handler.handle(sent)
    handler.handle(sent)
    # then each flag counted once
    assert counted("amount_over") - before["amount_over"] == 1
    assert counted("over_line_items") - before["over_line_items"] == 2
    assert len(flag_rows(settings)) == 3


def test_the_handler_uses_the_configured_rules(settings: Settings) -> None:
    handler = DeliveryHandler(dataclasses.replace(settings, risk_rules=ALL_OFF))
    handler.handle([delivery(camel_event(price="2000.00"))])
    assert flag_rows(settings) == []


@contextmanager
def statements(settings: Settings) -> Iterator[list[str]]:
    engine = session_factory(settings).kw["bind"]
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def extra_statements(settings: Settings, make: Any) -> int:
    """Statements a list costs with the default rules beyond its cost with every rule off
    (each run on a fresh set of refunds, so both do the same apply work)."""
    with statements(settings) as off:
        apply_list(settings, make("off"), rules=ALL_OFF)
    with statements(settings) as on:
        apply_list(settings, make("on"), rules=DEFAULTS)
    return len(on) - len(off)


@pytest.mark.parametrize(("customers", "price", "extra"), [
    (False, "5.00", 0),  # nothing to count, nothing raised
    (True, "5.00", 1),  # the customers' refunds counted in one grouped query
    (True, "5000.00", 2),  # and one INSERT for every flag raised
])
def test_rules_cost_at_most_one_query_and_one_insert_per_list(
        settings: Settings, customers: bool, price: str, extra: int) -> None:
    def make(run: str) -> list[RawDelivery]:
        return [delivery(camel_event(refund_id=f"{run}{n}", price=price,
                                     customer={"id": f"c{n}"} if customers else None))
                for n in range(20)]
    assert extra_statements(settings, make) == extra

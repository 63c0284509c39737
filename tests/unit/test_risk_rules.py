"""The risk rules' configuration fails fast and names what is wrong; the rules themselves are
pure functions, checked here at their edges (the apply path's tests are in
tests/domain/test_flags.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, get_args

import pytest

from refunds import risk
from refunds.risk_rules import (
    DEFAULTS,
    AmountOver,
    CustomerVelocity,
    RiskRules,
    Rule,
    StuckInProgress,
    load,
)
from refunds.settings import ConfigError, Settings
from schemas.flags import RuleName

pytestmark = pytest.mark.unit

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "risk-rules.toml"
T0 = datetime(2025, 3, 1, tzinfo=UTC)


def settings_with(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    return Settings.from_env({"REFUND_SINK_RISK_RULES": str(path)})


def test_unset_means_every_rule_on_with_the_documented_defaults() -> None:
    rules = Settings.from_env({}).risk_rules
    assert rules == DEFAULTS
    assert all(rules.on(rule) for rule in Rule)
    assert rules.amount_over.threshold == Decimal(1000)
    assert (rules.customer_velocity.refunds, rules.customer_velocity.days) == (3, 7)
    assert rules.stuck_in_progress.hours == 72


def test_the_example_file_holds_the_defaults() -> None:
    assert load(EXAMPLE) == DEFAULTS


def test_the_api_schema_names_every_rule() -> None:
    assert get_args(RuleName) == tuple(rule.value for rule in Rule)


def test_a_table_changes_only_its_keys_and_reads_money_exactly(tmp_path: Path) -> None:
    rules = settings_with(tmp_path, """
        [amount_over]
        threshold = 999.99
        [amount_over.currency]
        jpy = "150000"
        [customer_velocity]
        days = 2
        [over_line_items]
        enabled = false
    """).risk_rules
    assert rules.amount_over.threshold == Decimal("999.99")
    assert rules.amount_over.threshold_for("JPY") == Decimal(150000)
    assert rules.amount_over.threshold_for("USD") == Decimal("999.99")
    assert rules.amount_over.threshold_for(None) == Decimal("999.99")
    assert rules.customer_velocity == CustomerVelocity(refunds=3, days=2)
    assert not rules.on(Rule.OVER_LINE_ITEMS) and rules.on(Rule.STUCK_IN_PROGRESS)


@pytest.mark.parametrize(("text", "named"), [
    ("[amount_ovr]\nthreshold = 5", "unknown rule 'amount_ovr'"),
    ("[amount_over]\nthreshhold = 5", "[amount_over] has no key 'threshhold'"),
    ("[amount_over]\nthreshold = -1", "[amount_over] threshold"),
    ("[amount_over]\nthreshold = \"lots\"", "[amount_over] threshold"),
    ("[amount_over]\nthreshold = \"NaN\"", "[amount_over] threshold"),
    ("[amount_over]\nthreshold = true", "[amount_over] threshold"),
    ("[amount_over.currency]\nEUR = \"x\"", "[amount_over] currency.EUR"),
    ("[amount_over]\ncurrency = 5", "[amount_over] currency"),
    ("[customer_velocity]\nrefunds = 1", "[customer_velocity] refunds"),
    ("[customer_velocity]\ndays = 1.5", "[customer_velocity] days"),
    ("[stuck_in_progress]\nhours = 0", "[stuck_in_progress] hours"),
    ("[stuck_in_progress]\nenabled = \"no\"", "[stuck_in_progress] enabled"),
    ("stuck_in_progress = 72", "stuck_in_progress must be a table"),
    ("[stuck_in_progress\nhours = 1", "not TOML"),
], ids=lambda value: value if " " not in value else None)
def test_a_bad_file_stops_start_up_naming_the_variable_and_the_key(
        tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError, match="REFUND_SINK_RISK_RULES") as raised:
        settings_with(tmp_path, text)
    assert named in str(raised.value)


def test_a_missing_file_stops_start_up(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="REFUND_SINK_RISK_RULES.*cannot read"):
        Settings.from_env({"REFUND_SINK_RISK_RULES": str(tmp_path / "absent.toml")})


# --- the rules at their edges ----------------------------------------------------------------

@dataclass
class Facts:
    """A refund's state as the rules read it."""

    shop: str = "default"
    refund_id: str = "1"
    status: str = "in_progress"
    refund_price: Decimal | None = Decimal("10.00")
    currency: str | None = "USD"
    customer_id: str | None = "c1"
    line_items: list[Any] | None = None
    fund_changes: list[Any] = field(default_factory=list)
    created_at: datetime | None = T0
    refunded_at: datetime | None = None


def test_amount_over_uses_the_currencys_own_threshold() -> None:
    params = AmountOver(threshold=Decimal(100), currency=(("JPY", Decimal(15000)),))
    assert risk.amount_over(Facts(refund_price=Decimal("100.01")), params) == {
        "price": "100.01", "currency": "USD", "threshold": "100"}
    assert risk.amount_over(Facts(refund_price=Decimal(100)), params) is None
    assert risk.amount_over(Facts(refund_price=Decimal(15000), currency="jpy"), params) is None
    assert risk.amount_over(Facts(refund_price=None), params) is None


def test_over_line_items_needs_every_subtotal_and_counts_missing_tax_as_none() -> None:
    lines = [{"subtotal": "6.00", "total_tax": "0.50"}, {"subtotal": "3.50", "total_tax": None}]
    assert risk.over_line_items(Facts(line_items=lines, refund_price=Decimal("10.00"))) is None
    assert risk.over_line_items(Facts(line_items=lines, refund_price=Decimal("10.01"))) == {
        "price": "10.01", "line_items_total": "10.00", "line_items": 2}
    partial = [*lines, {"subtotal": None, "total_tax": "1.00"}]
    assert risk.over_line_items(Facts(line_items=partial, refund_price=Decimal(99))) is None
    assert risk.over_line_items(Facts(line_items=[], refund_price=Decimal(99))) is None


def test_customer_velocity_counts_within_any_span_that_holds_the_refund() -> None:
    params = CustomerVelocity(refunds=3, days=7)
    week = timedelta(days=7)
    # this refund (T0) is the middle one: the span starting a day before holds all three
    around = [(T0 - timedelta(days=1), 1), (T0, 1), (T0 + week - timedelta(days=1), 1)]
    assert risk.customer_velocity(Facts(), params, around) == {
        "customer_id": "c1", "refunds": 3, "days": 7,
        "first_created_at": (T0 - timedelta(days=1)).isoformat(),
        "last_created_at": (T0 + timedelta(days=6)).isoformat()}
    exactly = [(T0 - week, 1), (T0 - timedelta(days=3), 1), (T0, 1)]
    assert risk.customer_velocity(Facts(), params, exactly) == {
        "customer_id": "c1", "refunds": 3, "days": 7,
        "first_created_at": (T0 - week).isoformat(), "last_created_at": T0.isoformat()}
    too_wide = [(T0 - week - timedelta(seconds=1), 1), (T0 - timedelta(days=3), 1), (T0, 1)]
    assert risk.customer_velocity(Facts(), params, too_wide) is None
    assert risk.customer_velocity(Facts(), params, [(T0, 2)]) is None  # one too few
    assert risk.customer_velocity(Facts(), params, [(T0, 3)])["refunds"] == 3
    assert risk.customer_velocity(Facts(customer_id=None), params, [(T0, 3)]) is None


def test_raised_after_refunded_wants_a_raise_after_the_refund() -> None:
    refunded = Facts(refunded_at=T0, fund_changes=[
        {"amount": "20.00", "previous_amount": "25.00", "at": (T0 + timedelta(hours=1))
         .isoformat()},
        {"amount": "30.00", "previous_amount": "25.00", "at": T0.isoformat()},
        {"amount": "30.00", "previous_amount": None, "at": (T0 + timedelta(hours=2))
         .isoformat()}])
    assert risk.raised_after_refunded(refunded) is None  # lower, at the same time, no previous
    refunded.fund_changes.append({"amount": "20.01", "previous_amount": "20.00",
                                  "at": (T0 + timedelta(hours=3)).isoformat()})
    assert risk.raised_after_refunded(refunded) == {
        "refunded_at": T0.isoformat(), "at": (T0 + timedelta(hours=3)).isoformat(),
        "amount": "20.01", "previous_amount": "20.00"}


def test_stuck_in_progress_after_the_hours_and_only_in_progress() -> None:
    params = StuckInProgress(hours=72)
    due = T0 + timedelta(hours=72)
    assert risk.stuck_in_progress(Facts(), params, due) is None
    assert risk.stuck_in_progress(Facts(), params, due + timedelta(seconds=1)) == {
        "created_at": T0.isoformat(), "hours": 72,
        "checked_at": (due + timedelta(seconds=1)).isoformat()}
    assert risk.stuck_in_progress(Facts(status="refunded"), params, due + timedelta(
        days=1)) is None


def test_evaluate_skips_rules_that_are_off() -> None:
    pricey = Facts(refund_price=Decimal(5000), line_items=[{"subtotal": "1", "total_tax": "0"}])
    assert set(risk.evaluate(pricey, DEFAULTS, [])) == {Rule.AMOUNT_OVER, Rule.OVER_LINE_ITEMS}
    off = RiskRules(amount_over=AmountOver(enabled=False))
    assert set(risk.evaluate(pricey, off, [])) == {Rule.OVER_LINE_ITEMS}

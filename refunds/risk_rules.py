"""The risk rules' parameters: one TOML file (`REFUND_SINK_RISK_RULES`), a table per rule.

Every rule is on by default with the defaults below; a table changes only the keys it names,
and `enabled = false` turns its rule off. The file is read once, at start-up: an unreadable
file, an unknown rule or key, or a value of the wrong kind is a `BadRiskRules` naming it, which
the settings turn into a ConfigError, so a typo never silently turns a rule off.
`examples/risk-rules.toml` holds the defaults."""

from __future__ import annotations

import dataclasses
import enum
import tomllib
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any


class Rule(enum.StrEnum):
    AMOUNT_OVER = "amount_over"
    OVER_LINE_ITEMS = "over_line_items"
    CUSTOMER_VELOCITY = "customer_velocity"
    RAISED_AFTER_REFUNDED = "raised_after_refunded"
    STUCK_IN_PROGRESS = "stuck_in_progress"


class BadRiskRules(ValueError):
    """The rules file cannot be used; the message names the table and key."""


@dataclass(frozen=True)
class AmountOver:
    """The price above `threshold`, or above the refund currency's own threshold when
    `currency` has one (`[amount_over.currency]`, e.g. `JPY = 150000`)."""

    enabled: bool = True
    threshold: Decimal = Decimal(1000)
    currency: tuple[tuple[str, Decimal], ...] = ()

    def threshold_for(self, currency: str | None) -> Decimal:
        return dict(self.currency).get((currency or "").upper(), self.threshold)


@dataclass(frozen=True)
class OverLineItems:
    enabled: bool = True


@dataclass(frozen=True)
class CustomerVelocity:
    """`refunds` refunds of one customer in one shop created within `days` days."""

    enabled: bool = True
    refunds: int = 3
    days: int = 7


@dataclass(frozen=True)
class RaisedAfterRefunded:
    enabled: bool = True


@dataclass(frozen=True)
class StuckInProgress:
    """In progress more than `hours` hours after it was created."""

    enabled: bool = True
    hours: int = 72


@dataclass(frozen=True)
class RiskRules:
    amount_over: AmountOver = AmountOver()
    over_line_items: OverLineItems = OverLineItems()
    customer_velocity: CustomerVelocity = CustomerVelocity()
    raised_after_refunded: RaisedAfterRefunded = RaisedAfterRefunded()
    stuck_in_progress: StuckInProgress = StuckInProgress()

    def on(self, rule: Rule) -> bool:
        enabled: bool = getattr(self, rule.value).enabled
        return enabled


DEFAULTS = RiskRules()
# The least value of each whole-number key: one refund is no velocity.
MINIMUM = {"refunds": 2, "days": 1, "hours": 1}


def load(path: str | Path) -> RiskRules:
    """The rules in the TOML file at `path`; BadRiskRules if it cannot be read or used."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeError) as error:
        raise BadRiskRules(f"cannot read {path}: {error}") from None
    return parse(text)


def parse(text: str) -> RiskRules:
    """The rules a TOML text sets, the defaults for the rest. Numbers are read exactly:
    `threshold = 999.99` is Decimal("999.99"), as is `"999.99"`."""
    try:
        tables = tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as error:
        raise BadRiskRules(f"not TOML: {error}") from None
    known = [rule.value for rule in Rule]
    unknown = sorted(set(tables) - set(known))
    if unknown:
        raise BadRiskRules(f"unknown rule {unknown[0]!r}; the rules are {', '.join(known)}")
    return RiskRules(**{name: _rule(name, table) for name, table in tables.items()})


def _rule(name: str, table: Any) -> Any:
    defaults = getattr(DEFAULTS, name)
    if not isinstance(table, dict):
        raise BadRiskRules(f"{name} must be a table ([{name}])")
    keys = [field.name for field in dataclasses.fields(defaults)]
    for key in table:
        if key not in keys:
            raise BadRiskRules(f"[{name}] has no key {key!r}; its keys are {', '.join(keys)}")
    return dataclasses.replace(defaults, **{
        key: _value(f"[{name}] {key}", key, type(getattr(defaults, key)), value)
        for key, value in table.items()})


def _value(where: str, key: str, kind: type, value: Any) -> Any:
    """`value` read as the kind of the key's default."""
    if kind is bool:
        if not isinstance(value, bool):
            raise BadRiskRules(f"{where} must be true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int) or value < MINIMUM[key]:
            raise BadRiskRules(f"{where} must be a whole number of at least {MINIMUM[key]}, "
                               f"got {value!r}")
        return value
    if kind is Decimal:
        return _amount(where, value)
    if not isinstance(value, dict):  # the per-currency table
        raise BadRiskRules(f"{where} must be a table of currency = amount")
    return tuple(sorted((currency.upper(), _amount(f"{where}.{currency}", amount))
                        for currency, amount in value.items()))


def _amount(where: str, value: Any) -> Decimal:
    """A non-negative amount, written as a number or a decimal string."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise BadRiskRules(f"{where} must be an amount such as 1000 or \"999.99\", got {value!r}")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise BadRiskRules(f"{where} must be an amount such as 1000 or \"999.99\", "
                           f"got {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise BadRiskRules(f"{where} must be an amount of 0 or more, got {value!r}")
    return amount

"""Risk flags as the desk returns them: `GET /flags` (a page), `POST /flags/<id>/acknowledge`
(one flag) and `refund-sink flags list --json` (an array). Built from `refund_flags` rows by
attribute."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

from schemas.api import IsoTime

# `refunds.risk_rules.Rule`'s values (tests/unit/test_risk_rules.py keeps them equal).
RuleName = Literal["amount_over", "over_line_items", "customer_velocity",
                   "raised_after_refunded", "stuck_in_progress"]
FlagState = Literal["open", "acknowledged"]

DETAILS = """The figures that raised the flag, by rule (money and times as strings):
amount_over: price, currency, threshold;
over_line_items: price, line_items_total (subtotals plus tax), line_items (how many);
customer_velocity: customer_id, refunds, days, first_created_at, last_created_at;
raised_after_refunded: refunded_at, at, amount, previous_amount (the fund change);
stuck_in_progress: created_at, hours, checked_at."""


class FlagView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    shop: str
    refund_id: str
    rule: RuleName
    details: dict[str, str | int | None] = Field(description=DETAILS)
    raised_at: IsoTime
    acknowledged_by: str | None = Field(description="the name of the token that acknowledged "
                                                    "it (`token <id>` for a token without one)")
    acknowledged_at: IsoTime | None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def state(self) -> FlagState:
        return "open" if self.acknowledged_at is None else "acknowledged"


class FlagPage(BaseModel):
    """`GET /flags`: flags in the order they were raised."""

    model_config = ConfigDict(extra="forbid")

    flags: list[FlagView]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null "
                                                "on the last page")

"""Wire models of Genstore's refund payloads.

One tolerant model reads all three shapes, since a delivery says nothing about which one it
is and Genstore mixes them: the camelCase event (`id`, `refundPrice`, `lineItems[].lineItem`),
the older snake_case line-item form (`line_item_id`, `total_tax`, `line_item` possibly "")
and the after-sale form (`refundId`, `amount`, `rightsType`, ...). Unknown keys are ignored.

A line's money comes in both spellings too: `discountAllocations[].amount` and
`taxLines[].price` on the ordered item (`discount_allocations`, `tax_lines`), each a Money, so
a bad amount rejects the delivery as any other amount does; a blank list ("") is absent.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from schemas.types import (
    Code,
    Currency,
    Flag,
    Money,
    Quantity,
    RequiredCode,
    Tags,
    Text,
    WireTime,
)


def _either(*names: str) -> Any:
    """A field read under any of Genstore's spellings, the first present winning."""
    return Field(None, validation_alias=AliasChoices(*names))


def _blank_to_none(value: object) -> object:
    return None if value == "" else value


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class WireDiscountAllocation(_Wire):
    amount: Money = None


class WireTaxLine(_Wire):
    price: Money = None


class WireItemDetail(_Wire):
    """`lineItem` / `line_item`: the ordered item a refund line refers to."""

    id: Code = None
    product_id: Code = _either("productId", "product_id")
    variant_id: Code = _either("variantId", "variant_id")
    sku: Text = None
    price: Money = None
    quantity: Quantity = None  # ordered
    current_quantity: Quantity = _either("currentQuantity", "current_quantity")
    discount_allocations: Annotated[
        list[WireDiscountAllocation] | None, BeforeValidator(_blank_to_none)
    ] = _either("discountAllocations", "discount_allocations")
    tax_lines: Annotated[list[WireTaxLine] | None, BeforeValidator(_blank_to_none)] = _either(
        "taxLines", "tax_lines"
    )


class WireLineItem(_Wire):
    id: Code = None  # the refund line's own id (the snake_case form carries one)
    line_item_id: Code = _either("line_item_id", "lineItemId")
    detail: Annotated[WireItemDetail | None, BeforeValidator(_blank_to_none)] = _either(
        "lineItem", "line_item"
    )
    quantity: Quantity = None  # refunded
    subtotal: Money = None
    total_tax: Money = _either("totalTax", "total_tax")
    location_id: Code = _either("location_id", "locationId")


class WireCustomer(_Wire):
    id: Code = None
    first_name: Text = Field(None, validation_alias=AliasChoices("firstName", "first_name"))
    last_name: Text = Field(None, validation_alias=AliasChoices("lastName", "last_name"))
    email: Text = Field(None, repr=False)
    phone: Text = Field(None, repr=False)
    tags: Tags = ()
    tax_exempt: Flag = _either("taxExempt", "tax_exempt")
    verified_email: Flag = _either("verifiedEmail", "verified_email")
    currency: Currency = None
    state: Code = None


class WireRefund(_Wire):
    id: RequiredCode = Field(validation_alias=AliasChoices("id", "refundId", "refund_id"))
    order_id: Code = _either("orderId", "order_id")
    status: Code = _either("status", "refundStatus", "refund_status")
    price: Money = _either("refundPrice", "refund_price", "amount")
    currency: Currency = None
    note: Text = None
    customer_id: Code = _either("customerId", "customer_id")
    create_time: WireTime = _either("createTime", "create_time")
    update_time: WireTime = _either("updateTime", "update_time")
    line_items: list[WireLineItem] | None = _either("lineItems", "line_items")
    customer: Annotated[WireCustomer | None, BeforeValidator(_blank_to_none)] = None
    rights_type: Code = _either("rightsType", "rights_type")
    rights_reason: Text = _either("rightsReason", "rights_reason")
    rights_reason_type: Code = _either("rightsReasonType", "rights_reason_type")
    shipping: Money = None


class WireEnvelope(_Wire):
    """`{"refund": {...}}`; a bare refund object (no "refund" key) is accepted too."""

    refund: WireRefund

    @model_validator(mode="before")
    @classmethod
    def _wrap_bare_refund(cls, data: Any) -> Any:
        if isinstance(data, dict) and "refund" not in data and ("id" in data or "refundId" in data):
            return {"refund": data}
        return data

"""Wire models of the compliance topics every Genstore App Store app subscribes to:
`customers/redact`, `shop/redact` and `customers/data_request`.

Genstore's partner docs name the topics but publish no payload for them; the shapes below are
Shopify's for the same topics, which Genstore's webhooks follow elsewhere (topic names,
headers, HMAC). Assumed:

- `customers/redact`: `{"shop_id", "shop_domain", "customer": {"id", "email", "phone"},
  "orders_to_redact": [...]}`;
- `shop/redact`: `{"shop_id", "shop_domain"}`;
- `customers/data_request`: `{"shop_id", "shop_domain", "customer": {...},
  "orders_requested": [...], "data_request": {"id"}}`.

Ids may be JSON numbers or strings. A customer request names the customer by id or, failing
that, by e-mail; one naming neither is an `invalid_payload`. The shop acted on is always the
delivery's own (its shop-domain header, as for refunds), never `shop_domain` in the body: the
signature does not tell one shop from another either way."""

from __future__ import annotations

import enum

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.body import json_bytes
from schemas.errors import PayloadRejected, rejection
from schemas.types import Code, Text


class Topic(enum.StrEnum):
    CUSTOMERS_REDACT = "customers/redact"
    SHOP_REDACT = "shop/redact"
    CUSTOMERS_DATA_REQUEST = "customers/data_request"


TOPICS = frozenset(Topic)


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class WireRequestedCustomer(_Wire):
    id: Code = None
    email: Text = Field(None, repr=False)
    phone: Text = Field(None, repr=False)


class WireDataRequest(_Wire):
    id: Code = None


class CustomerRequest(_Wire):
    """`customers/redact` and `customers/data_request`."""

    customer: WireRequestedCustomer
    orders_to_redact: tuple[Code, ...] = ()
    orders_requested: tuple[Code, ...] = ()
    data_request: WireDataRequest | None = None

    @model_validator(mode="after")
    def _names_the_customer(self) -> CustomerRequest:
        if self.customer.id is None and not self.customer.email:
            raise ValueError("the customer has neither an id nor an e-mail")
        return self


class ShopRequest(_Wire):
    shop_id: Code = None
    shop_domain: Text = None


def parse_request(body: bytes, topic: Topic) -> CustomerRequest | ShopRequest:
    """The request, or PayloadRejected (`invalid_json`, `invalid_payload`)."""
    model: type[CustomerRequest | ShopRequest] = (
        ShopRequest if topic is Topic.SHOP_REDACT else CustomerRequest)
    try:
        return model.model_validate_json(json_bytes(body))
    except ValidationError as exc:
        raise rejection(exc) from None
    except Exception as exc:  # the parser must never crash a worker
        raise PayloadRejected("invalid_payload", f"unparseable: {type(exc).__name__}") from None

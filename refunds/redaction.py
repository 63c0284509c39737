"""Erasing one customer's contact details from what the sink stored, keeping everything else:
pure functions over bodies and stored messages, for `refunds.compliance`.

A raw body is rewritten, not dropped, so the archive still rebuilds every refund: ids,
amounts, times, lines, notes stay. In it, a `customer` object that is the customer's (its
`id`, or its `email`, matches; or the object holding it has the customer's `customerId`)
keeps only its `id` and `currency` (the currency a message falls back to): names, e-mail,
phone, addresses, its note and tags go. Any `...address...` key beside such a customer goes
too, and the customer's e-mail and phone are cut out of every other string of the body (a
note quoting them). A body that is not JSON (a dead letter `invalid_json`) only has the
e-mail and phone cut out; so has a refund's note (the only free text the refund keeps), the
one figure of a refund an erasure may change."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

ERASED = "[erased]"
# the normalized message's customer (`schemas.Customer`): its contact fields become null
MESSAGE_CONTACT_FIELDS = ("first_name", "last_name", "email", "phone")
KEPT_CUSTOMER_KEYS = frozenset({"id", "currency"})
_OWNER_KEYS = ("customerId", "customer_id")


@dataclass(frozen=True)
class Customer:
    """Who to erase: by id, and by e-mail when the request gives one."""

    shop: str
    id: str | None
    email: str | None = field(default=None, repr=False)
    phone: str | None = field(default=None, repr=False)

    def is_(self, customer: dict[str, Any]) -> bool:
        if self.id is not None and _text(customer.get("id")) == self.id:
            return True
        email = customer.get("email")
        return bool(self.email and isinstance(email, str)
                    and email.strip().casefold() == self.email.strip().casefold())

    def owns(self, node: dict[str, Any]) -> bool:
        return self.id is not None and any(_text(node.get(key)) == self.id
                                           for key in _OWNER_KEYS)

    def scrub(self, text: str) -> str:
        for value in (self.email, self.phone):
            if value and value.strip():
                text = re.sub(re.escape(value.strip()), ERASED, text, flags=re.IGNORECASE)
        return text


def erase_body(body: bytes, customer: Customer) -> bytes | None:
    """The body with the customer's contact details erased, or None when it holds none."""
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if isinstance(document, dict | list):
        if not _erase(document, customer):
            return None
        return json.dumps(document, ensure_ascii=False).encode("utf-8")
    text = body.decode("utf-8", errors="surrogateescape")
    scrubbed = customer.scrub(text)
    return None if scrubbed == text else scrubbed.encode("utf-8", errors="surrogateescape")


def erase_json(document: dict[str, Any], customer: Customer) -> dict[str, Any] | None:
    """A JSON object (kept headers) with the customer's details erased, or None when it holds
    none."""
    copy = json.loads(json.dumps(document))
    return copy if _erase(copy, customer) else None


def erase_message(message: dict[str, Any], customer: Customer) -> dict[str, Any] | None:
    """A stored normalized message (`refund_messages.message`) with its customer's contact
    fields null, or None when it is not the customer's or holds none."""
    held = message.get("customer")
    if not isinstance(held, dict) or not holds(message, customer):
        return None
    if all(held.get(name) is None for name in MESSAGE_CONTACT_FIELDS):
        return None
    return {**message, "customer": {**held, **dict.fromkeys(MESSAGE_CONTACT_FIELDS)}}


def holds(message: dict[str, Any], customer: Customer) -> bool:
    """Whether a stored message is about the customer."""
    held = message.get("customer")
    return (customer.id is not None and _text(message.get("customer_id")) == customer.id) or (
        isinstance(held, dict) and customer.is_(held))


def _erase(node: Any, customer: Customer) -> bool:
    changed = False
    if isinstance(node, dict):
        owner = customer.owns(node)
        held = node.get("customer")
        if isinstance(held, dict) and (owner or customer.is_(held)):
            owner = True
            for key in [key for key in held if key not in KEPT_CUSTOMER_KEYS]:
                del held[key]
                changed = True
        if owner:
            for key in [key for key in node if "address" in key.lower()]:
                del node[key]
                changed = True
        items = list(node.items())
    elif isinstance(node, list):
        items = list(enumerate(node))
    else:
        return False
    for key, value in items:
        if isinstance(value, str):
            scrubbed = customer.scrub(value)
            if scrubbed != value:
                node[key] = scrubbed
                changed = True
        else:
            changed = _erase(value, customer) or changed
    return changed


def _text(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value).strip() or None

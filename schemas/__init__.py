"""Genstore's wire formats, the normalized refund message, and the API's output shapes.
Pure: no I/O, nothing imported from the rest of the project."""

from schemas.fingerprint import VERSION as FINGERPRINT_VERSION
from schemas.message import (
    AfterSale,
    Customer,
    Kind,
    LineItem,
    PayloadRejected,
    RefundMessage,
    TimeSource,
    parse_delivery,
)

__all__ = [
    "FINGERPRINT_VERSION",
    "AfterSale",
    "Customer",
    "Kind",
    "LineItem",
    "PayloadRejected",
    "RefundMessage",
    "TimeSource",
    "parse_delivery",
]

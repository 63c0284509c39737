"""Why a delivery cannot be processed, in words safe to store and log: no input values."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

_MAX_ERRORS = 100
_LISTED = 5


class PayloadRejected(Exception):
    """A permanent failure: the delivery goes to the dead letters under `reason`."""

    def __init__(self, reason: str, detail: str, errors: list[dict[str, Any]] | None = None):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.errors = errors or []


def rejection(exc: ValidationError) -> PayloadRejected:
    """invalid_json when the body is not a JSON object at all, else invalid_payload with a
    one-line summary and the errors attached."""
    errors = _clean(exc)
    top = errors[0]
    if not top["loc"] and top["type"] in ("json_invalid", "model_type"):
        return PayloadRejected("invalid_json", f"body is not a JSON object ({top['msg']})")
    listed = "; ".join(
        f"{'.'.join(map(str, error['loc'])) or '(body)'}: {error['msg']}"
        for error in errors[:_LISTED]
    )
    more = f"; and {len(errors) - _LISTED} more" if len(errors) > _LISTED else ""
    plural = "" if len(errors) == 1 else "s"
    detail = f"{len(errors)} validation error{plural}: {listed}{more}".replace("\n", " ")
    return PayloadRejected("invalid_payload", detail, errors[:_MAX_ERRORS])


def _clean(exc: ValidationError) -> list[dict[str, Any]]:
    """Errors as loc, msg and type only: inputs and contexts may hold customer details."""
    return [
        {
            "loc": [part if isinstance(part, int) else str(part) for part in error["loc"]],
            "msg": error["msg"],
            "type": error["type"],
        }
        for error in exc.errors(include_url=False, include_input=False, include_context=False)
    ]

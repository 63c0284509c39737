"""Signature checks: Genstore HMAC with rotation, Standard Webhooks with its test vector."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import standardwebhooks.webhooks
from signing import genstore_headers, standard_headers

from ingest.signatures import genstore_signature, verify, verify_genstore, verify_standard

pytestmark = pytest.mark.unit

BODY = b'{"refund": {"id": "1"}}'
# The Standard Webhooks specification's published test vector.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def lower(headers: dict[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def test_genstore_signature_matches_an_independent_signer() -> None:
    assert genstore_signature(BODY, "s") == genstore_headers(BODY, "s")["X-Genstore-Hmac-Sha256"]


def test_any_configured_secret_is_accepted_and_others_are_not() -> None:
    header = genstore_signature(BODY, "old")
    assert verify_genstore(BODY, header, ["new", "old"])
    assert not verify_genstore(BODY, header, ["new"])
    assert not verify_genstore(BODY + b" ", header, ["new", "old"])


@pytest.mark.parametrize("header", [None, "", "not base64!", "AAAA", "=" * 44])
def test_missing_or_malformed_genstore_signatures_fail(header: str | None) -> None:
    assert not verify_genstore(BODY, header, ["secret"])


def test_standard_webhooks_published_vector(monkeypatch: pytest.MonkeyPatch) -> None:
    class Frozen(datetime):
        @classmethod
        def now(cls, tz: object = None) -> datetime:  # type: ignore[override]
            return datetime.fromtimestamp(VECTOR_TIMESTAMP + 10, tz=UTC)

    monkeypatch.setattr(standardwebhooks.webhooks, "datetime", Frozen)
    headers = {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TIMESTAMP),
        "webhook-signature": VECTOR_SIGNATURE,
    }
    assert verify_standard(VECTOR_BODY, headers, VECTOR_SECRET)
    assert not verify_standard(VECTOR_BODY + b" ", headers, VECTOR_SECRET)
    assert standard_headers(VECTOR_BODY, VECTOR_SECRET, VECTOR_ID, VECTOR_TIMESTAMP)[
        "webhook-signature"
    ] == VECTOR_SIGNATURE


def test_standard_webhooks_stale_or_future_timestamps_fail() -> None:
    now = int(datetime.now(UTC).timestamp())
    for stamp in (now - 301, now + 301):
        headers = lower(standard_headers(BODY, VECTOR_SECRET, timestamp=stamp))
        assert not verify_standard(BODY, headers, VECTOR_SECRET)
    assert verify_standard(BODY, lower(standard_headers(BODY, VECTOR_SECRET)), VECTOR_SECRET)


def test_standard_webhooks_garbage_never_raises() -> None:
    headers = {"webhook-id": "x", "webhook-timestamp": "soon", "webhook-signature": "v1"}
    assert not verify_standard(BODY, headers, VECTOR_SECRET)
    headers = lower(standard_headers(b"\xff\xfe", VECTOR_SECRET))
    assert not verify_standard(b"\xff\xfe", headers | {"webhook-signature": "v1,@@"},
                               VECTOR_SECRET)


def test_verify_prefers_the_genstore_header() -> None:
    headers = lower(genstore_headers(BODY, "secret"))
    assert verify(BODY, headers, ["secret"], None)
    assert not verify(BODY, headers, ["other"], VECTOR_SECRET)

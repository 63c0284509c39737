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


@pytest.fixture
def frozen_at_vector(monkeypatch: pytest.MonkeyPatch) -> None:
    """The vector's timestamp is from 2021: the clock the 5-minute tolerance reads is set to it."""

    class Frozen(datetime):
        @classmethod
        def now(cls, tz: object = None) -> datetime:  # type: ignore[override]
            return datetime.fromtimestamp(VECTOR_TIMESTAMP + 10, tz=UTC)

    monkeypatch.setattr(standardwebhooks.webhooks, "datetime", Frozen)


def test_standard_webhooks_published_vector(frozen_at_vector: None) -> None:
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


# The specification's example header carries a symmetric and an asymmetric signature,
# space-delimited; during a rotation a sender signs with the old and the new secret.
SPEC_ASYMMETRIC = ("v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3m"
                   "Nl8EM+m7TBAg==")
OLD_SECRET_SIGNATURE = "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4="


@pytest.mark.parametrize("signature", [
    f"{OLD_SECRET_SIGNATURE} {VECTOR_SIGNATURE}",
    f"{VECTOR_SIGNATURE} {OLD_SECRET_SIGNATURE}",
    f"{SPEC_ASYMMETRIC} {VECTOR_SIGNATURE}",
    f"v1,@@not-base64 {VECTOR_SIGNATURE}",
    f"v2 v1,,x {VECTOR_SIGNATURE}",
    f"{OLD_SECRET_SIGNATURE}  {VECTOR_SIGNATURE} ",
])
def test_any_one_valid_v1_entry_of_several_is_accepted(
    frozen_at_vector: None, signature: str
) -> None:
    headers = {"webhook-id": VECTOR_ID, "webhook-timestamp": str(VECTOR_TIMESTAMP),
               "webhook-signature": signature}
    assert verify_standard(VECTOR_BODY, headers, VECTOR_SECRET)
    assert not verify_standard(VECTOR_BODY + b" ", headers, VECTOR_SECRET)


@pytest.mark.parametrize("signature", [
    f"{OLD_SECRET_SIGNATURE} {SPEC_ASYMMETRIC}",
    "v1a," + VECTOR_SIGNATURE.split(",")[1],
    "v2," + VECTOR_SIGNATURE.split(",")[1],
    VECTOR_SIGNATURE.split(",")[1],
    " ",
])
def test_no_valid_v1_entry_is_refused(frozen_at_vector: None, signature: str) -> None:
    headers = {"webhook-id": VECTOR_ID, "webhook-timestamp": str(VECTOR_TIMESTAMP),
               "webhook-signature": signature}
    assert not verify_standard(VECTOR_BODY, headers, VECTOR_SECRET)

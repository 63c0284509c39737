"""Hostile deliveries: hypothesis strategies shared by tests/unit/test_hostile_input.py, and a
standalone long run that drives many of them through the ingest, the parser and the core.

    python tests/fuzz.py --examples 100000 [--redis-url URL] [--seed N]

Each generated delivery is a body (a real refund payload mutated with wrong types, hostile
unicode, huge numbers and deep nesting; or malformed JSON, overlong UTF-8, a BOM, random
bytes) plus a way of sending it (valid, tampered, stale or missing signatures; odd-cased and
duplicated headers; non-ASCII header values; oversized, chunked or truncated bodies). The run
posts it to the ingest (Flask test client, real Redis), takes what was queued, applies it with
`apply_deliveries` (a list of one) on a fresh SQLite database, and prints counts per HTTP
status and outcome and every failure: an unexpected status, a crash, a dead letter without a
known reason.
"""

from __future__ import annotations

import argparse
import base64
import collections
import hashlib
import hmac
import io
import json
import logging
import os
import platform
import sys
import tempfile
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

SECRET = "test-genstore-secret"  # the same secrets as tests/conftest.py
OLD_SECRET = "test-genstore-secret-previous"
STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
LIMIT = 256 * 1024  # max_body_bytes for fuzzed ingests: deep nesting fits, padding does not
ACCEPTED, UNAUTHORIZED, TOO_LARGE, DISCONNECTED = 202, 401, 413, 400

# -- values -----------------------------------------------------------------------------------

SPECIAL_TEXT = [
    "", " ", "\x00", "a\x00b", "\ud800", "\udfff", "\udbff\udfff", "\ud83d\ude00", "\U0001f600",
    "\U0010ffff", "\U0001d54f", "\u202e", "\u200f", "\u200e", "\ufeff", "\ufffd", "\uffff",
    "\u0301", "e\u0301", "İ", "ß", "白色", "128G;白色;", "\r\n", "\t", "\\", '"', "null",
    "true", "1", "0", "yes", "1e400", "NaN", "-0", "0x10", "１２３", "٣", "9" * 65, "9" * 5000,
    "2024-12-31 00:00:00", "2013-06-27T08:48:27-04:00", "9999-12-31T23:59:59-14:00",
    "0001-01-01T00:00:00+14:00", "2025-02-30T00:00:00Z", "[ \"xinsheng\", \"human\" ]",
    "[\"\\ud800\"]", "[1, 2]", "[", "refunded", "REFUNDED", "Fund-Change", "in progress",
    "fund_change", "success", "x" * 300,
]
# Values json.dumps cannot write (huge numbers, deep nesting): spliced into the text.
NUMBER_TEXTS = [
    "1e400", "-1e400", "1e-400", "9" * 5000, "-" + "9" * 5000, "1" + "0" * 4400 + ".5",
    "0.1e99999999999", "-0", "1E+2", "12345678901234567890123", "00012", "1.", ".5", "+1",
    "[" * 100_000 + "]" * 100_000, '{"a":' * 5_000 + "1" + "}" * 5_000,  # too deep to build
]
FIELDS = {
    "refund": [
        "id", "refundId", "refund_id", "orderId", "order_id", "status", "refundStatus",
        "refund_status", "refundPrice", "refund_price", "amount", "currency", "note",
        "customerId", "createTime", "updateTime", "update_time", "lineItems", "line_items",
        "customer", "rightsType", "rightsReason", "rightsReasonType", "shipping",
    ],
    "line": ["line_item_id", "lineItemId", "lineItem", "line_item", "quantity", "subtotal",
             "totalTax", "total_tax", "location_id"],
    "detail": ["id", "productId", "variantId", "sku", "price", "quantity"],
    "customer": ["id", "firstName", "lastName", "email", "phone", "tags", "taxExempt",
                 "verifiedEmail", "currency", "state", "addresses", "defaultAddress"],
}
ALL_KEYS = sorted({name for names in FIELDS.values() for name in names} | {"refund"})

texts = st.one_of(
    st.sampled_from(SPECIAL_TEXT),
    st.text(st.characters(exclude_categories=[]), max_size=20),  # surrogates included
    st.text(max_size=8),
)
huge_numbers = st.sampled_from(range(len(NUMBER_TEXTS))).map(lambda i: f"\u2063NUM{i}\u2063")
leaves = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-(2**70), 2**70),
    st.floats(), st.decimals(allow_nan=False, allow_infinity=False).map(str), texts,
    huge_numbers,
)
json_values = st.recursive(
    leaves,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(ALL_KEYS) | texts, children, max_size=4),
    max_leaves=10,
)


# -- payloads ---------------------------------------------------------------------------------

@st.composite
def refund_payloads(draw: st.DrawFn) -> Any:
    """A plausible refund in one of Genstore's shapes, then a few hostile mutations."""
    from payloads import after_sale_event, camel_event, doc_example_event, snake_event

    shape = draw(st.sampled_from(["camel", "snake", "after_sale", "doc"]))
    if shape == "doc":
        payload: Any = doc_example_event()
    else:
        build = {"camel": camel_event, "snake": snake_event,
                 "after_sale": after_sale_event}[shape]
        payload = build(
            refund_id=draw(st.sampled_from(["7001", "7002", "10220473645"])),
            status=draw(st.sampled_from([None, "in_progress", "refunded", "fund_change"])),
            price=draw(st.sampled_from(["25.00", "20.00", "0", "99999.99"])),
            update_time=draw(st.sampled_from(["2025-03-01T10:00:00Z", "2024-12-31 00:00:00",
                                              None])),
            sku=draw(st.sampled_from([None, "128G;白色;"])),
        )
    for _ in range(draw(st.integers(0, 4))):
        payload = draw(_mutated(payload))
    if draw(st.integers(0, 9)) == 0:  # a bare refund object, no envelope
        payload = payload.get("refund", payload) if isinstance(payload, dict) else payload
    return payload


@st.composite
def _mutated(draw: st.DrawFn, payload: Any) -> Any:
    """Set, delete or retype one field somewhere in the payload."""
    targets = list(_containers(payload))
    if not targets:
        return draw(json_values)
    container, kind = draw(st.sampled_from(targets))
    key = draw(st.sampled_from(FIELDS[kind]) | texts)
    action = draw(st.sampled_from(["set", "set", "delete", "nest"]))
    if action == "delete":
        container.pop(key, None)
    elif action == "nest":
        container[key] = _nested(draw(st.integers(1, 300)), container.get(key))
    else:
        container[key] = draw(json_values)
    return payload


def _containers(payload: Any) -> Any:
    refund = payload.get("refund") if isinstance(payload, dict) else None
    if not isinstance(refund, dict):
        return
    yield refund, "refund"
    if isinstance(refund.get("customer"), dict):
        yield refund["customer"], "customer"
    for name in ("lineItems", "line_items"):
        lines = refund.get(name)
        for line in lines if isinstance(lines, list) else []:
            if isinstance(line, dict):
                yield line, "line"
                for inner in ("lineItem", "line_item"):
                    if isinstance(line.get(inner), dict):
                        yield line[inner], "detail"


def _nested(depth: int, inner: Any) -> Any:
    for _ in range(depth):
        inner = [inner]
    return inner


def serialize(payload: Any, ascii_only: bool) -> bytes:
    """JSON text; lone surrogates become \\udXXX escapes (ascii) or CESU-8 bytes (not)."""
    text = json.dumps(payload, ensure_ascii=ascii_only)
    for index, number in enumerate(NUMBER_TEXTS):
        for marker in (f'"\\u2063NUM{index}\\u2063"', f'"\u2063NUM{index}\u2063"'):
            text = text.replace(marker, number)
    return text.encode("utf-8", "surrogatepass")


OVERLONG = [b"\xc0\xaf", b"\xe0\x80\xaf", b"\xf0\x80\x80\xaf", b"\xc0\x80", b"\xed\xa0\x80",
            b"\xf4\x90\x80\x80", b"\xff", b"\x80"]
DEEP = 100_000
RAW_BODIES = [
    b"", b" ", b"null", b"[]", b"{}", b'"refund"', b"0", b"{", b"}", b'{"refund":}',
    b"[" * DEEP + b"]" * DEEP,
    b"{\"a\":" * 20_000 + b"1" + b"}" * 20_000,
    b'{"refund":' + b"[" * DEEP + b"]" * DEEP + b"}",
    b'{"refund":{"id":"1","note":' + b"[" * DEEP + b"]" * DEEP + b"}}",
    b'{"refund":{"id":1e400}}', b'{"refund":{"id":"1","refundPrice":1e400}}',
    b'{"refund":{"id":' + b"9" * 5000 + b"}}",
    b'{"refund":{"id":"1","refundPrice":' + b"9" * 5000 + b"}}",
    b'{"refund":{"id":"1","note":"\\ud800"}}', b'{"refund":{"id":"\\udfff"}}',
    b'{"refund":{"id":"1","note":"\\u0000"}}', b'{"refund":{"id":"1\\u0000"}}',
    b'{"refund":{"id":"1","customer":{"tags":["a\\u0000"]}}}',
    b'{"refund":{"id":"1","customer":{"tags":"[\\"a\\\\u0000\\"]"}}}',
    b'\xef\xbb\xbf{"refund":{"id":"1"}}', b'{"refund":{"id":"1","note":"\xc0\xaf"}}',
    b'{"refund":{"id":"1"},"refund":{"id":"2"}}', b'{"refund":{"id":"1","id":[]}}',
    b"\x00" * 64, b'{"refund":{"id":"1"}}\x00', b'{"refund":{"id":"1"}} trailing',
    b'{"refund":{"id":NaN}}', b'{"refund":{"id":"1","refundPrice":Infinity}}',
]


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["payload"] * 6 + ["raw", "bytes", "value"]))
    if kind == "raw":
        return draw(st.sampled_from(RAW_BODIES))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    payload = draw(refund_payloads()) if kind == "payload" else draw(json_values)
    body = serialize(payload, ascii_only=draw(st.booleans()))
    for _ in range(draw(st.integers(0, 2)) if draw(st.integers(0, 3)) == 0 else 0):
        body = draw(_damaged(body))
    return body


@st.composite
def _damaged(draw: st.DrawFn, body: bytes) -> bytes:
    at = draw(st.integers(0, len(body)))
    damage = draw(st.sampled_from(["truncate", "insert", "bom", "flip"]))
    if damage == "truncate":
        return body[:at]
    if damage == "bom":
        return b"\xef\xbb\xbf" + body
    if damage == "flip" and body:
        at = min(at, len(body) - 1)
        return body[:at] + bytes([body[at] ^ (1 << draw(st.integers(0, 7)))]) + body[at + 1:]
    return body[:at] + draw(st.sampled_from(OVERLONG)) + body[at:]


# -- how it is sent ---------------------------------------------------------------------------

HEADER_TEXT = st.one_of(
    st.sampled_from(["refunds/create", "refunds/update", "orders/create", "", " ", "refunds/",
                     "REFUNDS/CREATE", "refunds/" + "é" * 300, "refunds/\x00", "\u202e",
                     "refunds/create\t", "x" * 300, "shop.example", "Shop.Example",
                     "2025-03-01T10:05:00Z", "9999-12-31T23:59:59-14:00", "not a time"]),
    st.text(st.characters(exclude_categories=[]), max_size=30),
).map(lambda text: _wire_header(text))


def _wire_header(text: str) -> str:
    """What a WSGI server hands the app: the header's bytes read as latin-1 (PEP 3333); CR
    and LF cannot be inside a header at all."""
    raw = text.encode("utf-8", "surrogatepass").decode("latin-1")
    return raw.replace("\r", "").replace("\n", "")


SIGNING = ["genstore", "genstore_old", "standard", "genstore", "standard_stale",
           "standard_future", "other_body", "wrong_secret", "missing", "garbage",
           "duplicated", "bad_base64"]
SENDING = ["normal"] * 12 + ["chunked", "chunked", "oversized", "oversized_chunked",
                             "short_length", "bad_length"]


@dataclass
class Request:
    body: bytes
    headers: list[tuple[str, str]]
    signing: str
    sending: str
    environ: dict[str, Any] = field(default_factory=dict)
    stream: io.BytesIO | None = None

    @property
    def expected(self) -> int:
        if self.sending.startswith("oversized"):
            return TOO_LARGE
        if self.sending == "short_length":
            return DISCONNECTED  # the body ended before its Content-Length: client gone
        signed = self.signing in ("genstore", "genstore_old", "standard")
        if self.sending == "bad_length":  # no usable length, no chunking: an empty body
            return ACCEPTED if signed and not self.body else UNAUTHORIZED
        return ACCEPTED if signed else UNAUTHORIZED

    @property
    def received(self) -> bytes:
        return b"" if self.sending == "bad_length" else self.body

    def kwargs(self) -> dict[str, Any]:
        sent: dict[str, Any] = {"headers": self.headers, "environ_overrides": self.environ}
        if self.stream is not None:
            sent["input_stream"] = self.stream
        else:
            sent["data"] = self.body
        return sent


def _odd_case(draw: st.DrawFn, name: str) -> str:
    style = draw(st.sampled_from(["title", "lower", "upper", "random"]))
    if style == "random":
        flips = draw(st.integers(0, 2 ** len(name) - 1))
        return "".join(c.upper() if flips >> i & 1 else c.lower() for i, c in enumerate(name))
    return {"title": name.title(), "lower": name.lower(), "upper": name.upper()}[style]


def _signature_headers(draw: st.DrawFn, body: bytes, signing: str) -> list[tuple[str, str]]:
    now = int(time.time())
    if signing in ("standard", "standard_stale", "standard_future"):
        skew = {"standard": draw(st.integers(-240, 240)),
                "standard_stale": -draw(st.integers(330, 10**7)),
                "standard_future": draw(st.integers(330, 10**7))}[signing]
        msg_id = "msg_" + draw(st.text("abcdef0123456789", min_size=1, max_size=12))
        stamp = str(now + skew)
        key = base64.b64decode(STANDARD_SECRET.removeprefix("whsec_"))
        mac = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
        return [("webhook-id", msg_id), ("webhook-timestamp", stamp),
                ("webhook-signature", "v1," + base64.b64encode(mac).decode())]
    if signing == "missing":
        return []
    if signing == "garbage":
        return [("X-Genstore-Hmac-Sha256", draw(HEADER_TEXT))]
    if signing == "bad_base64":
        return [("X-Genstore-Hmac-Sha256", "!!" + _genstore(body, SECRET)[2:])]
    secret = {"genstore_old": OLD_SECRET, "wrong_secret": "not-the-secret"}.get(signing, SECRET)
    signed = body + b" " if signing == "other_body" else body
    signature = _genstore(signed, secret)
    if signing == "duplicated":  # two values arrive joined: "sig, sig"
        return [("X-Genstore-Hmac-Sha256", signature), ("X-Genstore-Hmac-Sha256", signature)]
    return [("X-Genstore-Hmac-Sha256", signature)]


def _genstore(body: bytes, secret: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


@st.composite
def requests(draw: st.DrawFn, limit: int = LIMIT) -> Request:
    body = draw(bodies())
    sending = draw(st.sampled_from(SENDING))
    if sending.startswith("oversized"):
        body = body + b" " * (limit + 1 - len(body) + draw(st.integers(0, 4096)))
    elif len(body) > limit - 100:  # room for a declared length past the body, under the limit
        body = body[:limit - 100]
    signing = draw(st.sampled_from(SIGNING))
    headers = _signature_headers(draw, body, signing)
    optional = [("X-Genstore-Topic", 0.85), ("X-Genstore-Shop-Domain", 0.4),
                ("X-Genstore-Webhook-Id", 0.3), ("X-Genstore-Triggered-At", 0.3),
                ("X-Genstore-Topic", 0.05), ("X-Unrelated", 0.1)]
    for name, chance in optional:
        if draw(st.floats(0, 1)) < chance:
            usual = name == "X-Genstore-Topic" and draw(st.integers(0, 4)) > 0
            value = "refunds/create" if usual else draw(HEADER_TEXT)
            headers.append((name, value))
    headers = [(_odd_case(draw, name), value) for name, value in headers]
    request = Request(body, headers, signing, sending)
    if sending in ("chunked", "oversized_chunked"):
        request.stream = io.BytesIO(body)  # no Content-Length, as gunicorn passes it on
        request.environ = {"wsgi.input_terminated": True}
        request.headers.append(("Transfer-Encoding", "chunked"))
    elif sending == "short_length":
        request.environ = {"CONTENT_LENGTH": str(len(body) + draw(st.integers(1, 100)))}
    elif sending == "bad_length":
        request.stream = io.BytesIO(body)
        request.environ = {"CONTENT_LENGTH": draw(st.sampled_from(["-1", "abc", "1e3", ""]))}
    return request


# -- the long run -----------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100_000)
    parser.add_argument("--redis-url", default=os.environ.get("TEST_REDIS_URL",
                                                              "redis://127.0.0.1:6379/0"))
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--jobs", type=int, default=1, help="processes, each with its own "
                        "database and queue, sharing the examples (seeds seed, seed+1, ...)")
    parser.add_argument("--summary", help=argparse.SUPPRESS)  # a job's counts, as JSON
    args = parser.parse_args()
    if args.jobs > 1:
        return run_jobs(args)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    logging.disable(logging.WARNING)  # a line per delivery would be most of the run's time
    run = LongRun(args.redis_url)
    started = time.monotonic()
    try:
        run.go(args.examples, args.seed)
    finally:
        run.close()
    run.report(time.monotonic() - started)
    if args.summary:
        Path(args.summary).write_text(json.dumps(run.summary()))
    return 1 if run.failures else 0


def run_jobs(args: argparse.Namespace) -> int:
    import subprocess

    started = time.monotonic()
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big")
    folder = Path(tempfile.mkdtemp(prefix="refund-sink-fuzz-jobs-"))
    jobs = []
    for job in range(args.jobs):
        share = args.examples // args.jobs + (job < args.examples % args.jobs)
        command = [sys.executable, __file__, "--examples", str(share), "--seed",
                   str(seed + job), "--redis-url", args.redis_url,
                   "--summary", str(folder / f"{job}.json")]
        jobs.append(subprocess.Popen(command))
    codes = [job.wait() for job in jobs]
    total: dict[str, Any] = {"count": 0, "failures": []}
    for job in range(args.jobs):
        summary = json.loads((folder / f"{job}.json").read_text())
        total["count"] += summary["count"]
        total["failures"] += summary["failures"]
        for name in ("statuses", "outcomes", "reasons"):
            counts = total.setdefault(name, collections.Counter())
            counts.update(summary[name])
    seconds = time.monotonic() - started
    print(f"\n== all {args.jobs} jobs (seeds {seed}..{seed + args.jobs - 1}) ==")
    print(f"machine: {platform.node()} nproc={os.cpu_count()} "
          f"python={platform.python_version()}")
    print(f"deliveries: {total['count']} in {seconds:.0f} s "
          f"({total['count'] / max(seconds, 1e-9):.0f}/s)")
    for name, title in (("statuses", "HTTP status"), ("outcomes", "outcome"),
                        ("reasons", "dead-letter reason")):
        print(f"{title}:", dict(sorted(total[name].items())))
    print(f"failures: {len(total['failures'])}")
    return 1 if any(codes) or total["failures"] else 0


class LongRun:
    def __init__(self, redis_url: str):
        import redis

        from ingest import create_app
        from refund_sink.operations import upgrade_database
        from refunds.settings import Settings

        folder = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
        self.workdir = Path(tempfile.mkdtemp(prefix="refund-sink-fuzz-", dir=folder))
        prefix = f"refund-sink-fuzz-{uuid.uuid4().hex[:8]}:"
        self.settings = Settings(
            database_url=f"sqlite:///{self.workdir / 'fuzz.db'}", redis_url=redis_url,
            genstore_secrets=(SECRET, OLD_SECRET), standard_webhook_secret=STANDARD_SECRET,
            max_body_bytes=LIMIT, redis_key_prefix=prefix, queue=f"refunds-{prefix[:-1]}",
            spool_dir=str(self.workdir / "spool"),
        )
        upgrade_database(self.settings)
        self.client = create_app(self.settings).test_client()
        self.redis = redis.Redis.from_url(redis_url)
        self.statuses: collections.Counter[str] = collections.Counter()
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.reasons: collections.Counter[str] = collections.Counter()
        self.failures: list[str] = []
        self.count = 0

    def go(self, examples: int, seed: int | None) -> None:
        from hypothesis import HealthCheck, Phase, given, settings

        @settings(max_examples=examples, deadline=None, database=None,
                  phases=[Phase.generate], suppress_health_check=list(HealthCheck))
        @given(requests())
        def one(request: Request) -> None:
            try:
                self.deliver(request)
            except Exception:
                self.fail(request, traceback.format_exc())

        if seed is not None:
            from hypothesis import seed as fixed_seed

            one = fixed_seed(seed)(one)
        one()

    def deliver(self, request: Request) -> None:
        from queued_messages import queued

        from refunds import dead_letters

        self.count += 1
        if self.count % 5000 == 0:
            print(f"... {self.count} deliveries, {len(self.failures)} failures", flush=True)
        response = self.client.post("/webhooks/genstore", **request.kwargs())
        self.statuses[str(response.status_code)] += 1
        found = queued(self.settings)
        self.redis.delete(self.settings.redis_key_prefix + self.settings.queue)
        if response.status_code != request.expected:
            self.fail(request, f"answered {response.status_code}, expected {request.expected}")
        if len(found) != (response.status_code == ACCEPTED):
            self.fail(request, f"answered {response.status_code} and queued {len(found)}")
        for raw in found:
            if raw.body != request.received:
                self.fail(request, "the queued body differs from the body sent")
            result = apply_one(self.settings, raw)
            self.outcomes[result.outcome.value] += 1
            if result.outcome.value == "dead_lettered":
                reason = dead_letter_reason(self.settings, raw, result.reason)
                self.reasons[str(reason)] += 1
                if reason not in dead_letters.REASONS:
                    self.fail(request, f"dead letter without a known reason: {reason!r}")

    def fail(self, request: Request, what: str) -> None:
        failure = (f"{what}\n  body={request.body[:300]!r} ({len(request.body)} bytes)\n  "
                   f"headers={request.headers!r}\n  "
                   f"signing={request.signing} sending={request.sending}")
        self.failures.append(failure)
        print("FAIL", failure, flush=True)

    def summary(self) -> dict[str, Any]:
        return {"count": self.count, "statuses": self.statuses, "outcomes": self.outcomes,
                "reasons": self.reasons, "failures": self.failures}

    def close(self) -> None:
        import shutil

        self.redis.delete(self.settings.redis_key_prefix + self.settings.queue)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def report(self, seconds: float) -> None:
        print(f"\nmachine: {platform.node()} nproc={os.cpu_count()} "
              f"python={platform.python_version()}")
        print(f"deliveries: {self.count} in {seconds:.0f} s "
              f"({self.count / max(seconds, 1e-9):.0f}/s)")
        print("HTTP status:", dict(sorted(self.statuses.items())))
        print("outcome:", dict(sorted(self.outcomes.items())))
        print("dead-letter reason:", dict(sorted(self.reasons.items())))
        print(f"failures: {len(self.failures)}")


def apply_one(settings: Any, raw: Any) -> Any:
    from refunds.apply import apply_deliveries
    from refunds.db import session_factory

    with session_factory(settings).begin() as session:
        return apply_deliveries([raw], session=session, naive_tz=settings.naive_tz)[0]


def dead_letter_reason(settings: Any, raw: Any, said: str | None) -> str | None:
    """The reason stored on the dead letter of this body (under the delivery's id, or under
    an id of its own when another body had the key), if it is the one the apply path said;
    None otherwise."""
    from sqlalchemy import select

    from refunds import dead_letters
    from refunds.db import session_factory
    from refunds.models import DeadLetter

    ids = (raw.delivery_id, dead_letters.conflicting(raw).delivery_id)
    with session_factory(settings)() as session:
        reason: str | None = session.scalar(select(DeadLetter.reason).where(
            DeadLetter.shop == raw.shop, DeadLetter.delivery_id.in_(ids),
            DeadLetter.body_sha256 == raw.body_sha256))
    return reason if reason == said else None


if __name__ == "__main__":
    sys.exit(main())

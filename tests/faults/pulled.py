"""The webhooks-lost scenario's truth and its reconcile: what Genstore holds is every refund as
all its messages make it (not only those the ingest accepted), served by the fake Genstore;
`refund-sink shop add` and `refund-sink reconcile --apply` run as an operator runs them; the
record is then compared with that truth on what one pulled snapshot can restore."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from sqlalchemy import func, select

from refunds.db import session_factory
from refunds.models import DeadLetter, DeliveryClaim, MessageRecord, Refund
from refunds.settings import Settings
from schemas.api import RefundView
from tests.fake_genstore import FakeGenstore, FakeShop, refund
from tests.oracle import actual_state, expected_state

from .measure import Result, _check_dead_letters
from .stack import environment
from .traffic import Delivery

SHOP = "default"  # the traffic's deliveries name no shop: the ingest files them under it
TOKEN = "fault-runner-access-token"  # noqa: S105 - the fake Genstore's token, not a secret
RESTORED = ("status", "refund_price")  # what reconcile compares, so what a pull restores
REFUND_SINK = Path(sys.executable).with_name("refund-sink")


def truth(deliveries: list[Delivery]) -> dict[str, dict[str, Any]]:
    """Every refund's final state as the oracle reads all its messages."""
    by_refund: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for delivery in {d.delivery_id: d for d in deliveries}.values():
        by_refund[delivery.refund_id].append(delivery.payload)
    return {refund_id: expected_state(payloads) for refund_id, payloads in by_refund.items()}


def genstore(deliveries: list[Delivery]) -> FakeGenstore:
    """A fake Genstore whose shop holds each refund as the oracle ends it, in Genstore's shape:
    created at its first message's time, updated at its last's."""
    states = truth(deliveries)
    times: dict[str, list[str]] = defaultdict(list)
    orders: dict[str, str] = {}
    for delivery in deliveries:
        times[delivery.refund_id].append(delivery.payload["refund"]["updateTime"])
        orders[delivery.refund_id] = delivery.payload["refund"]["orderId"]
    refunds = []
    for refund_id, state in sorted(states.items()):
        note = {} if state["note"] is None else {"note": state["note"]}
        refunds.append(refund(refund_id, orders[refund_id], state["status"],
                              state["refund_price"], max(times[refund_id]),
                              createTime=min(times[refund_id]), **note))
    return FakeGenstore({SHOP: FakeShop(TOKEN, refunds)}).start()


def local(settings: Settings) -> dict[str, dict[str, Any]]:
    with session_factory(settings)() as session:
        return {row.refund_id: actual_state(RefundView.model_validate(row).model_dump(mode="json"))
                for row in session.scalars(select(Refund))}


@dataclass(frozen=True)
class Gap:
    missing: int  # refunds Genstore has and the sink does not
    differs: int  # refunds whose status or price differ
    history: int  # refunds with fewer messages than were sent (a pull restores no history)
    note: int  # refunds whose note differs (reconcile does not compare notes)

    def __str__(self) -> str:
        return (f"missing {self.missing}, status or price differ {self.differs}, "
                f"history incomplete {self.history}, note differs {self.note}")


def gap(settings: Settings, deliveries: list[Delivery]) -> Gap:
    expected, actual = truth(deliveries), local(settings)
    present = [r for r in expected if r in actual]
    return Gap(
        missing=len(expected) - len(present),
        differs=sum(_restored(actual[r]) != _restored(expected[r]) for r in present),
        history=sum(actual[r]["events_applied"] < expected[r]["events_applied"]
                    for r in present),
        note=sum(actual[r]["note"] != expected[r]["note"] for r in present),
    )


def _restored(state: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(state[name] for name in RESTORED)


class Operator:
    """`refund-sink` commands with the scenario's environment and the fake Genstore's URL."""

    def __init__(self, settings: Settings, fake: FakeGenstore, folder: Path):
        self.env = environment(settings)
        self.env.update(GENSTORE_API_URL=fake.url,
                        REFUND_SINK_SECRET_KEY=Fernet.generate_key().decode())
        self.folder = folder

    def run(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(REFUND_SINK), *args], env=self.env, cwd=self.folder,
                              capture_output=True, text=True, timeout=timeout)

    def add_shop(self) -> None:
        token = self.folder / "access-token"
        token.write_text(TOKEN + "\n")
        done = self.run("shop", "add", SHOP, "--access-token-file", str(token))
        if done.returncode:
            raise RuntimeError(f"shop add failed: {done.stderr.strip()}")

    def reconcile(self, since: str) -> tuple[dict[str, Any] | None, str]:
        """The report of one `reconcile --apply --json`, or None and why it failed."""
        done = self.run("reconcile", "--shop", SHOP, "--since", since, "--apply", "--json")
        if done.returncode:
            return None, f"reconcile exited {done.returncode}: {done.stderr.strip()[-500:]}"
        return json.loads(done.stdout), ""

    def remove_shop(self) -> None:
        """Later scenarios of the run share the database: leave no shop registered."""
        self.run("shop", "remove", SHOP)


def evaluate(settings: Settings, name: str, *, sent: int, ok: int, accepted: set[str],
             deliveries: list[Delivery], expected_dead: dict[str, str],
             seconds: float) -> Result:
    """As measure.evaluate, against Genstore's truth: lost counts accepted deliveries never
    recorded plus refunds Genstore has that the sink does not; mismatched compares status and
    refund price; doubled, a message recorded twice or more messages than were sent."""
    expected, actual = truth(deliveries), local(settings)
    with session_factory(settings)() as session:
        recorded = set(session.scalars(select(DeliveryClaim.delivery_id)))
        letters = dict(session.execute(select(DeadLetter.delivery_id, DeadLetter.reason)).all())
        twice = set(session.scalars(
            select(MessageRecord.refund_id)
            .group_by(MessageRecord.shop, MessageRecord.refund_id, MessageRecord.occurred_at,
                      MessageRecord.kind)
            .having(func.count() > 1)
        ))  # fmt: skip
    result = Result(
        scenario=name, sent=sent, ok=ok, applied=len(recorded), dead_lettered=len(letters),
        lost=len(accepted - recorded - set(letters)) + len(set(expected) - set(actual)),
        doubled=sum(r in twice or state["events_applied"] > expected[r]["events_applied"]
                    for r, state in actual.items() if r in expected),
        mismatched=sum(_restored(actual[r]) != _restored(state)
                       for r, state in expected.items() if r in actual)
        + len(set(actual) - set(expected)),
        seconds=seconds,
    )
    _check_dead_letters(result, letters, expected_dead)
    result.notes.append(f"after the reconcile: {gap(settings, deliveries)}")
    return result

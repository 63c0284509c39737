"""Risk flags over HTTP (`GET /flags`, `POST /flags/<id>/acknowledge`, the refund's `flags`)
and at the command line (`refund-sink flags check|list`). Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from deliveries import apply, delivery
from flask.testing import FlaskClient
from payloads import camel_event
from processes import environment
from prometheus_client import REGISTRY
from sqlalchemy import select

from refunds import tokens
from refunds.db import session_factory
from refunds.models import ApiToken, RefundFlag
from refunds.settings import Settings

pytestmark = pytest.mark.integration
CLI = [str(Path(sys.executable).parent / "refund-sink")]
ONE_LINE = [{"quantity": "1", "totalTax": "0.00", "subtotal": "1.00",
             "lineItem": {"sku": "S1", "price": "1.00"}}]
FIELDS = {"id", "shop", "refund_id", "rule", "details", "raised_at", "acknowledged_by",
          "acknowledged_at", "state"}


def token(settings: Settings, *scopes: str, name: str | None = "test",
          shop: str | None = None) -> dict[str, str]:
    with session_factory(settings).begin() as session:
        value = tokens.create(scopes, name=name, shop=shop, session=session)
    return {"Authorization": f"Bearer {value}"}


def flagged_refunds(settings: Settings, shop: str = "default") -> None:
    """Refund 1 over the threshold and over its line items, 2 over the threshold, 3 neither."""
    apply(settings, delivery(camel_event(refund_id="1", price="2000.00", lineItems=ONE_LINE),
                             shop=shop))
    apply(settings, delivery(camel_event(refund_id="2", price="5000.00"), shop=shop))
    apply(settings, delivery(camel_event(refund_id="3", price="5.00"), shop=shop))


def listed(client: FlaskClient, headers: dict[str, str], query: str = "") -> list[Any]:
    answer = client.get(f"/flags{query}", headers=headers)
    assert answer.status_code == 200, answer.get_json()
    return [(flag["refund_id"], flag["rule"]) for flag in answer.get_json()["flags"]]


def test_flags_are_listed_filtered_paged_and_shown_on_their_refunds(
        client: FlaskClient, api_settings: Settings) -> None:
    # given three refunds, two of them flagged
    flagged_refunds(api_settings)
    headers = token(api_settings, "read_refunds")
    # when the flags are listed, then in the order raised, with every field
    page = client.get("/flags", headers=headers).get_json()
    assert [(f["refund_id"], f["rule"], f["state"]) for f in page["flags"]] == [
        ("1", "amount_over", "open"), ("1", "over_line_items", "open"),
        ("2", "amount_over", "open")]
    assert set(page["flags"][0]) == FIELDS and page["next_cursor"] is None
    assert page["flags"][0]["details"] == {"price": "2000.00", "currency": None,
                                           "threshold": "1000"}
    # and filtered by rule and state
    assert listed(client, headers, "?rule=amount_over") == [("1", "amount_over"),
                                                             ("2", "amount_over")]
    assert len(listed(client, headers, "?state=open")) == 3
    assert listed(client, headers, "?state=acknowledged") == []
    # and a page at a time
    first = client.get("/flags?limit=2", headers=headers).get_json()
    rest = client.get(f"/flags?limit=2&cursor={first['next_cursor']}", headers=headers)
    assert len(first["flags"]) == 2 and rest.get_json()["next_cursor"] is None
    assert [f["refund_id"] for f in rest.get_json()["flags"]] == ["2"]
    # and each refund shows the rules of its open flags, sorted
    assert client.get("/refunds/1", headers=headers).get_json()["flags"] == [
        "amount_over", "over_line_items"]
    refunds = client.get("/refunds", headers=headers).get_json()["refunds"]
    assert {r["id"]: r["flags"] for r in refunds} == {
        "1": ["amount_over", "over_line_items"], "2": ["amount_over"], "3": []}


@pytest.mark.parametrize("query", [
    "?state=closed", "?rule=amount", "?limit=0", "?limit=501", "?cursor=%%%",
    "?cursor=ZGVhZF9sZXR0ZXJzCjE=",  # a dead letters cursor
])
def test_a_bad_parameter_is_400(client: FlaskClient, api_settings: Settings,
                                query: str) -> None:
    answer = client.get(f"/flags{query}", headers=token(api_settings, "read_refunds"))
    assert answer.status_code == 400
    assert answer.get_json()["error"] == "bad_request"


def test_acknowledge_records_the_token_name_once(client: FlaskClient,
                                                 api_settings: Settings) -> None:
    # given refund 1's two flags
    flagged_refunds(api_settings)
    reader = token(api_settings, "read_refunds")
    [over, lines] = [f["id"] for f in client.get("/flags?limit=2",
                                                 headers=reader).get_json()["flags"]]
    # when alice acknowledges one
    answer = client.post(f"/flags/{over}/acknowledge",
                         headers=token(api_settings, "write_refunds", name="alice"))
    # then it comes back acknowledged by her, and the refund no longer shows it
    assert answer.status_code == 200
    flag = answer.get_json()
    assert (flag["id"], flag["state"], flag["acknowledged_by"]) == (over, "acknowledged",
                                                                     "alice")
    assert client.get("/refunds/1", headers=reader).get_json()["flags"] == ["over_line_items"]
    assert listed(client, reader, "?state=acknowledged") == [("1", "amount_over")]
    # when bob acknowledges it again, then it keeps alice's acknowledgement
    again = client.post(f"/flags/{over}/acknowledge",
                        headers=token(api_settings, "write_refunds", name="bob"))
    assert again.status_code == 200 and again.get_json() == flag
    # and a token without a name is recorded by its id
    client.post(f"/flags/{lines}/acknowledge",
                headers=token(api_settings, "write_refunds", name=None))
    with session_factory(api_settings)() as session:
        unnamed = session.scalars(select(ApiToken.id).where(ApiToken.name.is_(None))).one()
        rows = [(row.refund_id, row.rule, row.acknowledged_by)
                for row in session.scalars(select(RefundFlag).order_by(RefundFlag.id))]
    assert rows == [("1", "amount_over", "alice"), ("1", "over_line_items", f"token {unnamed}"),
                    ("2", "amount_over", None)]


def test_acknowledge_needs_write_refunds_and_a_known_flag(client: FlaskClient,
                                                          api_settings: Settings) -> None:
    flagged_refunds(api_settings)
    writer = token(api_settings, "write_refunds")
    assert client.post("/flags/1/acknowledge").status_code == 401
    assert client.post("/flags/1/acknowledge",
                       headers=token(api_settings, "read_refunds")).status_code == 403
    for unknown in ("999999", str(2**40), "99999999999999999999999"):
        answer = client.post(f"/flags/{unknown}/acknowledge", headers=writer)
        assert answer.status_code == 404 and answer.get_json()["error"] == "not_found"
    assert client.get("/flags").status_code == 401


def test_a_token_for_one_shop_sees_and_acknowledges_its_shop_only(
        client: FlaskClient, api_settings: Settings) -> None:
    # given flags in two shops and a token for one
    flagged_refunds(api_settings, shop="a.example")
    flagged_refunds(api_settings, shop="b.example")
    own = token(api_settings, "write_refunds", shop="a.example")
    everyone = token(api_settings, "read_refunds")
    # then it lists its shop's flags only, and another shop is not found
    page = client.get("/flags", headers=own).get_json()["flags"]
    assert {flag["shop"] for flag in page} == {"a.example"} and len(page) == 3
    assert client.get("/flags?shop=b.example", headers=own).status_code == 404
    # and it acknowledges its own shop's flags, not the other's
    theirs = client.get("/flags?shop=b.example", headers=everyone).get_json()["flags"][0]
    assert client.post(f"/flags/{theirs['id']}/acknowledge", headers=own).status_code == 404
    assert client.post(f"/flags/{page[0]['id']}/acknowledge", headers=own).status_code == 200
    assert len(listed(client, everyone, "?state=acknowledged")) == 1


# --- the commands ----------------------------------------------------------------------------

def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=60)


def test_flags_check_raises_stuck_in_progress_once_and_list_shows_it(
        api_settings: Settings) -> None:
    # given a refund created in 2025, still in progress, and one refunded
    apply(api_settings, delivery(camel_event(refund_id="1", create_time="2025-03-01T10:00:00Z")))
    apply(api_settings, delivery(camel_event(refund_id="2", status="refunded")))
    env = environment(api_settings)
    # when the check runs twice
    first, second = cli("flags", "check", env=env), cli("flags", "check", env=env)
    # then the first raises stuck_in_progress on the refund in progress, the second nothing
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "stuck_in_progress raised on 1 refunds"
    assert second.stdout.strip() == "stuck_in_progress raised on 0 refunds"
    shown = cli("flags", "list", "--json", "--rule", "stuck_in_progress", env=env)
    [flag] = json.loads(shown.stdout)
    assert (flag["refund_id"], flag["state"]) == ("1", "open")
    assert flag["details"]["created_at"] == "2025-03-01T10:00:00+00:00"
    table = cli("flags", "list", "--state", "open", env=env).stdout.splitlines()
    assert table[0].split() == ["ID", "STATE", "RULE", "RAISED", "SHOP", "REFUND"]
    assert table[1].split()[1:3] == ["open", "stuck_in_progress"]


def test_flags_check_counts_what_it_raised(api_settings: Settings,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from refund_sink import cli as command_line

    apply(api_settings, delivery(camel_event(create_time="2025-03-01T10:00:00Z")))
    monkeypatch.setenv("DATABASE_URL", api_settings.database_url)
    monkeypatch.delenv("REFUND_SINK_RISK_RULES", raising=False)

    def counted() -> float:
        return REGISTRY.get_sample_value("refund_sink_flags_raised_total",
                                         {"rule": "stuck_in_progress"}) or 0.0

    before = counted()
    assert command_line.main(["flags", "check"]) == 0
    assert command_line.main(["flags", "check"]) == 0
    assert counted() - before == 1


@pytest.mark.parametrize(("rules", "code", "said"), [
    ("[stuck_in_progress]\nenabled = false\n", 0, "stuck_in_progress is off"),
    ("[stuck_in_progress]\nhourz = 5\n", 1, "REFUND_SINK_RISK_RULES"),
])
def test_flags_check_follows_the_rules_file(api_settings: Settings, tmp_path: Path,
                                            rules: str, code: int, said: str) -> None:
    apply(api_settings, delivery(camel_event(create_time="2025-03-01T10:00:00Z")))
    (tmp_path / "rules.toml").write_text(rules)
    env = environment(api_settings, REFUND_SINK_RISK_RULES=str(tmp_path / "rules.toml"))
    result = cli("flags", "check", env=env)
    assert result.returncode == code
    assert said in (result.stdout + result.stderr)
    assert "Traceback" not in result.stderr
    with session_factory(api_settings)() as session:
        assert session.scalars(select(RefundFlag)).all() == []

"""The `refund-sink` command as a user runs it: the README's quick start, the operator
commands, and one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
from backing_services import stop
from conftest import make_settings
from processes import environment, wait_for

from broker.wire import to_wire
from refund_sink.servers import free_port

pytestmark = pytest.mark.integration
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "genstore-refund-event.json"
# The console script pip installed, as the README runs it.
CLI = [str(Path(sys.executable).parent / "refund-sink")]


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=60)


def clean_env() -> dict[str, str]:
    """The environment of a newcomer who configured nothing."""
    names = ("DATABASE_URL", "REDIS_URL", "GENSTORE_WEBHOOK_SECRET", "STANDARD_WEBHOOK_SECRET")
    return {k: v for k, v in os.environ.items() if k not in names}


def get_json(url: str, token: str) -> dict[str, object]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        return json.loads(response.read())  # type: ignore[no-any-return]


def test_quick_start_run_send_and_read_back(tmp_path: Path) -> None:
    port = free_port()
    env = clean_env()
    log = (tmp_path / "run.log").open("w")
    run = subprocess.Popen([*CLI, "run", "--port", str(port)], cwd=tmp_path, env=env,
                           stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        def serving() -> bool:
            assert run.poll() is None, (tmp_path / "run.log").read_text()
            return "Ctrl-C" in (tmp_path / "run.log").read_text()

        wait_for(serving, 90, "run not ready")
        url = f"http://127.0.0.1:{port}"
        sent = cli("send", str(EXAMPLE), "--url", f"{url}/webhooks/genstore", env=env,
                   cwd=tmp_path)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert sent.stdout.startswith("202 ")
        token = cli("token", "create", "--scopes", "read_refunds", env=env, cwd=tmp_path)
        token_value = token.stdout.strip().splitlines()[-1]

        def applied() -> bool:
            try:
                return bool(get_json(f"{url}/refunds/10220473645", token_value))
            except OSError:
                return False

        wait_for(applied, 60, "example not applied")
        refund = get_json(f"{url}/refunds/10220473645", token_value)
        assert refund["status"] == "in_progress"
        assert refund["refund_price"] == "10.00"
        assert refund["order_id"] == "300141548096383"
        assert refund["line_items"][0]["sku"] == "128G;白色;"  # type: ignore[index]
    finally:
        run.send_signal(signal.SIGINT)
        stop(run, timeout=40)
        log.close()
    assert run.returncode == 0, (tmp_path / "run.log").read_text()
    # the example carries a phone number and an address: no log of any process shows them
    logs = [tmp_path / "run.log", *sorted((tmp_path / ".refund-sink").glob("*.log"))]
    assert len(logs) == 5  # run.log and one per child: ingest, worker, Flower, reconcile
    for path in logs:
        text = path.read_text(errors="replace")
        assert "16173034750" not in text and "Poplar" not in text, path


def test_dlq_list_json_and_show(pg_url: str, redis_url: str, key_prefix: str) -> None:
    from deliveries import apply, delivery

    settings = make_settings(pg_url, redis_url, key_prefix)
    apply(settings, delivery(b"{broken", delivery_id="broken-1"))
    env = environment(settings)
    listed = cli("dlq", "list", "--json", "--reason", "invalid_json", env=env)
    assert listed.returncode == 0, listed.stderr
    [letter] = json.loads(listed.stdout)
    assert set(letter) == {"id", "delivery_id", "topic", "shop", "reason", "error", "state",
                           "attempts", "first_failed_at", "last_failed_at"}
    assert (letter["delivery_id"], letter["reason"], letter["state"]) == (
        "broken-1", "invalid_json", "dead")
    shown = cli("dlq", "show", str(letter["id"]), env=env)
    assert json.loads(shown.stdout)["body"] == "{broken"
    missing = cli("dlq", "show", "999999", env=env)
    assert missing.returncode == 1
    assert missing.stderr.strip() == "refund-sink: error: no dead letter with id 999999"


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["dlq", "list"], 1),
        (["token", "create", "--scopes", "read_refunds"], 1),
        (["db", "upgrade"], 1),
        (["nonsense"], 2),
        (["token", "create"], 2),
        (["token", "create", "--scopes", "admin"], 2),
        (["token", "create", "--scopes", "read_refunds,admin"], 2),
        (["token", "create", "--scopes", ","], 2),
        (["token", "create", "--scopes", "read_refunds", "--expires-in", "soon"], 2),
        (["token", "create", "--scopes", "read_refunds", "--expires-in", "0d"], 2),
        (["token", "create", "--scopes", "read_refunds", "--shop", " "], 2),
        (["token", "revoke", "abc"], 2),
        (["token", "revoke"], 2),
        (["dlq", "show", "abc"], 2),
        (["dlq", "list", "--reason", "bogus"], 2),
        (["dlq", "requeue", "1", "x"], 2),
    ],
)
def test_bad_arguments_and_unreachable_services_give_one_line(args: list[str],
                                                              code: int) -> None:
    env = clean_env() | {"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    result = cli(*args, env=env)
    assert result.returncode == code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("refund-sink: error: "), result.stderr


def test_token_create_rejects_unknown_scopes(sqlite_url: str) -> None:
    env = clean_env() | {"DATABASE_URL": sqlite_url}
    result = cli("token", "create", "--scopes", "read_refunds,admin", env=env)
    assert result.returncode == 2 and "scopes must be among" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [["dlq", "show"], ["dlq", "requeue"]])
def test_a_dead_letter_id_past_64_bits_is_not_found_in_one_line(sqlite_url: str,
                                                                 command: list[str]) -> None:
    env = clean_env() | {"DATABASE_URL": sqlite_url}
    huge = "99999999999999999999999"
    result = cli(*command, huge, env=env)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("refund-sink: error: ") and huge in result.stderr


def test_an_unexpected_error_is_one_line_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from refund_sink import cli as command_line
    from refund_sink import operations

    def broken(_args: object) -> int:
        raise ZeroDivisionError("division by zero\nsecond line")

    monkeypatch.setattr(operations, "dlq_list", broken)
    assert command_line.main(["dlq", "list"]) == 1
    err = capsys.readouterr().err
    assert err == "refund-sink: error: unexpected ZeroDivisionError: division by zero\n"


def test_token_create_list_and_revoke(sqlite_url: str, redis_url: str) -> None:
    from flask.testing import FlaskClient

    from ingest import create_app

    env = clean_env() | {"DATABASE_URL": sqlite_url}
    created = cli("token", "create", "--scopes", "write_refunds", "--name", "ops",
                  "--shop", " Shop-A.Example", "--expires-in", "30d", env=env)
    assert created.returncode == 0, created.stderr
    value = created.stdout.strip().splitlines()[-1]
    plain = cli("token", "create", "--scopes", "read_refunds", env=env).stdout.strip()
    listed = cli("token", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [set(row) for row in rows] == [{"id", "name", "scopes", "shop", "created_at",
                                           "expires_at", "revoked_at"}] * 2
    ops = rows[0]
    assert (ops["name"], ops["scopes"], ops["shop"]) == ("ops", ["write_refunds"],
                                                         "shop-a.example")
    expires = datetime.fromisoformat(ops["expires_at"]) - datetime.fromisoformat(
        ops["created_at"])
    assert abs(expires.total_seconds() - 30 * 86400) < 5
    table = cli("token", "list", env=env).stdout
    assert "ops" in table and "shop-a.example" in table and "write_refunds" in table
    from refunds.tokens import digest

    for secret in (value, plain):
        for shown in (listed.stdout, table):
            assert secret not in shown and digest(secret) not in shown
            assert secret.removeprefix("rst_")[:12] not in shown
    # revoking: the token stops working; twice is said, not an error; unknown ids are
    settings = make_settings(sqlite_url, redis_url)
    client: FlaskClient = create_app(settings).test_client()
    headers = {"Authorization": f"Bearer {value}"}
    assert client.get("/refunds/1", headers=headers).status_code == 404
    revoked = cli("token", "revoke", str(ops["id"]), env=env)
    assert (revoked.returncode, revoked.stdout) == (0, f"revoked token {ops['id']}\n")
    assert client.get("/refunds/1", headers=headers).status_code == 401
    again = cli("token", "revoke", str(ops["id"]), env=env)
    assert (again.returncode, again.stdout) == (0, f"token {ops['id']} was already revoked\n")
    assert json.loads(cli("token", "list", "--json", env=env).stdout)[0]["revoked_at"]
    missing = cli("token", "revoke", "99999999999999999999999", env=env)
    assert missing.returncode == 1
    assert missing.stderr == "refund-sink: error: no token with id 99999999999999999999999\n"


def test_worker_command_refuses_an_unreachable_broker() -> None:
    env = clean_env() | {"REDIS_URL": "redis://127.0.0.1:1/0"}
    result = cli("worker", env=env)
    assert result.returncode == 1
    assert result.stderr.startswith("refund-sink: error: broker unreachable")


def test_worker_command_reads_a_sentinel_url() -> None:
    # before cf39095 it asked redis-py for a plain client: "Redis URL must specify one of the
    # following schemes", whatever the Sentinel group's state
    env = clean_env() | {"REDIS_URL": "sentinel://127.0.0.1:1/mymaster"}
    result = cli("worker", env=env)
    assert result.returncode == 1
    assert result.stderr.startswith("refund-sink: error: broker unreachable"), result.stderr
    assert "scheme" not in result.stderr


def test_spool_list_and_retry(redis_url: str, key_prefix: str, tmp_path: Path) -> None:
    from queued_messages import queued

    from broker.spool import Spool
    from refunds.delivery import RawDelivery

    def raw(delivery_id: str) -> RawDelivery:
        return RawDelivery(delivery_id=delivery_id, topic="refunds/create", shop="a.example",
                           body=b'{"note": "secret-marker"}', received_at=datetime.now(UTC))

    # given a spool with a delivery waiting and a damaged file in quarantine
    settings = make_settings(f"sqlite:///{tmp_path / 'sink.db'}", redis_url, key_prefix,
                             spool_dir=str(tmp_path / "spool"))
    env = environment(settings, REFUND_SINK_SPOOL_DIR=settings.spool_dir)
    spool = Spool(settings.spool_dir)
    spool.put(raw("waiting-1"))
    name = "00000000000000000001-damaged.json"
    spool.quarantine.mkdir()
    (spool.quarantine / name).write_bytes(b'{"body": "secret-marker')
    # when an operator lists the spool: states, ids, never a body
    listed = cli("spool", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert [(f["state"], f["delivery_id"], f["shop"], f["problem"])
            for f in json.loads(listed.stdout)] == [
        ("pending", "waiting-1", "a.example", None), ("quarantined", None, None, "JSONDecodeError")]
    table = cli("spool", "list", env=env).stdout
    assert "quarantined" in table and "unreadable: JSONDecodeError" in table
    assert "secret-marker" not in listed.stdout + table
    # then a name not in quarantine is refused in one line
    unknown = cli("spool", "retry", "other.json", env=env)
    assert unknown.returncode == 1
    assert unknown.stderr == "refund-sink: error: could not retry other.json: not in quarantine\n"
    # and once fixed, retry --all moves the file back and sends the spool to the broker
    (spool.quarantine / name).write_text(json.dumps(to_wire(raw("fixed-2"))))
    retried = cli("spool", "retry", "--all", env=env)
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.splitlines() == [f"moved {name} to pending",
                                           "sent 2 deliveries to the broker"]
    assert sorted(d.delivery_id for d in queued(settings)) == ["fixed-2", "waiting-1"]
    assert json.loads(cli("spool", "list", "--json", env=env).stdout) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--port", "99999"], "run: argument --port: must be a port (1-65535), got 99999"),
        (["run", "--port", "0"], "run: argument --port: must be a port (1-65535), got 0"),
        (["ingest", "--workers", "0"], "ingest: argument --workers: must be at least 1, got 0"),
        (["ingest", "--bind", "nowhere"],
         "ingest: argument --bind: must be HOST:PORT, got 'nowhere'"),
        (["worker", "--concurrency", "0"],
         "worker: argument --concurrency: must be at least 1, got 0"),
        (["worker-alive", "--max-age", "-5"],
         "worker-alive: argument --max-age: must be a number of seconds, 0 or more, got -5"),
        (["send", str(EXAMPLE), "--url", "notaurl"],
         "send: argument --url: must be an http(s) URL, got 'notaurl'"),
    ],
)
def test_bad_process_arguments_exit_2_in_one_line(args: list[str], message: str,
                                                  tmp_path: Path) -> None:
    # nothing may start: no broker or database answers, and the folder is empty
    env = clean_env() | {"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
                         "REDIS_URL": "redis://127.0.0.1:1/0", "GENSTORE_WEBHOOK_SECRET": "s"}
    result = cli(*args, env=env, cwd=tmp_path)
    assert (result.returncode, result.stderr) == (2, f"refund-sink: error: {message}\n")
    assert list(tmp_path.iterdir()) == []


def test_send_a_missing_file_is_one_line_exit_1(tmp_path: Path) -> None:
    # the argument is well formed; the file is not there (like `dlq show` of an unknown id)
    result = cli("send", "missing.json", "--secret", "s", env=clean_env(), cwd=tmp_path)
    assert (result.returncode, result.stderr) == (
        1, "refund-sink: error: cannot read missing.json: No such file or directory\n")

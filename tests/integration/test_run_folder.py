"""`refund-sink run` and the commands an operator runs beside it, from a second terminal in
the same folder: they reach the sink `run` started, whatever it chose (a private Redis on a
free port, a database named only in `run`'s environment, another queue)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from backing_services import stop
from processes import wait_for
from test_cli import CLI, clean_env, cli

from refund_sink.servers import free_port

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Running:
    folder: Path
    port: int
    metrics_port: int  # taken by another process before `run` started

    def output(self) -> str:
        return (self.folder / "run.log").read_text()


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    folder = tmp_path_factory.mktemp("sink")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        sink = Running(folder, free_port(), taken.getsockname()[1])
        env = clean_env() | {
            "DATABASE_URL": f"sqlite:///{folder / 'named-in-run-only.db'}",
            "REFUND_SINK_QUEUE": f"refunds-{uuid.uuid4().hex[:8]}",
            "REFUND_SINK_METRICS_PORT": str(sink.metrics_port),
        }
        with (folder / "run.log").open("w") as log:
            run = subprocess.Popen([*CLI, "run", "--port", str(sink.port)], cwd=folder, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
        try:
            def serving() -> bool:
                assert run.poll() is None, sink.output()
                return "Ctrl-C" in sink.output()

            wait_for(serving, 90, "run not ready")
            yield sink
        finally:
            run.send_signal(signal.SIGINT)
            stop(run, timeout=40)


def letters(folder: Path) -> list[dict[str, object]]:
    listed = cli("dlq", "list", "--json", env=clean_env(), cwd=folder)
    assert listed.returncode == 0, listed.stderr
    found: list[dict[str, object]] = json.loads(listed.stdout)
    return found


def test_commands_in_the_folder_reach_the_sink_run_started(running: Running,
                                                            sqlite_url: str) -> None:
    # given a delivery that ends as a dead letter, sent without --url or --secret
    (running.folder / "broken.json").write_bytes(b'{"refund": broken')
    sent = cli("send", "broken.json", env=clean_env(), cwd=running.folder)
    assert sent.returncode == 0 and sent.stdout.startswith("202 "), sent.stdout + sent.stderr
    wait_for(lambda: len(letters(running.folder)) == 1, 30, "no dead letter")
    [letter] = letters(running.folder)
    assert (letter["reason"], letter["attempts"]) == ("invalid_json", 1)
    # when it is requeued from the second terminal
    requeued = cli("dlq", "requeue", str(letter["id"]), env=clean_env(), cwd=running.folder)
    assert requeued.returncode == 0, requeued.stderr
    # then run's own worker takes it from run's own queue: it fails again, one attempt more
    wait_for(lambda: letters(running.folder)[0]["attempts"] == 2, 30,
             "the requeued delivery was not processed")
    assert letters(running.folder)[0]["state"] == "dead"
    # and a variable set explicitly still wins over what run recorded
    elsewhere = cli("dlq", "list", "--json", env=clean_env() | {"DATABASE_URL": sqlite_url},
                    cwd=running.folder)
    assert json.loads(elsewhere.stdout) == []
    unreachable = cli("dlq", "requeue", str(letter["id"]), cwd=running.folder,
                      env=clean_env() | {"REDIS_URL": "redis://127.0.0.1:1/0"})
    assert unreachable.returncode == 1 and "broker unreachable" in unreachable.stderr


def test_the_record_keeps_no_secret(running: Running) -> None:
    secret = (running.folder / ".refund-sink" / "secret").read_text().strip()
    recorded = [p for p in (running.folder / ".refund-sink").iterdir() if p.is_file()]
    for path in recorded:
        if path.name != "secret":
            assert secret not in path.read_text(errors="replace"), path


def test_a_second_run_in_the_folder_refuses_in_one_line(running: Running) -> None:
    second = cli("run", "--port", str(free_port()), env=clean_env(), cwd=running.folder)
    assert second.returncode == 1
    [line] = second.stderr.splitlines()
    assert line.startswith("refund-sink: error: another `refund-sink run` (pid ")
    assert "running at" not in second.stdout
    assert "Ctrl-C" in running.output() and "exited" not in running.output()


def test_the_start_up_message_says_worker_metrics_are_not_served(running: Running) -> None:
    assert (f"worker metrics not served: port {running.metrics_port} is taken"
            in running.output())


def test_flower_asks_the_worker_only_once_it_answers(running: Running) -> None:
    flower_log = running.folder / ".refund-sink" / "flower.log"
    wait_for(lambda: "Connected to" in flower_log.read_text(), 30, "flower not connected")
    time.sleep(3)  # Flower inspects the workers as it starts, each question timing out at 1 s
    assert "Inspect method" not in flower_log.read_text()

"""The worker's heartbeat file stands for "ready": `refund-sink run` waits for it before it
reads whether the worker serves its metrics."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from worker.observability import Liveness, heartbeat_file, heartbeats

pytestmark = pytest.mark.unit


def test_a_beat_before_the_worker_is_ready_writes_no_heartbeat(tmp_path: Path) -> None:
    # given a worker whose first heartbeat (worker-online) comes before worker_ready
    liveness = Liveness(str(tmp_path / "beats"))
    liveness.beat()
    # then nothing says it is ready yet
    assert heartbeats(liveness.directory) == {}
    # and once it is ready, it is, and every later beat refreshes the same file
    liveness.ready()
    [beat] = heartbeats(liveness.directory).values()
    liveness.beat()
    assert list(heartbeats(liveness.directory).values()) == [beat]


def test_a_stopped_worker_takes_its_heartbeat_with_it(tmp_path: Path) -> None:
    liveness = Liveness(str(tmp_path))
    liveness.ready()
    liveness.stop()
    assert not any(tmp_path.iterdir())
    liveness.stop()  # a second stop (shutdown after a failed start) is harmless


def test_the_file_is_named_for_this_process(tmp_path: Path) -> None:
    Liveness(str(tmp_path)).ready()
    assert heartbeat_file(str(tmp_path), os.getpid()).exists()

"""gunicorn settings for the ingest (`refund-sink ingest` and `refund-sink run` use them):
`gunicorn -c python:ingest.gunicorn_config "ingest:create_app()"`.

Threads, not sync workers. A sync worker belongs to one connection until its request is in:
two clients that sent their headers and then stalled froze the webhook until `timeout` killed
both workers (issue 11). A gthread worker's main thread only accepts and hands each connection
to a thread, so a stalled client holds one thread of `threads` and the others serve on. The
deploys also put a buffering proxy in front (nginx in compose, ingress-nginx on Kubernetes),
which keeps slow clients off the ingest altogether. Measured: docs/performance.md.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import multiprocess

worker_class = "gthread"


def default_workers() -> int:
    """`refund-sink ingest`'s worker processes unless `--workers` says: two per core this
    process may run on, at most 8. A thread's wait on Redis still costs its process's GIL,
    so on 2 cores 4 processes accepted 20-30% more than 2 (docs/performance.md). A container
    limited to fewer cores than its host shows is given `--workers` by its manifest."""
    return min(2 * len(os.sched_getaffinity(0)), 8)


# Per worker process: how many clients stalled mid-request one worker survives (with room for
# the deliveries meanwhile). Threads start on demand, so idle capacity costs nothing.
threads = 64
# Close each connection after its response, as the sync workers did. An idle kept-alive
# connection would be a slot held open for nothing (a delivery is one request), and a proxy
# that reuses upstream connections longer than gunicorn keeps them (ingress-nginx: 60 s) would
# race gunicorn's close and answer a POST with 502.
keepalive = 0
graceful_timeout = 20
# gunicorn >= 25.1 opens a control socket at one path per user (~/.gunicorn/gunicorn.ctl),
# which several ingests on one host (tests, two sinks) would share; nothing here uses it.
control_socket_disable = True


def child_exit(_server: Any, worker: Any) -> None:
    """Drop a finished worker's live gauges from the shared metrics directory, when there is
    one: without PROMETHEUS_MULTIPROC_DIR (plain `gunicorn -c ...`) prometheus_client raises
    a TypeError here, which crashed the master on stop and left its workers serving."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]

"""`celery worker` whose processes die (SIGKILL) on any delivery whose body holds POISON:
a message that kills its worker every time, for the poison-message tests and fault runner.

Usage: python tests/poison_worker.py worker --concurrency 2 ..."""

from __future__ import annotations

import os
import signal
import sys

from refunds.delivery import RawDelivery
from worker import handling

MARKER = b"POISON"
_handle = handling.DeliveryHandler.handle


def _handle_or_die(self: handling.DeliveryHandler, deliveries: list[RawDelivery]) -> object:
    if any(MARKER in delivery.body for delivery in deliveries):
        os.kill(os.getpid(), signal.SIGKILL)
    return _handle(self, deliveries)


handling.DeliveryHandler.handle = _handle_or_die  # type: ignore[assignment,method-assign]

if __name__ == "__main__":
    from worker import app

    app.worker_main(sys.argv[1:])

"""The publishing side, shared by the ingest, the CLI and the worker: the Celery app
configuration (`broker.app`), kombu's Redis transport with the ledger write (`broker.transport`),
the ledger of accepted deliveries (`broker.ledger`), the names of the Redis keys the sink owns
(`broker.keys`), publishing a delivery (`broker.publish`) and reading one back from a queued
message (`broker.wire`).

Its own package so the ingest never imports the worker (which registers tasks and signal
handlers); it imports neither Flask nor the worker."""

"""The core: settings, models, the refund state machine, apply, dead letters, tokens, queries.

Imports neither Flask nor Celery."""

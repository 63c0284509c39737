"""What the request handlers share: settings, the Celery client, database sessions."""

from __future__ import annotations

from dataclasses import dataclass

from celery import Celery
from flask import current_app

from refunds.db import SessionFactory, session_factory
from refunds.settings import Settings


@dataclass(frozen=True)
class Services:
    settings: Settings
    celery: Celery

    @property
    def sessions(self) -> SessionFactory:
        """Created on first use: the webhook path never needs a database."""
        return session_factory(self.settings)


def services() -> Services:
    found: Services = current_app.extensions["refund_sink"]
    return found

"""The people surface: the read API, reports, flags and OpenAPI, as Flask blueprints that
the app factory (`ingest.create_app`) registers. Views stay thin over `refunds` queries."""

from __future__ import annotations

from flask import Blueprint

from desk import dead_letters_api, flags_api, openapi, refunds_api, reports_api, timeline_api
from desk.console import bp as console_bp

BLUEPRINTS: tuple[Blueprint, ...] = (refunds_api.bp, dead_letters_api.bp, timeline_api.bp,
                                     openapi.bp, reports_api.bp, flags_api.bp, console_bp)

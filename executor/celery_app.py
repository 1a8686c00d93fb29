"""The workers' Celery app. Its configuration is read from `WorkerSettings` when Celery first
needs it (not at import), with the delivery settings of `protocol.messaging`."""

from __future__ import annotations

from typing import Any

from celery import Celery

from executor.config import WorkerSettings
from protocol.messaging import celery_config


def _config() -> dict[str, Any]:
    settings = WorkerSettings()
    return celery_config(settings.broker_url, settings.visibility_timeout_s)


app = Celery("cod", include=["executor.tasks", "executor.worker"])
app.add_defaults(_config)  # a promise: evaluated when the configuration is first read

"""Structured logs: one JSON object per line, with the job id when a line is about one job."""

from __future__ import annotations

import logging

from pythonjsonlogger.json import JsonFormatter


def configure(level: str = "INFO", json_logs: bool = True) -> None:
    handler = logging.StreamHandler()
    if json_logs:
        handler.setFormatter(JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"}))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("web3").setLevel(logging.WARNING)


def job_extra(job_key: str) -> dict[str, dict[str, str]]:
    """`log.info(..., **job_extra(key))` puts `job` as a field of the JSON line."""
    return {"extra": {"job": job_key}}

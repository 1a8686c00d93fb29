"""Prometheus metrics of the bridge (served by `cod bridge --metrics-port`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

JOBS_SEEN = Counter("cod_jobs_seen_total", "JobRequested events recorded")
JOBS_BY_STATE = Gauge("cod_jobs", "Jobs in the ledger by bridge state", ["state"])
LISTENER_LAG = Gauge("cod_listener_lag_blocks", "Confirmed blocks not yet read")
REORGS = Counter("cod_reorgs_total", "Reorgs deeper than the configured confirmations")
QUEUE_LATENCY = Histogram("cod_queue_latency_seconds", "From dispatch to a worker starting it",
                          buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
EXECUTION_TIME = Histogram("cod_execution_seconds", "A job's run on its node, fetch to publish",
                           buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200))
SUBMIT_LATENCY = Histogram("cod_submit_latency_seconds", "From outcome known to confirmed on-chain",
                           buckets=(0.5, 1, 2, 5, 10, 20, 60, 120, 600))
PENDING_TXS = Gauge("cod_pending_transactions", "Transactions sent and not yet confirmed")
REDISPATCHED = Counter("cod_redispatched_total", "Jobs dispatched again", ["why"])
UNDECODABLE_LOGS = Counter("cod_undecodable_logs_total", "JobRequested logs that did not decode")
JOB_ERRORS = Counter("cod_job_errors_total", "Unexpected errors handling one job", ["step"])
STEP_ERRORS = Counter("cod_step_errors_total", "Bridge steps that failed as a whole (outages)",
                      ["step"])


def serve(port: int) -> None:
    start_http_server(port, addr="127.0.0.1")

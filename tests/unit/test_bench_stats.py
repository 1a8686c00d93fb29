"""The benchmarks' pure helpers, on a fabricated timeline (no timing is asserted of anything real)."""

from __future__ import annotations

import math
from datetime import datetime

import pytest

from bench.stats import (
    Throughput,
    headline,
    median_breakdown,
    rate_in_window,
    stage_breakdown,
    table,
    timeline_marks,
    worker_log_times,
)

T = 1_000.0
MARKS = {"sent": T, "request_block": T + 0.6, "confirmed_block": T + 0.6, "requested": T + 0.8,
         "queued": T + 0.85,
         "task_start": T + 0.9, "container_start": T + 1.0, "container_die": T + 1.3,
         "task_end": T + 1.4, "published": T + 1.6, "submitting": T + 1.65,
         "fulfil_block": T + 2.5}


def test_stage_breakdown_of_one_job() -> None:
    stages = stage_breakdown(MARKS)
    assert stages["request inclusion"] == pytest.approx(0.6)
    assert stages["listener lag"] == pytest.approx(0.2)
    assert stages["queue wait"] == pytest.approx(0.05)
    assert stages["container"] == pytest.approx(0.3)
    assert stages["publish"] == pytest.approx(0.1)
    assert stages["collect"] == pytest.approx(0.2)
    assert stages["fulfil inclusion"] == pytest.approx(0.85)
    assert stages["total"] == pytest.approx(2.5)
    # total − both inclusions − the container
    assert stages["overhead"] == pytest.approx(2.5 - 0.6 - 0.85 - 0.3)
    assert sum(v for k, v in stages.items() if k not in ("total", "overhead")) == pytest.approx(2.5)


def test_confirmations_are_the_chains_time_not_the_bridges() -> None:
    marks = {**MARKS, "confirmed_block": T + 1.6, "requested": T + 1.8, "queued": T + 1.85,
             "task_start": T + 1.9, "container_start": T + 2.0, "container_die": T + 2.3,
             "task_end": T + 2.4, "published": T + 2.6, "submitting": T + 2.65,
             "fulfil_block": T + 3.5}
    stages = stage_breakdown(marks)
    assert stages["confirmations"] == pytest.approx(1.0)
    assert stages["listener lag"] == pytest.approx(0.2)
    assert stages["overhead"] == pytest.approx(3.5 - 0.6 - 1.0 - 0.85 - 0.3)
    assert sum(v for k, v in stages.items() if k not in ("total", "overhead")) == pytest.approx(3.5)


def test_missing_marks_leave_stages_out() -> None:
    stages = stage_breakdown({"sent": T, "request_block": T + 1})
    assert stages == {"request inclusion": pytest.approx(1.0)}


def test_median_breakdown_per_stage() -> None:
    jobs = [stage_breakdown({**MARKS, "fulfil_block": T + 2.5 + extra}) for extra in (0, 1, 5)]
    medians = median_breakdown(jobs)
    assert medians["fulfil inclusion"] == pytest.approx(1.85)
    assert medians["container"] == pytest.approx(0.3)


def test_timeline_marks_keep_the_first_of_each_kind() -> None:
    events = [("requested", 1.0), ("queued", 2.0), ("running", 3.0), ("queued", 9.0)]
    assert timeline_marks(events) == {"requested": 1.0, "queued": 2.0, "running": 3.0}


def test_worker_log_times() -> None:
    key = "31337:0x5fbdb2315678afecb367f032d93f642f64180aa3:1"
    log = (f"[2026-11-25 18:22:28,829: INFO/ForkPoolWorker-1] job {key}: starting (attempt 0)\n"
           "[2026-11-25 18:22:29,000: INFO/MainProcess] something else\n"
           f"[2026-11-25 18:22:30,886: INFO/ForkPoolWorker-1] job {key}: completed bafy…\n")
    times = worker_log_times(log)
    start = datetime(2026, 11, 25, 18, 22, 28, 829000).timestamp()
    assert times[key]["task_start"] == pytest.approx(start)
    assert times[key]["task_end"] - times[key]["task_start"] == pytest.approx(2.057)


def test_rates_and_headline() -> None:
    assert rate_in_window([0.5, 1.0, 1.5, 2.0, 9.0], 1.0, 3.0) == pytest.approx(1.5)
    results = [Throughput(1, 1.5, 2.0), Throughput(4, 3.0, 4.0)]
    assert headline(results) == "throughput ratio (cod / docker run): 0.75"
    assert math.isnan(Throughput(2, 1.0, 0.0).ratio)


def test_table() -> None:
    text = table(["a", "b"], [["x", 1.23456], ["y", float("nan")]])
    assert text.splitlines() == ["| a | b |", "|---|---:|", "| x | 1.235 |", "| y | – |"]

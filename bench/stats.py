"""Pure helpers of the benchmarks: medians, ratios, the per-stage breakdown of a job's timeline,
and the markdown tables of the report. No I/O here: `tests/unit/test_bench_stats.py` runs them."""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

# The stages of one end-to-end job, in order, and the two marks each lies between.
STAGES: tuple[tuple[str, str, str], ...] = (
    ("request inclusion", "sent", "request_block"),  # the chain: requestJob mined
    ("confirmations", "request_block", "confirmed_block"),  # the chain: the blocks waited for
    ("listener lag", "confirmed_block", "requested"),  # block seen → job in the ledger
    ("dispatch", "requested", "queued"),  # ledger → Celery task sent
    ("queue wait", "queued", "task_start"),  # Redis → the worker starts the task
    ("input fetch + setup", "task_start", "container_start"),  # fetch, image, volume, create
    ("container", "container_start", "container_die"),  # the work itself
    ("publish", "container_die", "task_end"),  # logs, size check, Kubo add + pin + stat
    ("collect", "task_end", "published"),  # the bridge reads the outcome from the result backend
    ("submit", "published", "submitting"),  # the submitter queues fulfillJob
    ("fulfil inclusion", "submitting", "fulfil_block"),  # the chain: fulfillJob mined
)
CHAIN_STAGES = frozenset({"request inclusion", "confirmations", "fulfil inclusion"})


def median(values: Iterable[float]) -> float:
    data = list(values)
    return statistics.median(data) if data else float("nan")


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")


def stage_breakdown(marks: Mapping[str, float]) -> dict[str, float]:
    """Seconds spent in each stage of one job, from its marks (wall-clock times, seconds since
    the epoch); a stage whose marks are missing is left out. Adds `total` (sent → fulfil block)
    and `overhead` (total minus the chain's stages (inclusions, confirmations) and the container:
    what the bridge and executor add)."""
    out: dict[str, float] = {}
    for name, start, end in STAGES:
        if start in marks and end in marks:
            out[name] = marks[end] - marks[start]
    if "sent" in marks and "fulfil_block" in marks:
        out["total"] = marks["fulfil_block"] - marks["sent"]
        spent_elsewhere = sum(out.get(s, 0.0) for s in (*CHAIN_STAGES, "container"))
        out["overhead"] = out["total"] - spent_elsewhere
    return out


def median_breakdown(jobs: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The median of each stage over jobs (each stage's own median: they need not add up)."""
    names = [s[0] for s in STAGES] + ["total", "overhead"]
    return {name: median(j[name] for j in jobs if name in j) for name in names
            if any(name in j for j in jobs)}


def timeline_marks(events: Iterable[tuple[str, float]]) -> dict[str, float]:
    """Marks from a ledger timeline (`(kind, at)` in order): the first of each kind."""
    marks: dict[str, float] = {}
    for kind, at in events:
        marks.setdefault(kind, at)
    return marks


_CELERY_LINE = re.compile(
    r"^\[(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): \w+/[^\]]+\] job (?P<key>\S+): "
    r"(?P<what>starting|completed|failed)")


def worker_log_times(text: str) -> dict[str, dict[str, float]]:
    """`{job key: {"task_start": t, "task_end": t}}` from a Celery worker's log (local time,
    millisecond resolution); the first start and the last end of each job."""
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        match = _CELERY_LINE.match(line)
        if match is None:
            continue
        when = datetime.strptime(match["time"], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        key = match["key"].rstrip(":")
        marks = out.setdefault(key, {})
        if match["what"] == "starting":
            marks.setdefault("task_start", when)
        else:
            marks["task_end"] = when
    return out


def rate_in_window(times: Iterable[float], start: float, end: float) -> float:
    """Events per second among `times` that fall in `[start, end)`."""
    count = sum(1 for t in times if start <= t < end)
    return ratio(count, end - start)


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A markdown table; floats printed with 3 significant decimals."""
    def cell(value: object) -> str:
        if isinstance(value, float):
            return "–" if value != value else f"{value:.3f}"
        return str(value)

    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


@dataclass(frozen=True)
class Throughput:
    parallelism: int
    cod_jobs_per_s: float
    docker_jobs_per_s: float

    @property
    def ratio(self) -> float:
        return ratio(self.cod_jobs_per_s, self.docker_jobs_per_s)


def headline(results: Sequence[Throughput]) -> str:
    """The report's headline line, at the highest parallelism measured."""
    top = max(results, key=lambda r: r.parallelism)
    return f"throughput ratio (cod / docker run): {top.ratio:.2f}"

"""The ledger on both supported databases (SQLite and PostgreSQL): idempotent recording, atomic
checkpoints, reorg rewind and re-inclusion, migrations."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import inspect

from bridge.ledger import Job, JobState, Ledger, NewJob
from bridge.timeline import EventKind

CHAIN, CONTRACT = 31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def new_job(job_id: int, block: int, tx: str = "") -> NewJob:
    return NewJob(job_id=job_id, requester="0x" + "1" * 40, consumer="0x" + "0" * 40,
                  spec='{"image":"x"}', fee_wei=10**15, deadline=2_000_000_000,
                  block_number=block, block_hash=f"0x{block:064x}",
                  tx_hash=tx or f"0x{job_id:064x}", log_index=0)


def blocks(*numbers: int) -> dict[int, str]:
    return {n: f"0x{n:064x}" for n in numbers}


def test_migrations_create_the_schema_and_are_idempotent(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    Ledger(ledger_url)  # opening again applies nothing new
    tables = set(inspect(ledger.engine).get_table_names())
    assert {"jobs", "attempts", "transactions", "job_events", "checkpoints", "blocks",
            "alembic_version"} <= tables


def test_a_range_read_twice_records_each_job_once(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    assert ledger.record_block_range(CHAIN, CONTRACT, [new_job(1, 5), new_job(2, 7)],
                                     blocks(5, 7, 10), 10) == 2
    assert ledger.record_block_range(CHAIN, CONTRACT, [new_job(1, 5), new_job(2, 7)],
                                     blocks(5, 7, 10), 10) == 0
    jobs = ledger.all_jobs(CHAIN, CONTRACT)
    assert [j.job_id for j in jobs] == [1, 2]
    assert [e.kind for e in ledger.timeline(CHAIN, CONTRACT, 1)] == ["requested"]
    checkpoint = ledger.checkpoint(CHAIN, CONTRACT)
    assert checkpoint is not None
    assert (checkpoint.block_number, checkpoint.block_hash) == (10, f"0x{10:064x}")


def test_rewind_marks_jobs_reorged_and_reinclusion_restores_them(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    ledger.record_block_range(CHAIN, CONTRACT, [new_job(1, 3), new_job(2, 8), new_job(3, 9)],
                              blocks(3, 8, 9, 10), 10)
    job2 = ledger.get(CHAIN, CONTRACT, 2)
    assert job2 is not None
    ledger.mark_dispatched(job2, 1, "k:2:1", "epoch")

    marked = ledger.rewind(CHAIN, CONTRACT, 5, f"0x{5:064x}")

    assert sorted(j.job_id for j in marked) == [2, 3]
    states = {j.job_id: j.state for j in ledger.all_jobs(CHAIN, CONTRACT)}
    assert states == {1: "requested", 2: "reorged", 3: "reorged"}
    checkpoint = ledger.checkpoint(CHAIN, CONTRACT)
    assert checkpoint is not None and checkpoint.block_number == 5
    assert [b.block_number for b in ledger.recent_blocks(CHAIN, CONTRACT)] == [3]

    # job 2's transaction is mined again (new block); job 3's id now belongs to another request
    ledger.record_block_range(CHAIN, CONTRACT,
                              [new_job(2, 7), new_job(3, 7, tx="0x" + "ab" * 32)],
                              blocks(7, 12), 12)
    job2_after = ledger.get(CHAIN, CONTRACT, 2)
    job3_after = ledger.get(CHAIN, CONTRACT, 3)
    assert job2_after is not None and job3_after is not None
    assert (job2_after.state, job2_after.block_number) == ("dispatched", 7)
    assert (job3_after.state, job3_after.tx_hash) == ("requested", "0x" + "ab" * 32)
    assert [e.kind for e in ledger.timeline(CHAIN, CONTRACT, 2)] == [
        "requested", "queued", "reorged", "re-included"]


def test_attempts_are_recorded_per_task(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    ledger.record_block_range(CHAIN, CONTRACT, [new_job(1, 3)], blocks(3), 3)
    job = ledger.get(CHAIN, CONTRACT, 1)
    assert job is not None
    ledger.add_attempt(job, 1, "k:1")
    ledger.add_attempt(job, 2, "k:2")
    ledger.finish_attempt("k:2", node="node-b", duration_s=1.5, exit_code=0, result_cid="bafy",
                          error=None)
    attempts = ledger.attempts(CHAIN, CONTRACT, 1)
    assert [(a.attempt, a.node, a.result_cid, a.duration_s) for a in attempts] == [
        (1, None, None, None), (2, "node-b", "bafy", 1.5)]
    assert attempts[1].finished_at is not None and attempts[0].finished_at is None
    ledger.fail_attempt("k:1", "executor error: boom")
    failed = ledger.attempts(CHAIN, CONTRACT, 1)[0]
    assert (failed.node, failed.error) == (None, "executor error: boom")
    assert failed.finished_at is not None
    ledger.fail_attempt("k:unknown", "ignored")  # an attempt the ledger never had: nothing


# Each transition: what it is called with, the columns it writes, the timeline event it adds.
TRANSITIONS: dict[str, tuple[Callable[[Ledger, Job], None], dict[str, Any],
                             tuple[str, str] | None]] = {
    "note_waiting": (lambda ledger, job: ledger.note_waiting(job, "no node has a GPU"),
                     {}, ("waiting", "no node has a GPU")),
    "mark_started": (lambda ledger, job: ledger.mark_started(job, "node-1", 1234.5),
                     {"node": "node-1", "started_at": 1234.5}, ("running", "on node-1")),
    "mark_executed": (lambda ledger, job: ledger.mark_executed(job, "node-1", "bafy", 3, None,
                                                               "on node-1: exit 3, bafy"),
                      {"state": JobState.EXECUTED, "node": "node-1", "result_cid": "bafy",
                       "exit_code": 3, "reason": None},
                      ("published", "on node-1: exit 3, bafy")),
    "mark_run_failed": (lambda ledger, job: ledger.mark_run_failed(job, "node-1", "image missing"),
                        {"state": JobState.REJECTED, "node": "node-1", "reason": "image missing"},
                        ("rejected", "on node-1: image missing")),
    "mark_rejected": (lambda ledger, job: ledger.mark_rejected(job, "bad spec " + "x" * 2000),
                      {"state": JobState.REJECTED, "reason": ("bad spec " + "x" * 2000)[:1000],
                       "not_before": 0.0},
                      ("rejected", "bad spec " + "x" * 2000)),
    "mark_submitting": (lambda ledger, job: ledger.mark_submitting(job, 7, "fulfillJob"),
                        {"state": JobState.SUBMITTING, "submit_tx_id": 7},
                        ("submitting", "fulfillJob (tx #7)")),
    "mark_settled fulfilled": (
        lambda ledger, job: ledger.mark_settled(job, "0xabc", 12, fulfilled=True),
        {"state": JobState.COMPLETED, "submit_tx": "0xabc"}, ("fulfilled", "tx 0xabc in block 12")),
    "mark_settled failed": (
        lambda ledger, job: ledger.mark_settled(job, "0xdef", 13, fulfilled=False),
        {"state": JobState.FAILED, "submit_tx": "0xdef"},
        ("failed-on-chain", "tx 0xdef in block 13")),
    "mark_submit_retry fulfil": (
        lambda ledger, job: ledger.mark_submit_retry(job, "tx 0x1: reverted", 2, failing=False),
        {"state": JobState.EXECUTED, "submit_attempts": 2}, ("submit-error", "tx 0x1: reverted")),
    "mark_submit_retry fail": (
        lambda ledger, job: ledger.mark_submit_retry(job, "tx 0x2: reverted", 3, failing=True),
        {"state": JobState.REJECTED, "submit_attempts": 3}, ("submit-error", "tx 0x2: reverted")),
    "mark_undeliverable": (
        lambda ledger, job: ledger.mark_undeliverable(job, "could not submit " + "y" * 2000),
        {"state": JobState.REJECTED, "reason": ("could not submit " + "y" * 2000)[:1000],
         "submit_attempts": 0},
        ("submit-error", "could not submit " + "y" * 2000)),
    "mark_abandoned": (lambda ledger, job: ledger.mark_abandoned(job, "failJob cannot be sent"),
                       {"state": JobState.ABANDONED}, ("abandoned", "failJob cannot be sent")),
    "mark_closed": (lambda ledger, job: ledger.mark_closed(job, "ended on-chain: CANCELLED"),
                    {"state": JobState.CLOSED}, ("closed", "ended on-chain: CANCELLED")),
    "mark_closed completed": (
        lambda ledger, job: ledger.mark_closed(job, "on-chain status is COMPLETED",
                                               JobState.COMPLETED),
        {"state": JobState.COMPLETED}, ("closed", "on-chain status is COMPLETED")),
    "defer": (lambda ledger, job: ledger.defer(job, 3600), {}, None),
}


@pytest.mark.parametrize("name", list(TRANSITIONS))
def test_each_transition_writes_its_columns_and_its_event(ledger_url: str, name: str) -> None:
    transition, columns, event = TRANSITIONS[name]
    ledger = Ledger(ledger_url)
    ledger.record_block_range(CHAIN, CONTRACT, [new_job(1, 3)], blocks(3), 3)
    job = ledger.get(CHAIN, CONTRACT, 1)
    assert job is not None
    ledger.mark_dispatched(job, 1, "k:1", "epoch")  # the row has something to overwrite
    before = ledger.get(CHAIN, CONTRACT, 1)
    assert before is not None
    time.sleep(0.01)

    transition(ledger, job)

    stored = ledger.get(CHAIN, CONTRACT, 1)
    assert stored is not None
    columns = {"state": JobState.DISPATCHED, **columns}
    assert {k: getattr(stored, k) for k in columns} == columns
    assert {k: getattr(job, k) for k in columns} == columns  # the caller's copy follows
    unchanged = [c.key for c in Job.__table__.columns
                 if c.key not in columns and c.key not in ("updated_at", "not_before")]
    assert {k: getattr(stored, k) for k in unchanged} == {k: getattr(before, k) for k in unchanged}
    assert stored.updated_at > before.updated_at
    kinds = [(e.kind, e.detail) for e in ledger.timeline(CHAIN, CONTRACT, 1)]
    assert kinds[:2] == [("requested", f"block 3 tx 0x{1:064x}"),
                         ("queued", "attempt 1, task k:1")]
    assert kinds[2:] == ([event] if event else [])
    if name == "defer":
        assert stored.not_before > time.time() + 3000


def test_an_unexpected_error_is_noted_and_backs_the_job_off(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    ledger.record_block_range(CHAIN, CONTRACT, [new_job(1, 3)], blocks(3), 3)
    job = ledger.get(CHAIN, CONTRACT, 1)
    assert job is not None
    assert not ledger.note_error(job, "dispatching", "KeyError: x", max_errors=2)
    assert ledger.note_error(job, "dispatching", "KeyError: y", max_errors=2)
    stored = ledger.get(CHAIN, CONTRACT, 1)
    assert stored is not None and stored.errors == 2 and stored.state == JobState.REQUESTED
    assert stored.not_before > time.time() + 1  # 2 s after the second error
    assert [(e.kind, e.detail) for e in ledger.timeline(CHAIN, CONTRACT, 1)][1:] == [
        ("error", "dispatching: KeyError: x"), ("error", "dispatching: KeyError: y")]


def test_event_kinds_and_states_are_stored_as_their_strings(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    ledger.record_block_range(CHAIN, CONTRACT, [new_job(1, 3)], blocks(3), 3)
    job = ledger.get(CHAIN, CONTRACT, 1)
    assert job is not None
    ledger.add_event(job, EventKind.RE_ROUTED, "node-1 did not start it")
    ledger.mark_abandoned(job, "no way to settle it")
    fresh = Ledger(ledger_url)  # read back from the database, not from any object in memory
    stored = fresh.get(CHAIN, CONTRACT, 1)
    assert stored is not None and type(stored.state) is str and stored.state == "abandoned"
    kinds = [e.kind for e in fresh.timeline(CHAIN, CONTRACT, 1)]
    assert kinds == ["requested", "re-routed", "abandoned"]
    assert all(type(kind) is str for kind in kinds)

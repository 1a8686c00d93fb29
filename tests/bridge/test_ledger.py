"""The ledger on both supported databases (SQLite and PostgreSQL): idempotent recording, atomic
checkpoints, reorg rewind and re-inclusion, migrations."""

from __future__ import annotations

from sqlalchemy import inspect

from bridge.ledger import JobState, Ledger, NewJob

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
    ledger.update(job2, "queued", state=JobState.DISPATCHED)

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
    ledger.finish_attempt("k:2", node="node-b", exit_code=0, result_cid="bafy")
    attempts = ledger.attempts(CHAIN, CONTRACT, 1)
    assert [(a.attempt, a.node, a.result_cid) for a in attempts] == [
        (1, None, None), (2, "node-b", "bafy")]
    assert attempts[1].finished_at is not None and attempts[0].finished_at is None

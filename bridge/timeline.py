"""The vocabulary of a job's life in the bridge: the states it moves through (`JobState`) and the
kinds of event its timeline records (`EventKind`, what `cod job describe` shows as bridge events).

Both are stored as their string values in the ledger (`jobs.state`, `job_events.kind`). This module
imports nothing else of the bridge, so the read side (`cod/`) can name a state or an event without
the ledger's database machinery.
"""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    """Where a job is in the bridge (the chain's own status is separate)."""

    REQUESTED = "requested"  # seen on-chain, not yet claimed (or held by another operator)
    CLAIMING = "claiming"  # our claimJob sent, awaiting confirmation (v2)
    CLAIMED = "claimed"  # we hold the job's lease: to be dispatched (v2)
    DISPATCHED = "dispatched"  # handed to Celery
    EXECUTED = "executed"  # outcome known, result to submit
    REJECTED = "rejected"  # to be failed on-chain (bad spec, image missing, …)
    SUBMITTING = "submitting"  # fulfillJob/failJob sent, awaiting confirmation
    # replicated jobs (replicas > 1) after `executed`: commit → reveal → finalize (bridge.replication)
    COMMITTING = "committing"  # commitResult sent (the salt is in the ledger), awaiting confirmation
    COMMITTED = "committed"  # our commitment is on-chain: waiting for the reveal phase
    REVEALING = "revealing"  # revealResult sent, awaiting confirmation
    REVEALED = "revealed"  # our answer is on-chain: waiting to finalize (payouts, slashing)
    FINALIZING = "finalizing"  # finalize sent, awaiting confirmation
    COMPLETED = "completed"  # fulfillJob confirmed
    FAILED = "failed"  # failJob confirmed
    CLOSED = "closed"  # the chain ended it without us (cancelled, or fulfilled by another oracle)
    REORGED = "reorged"  # its request vanished in a chain reorganisation
    ABANDONED = "abandoned"  # no transaction could settle it: the requester cancels after the deadline


TERMINAL = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CLOSED, JobState.REORGED,
                       JobState.ABANDONED})
IN_FLIGHT = frozenset({JobState.REQUESTED, JobState.CLAIMING, JobState.CLAIMED,
                       JobState.DISPATCHED, JobState.EXECUTED, JobState.REJECTED,
                       JobState.SUBMITTING, JobState.COMMITTING, JobState.COMMITTED,
                       JobState.REVEALING, JobState.REVEALED, JobState.FINALIZING})
REPLICATING = frozenset({JobState.COMMITTING, JobState.COMMITTED, JobState.REVEALING,
                         JobState.REVEALED, JobState.FINALIZING})


class EventKind(StrEnum):
    """One line of a job's timeline (`job_events.kind`)."""

    REQUESTED = "requested"  # the listener recorded the request
    RE_INCLUDED = "re-included"  # a reorged request came back on the canonical chain
    REORGED = "reorged"  # its block left the canonical chain
    WAITING = "waiting"  # no live node can serve it yet
    CLAIMING = "claiming"  # claimJob recorded with the transaction manager
    CLAIMED = "claimed"  # our claim is confirmed, until its lease end
    HELD_ELSEWHERE = "held-elsewhere"  # another operator holds a live lease: looked at after it
    CLAIM_LOST = "claim-lost"  # our claim did not go through (a race): backed off
    QUEUED = "queued"  # an attempt was sent to Celery
    RE_ROUTED = "re-routed"  # the node holding its data did not start it: sent to any node
    REDISPATCH = "redispatch"  # the reconciler sends it again (broker lost it, stalled)
    RUNNING = "running"  # a node started the current attempt
    ATTESTED = "attested"  # the outcome is signed by a registered node
    UNTRUSTED_RESULT = "untrusted-result"  # an outcome without a valid signature: run again
    EXECUTOR_ERROR = "executor-error"  # the task crashed: run again
    PUBLISHED = "published"  # the result is on IPFS: to be fulfilled
    REJECTED = "rejected"  # to be failed on-chain, with the reason
    SUBMITTING = "submitting"  # fulfillJob/failJob recorded with the transaction manager
    SUBMIT_ERROR = "submit-error"  # that transaction failed: retried, or the job failed instead
    FULFILLED = "fulfilled"  # fulfillJob confirmed
    COMMITTING = "committing"  # commitResult recorded with the transaction manager (replicas > 1)
    COMMITTED = "committed"  # our commitment is confirmed
    REVEALING = "revealing"  # revealResult recorded (the reveal phase is open, or may open)
    REVEALED = "revealed"  # our reveal is confirmed (the answer it opened)
    FINALIZING = "finalizing"  # finalize recorded (payouts and slashing)
    AGREED = "agreed"  # the job completed with the answer we revealed
    OUTVOTED = "outvoted"  # the job completed with another answer, or failed for disagreement
    FAILED_ON_CHAIN = "failed-on-chain"  # failJob confirmed
    CLOSED = "closed"  # the chain ended it without us
    ABANDONED = "abandoned"  # no transaction can settle it
    ERROR = "error"  # an unexpected error while a step handled it (it is backed off)


SETTLED = frozenset({EventKind.FULFILLED, EventKind.FAILED_ON_CHAIN, EventKind.CLOSED,
                     EventKind.AGREED, EventKind.OUTVOTED})
"""Events recording that the chain has ended the job (the chain's outcome comes right before)."""

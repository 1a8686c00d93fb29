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

    REQUESTED = "requested"  # seen on-chain, not yet dispatched
    DISPATCHED = "dispatched"  # handed to Celery
    EXECUTED = "executed"  # outcome known, result to submit
    REJECTED = "rejected"  # to be failed on-chain (bad spec, image missing, …)
    SUBMITTING = "submitting"  # fulfillJob/failJob sent, awaiting confirmation
    COMPLETED = "completed"  # fulfillJob confirmed
    FAILED = "failed"  # failJob confirmed
    CLOSED = "closed"  # the chain ended it without us (cancelled, or fulfilled by another oracle)
    REORGED = "reorged"  # its request vanished in a chain reorganisation
    ABANDONED = "abandoned"  # no transaction could settle it: the requester cancels after the deadline


TERMINAL = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CLOSED, JobState.REORGED,
                       JobState.ABANDONED})
IN_FLIGHT = frozenset({JobState.REQUESTED, JobState.DISPATCHED, JobState.EXECUTED,
                       JobState.REJECTED, JobState.SUBMITTING})


class EventKind(StrEnum):
    """One line of a job's timeline (`job_events.kind`)."""

    REQUESTED = "requested"  # the listener recorded the request
    RE_INCLUDED = "re-included"  # a reorged request came back on the canonical chain
    REORGED = "reorged"  # its block left the canonical chain
    WAITING = "waiting"  # no live node can serve it yet
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
    FAILED_ON_CHAIN = "failed-on-chain"  # failJob confirmed
    CLOSED = "closed"  # the chain ended it without us
    ABANDONED = "abandoned"  # no transaction can settle it
    ERROR = "error"  # an unexpected error while a step handled it (it is backed off)


SETTLED = frozenset({EventKind.FULFILLED, EventKind.FAILED_ON_CHAIN, EventKind.CLOSED})
"""Events recording that the chain has ended the job (the chain's outcome comes right before)."""

"""What the bridge and the compute nodes agree on, and nothing else: the job spec and its engine
and source registries, the outcome a node returns, task and queue names, the Redis key layout,
node heartbeats, signatures, the settings base and the Kubo client.

It imports neither `bridge` nor `executor` (tests/unit/test_layout.py checks it)."""

"""The Redis key layout the bridge and the workers share (besides Celery's own keys).

- `cod:node:<node id>`: a worker's `NodeInfo` (JSON), written every heartbeat and expiring after
  three; read by the bridge and `cod node list`.
- `cod:data:<node id>`: the CIDs the node's Kubo holds and their sizes, written with each
  heartbeat; read by the bridge's placement.
- `cod:superseded:<task id>`: set by the bridge when it re-routes a task; a worker that still
  receives it skips it.
- `cod:cache:<key>`: signed memo-cache entries, written and read by workers (`executor.cache`).
- `cod:broker-epoch`: the bridge's marker that the broker kept its data (`bridge.dispatcher`).
"""

NODE_PREFIX = "cod:node:"
DATA_PREFIX = "cod:data:"
SUPERSEDED_PREFIX = "cod:superseded:"  # a task the bridge re-routed: whoever gets it skips it
SUPERSEDED_TTL_S = 7 * 24 * 3600

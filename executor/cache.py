"""Memoisation: a job identical to one that already succeeded returns the earlier result CID.

Identical means the same engine, image *by digest* (Docker image id; a WASM module's content hash),
entrypoint, environment, working directory, inputs *by content* (IPFS path, or the sha256 of what a
URL or inline input delivered), outputs, resources, network and timeout. Only clean successes are
remembered (exit code 0, no limit hit). A spec with `"cache": false` always runs. The index lives in
Redis (the broker) so every node shares it; the result itself stays on IPFS, and is checked to be
retrievable before it is reused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import redis

from executor.spec import JobSpec

KEY_PREFIX = "cod:cache:"
CACHE_TTL_S = 30 * 24 * 3600


@dataclass(frozen=True)
class CachedResult:
    result_cid: str
    exit_code: int
    node: str


def cache_key(spec: JobSpec, image_id: str, input_ids: list[str]) -> str:
    """The job's identity for memoisation (a sha256 hex digest)."""
    identity = {
        "engine": spec.engine,
        "image": image_id,
        "entrypoint": spec.entrypoint,
        "env": dict(sorted(spec.env.items())),
        "workdir": spec.workdir,
        "inputs": [[content, source.target] for content, source in zip(input_ids, spec.inputs,
                                                                        strict=True)],
        "outputs": [[o.name, o.path] for o in spec.outputs],
        "resources": spec.resources.model_dump(),
        "network": spec.network,
        "timeout": spec.timeout,
    }
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class ResultCache:
    def __init__(self, redis_url: str, ttl_s: int = CACHE_TTL_S) -> None:
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
        self._ttl = ttl_s

    def get(self, key: str) -> CachedResult | None:
        value = self._redis.get(KEY_PREFIX + key)
        return None if value is None else CachedResult(**json.loads(value))

    def put(self, key: str, result: CachedResult) -> None:
        self._redis.set(KEY_PREFIX + key, json.dumps(asdict(result)), ex=self._ttl)

    def forget(self, key: str) -> None:
        self._redis.delete(KEY_PREFIX + key)

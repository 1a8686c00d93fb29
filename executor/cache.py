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
import logging
from dataclasses import asdict, dataclass

import redis

from executor.config import WorkerSettings
from protocol.attestation import NodeIdentity, cache_entry_signer, sign_cache_entry
from protocol.spec import JobSpec

log = logging.getLogger(__name__)

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
    """The index in Redis. Every entry carries its writer's node-key signature over (key, CID,
    exit code, node); an entry not signed by a `trusted` address (someone else with Redis access)
    is ignored, so the job runs."""

    def __init__(self, redis_url: str, identity: NodeIdentity, trusted: frozenset[str],
                 ttl_s: int = CACHE_TTL_S) -> None:
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
        self._ttl = ttl_s
        self._identity = identity
        self._trusted = frozenset(a.lower() for a in trusted)

    @classmethod
    def for_node(cls, settings: WorkerSettings) -> ResultCache:
        identity = settings.node_identity()
        return cls(settings.broker_url, identity, settings.trusted_cache_writers(identity.address))

    def get(self, key: str) -> CachedResult | None:
        value = self._redis.get(KEY_PREFIX + key)
        if value is None:
            return None
        try:
            entry = json.loads(value)
            result = CachedResult(str(entry["result_cid"]), int(entry["exit_code"]), str(entry["node"]))
            signature = str(entry["signature"])
        except (ValueError, TypeError, KeyError):
            log.warning("memo-cache entry %s is malformed: ignored", key)
            return None
        signer = cache_entry_signer(key, result.result_cid, result.exit_code, result.node, signature)
        if signer is None or signer.lower() not in self._trusted:
            log.warning("memo-cache entry %s is not signed by a trusted node (signer %s): ignored",
                        key, signer)
            return None
        return result

    def put(self, key: str, result: CachedResult) -> None:
        signature = sign_cache_entry(self._identity, key, result.result_cid, result.exit_code,
                                     result.node)
        self._redis.set(KEY_PREFIX + key, json.dumps({**asdict(result), "signature": signature}),
                        ex=self._ttl)

    def forget(self, key: str) -> None:
        self._redis.delete(KEY_PREFIX + key)

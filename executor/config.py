"""Worker settings: `COD_*` environment variables, optionally a TOML file named by `COD_CONFIG`.

Both extend `protocol.settings.CodSettings`, as the bridge's settings (`bridge.config`) do.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, SecretStr

from protocol.queues import node_queue, queues_for_node
from protocol.settings import CodSettings

if TYPE_CHECKING:
    from protocol.attestation import NodeIdentity


class _CapacitySettings(CodSettings):
    """What a node advertises: detected, unless the operator sets a smaller figure."""

    cpus: float | None = None
    memory: str | None = None
    gpus: int | None = None
    allow_network: bool = False  # run jobs that ask for `network: full`


class WorkerSettings(_CapacitySettings):
    broker_url: str = "redis://127.0.0.1:6379/0"
    ipfs_api: str = "http://127.0.0.1:5001"
    node_id: str = Field(default_factory=socket.gethostname)
    work_dir: Path = Path("/var/lib/cod/work")
    pull_policy: str = "if-not-present"
    # Images a job may name: comma-separated name patterns (`cod/*`) or digests (`sha256:…`).
    # Empty: any image the engine has or can pull (see docs/security.md).
    image_allow: str = ""
    # Kubo keeps looking for a CID that nobody serves; give up on an input after this long.
    input_fetch_timeout_s: int = 120
    # The Celery queues to consume (comma-separated); empty: those this node's capacity can serve,
    # detected when the worker starts. The node's own queue (jobs sent to the data it holds,
    # `cod.node.<node id>`) is always added.
    queues: str = ""
    # Publish the CIDs this node's Kubo holds, for locality routing (see executor.locality).
    publish_holdings: bool = True
    # The node's cache of fetched IPFS inputs (executor.input_cache), shared by its workers: its
    # size on disk ("0": no cache) and place (default `<work_dir>/input-cache`).
    input_cache_size: str = "20Gi"
    input_cache_dir: Path | None = None
    # Ready result volumes each worker process keeps for reuse (executor.volume_pool; 0: none).
    result_volume_pool: int = 4

    def consumed_queues(self) -> list[str]:
        queues = [q for q in self.queues.split(",") if q] or self.capacity_queues()
        return [*queues, node_queue(self.node_id)]

    def capacity_queues(self) -> list[str]:
        """The queues this node's capacity can serve (detects it: may run `nvidia-smi`)."""
        from executor.capacity import detect_capacity

        capacity = detect_capacity(self.cpus, self.memory, self.gpus)
        return queues_for_node(capacity, allow_network=self.allow_network)
    # Sandbox limits the node applies to every container.
    pids_limit: int = 256
    log_limit: str = "10Mi"  # per stream (stdout, stderr); the rest is dropped and flagged
    max_output_size: str = "10Gi"  # output cap when the spec sets no `resources.disk`
    tmp_size: str = "64Mi"  # the container's writable /tmp (its root filesystem is read-only)
    # URL inputs
    url_max_size: str = "2Gi"
    url_timeout_s: int = 300
    # Kubo outages: retry a publish in place this long before handing the job back to Celery.
    publish_retry_s: int = 120
    # Redelivery of a job whose worker died (see docs/operators.md, "Delivery settings").
    visibility_timeout_s: int = 300
    heartbeat_interval_s: float = 5.0
    # What a job may bring (issue 11). Inputs: all of a job's inputs together, at most this (and
    # its `resources.disk`), counted as they stream; and this many files and directories.
    max_input_size: str = "10Gi"
    max_input_files: int = 100_000
    # Outputs: files and directories of all outputs together, and nesting depth.
    max_output_files: int = 100_000
    max_output_depth: int = 256
    # The uid:gid containers run as ("" = the image's own user, often root).
    container_user: str = "65534:65534"
    # The size-capped tmpfs mounted over each of an image's VOLUME paths.
    image_volume_size: str = "64Mi"
    # WASM modules: size cap, and the wall-clock bound on compiling one (in a child process).
    wasm_max_module_size: str = "64Mi"
    wasm_compile_timeout_s: float = 60.0
    # Results this node published are unpinned this long after (0: kept for ever); the record of
    # what it published: a SQLite file, by default `<work_dir>/published.sqlite`.
    result_retention_s: float = 7 * 24 * 3600
    result_index: Path | None = None
    # A heartbeat carries at most this many of the node's holdings (the largest), whatever its pins.
    max_heartbeat_holdings: int = 1000
    # The node's signing key (hex secp256k1): its results and memo-cache entries are signed with it,
    # and the bridge counts only results signed by a registered address. Unset: the key kept in
    # `node_key_file` (default `<work_dir>/../node.key`), created (mode 0600) on first start.
    node_key: SecretStr | None = None
    node_key_file: Path | None = None
    # Comma-separated addresses whose memo-cache entries this node reuses (besides its own).
    node_addresses: str = ""

    def node_identity(self) -> NodeIdentity:
        from protocol.attestation import NodeIdentity, load_or_create_key

        if self.node_key is not None:
            return NodeIdentity.from_key(self.node_key.get_secret_value())
        return load_or_create_key(self.node_key_file or self.work_dir.parent / "node.key")

    def trusted_cache_writers(self, own_address: str) -> frozenset[str]:
        from protocol.attestation import parse_addresses

        return parse_addresses(self.node_addresses) | {own_address}  # a node trusts itself
    # Egress (issue 11): what URL fetches made for a job (inputs, WASM modules) may reach. Loopback,
    # link-local, private, shared, multicast and this node's own addresses are refused unless listed
    # here (comma-separated CIDRs, addresses or host names, `*.example.org` for subdomains).
    egress_allow: str = ""
    # More of this node's services (URLs or host:port), refused even if allow-listed; the IPFS API
    # and the broker are always refused.
    egress_deny: str = ""
    # URL fetches: `url_timeout_s` is the wall-clock deadline of a whole download (redirects
    # included); this bounds each socket read or write, so a stalled server is dropped sooner.
    url_read_timeout_s: float = 30.0

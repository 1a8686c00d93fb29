"""Node keys: a compute node signs what it hands back, so Redis access alone cannot forge it.

Anyone who can write to Redis could otherwise settle a job with a CID of their choice (by writing
the Celery result backend) or plant a memo-cache entry. Each node holds a secp256k1 key (an
Ethereum key, `eth_account`); the bridge counts a result only when its signature recovers to an
address the operator registered (`node_addresses`), and a node reuses a cache entry only when it
was signed by a node it trusts. The signed text binds the task id (job key and attempt), so a
genuine signature cannot be replayed onto another job or attempt, and the spec the node ran, so a
task queued by hand under a real job's task id (Redis access lets anyone enqueue) with another spec
yields a signature the bridge refuses.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils.address import is_address, to_checksum_address

log = logging.getLogger(__name__)

SIGNATURE_FIELD = "signature"  # the outcome dict's field that carries the signature
_OUTCOME_DOMAIN = "cod-outcome-v1"
_CACHE_DOMAIN = "cod-cache-entry-v1"


@dataclass(frozen=True)
class NodeIdentity:
    """A node's signing key (hex) and its address, the name an operator registers."""

    key: str = field(repr=False)
    address: str

    @classmethod
    def from_key(cls, key: str) -> NodeIdentity:
        try:
            account = Account.from_key(key)
        except Exception:  # several types for a malformed key; never echo the key itself
            raise ValueError("the node key is not a valid secp256k1 private key (hex)") from None
        return cls(key=str(account.key.to_0x_hex()), address=str(account.address))


def load_or_create_key(path: Path) -> NodeIdentity:
    """The key kept in `path`; created (mode 0600) if there is none. Creation is atomic: two
    processes starting at once end up with the same key."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(str(Account.create().key.to_0x_hex()) + "\n")
        try:
            os.link(temp, path)  # fails if another process created it first: keep theirs
        except FileExistsError:
            pass
        finally:
            temp.unlink()
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ValueError(f"node key file {path} is readable by others (mode {mode:o}): chmod 600 it")
    return NodeIdentity.from_key(path.read_text().strip())


def parse_addresses(text: str) -> frozenset[str]:
    """Comma-separated addresses (any case) → checksummed; a malformed one is refused by name."""
    addresses = set()
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if not is_address(item):
            raise ValueError(f"not an address in node_addresses: {item!r}")
        addresses.add(to_checksum_address(item))
    return frozenset(addresses)


# -- results -------------------------------------------------------------------------------------
def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def outcome_text(task_id: str, fields: Mapping[str, Any], spec: str) -> str:
    """What a node signs for an outcome: the task id, a hash of the spec it ran, the status, result
    CID, exit code, small result, a hash of the reason and a hash of every other field (node,
    duration, cached, …), so nothing in the outcome can be changed without breaking the signature."""
    rest = {k: v for k, v in fields.items() if k != SIGNATURE_FIELD}
    reason = fields.get("reason")
    bound = {
        "task": task_id,
        "spec_sha256": _sha256(spec),
        "status": fields.get("status"),
        "cid": fields.get("result_cid"),
        "exit": fields.get("exit_code"),
        "result": fields.get("result", ""),  # the small result (hex) delivered on-chain
        "reason_sha256": _sha256(reason if isinstance(reason, str) else _canonical(reason)),
        # the JSON round trip the result backend applies (tuples become lists, …) changes no hash
        "fields_sha256": _sha256(_canonical(json.loads(_canonical(rest)))),
    }
    return f"{_OUTCOME_DOMAIN}\n{_canonical(bound)}"


def sign_outcome(key: str, task_id: str, outcome_fields: Mapping[str, Any], *, spec: str) -> str:
    """The signature (0x hex) of `key` over the outcome of task `task_id`, which ran `spec`."""
    message = encode_defunct(text=outcome_text(task_id, outcome_fields, spec))
    return str(Account.sign_message(message, private_key=key).signature.to_0x_hex())


@dataclass(frozen=True)
class Verdict:
    signer: str | None  # the registered address that signed it; None: not trusted
    reason: str  # why it is not trusted ("" when it is)
    fields: dict[str, Any]  # the outcome without its signature


def check_outcome(task_id: str, outcome: object, trusted: frozenset[str] | set[str], *,
                  spec: str) -> Verdict:
    """Whether `outcome` (as read from the result backend) was signed for `task_id` running `spec`
    by one of the `trusted` addresses, and if not, why."""
    if not isinstance(outcome, dict):
        return Verdict(None, f"the result is not an outcome ({type(outcome).__name__})", {})
    fields = {k: v for k, v in outcome.items() if k != SIGNATURE_FIELD}
    signature = outcome.get(SIGNATURE_FIELD)
    if not isinstance(signature, str) or not signature:
        return Verdict(None, "the result is not signed", fields)
    if not trusted:
        return Verdict(None, "no node addresses are registered with this bridge "
                             "(set COD_NODE_ADDRESSES)", fields)
    try:
        signer = str(Account.recover_message(
            encode_defunct(text=outcome_text(task_id, fields, spec)), signature=signature))
    except Exception:  # malformed signature bytes: eth_keys raises several types
        return Verdict(None, "the result's signature is malformed", fields)
    if signer.lower() not in {a.lower() for a in trusted}:
        # a tampered outcome recovers to some random address: the same answer as a stranger's key
        return Verdict(None, f"the result is signed by {signer}, which is not a registered node "
                             "(or the result, or the spec it ran, is not what was signed)", fields)
    return Verdict(signer, "", fields)


def verify_outcome(task_id: str, outcome_dict: object, trusted: frozenset[str] | set[str], *,
                   spec: str) -> str | None:
    """The trusted address that signed `outcome_dict` for `task_id` running `spec`, else None."""
    return check_outcome(task_id, outcome_dict, trusted, spec=spec).signer


# -- memo-cache entries --------------------------------------------------------------------------
def cache_entry_text(key: str, result_cid: str, exit_code: int, node: str) -> str:
    return f"{_CACHE_DOMAIN}\n{_canonical([key, result_cid, exit_code, node])}"


def sign_cache_entry(identity: NodeIdentity, key: str, result_cid: str, exit_code: int,
                     node: str) -> str:
    message = encode_defunct(text=cache_entry_text(key, result_cid, exit_code, node))
    return str(Account.sign_message(message, private_key=identity.key).signature.to_0x_hex())


def cache_entry_signer(key: str, result_cid: str, exit_code: int, node: str, signature: str
                       ) -> str | None:
    """The address that signed this cache entry, or None if the signature is malformed."""
    try:
        return str(Account.recover_message(
            encode_defunct(text=cache_entry_text(key, result_cid, exit_code, node)),
            signature=signature))
    except Exception:  # malformed signature bytes
        return None

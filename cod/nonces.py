"""One key's nonce, shared by every `cod` process on this machine.

`cod docker run … &` twenty times from one key used to start twenty senders that each read the
same pending nonce: most were refused (nonce too low, replacement underpriced, already imported).
Here a process takes an exclusive file lock per (chain, address) around choosing the nonce and
sending; inside it the node's pending count already includes every transaction sent before, so the
next one gets the next nonce. Only the send is serialised (a few ms): the receipts are awaited
outside the lock, so the transactions are mined together. A refusal that still says the nonce is
taken (another program sent from the key) is retried with a fresh count.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from bridge.chain import TxSender

if TYPE_CHECKING:
    from web3.types import TxParams, TxReceipt

# what a node answers when the nonce was already used (geth, anvil, reth, nethermind)
_TAKEN = ("nonce too low", "already known", "already imported", "replacement transaction "
          "underpriced", "known transaction", "nonce has already been used")
SEND_ATTEMPTS = 5


def state_dir() -> Path:
    """Where cod keeps per-user state: `$XDG_STATE_HOME/cod`, else `~/.local/state/cod`."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "cod"


@contextmanager
def key_lock(chain_id: int, address: str, directory: Path | None = None) -> Iterator[Path]:
    """Hold the machine-wide lock of `address` on chain `chain_id` (released if the process dies)."""
    folder = (directory or state_dir()) / "nonces"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home: every process falls back to the same temporary folder
        folder = Path(tempfile.gettempdir()) / f"cod-nonces-{os.getuid()}"
        folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / f"{chain_id}-{address.lower()}.lock"
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield path
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def nonce_taken(exc: BaseException) -> bool:
    """Whether a refused send means only that its nonce was already used."""
    text = str(exc).lower()
    return any(phrase in text for phrase in _TAKEN)


class SharedNonceSender(TxSender):
    """A `TxSender` whose nonce is chosen under the key's machine-wide lock, from the node's
    pending count (never from this process's memory: other processes send from the key too)."""

    _chain_id: int | None = None

    def send(self, tx: TxParams, wait: bool = True) -> TxReceipt | str:
        if self._chain_id is None:
            self._chain_id = int(self.w3.eth.chain_id)
        tx = dict(tx)  # type: ignore[assignment]
        tx.setdefault("chainId", self._chain_id)
        with key_lock(self._chain_id, self.address):
            for attempt in range(SEND_ATTEMPTS):
                self._nonce = None  # TxSender re-reads the pending count
                try:
                    tx_hash = super().send(tx, wait=False)
                    break
                except Exception as exc:
                    if attempt + 1 == SEND_ATTEMPTS or not nonce_taken(exc):
                        raise
        assert isinstance(tx_hash, str)
        if not wait:
            return tx_hash
        return self.w3.eth.wait_for_transaction_receipt(tx_hash,  # type: ignore[arg-type]
                                                        timeout=self._receipt_timeout)

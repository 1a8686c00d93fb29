"""An operator's record on JobManager v2: register with a stake, add stake, exit, withdraw.

Open mode: any account may register by bonding at least `minStake`; the bridge's key must be a
registered, active operator with enough stake, or every claim it makes reverts. These calls are
sent directly (`TxSender`, waiting for the receipt), not through the bridge's `TxManager`: they
are an operator's own one-off actions (`cod operator …`, the dev stack), not the daemon's work.
"""

from __future__ import annotations

from dataclasses import dataclass

from web3.contract import Contract

from bridge.chain import OperatorView, TxSender, read_operator


@dataclass(frozen=True)
class OperatorStatus:
    """What `cod operator status` shows: the record, the contract's bond terms, and a verdict."""

    address: str
    record: OperatorView
    min_stake: int
    unbonding_delay: int
    withdrawable: int  # fees earned, refunds and slashing shares the account can withdraw now
    max_penalty: int = 0  # the larger of the contract's lapse and disagreement penalties
    operators: int = 0  # how many accounts ever registered (`operatorCount`: indexes 1..n)

    @property
    def registered(self) -> bool:
        return self.record.index != 0

    @property
    def can_claim(self) -> bool:
        return (self.registered and self.record.exit_at == 0
                and self.record.stake >= self.min_stake)

    @property
    def low(self) -> bool:
        """One more slash would take the stake below the minimum (and claims would stop)."""
        return self.registered and self.record.stake - self.max_penalty < self.min_stake

    def verdict(self) -> str:
        if not self.registered:
            return "not registered: `cod operator register` bonds a stake"
        if self.record.exit_at:
            return f"exiting: no new claims; the stake can be withdrawn from {self.record.exit_at}"
        if self.record.stake < self.min_stake:
            return (f"stake {self.record.stake} wei is below the minimum {self.min_stake} wei "
                    "(slashed?): no claims until stake is added")
        return "active: may claim jobs"


def status(contract: Contract, account: str) -> OperatorStatus:
    return OperatorStatus(
        address=account, record=read_operator(contract, account),
        min_stake=int(contract.functions.minStake().call()),
        unbonding_delay=int(contract.functions.unbondingDelay().call()),
        withdrawable=int(contract.functions.withdrawable(account).call()),
        max_penalty=max(int(contract.functions.lapsePenalty().call()),
                        int(contract.functions.disagreePenalty().call())),
        operators=int(contract.functions.operatorCount().call()))


def register(sender: TxSender, contract: Contract, stake: int | None = None) -> OperatorStatus:
    """Register `sender` as an operator bonding `stake` wei (default: the contract's minimum); an
    account already registered and active adds `stake` instead (none: nothing is sent)."""
    current = status(contract, sender.address)
    if current.registered and current.record.exit_at == 0:
        if stake:
            sender.transact(contract.functions.addStake(), value=stake)
    else:
        sender.transact(contract.functions.registerOperator(),
                        value=current.min_stake if stake is None else stake)
    return status(contract, sender.address)


def request_exit(sender: TxSender, contract: Contract) -> OperatorStatus:
    """Start `sender`'s exit: no new claims from now; the stake can be withdrawn after the
    contract's unbonding delay (`withdraw_stake`)."""
    sender.transact(contract.functions.requestExit())
    return status(contract, sender.address)


def withdraw_stake(sender: TxSender, contract: Contract) -> OperatorStatus:
    """Withdraw `sender`'s whole stake, once its unbonding delay has elapsed."""
    sender.transact(contract.functions.withdrawStake())
    return status(contract, sender.address)

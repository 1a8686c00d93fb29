"""`cod operator register | status | exit | withdraw`: the bridge key's record on JobManager v2.

The key is the bridge's own (`COD_ORACLE_KEY`): that is the account that claims and settles jobs,
so it is the one that must bond a stake. `status` may look at any account (`--address`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from cod.cli.common import load_settings
from cod.cli.output import (
    ENVIRONMENT,
    REFUSED,
    USAGE,
    OutputFormat,
    console,
    fail,
    render,
)

if TYPE_CHECKING:  # web3 is imported when a command runs, not when `cod` starts
    from web3.contract import Contract

    from bridge.chain import TxSender
    from bridge.config import BridgeSettings
    from bridge.operators import OperatorStatus

WEI_PER_ETH = 10**18
Output = Annotated[OutputFormat, typer.Option("--output", help="table, json or yaml.")]
T = TypeVar("T")


def operator_register(
    stake: Annotated[int | None, typer.Option(
        help="Stake to bond, in wei (default: the contract's minimum). An active operator adds "
             "it to its stake instead.")] = None,
    output: Output = OutputFormat.table,
) -> None:
    """Register the bridge's key (COD_ORACLE_KEY) as an operator, bonding a stake."""
    from bridge import operators

    with _operator() as (sender, contract):
        _show(_refused_as_cli(lambda: operators.register(sender, contract, stake)), output)


def operator_status(
    address: Annotated[str | None, typer.Option(
        help="Account to look at (default: the bridge's key, COD_ORACLE_KEY).")] = None,
    output: Output = OutputFormat.table,
) -> None:
    """Show an operator's stake, exit time, earnings and whether it may claim jobs."""
    from web3 import Web3

    from bridge import operators
    from bridge.chain import connect, job_manager

    settings = load_settings()
    if address is None:
        address = _sender(settings).address
    elif not Web3.is_address(address):
        fail(f"not an address: {address}", USAGE)
    w3 = connect(settings.rpc_url)
    contract = job_manager(w3, settings.require_contract())
    _show(operators.status(contract, Web3.to_checksum_address(address)), output)


def operator_exit(
    output: Output = OutputFormat.table,
) -> None:
    """Start the bridge key's exit: no new claims; `cod operator withdraw` after the delay.

    The delay is the contract's unbonding delay; the stake stays slashable until withdrawn."""
    from bridge import operators

    with _operator() as (sender, contract):
        _show(_refused_as_cli(lambda: operators.request_exit(sender, contract)), output)


def operator_withdraw(
    output: Output = OutputFormat.table,
) -> None:
    """Withdraw the bridge key's whole stake, once its unbonding delay has elapsed."""
    from bridge import operators

    with _operator() as (sender, contract):
        _show(_refused_as_cli(lambda: operators.withdraw_stake(sender, contract)), output)


# -- helpers ---------------------------------------------------------------------------------------


@contextmanager
def _operator() -> Iterator[tuple[TxSender, Contract]]:
    """(TxSender of the bridge's key, the JobManager contract) from the settings."""
    from bridge.chain import job_manager

    settings = load_settings()
    sender = _sender(settings)
    yield sender, job_manager(sender.w3, settings.require_contract())


def _sender(settings: BridgeSettings) -> TxSender:
    from bridge.chain import TxSender, connect

    if settings.oracle_key is None:
        fail("no operator key: set COD_ORACLE_KEY to the bridge's key", ENVIRONMENT)
    return TxSender(connect(settings.rpc_url), settings.require_oracle_key(),
                    max_fee_gwei=settings.max_fee_gwei,
                    priority_fee_gwei=settings.priority_fee_gwei,
                    receipt_timeout_s=settings.receipt_timeout_s)


def _refused_as_cli(call: Callable[[], T]) -> T:
    """A call the contract refuses (it would revert) is exit code 4, with the chain's reason."""
    from web3.exceptions import ContractLogicError

    from bridge.chain import ChainError

    try:
        return call()
    except (ContractLogicError, ChainError) as exc:
        fail(f"the contract refused: {exc}", REFUSED)


def _show(status: OperatorStatus, output: OutputFormat) -> None:
    record = status.record
    data = {"address": status.address, "registered": status.registered,
            "can_claim": status.can_claim, "index": record.index, "stake_wei": record.stake,
            "min_stake_wei": status.min_stake, "exit_at": record.exit_at or None,
            "unbonding_delay_s": status.unbonding_delay, "earned_wei": record.earned,
            "withdrawable_wei": status.withdrawable, "verdict": status.verdict()}

    def table() -> None:
        console.print(f"operator        {status.address}")
        console.print(f"index           {record.index or '-'}")
        console.print(f"stake           {record.stake / WEI_PER_ETH:.6f} ETH "
                      f"(minimum {status.min_stake / WEI_PER_ETH:.6f})")
        console.print(f"exit at         {record.exit_at or '-'}")
        console.print(f"withdrawable    {status.withdrawable / WEI_PER_ETH:.6f} ETH")
        console.print(f"status          {status.verdict()}")

    render(data, output, table)

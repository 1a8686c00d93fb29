// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {IJobConsumer} from "./IJobConsumer.sol";
import {IJobManager} from "./IJobManager.sol";
import {JobLib} from "./JobLib.sol";
import {JobManagerBase} from "./JobManagerBase.sol";
import {JobReplication} from "./JobReplication.sol";

/// @title JobManager (v2: the network contract)
/// @notice Escrows fees for off-chain compute jobs run by independent staked operators. An operator
/// claims a job (a lease), runs it and settles it; a replicated job is run by k operators that
/// commit, then reveal, and the majority's answer wins. The consumer is called back with exactly
/// the gas it asked for. See docs/network.md for the protocol and its incentives.
/// @dev One storage word per job (`JobLib`); the request's `Terms` are emitted and quoted back by
/// every later call. Payments are pull payments (`withdraw`). Invariant (barring forced ETH):
/// `address(this).balance == sum(open jobs' fees) + sum(stakes) + sum(withdrawable)`.
///
/// Fees: a request pays `quoteFee` = replicas × (minFee + callbackGasLimit × callbackGasPrice);
/// the claimer of a single-replica job earns the whole fee on `fulfillJob`; on `failJob` and
/// `cancelJob` the requester gets it all back (no failure fee: with open operators a failure fee
/// would pay anyone to fail jobs); a replicated job's fee is split by the agreeing operators.
///
/// Pausing stops new requests only (a flag in the packed config word, to save a cold SLOAD on
/// every request; the `Paused`/`Unpaused` events and `paused()` are OpenZeppelin's).
/// `requestJob` is deliberately not `nonReentrant`: consumers chain jobs from their callback.
/// Settling functions follow checks-effects-interactions: the job word is final before the call.
contract JobManager is JobReplication, Ownable2Step, ReentrancyGuardTransient {
    using JobLib for uint256;

    /// @param minFee_ Minimum fee per replica (wei): at least a fulfil transaction's own gas (all
    /// but the callback) times `callbackGasPrice_`.
    /// @param jobWindow_ Seconds from request to deadline, in [MIN_JOB_WINDOW, MAX_JOB_WINDOW] and
    /// at most `unbondingDelay_ - REVEAL_WINDOW`.
    /// @param maxCallbackGasLimit_ Largest callback gas limit, at most CALLBACK_GAS_LIMIT_CAP.
    /// @param callbackGasPrice_ Wei per gas of callback gas limit charged on top of `minFee`.
    /// @param minStake_ Least stake to claim (non-zero); penalties start at minStake/10 (lapse) and
    /// minStake/2 (disagreement). The default lease is 15 minutes (capped by the job window).
    /// @param unbondingDelay_ Seconds from `requestExit` to `withdrawStake`.
    constructor(
        uint64 minFee_,
        uint32 jobWindow_,
        uint32 maxCallbackGasLimit_,
        uint48 callbackGasPrice_,
        uint256 minStake_,
        uint40 unbondingDelay_
    ) JobManagerBase(minStake_, unbondingDelay_) Ownable(msg.sender) {
        _config.nextJobId = 1;
        setMinFee(minFee_);
        setJobWindow(jobWindow_);
        setMaxCallbackGasLimit(maxCallbackGasLimit_);
        setCallbackGasPrice(callbackGasPrice_);
        setDefaultLease(15 minutes);
        setPenalties(uint96(minStake_ / 10), uint96(minStake_ / 2));
    }

    // ------------------------------------------------------------------------------------ views

    /// @inheritdoc IJobManager
    function getJob(uint256 jobId) external view returns (JobView memory v) {
        uint256 w = _jobs[jobId];
        v.status = w.status();
        v.leaseEnd = w.leaseEnd();
        v.claimer = _operatorAt[w.claimer()];
        v.digest = w.digest();
        v.settlePending = w.flags() & JobLib.FLAG_SETTLE_PENDING != 0;
    }

    /// @inheritdoc IJobManager
    function resultDigest(uint256 jobId) external view returns (bytes20) {
        uint256 w = _jobs[jobId];
        return w.status() == JobStatus.Completed ? w.digest() : bytes20(0);
    }

    /// @inheritdoc IJobManager
    function getReplica(uint256 jobId, uint8 slot) external view returns (ReplicaView memory v) {
        Replica memory r = _replicas[jobId][slot];
        v.operator = _operatorAt[r.operator];
        v.leaseEnd = r.leaseEnd;
        v.state = r.state;
        v.commitment = _commitments[jobId][slot];
        v.answer = r.answer;
    }

    /// @inheritdoc IJobManager
    function getOperator(address account) external view returns (OperatorView memory v) {
        Operator memory op = _operators[account];
        return OperatorView(op.index, op.exitAt, op.stake, op.earned);
    }

    /// @inheritdoc IJobManager
    function operatorAt(uint32 index) external view returns (address) {
        return _operatorAt[index];
    }

    /// @inheritdoc IJobManager
    function mayClaim(uint256 jobId, address account) external view returns (bool) {
        return _claimers[jobId][account];
    }

    /// @inheritdoc IJobManager
    function hasLapsed(uint256 jobId, address account) external view returns (bool) {
        uint32 index = _operators[account].index;
        return index != 0 && _lapsed[jobId][index];
    }

    /// @inheritdoc IJobManager
    function withdrawable(address account) public view returns (uint256) {
        return _balances[account] + _operators[account].earned;
    }

    /// @inheritdoc IJobManager
    function minFee() external view returns (uint64) {
        return _config.minFee;
    }

    /// @inheritdoc IJobManager
    function maxCallbackGasLimit() external view returns (uint32) {
        return _config.maxCallbackGasLimit;
    }

    /// @notice Wei per gas of callback gas limit a request pays on top of `minFee`.
    function callbackGasPrice() external view returns (uint48) {
        return _config.callbackGasPrice;
    }

    /// @notice Seconds between a request and its deadline.
    function jobWindow() external view returns (uint32) {
        return _config.jobWindow;
    }

    /// @notice Lease of a request that asks for none (capped by `jobWindow`).
    function defaultLease() external view returns (uint32) {
        return _config.defaultLease;
    }

    /// @notice Id the next request will get; ids start at 1 (0 never exists).
    function nextJobId() external view returns (uint256) {
        return _config.nextJobId;
    }

    /// @notice Whether new requests are paused.
    function paused() external view returns (bool) {
        return _config.paused;
    }

    /// @inheritdoc IJobManager
    function quoteFee(address consumer, uint32 callbackGasLimit, uint8 replicas) public view returns (uint256) {
        uint256 perReplica =
            _config.minFee + (consumer == address(0) ? 0 : uint256(callbackGasLimit) * _config.callbackGasPrice);
        return perReplica * (replicas == 0 ? 1 : replicas);
    }

    /// @inheritdoc IJobManager
    function hashTerms(Terms calldata terms) external pure returns (bytes20) {
        return JobLib.hashTerms(terms);
    }

    /// @inheritdoc IJobManager
    function resultHash(string calldata resultCid, uint8 exitCode, bytes calldata result)
        external
        pure
        returns (bytes20)
    {
        return JobLib.hashResult(resultCid, exitCode, result);
    }

    // --------------------------------------------------------------------------------- requests

    /// @inheritdoc IJobManager
    /// @dev Reverts when paused, on a bad spec length, a callback gas limit above the maximum, or a
    /// fee below `quoteFee` or above uint96. Not `nonReentrant` (chaining).
    function requestJob(string calldata spec, address consumer, uint32 callbackGasLimit)
        external
        payable
        returns (uint256 jobId)
    {
        return _request(spec, consumer, callbackGasLimit, 1, 0, false);
    }

    /// @inheritdoc IJobManager
    /// @dev Also reverts on replicas above MAX_REPLICAS, a lease outside [MIN_LEASE, jobWindow], or
    /// more than MAX_CLAIMERS claimers (or a zero one).
    function requestJobWith(string calldata spec, address consumer, uint32 callbackGasLimit, Options calldata opts)
        external
        payable
        returns (uint256 jobId)
    {
        uint8 replicas = opts.replicas == 0 ? 1 : opts.replicas;
        if (replicas > MAX_REPLICAS) revert JobManagerInvalidReplicas(opts.replicas);
        uint256 n = opts.claimers.length;
        if (n > MAX_CLAIMERS) revert JobManagerInvalidClaimers();
        jobId = _request(spec, consumer, callbackGasLimit, replicas, opts.lease, n != 0);
        if (n != 0) {
            for (uint256 i = 0; i < n; ++i) {
                address c = opts.claimers[i];
                if (c == address(0)) revert JobManagerInvalidClaimers();
                _claimers[jobId][c] = true;
            }
            emit ClaimersSet(jobId, opts.claimers);
        }
    }

    /// @inheritdoc IJobManager
    function cancelJob(uint256 jobId, Terms calldata terms) external {
        uint256 w = _jobs[jobId];
        _requireTerms(jobId, w, terms);
        JobStatus status = w.status();
        if (status != JobStatus.Requested && status != JobStatus.Claimed) revert JobManagerRejected(jobId, Reason.WrongStatus);
        if (terms.requester != msg.sender) revert JobManagerUnauthorizedRequester(jobId, msg.sender);
        if (block.timestamp <= terms.deadline) revert JobManagerDeadlineNotReached(jobId, terms.deadline);

        _jobs[jobId] = JobLib.pack(w.digest(), JobStatus.Cancelled, w.leaseEnd(), w.claimer(), 0);
        uint256 refund = terms.fee;
        if (status == JobStatus.Claimed) {
            if (terms.replicas == 1) {
                refund += _lapse(jobId, w.claimer());
            } else {
                for (uint256 s = 0; s < terms.replicas; ++s) {
                    Replica storage r = _replicas[jobId][s];
                    if (r.state == ReplicaState.Claimed) refund += _lapse(jobId, r.operator);
                }
            }
        }
        _balances[msg.sender] += refund;
        emit JobCancelled(jobId);
    }

    // -------------------------------------------------------------------------------- operators

    /// @inheritdoc IJobManager
    function registerOperator() external payable {
        Operator storage op = _operators[msg.sender];
        if (msg.value < minStake) revert JobManagerStakeTooLow(msg.value, minStake);
        uint32 index = op.index;
        if (index == 0) {
            index = ++operatorCount;
            op.index = index;
            _operatorAt[index] = msg.sender;
        } else if (op.exitAt == 0 || op.stake != 0) {
            revert JobManagerAlreadyRegistered(msg.sender);
        }
        op.exitAt = 0;
        op.stake = uint96(msg.value);
        emit OperatorRegistered(msg.sender, index, msg.value);
    }

    /// @inheritdoc IJobManager
    function addStake() external payable {
        Operator storage op = _operators[msg.sender];
        if (op.index == 0) revert JobManagerNotOperator(msg.sender);
        if (msg.value > type(uint96).max) revert JobManagerFeeTooHigh(msg.value);
        uint96 stake = op.stake + uint96(msg.value);
        op.stake = stake;
        emit StakeAdded(msg.sender, msg.value, stake);
    }

    /// @inheritdoc IJobManager
    function requestExit() external {
        Operator storage op = _operators[msg.sender];
        if (op.index == 0) revert JobManagerNotOperator(msg.sender);
        if (op.exitAt != 0) revert JobManagerExiting(msg.sender);
        uint40 exitAt = uint40(block.timestamp) + unbondingDelay;
        op.exitAt = exitAt;
        emit ExitRequested(msg.sender, exitAt);
    }

    /// @inheritdoc IJobManager
    /// @dev No claim count is kept (it would cost every claim a write): `unbondingDelay` ≥
    /// jobWindow + REVEAL_WINDOW, and no claim is possible after `requestExit`, so every job the
    /// operator holds is past its deadline (and reveal window) by `exitAt`.
    function withdrawStake() external nonReentrant {
        Operator storage op = _operators[msg.sender];
        uint40 exitAt = op.exitAt;
        if (exitAt == 0 || block.timestamp < exitAt) revert JobManagerNotUnbonded(msg.sender, exitAt);
        uint256 amount = op.stake;
        op.stake = 0;
        emit StakeWithdrawn(msg.sender, amount);
        _send(payable(msg.sender), amount);
    }

    /// @inheritdoc IJobManager
    function claimJob(uint256 jobId, Terms calldata terms) external {
        uint256 w = _jobs[jobId];
        _requireTerms(jobId, w, terms);
        Operator memory op = _operators[msg.sender];
        if (op.index == 0 || op.exitAt != 0 || op.stake < minStake) revert JobManagerNotEligible(msg.sender);
        if (terms.restricted && !_claimers[jobId][msg.sender]) revert JobManagerCannotClaim(jobId, msg.sender);
        if (block.timestamp > terms.deadline) revert JobManagerRejected(jobId, Reason.DeadlinePassed);
        JobStatus status = w.status();
        if (status != JobStatus.Requested && status != JobStatus.Claimed) revert JobManagerRejected(jobId, Reason.WrongStatus);

        uint40 leaseEnd;
        unchecked {
            // a uint40 of seconds plus a uint32 cannot overflow before year 36,000
            leaseEnd = uint40(block.timestamp) + terms.lease;
        }
        if (leaseEnd > terms.deadline) leaseEnd = uint40(terms.deadline);
        if (terms.replicas != 1) {
            _claimReplica(jobId, terms, w, op.index, leaseEnd);
            return;
        }

        if (status == JobStatus.Claimed) {
            // only a lapsed lease can be taken over, by someone who has not lapsed on this job
            uint32 previous = w.claimer();
            if (block.timestamp <= w.leaseEnd() || previous == op.index || _lapsed[jobId][op.index]) {
                revert JobManagerCannotClaim(jobId, msg.sender);
            }
            _balances[terms.requester] += _lapse(jobId, previous);
        }
        _jobs[jobId] = JobLib.pack(w.digest(), JobStatus.Claimed, leaseEnd, op.index, 0);
        emit JobClaimed(jobId, msg.sender, leaseEnd);
    }

    // ------------------------------------------------------------------------ single replica

    /// @inheritdoc IJobManager
    function fulfillJob(
        uint256 jobId,
        Terms calldata terms,
        string calldata resultCid,
        uint8 exitCode,
        bytes calldata result
    ) external {
        Operator storage op = _operators[msg.sender];
        Reason r = _fulfil(jobId, terms, resultCid, exitCode, result, op.index, false);
        if (r != Reason.None) revert JobManagerRejected(jobId, r);
        _credit(op, msg.sender, terms.fee);
        if (terms.consumer != address(0)) {
            JobLib.callConsumer(
                jobId,
                terms.consumer,
                terms.callbackGasLimit,
                abi.encodeCall(IJobConsumer.onJobResult, (jobId, resultCid, exitCode, result))
            );
        }
    }

    /// @inheritdoc IJobManager
    /// @dev Items are settled in order; an item whose callback could not get its exact gas (with
    /// BATCH_ITEM_GAS for the rest of its work) is skipped with `Reason.InsufficientGas`.
    function fulfillBatch(Fulfilment[] calldata items) external {
        Operator storage op = _operators[msg.sender];
        uint32 index = op.index;
        uint256 total;
        for (uint256 i = 0; i < items.length; ++i) {
            Fulfilment calldata it = items[i];
            Reason r = _fulfil(it.jobId, it.terms, it.resultCid, it.exitCode, it.result, index, true);
            if (r != Reason.None) {
                emit SettlementSkipped(it.jobId, r);
                continue;
            }
            total += it.terms.fee;
            if (it.terms.consumer != address(0)) {
                JobLib.callConsumer(
                    it.jobId,
                    it.terms.consumer,
                    it.terms.callbackGasLimit,
                    abi.encodeCall(IJobConsumer.onJobResult, (it.jobId, it.resultCid, it.exitCode, it.result))
                );
            }
        }
        if (total != 0) _credit(op, msg.sender, total);
    }

    /// @inheritdoc IJobManager
    function failJob(uint256 jobId, Terms calldata terms, string calldata reason) external {
        uint256 w = _jobs[jobId];
        _requireTerms(jobId, w, terms);
        if (terms.replicas != 1) revert JobManagerRejected(jobId, Reason.WrongReplicas);
        if (w.status() != JobStatus.Claimed) revert JobManagerRejected(jobId, Reason.WrongStatus);
        if (w.claimer() != _operators[msg.sender].index) revert JobManagerRejected(jobId, Reason.NotClaimer);
        if (bytes(reason).length > MAX_REASON_BYTES) revert JobManagerRejected(jobId, Reason.ReasonTooLong);

        _jobs[jobId] = JobLib.pack(w.digest(), JobStatus.Failed, w.leaseEnd(), w.claimer(), 0);
        _balances[terms.requester] += terms.fee;
        emit JobFailed(jobId, reason, msg.sender);
        _callFailed(jobId, terms, reason);
    }

    // Replicated jobs (commitResult, revealResult, finalize and their batches): JobReplication.sol

    // ------------------------------------------------------------------------------ payments

    /// @inheritdoc IJobManager
    function withdraw() external nonReentrant {
        _withdraw(payable(msg.sender));
    }

    /// @inheritdoc IJobManager
    function withdrawTo(address payable to) external nonReentrant {
        if (to == address(0)) revert JobManagerZeroAddress();
        _withdraw(to);
    }

    // --------------------------------------------------------------------------------- admin

    /// @notice Sets the minimum fee per replica for future requests.
    function setMinFee(uint64 newMinFee) public onlyOwner {
        _config.minFee = newMinFee;
        emit MinFeeSet(newMinFee);
    }

    /// @notice Sets the job window for future requests: in [MIN_JOB_WINDOW, MAX_JOB_WINDOW] and
    /// at most `unbondingDelay - REVEAL_WINDOW` (see `withdrawStake`).
    function setJobWindow(uint32 newJobWindow) public onlyOwner {
        if (
            newJobWindow < MIN_JOB_WINDOW || newJobWindow > MAX_JOB_WINDOW
                || uint256(newJobWindow) + REVEAL_WINDOW > unbondingDelay
        ) revert JobManagerInvalidConfig();
        _config.jobWindow = newJobWindow;
        emit JobWindowSet(newJobWindow);
    }

    /// @notice Sets the lease of requests that ask for none, in [MIN_LEASE, MAX_JOB_WINDOW]; a
    /// request gets min(defaultLease, jobWindow).
    function setDefaultLease(uint32 newDefaultLease) public onlyOwner {
        if (newDefaultLease < MIN_LEASE || newDefaultLease > MAX_JOB_WINDOW) revert JobManagerInvalidConfig();
        _config.defaultLease = newDefaultLease;
        emit DefaultLeaseSet(newDefaultLease);
    }

    /// @notice Sets the largest callback gas limit future requests may ask for (≤ CALLBACK_GAS_LIMIT_CAP).
    function setMaxCallbackGasLimit(uint32 newMaxCallbackGasLimit) public onlyOwner {
        if (newMaxCallbackGasLimit > CALLBACK_GAS_LIMIT_CAP) revert JobManagerInvalidConfig();
        _config.maxCallbackGasLimit = uint24(newMaxCallbackGasLimit);
        emit MaxCallbackGasLimitSet(newMaxCallbackGasLimit);
    }

    /// @notice Sets the wei per gas charged for callback gas by future requests (see `quoteFee`).
    function setCallbackGasPrice(uint48 newCallbackGasPrice) public onlyOwner {
        _config.callbackGasPrice = newCallbackGasPrice;
        emit CallbackGasPriceSet(newCallbackGasPrice);
    }

    /// @notice Sets the lapse and disagreement penalties, each at most `minStake`. They apply when
    /// a slash happens (not fixed at request).
    function setPenalties(uint96 newLapsePenalty, uint96 newDisagreePenalty) public onlyOwner {
        if (newLapsePenalty > minStake || newDisagreePenalty > minStake) revert JobManagerInvalidConfig();
        lapsePenalty = newLapsePenalty;
        disagreePenalty = newDisagreePenalty;
        emit PenaltiesSet(newLapsePenalty, newDisagreePenalty);
    }

    /// @notice Stops new requests. Claims, settlement, cancellation, staking and withdrawal go on.
    function pause() external onlyOwner {
        _config.paused = true;
        emit Paused(msg.sender);
    }

    /// @notice Accepts new requests again.
    function unpause() external onlyOwner {
        _config.paused = false;
        emit Unpaused(msg.sender);
    }

    /// @notice Always reverts `JobManagerRenounceDisabled`: without an owner no parameter could
    /// ever change. Hand over with `transferOwnership` instead.
    function renounceOwnership() public pure override {
        revert JobManagerRenounceDisabled();
    }

    // ----------------------------------------------------------------------------- internals

    function _request(
        string calldata spec,
        address consumer,
        uint32 callbackGasLimit,
        uint8 replicas,
        uint32 lease,
        bool restricted
    ) private returns (uint256 jobId) {
        Config memory c = _config;
        if (c.paused) revert JobManagerPaused();
        if (bytes(spec).length == 0 || bytes(spec).length > MAX_SPEC_BYTES) {
            revert JobManagerInvalidSpecLength(bytes(spec).length, MAX_SPEC_BYTES);
        }
        if (callbackGasLimit > c.maxCallbackGasLimit) {
            revert JobManagerCallbackGasLimitTooHigh(callbackGasLimit, c.maxCallbackGasLimit);
        }
        if (consumer == address(0)) callbackGasLimit = 0;
        if (lease == 0) {
            lease = c.defaultLease < c.jobWindow ? c.defaultLease : c.jobWindow;
        } else if (lease < MIN_LEASE || lease > c.jobWindow) {
            revert JobManagerInvalidLease(lease);
        }
        {
            uint256 requiredFee = (uint256(c.minFee) + uint256(callbackGasLimit) * c.callbackGasPrice) * replicas;
            if (msg.value < requiredFee) revert JobManagerFeeTooLow(msg.value, requiredFee);
            if (msg.value > type(uint96).max) revert JobManagerFeeTooHigh(msg.value);
        }

        jobId = c.nextJobId;
        _config.nextJobId = c.nextJobId + 1;
        Terms memory t = Terms({
            requester: msg.sender,
            consumer: consumer,
            fee: uint96(msg.value),
            deadline: uint64(block.timestamp) + c.jobWindow,
            callbackGasLimit: callbackGasLimit,
            replicas: replicas,
            lease: lease,
            restricted: restricted,
            requestHash: keccak256(abi.encode(jobId, keccak256(bytes(spec))))
        });
        _jobs[jobId] = JobLib.pack(bytes20(keccak256(abi.encode(t))), JobStatus.Requested, 0, 0, 0);
        emit JobRequested(jobId, msg.sender, consumer, t, spec);
    }

    /// @dev Checks and records a single-replica fulfilment; the caller credits the fee and calls
    /// the consumer. With `batch`, an item whose callback gas could not be given is refused.
    function _fulfil(
        uint256 jobId,
        Terms calldata terms,
        string calldata resultCid,
        uint8 exitCode,
        bytes calldata result,
        uint32 operatorIndex,
        bool batch
    ) private returns (Reason) {
        uint256 w = _jobs[jobId];
        Reason t = _checkTerms(w, terms);
        if (t != Reason.None) return t;
        if (terms.replicas != 1) return Reason.WrongReplicas;
        if (w.status() != JobStatus.Claimed) return Reason.WrongStatus;
        if (w.claimer() != operatorIndex || operatorIndex == 0) return Reason.NotClaimer;
        if (block.timestamp > terms.deadline) return Reason.DeadlinePassed;
        if (!_validResult(resultCid, result)) return Reason.InvalidResult;
        if (batch && terms.consumer != address(0) && !JobLib.enoughGasFor(terms.callbackGasLimit, BATCH_ITEM_GAS)) {
            return Reason.InsufficientGas;
        }
        bytes20 digest = JobLib.hashResult(resultCid, exitCode, result);
        _jobs[jobId] = JobLib.pack(digest, JobStatus.Completed, w.leaseEnd(), operatorIndex, 0);
        emit JobCompleted(jobId, resultCid, exitCode, result, msg.sender);
        return Reason.None;
    }

    function _withdraw(address payable to) private {
        uint256 amount = _balances[msg.sender] + _operators[msg.sender].earned;
        if (amount == 0) revert JobManagerNothingToWithdraw(msg.sender);
        _balances[msg.sender] = 0;
        if (_operators[msg.sender].earned != 0) _operators[msg.sender].earned = 0;
        emit Withdrawn(msg.sender, to, amount);
        _send(to, amount);
    }

    function _send(address payable to, uint256 amount) private {
        (bool sent,) = to.call{value: amount}("");
        if (!sent) revert JobManagerWithdrawFailed(to, amount);
    }
}

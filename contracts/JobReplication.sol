// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IJobConsumer} from "./IJobConsumer.sol";
import {IJobManager} from "./IJobManager.sol";
import {JobLib} from "./JobLib.sol";
import {JobManagerBase} from "./JobManagerBase.sol";

/// @title JobReplication
/// @notice The replicated-job part of `JobManager` (replicas > 1): replica claims, commit, reveal,
/// majority completion and `finalize` payouts and slashing (split for readability).
/// @dev A replica commits `commitmentOf(jobId, operator, cid, exitCode, result, salt)`; the reveal
/// phase opens when all k committed (or a strict majority committed and every claimed slot's lease
/// ended) and lasts REVEAL_WINDOW; the reveal that makes a strict majority completes the job
/// and calls the consumer; `finalize` pays and slashes once every committed replica revealed or
/// the window ended.
abstract contract JobReplication is JobManagerBase {
    using JobLib for uint256;

    /// @inheritdoc IJobManager
    function commitmentOf(
        uint256 jobId,
        address operator,
        string calldata resultCid,
        uint8 exitCode,
        bytes calldata result,
        bytes32 salt
    ) public pure returns (bytes32) {
        return keccak256(abi.encode(jobId, operator, resultCid, exitCode, result, salt));
    }

    /// @inheritdoc IJobManager
    function commitResult(uint256 jobId, Terms calldata terms, bytes32 commitment) external {
        Reason r = _commit(jobId, terms, commitment, _operators[msg.sender].index);
        if (r != Reason.None) revert JobManagerRejected(jobId, r);
    }

    /// @inheritdoc IJobManager
    function commitBatch(Commitment[] calldata items) external {
        uint32 index = _operators[msg.sender].index;
        for (uint256 i = 0; i < items.length; ++i) {
            Reason r = _commit(items[i].jobId, items[i].terms, items[i].commitment, index);
            if (r != Reason.None) emit SettlementSkipped(items[i].jobId, r);
        }
    }

    /// @inheritdoc IJobManager
    function revealResult(
        uint256 jobId,
        Terms calldata terms,
        string calldata resultCid,
        uint8 exitCode,
        bytes calldata result,
        bytes32 salt
    ) external {
        bytes32 opening = commitmentOf(jobId, msg.sender, resultCid, exitCode, result, salt);
        bool valid = _validResult(resultCid, result);
        bytes20 answer = JobLib.hashResult(resultCid, exitCode, result);
        (Reason r, bool completed) = _reveal(jobId, terms, opening, answer, valid, false);
        if (r != Reason.None) revert JobManagerRejected(jobId, r);
        if (completed) _complete(jobId, terms, resultCid, exitCode, result);
    }

    /// @inheritdoc IJobManager
    function revealBatch(Reveal[] calldata items) external {
        for (uint256 i = 0; i < items.length; ++i) {
            Reveal calldata it = items[i];
            bytes32 opening = commitmentOf(it.jobId, msg.sender, it.resultCid, it.exitCode, it.result, it.salt);
            bool valid = _validResult(it.resultCid, it.result);
            bytes20 answer = JobLib.hashResult(it.resultCid, it.exitCode, it.result);
            (Reason r, bool completed) = _reveal(it.jobId, it.terms, opening, answer, valid, true);
            if (r != Reason.None) emit SettlementSkipped(it.jobId, r);
            else if (completed) _complete(it.jobId, it.terms, it.resultCid, it.exitCode, it.result);
        }
    }

    /// @inheritdoc IJobManager
    function finalize(uint256 jobId, Terms calldata terms) external {
        uint256 w = _jobs[jobId];
        JobStatus status = w.status();
        bool pending = status == JobStatus.Completed && w.flags() & JobLib.FLAG_SETTLE_PENDING != 0;
        if (pending) {
            if (_settleTerms[jobId] != JobLib.hashTerms(terms)) revert JobManagerRejected(jobId, Reason.TermsMismatch);
        } else {
            _requireTerms(jobId, w, terms);
            if (status != JobStatus.Revealing) revert JobManagerRejected(jobId, Reason.WrongStatus);
        }
        uint256 k = terms.replicas;
        if (block.timestamp <= w.leaseEnd()) {
            for (uint256 s = 0; s < k; ++s) {
                if (_replicas[jobId][s].state == ReplicaState.Committed) revert JobManagerRevealWindowOpen(jobId);
            }
        }
        if (pending) {
            delete _settleTerms[jobId];
            _jobs[jobId] = JobLib.pack(w.digest(), JobStatus.Completed, w.leaseEnd(), 0, 0);
            _payout(jobId, terms, w.digest());
        } else {
            _jobs[jobId] = JobLib.pack(w.digest(), JobStatus.Failed, w.leaseEnd(), 0, 0);
            uint256 slashed;
            for (uint256 s = 0; s < k; ++s) {
                Replica storage r = _replicas[jobId][s];
                if (r.state == ReplicaState.Committed) slashed += _slash(jobId, r.operator, disagreePenalty, 3);
                else if (r.state == ReplicaState.Claimed) slashed += _slash(jobId, r.operator, lapsePenalty, 1);
            }
            _balances[terms.requester] += terms.fee + slashed;
            emit JobFinalized(jobId, 0, slashed);
            emit JobFailed(jobId, "replicas disagree", address(0));
            _callFailed(jobId, terms, "replicas disagree");
        }
    }

    function _claimReplica(uint256 jobId, Terms calldata terms, uint256 w, uint32 index, uint40 leaseEnd) internal {
        uint256 free = type(uint256).max;
        for (uint256 s = 0; s < terms.replicas; ++s) {
            Replica memory r = _replicas[jobId][s];
            if (r.operator == index) revert JobManagerCannotClaim(jobId, msg.sender);
            if (free == type(uint256).max) {
                bool lapsedSlot = r.state == ReplicaState.Claimed && block.timestamp > r.leaseEnd;
                if (r.state == ReplicaState.Empty || lapsedSlot) free = s;
            }
        }
        if (free == type(uint256).max || _lapsed[jobId][index]) revert JobManagerCannotClaim(jobId, msg.sender);
        Replica storage slot = _replicas[jobId][free];
        if (slot.state == ReplicaState.Claimed) _balances[terms.requester] += _lapse(jobId, slot.operator);
        slot.operator = index;
        slot.leaseEnd = leaseEnd;
        slot.state = ReplicaState.Claimed;
        if (w.status() == JobStatus.Requested) _jobs[jobId] = JobLib.pack(w.digest(), JobStatus.Claimed, 0, 0, 0);
        emit JobClaimed(jobId, msg.sender, leaseEnd);
    }

    function _commit(uint256 jobId, Terms calldata terms, bytes32 commitment, uint32 index) internal returns (Reason) {
        uint256 w = _jobs[jobId];
        Reason t = _checkTerms(w, terms);
        if (t != Reason.None) return t;
        if (terms.replicas == 1) return Reason.WrongReplicas;
        if (w.status() != JobStatus.Claimed) return Reason.WrongStatus;
        if (block.timestamp > terms.deadline) return Reason.DeadlinePassed;
        uint256 k = terms.replicas;
        uint256 mine = type(uint256).max;
        uint256 committed;
        for (uint256 s = 0; s < k; ++s) {
            Replica storage r = _replicas[jobId][s];
            ReplicaState state = r.state;
            if (state == ReplicaState.Committed) ++committed;
            else if (state == ReplicaState.Claimed && r.operator == index && index != 0) mine = s;
        }
        if (mine == type(uint256).max) return Reason.NotClaimer;
        _replicas[jobId][mine].state = ReplicaState.Committed;
        _commitments[jobId][mine] = commitment;
        emit ResultCommitted(jobId, msg.sender, commitment);
        if (committed + 1 == k) _openReveal(jobId, w);
        return Reason.None;
    }

    function _openReveal(uint256 jobId, uint256 w) internal {
        uint40 revealEnd = uint40(block.timestamp) + REVEAL_WINDOW;
        _jobs[jobId] = JobLib.pack(w.digest(), JobStatus.Revealing, revealEnd, 0, 0);
        emit RevealOpened(jobId, revealEnd);
    }

    /// @dev Checks and records a reveal; `completed` when it made the majority (the caller then
    /// emits the result and calls the consumer).
    function _reveal(uint256 jobId, Terms calldata terms, bytes32 opening, bytes20 answer, bool valid, bool batch)
        internal
        returns (Reason, bool completed)
    {
        (Reason r, uint256 w, bool pending) = _revealPhase(jobId, terms);
        if (r != Reason.None) return (r, false);
        if (!valid) return (Reason.InvalidResult, false);
        (uint256 mine, uint256 agreeing) = _revealSlot(jobId, terms.replicas, answer);
        if (mine == type(uint256).max) return (Reason.NotClaimer, false);
        if (_commitments[jobId][mine] != opening) return (Reason.BadReveal, false);
        completed = !pending && agreeing * 2 > terms.replicas;
        if (completed && batch && terms.consumer != address(0)) {
            if (!JobLib.enoughGasFor(terms.callbackGasLimit, BATCH_ITEM_GAS)) return (Reason.InsufficientGas, false);
        }
        _recordReveal(jobId, mine, answer, completed, w);
        return (Reason.None, completed);
    }

    function _recordReveal(uint256 jobId, uint256 mine, bytes20 answer, bool completed, uint256 w) internal {
        Replica storage slot = _replicas[jobId][mine];
        slot.state = ReplicaState.Revealed;
        slot.answer = answer;
        emit ResultRevealed(jobId, msg.sender, answer);
        if (completed) {
            _settleTerms[jobId] = w.digest();
            _jobs[jobId] = JobLib.pack(answer, JobStatus.Completed, w.leaseEnd(), 0, JobLib.FLAG_SETTLE_PENDING);
        }
    }

    /// @dev Checks the terms of a reveal and that the reveal phase is open, opening it if it may
    /// open now; returns the (updated) job word and whether the job already completed.
    function _revealPhase(uint256 jobId, Terms calldata terms)
        internal
        returns (Reason, uint256 w, bool pending)
    {
        w = _jobs[jobId];
        JobStatus status = w.status();
        pending = status == JobStatus.Completed && w.flags() & JobLib.FLAG_SETTLE_PENDING != 0;
        bytes20 termsDigest = pending ? _settleTerms[jobId] : w.digest();
        if (w == 0 || termsDigest != JobLib.hashTerms(terms)) return (Reason.TermsMismatch, w, pending);
        if (terms.replicas == 1) return (Reason.WrongReplicas, w, pending);
        if (status == JobStatus.Claimed) {
            if (!_mayOpenReveal(jobId, terms.replicas)) return (Reason.RevealNotOpen, w, pending);
            _openReveal(jobId, w);
            w = _jobs[jobId];
        } else if (status == JobStatus.Revealing || pending) {
            if (block.timestamp > w.leaseEnd()) return (Reason.RevealNotOpen, w, pending);
        } else {
            return (Reason.WrongStatus, w, pending);
        }
        return (Reason.None, w, pending);
    }

    /// @dev The caller's committed slot of `jobId` (max if none), and how many would agree with
    /// `answer` counting the caller.
    function _revealSlot(uint256 jobId, uint256 k, bytes20 answer)
        internal
        view
        returns (uint256 mine, uint256 agreeing)
    {
        uint32 index = _operators[msg.sender].index;
        mine = type(uint256).max;
        agreeing = 1;
        for (uint256 s = 0; s < k; ++s) {
            Replica storage r = _replicas[jobId][s];
            if (r.state == ReplicaState.Committed && r.operator == index && index != 0) mine = s;
            else if (r.state == ReplicaState.Revealed && r.answer == answer) ++agreeing;
        }
    }

    /// @dev The reveal phase may open before all commits when a strict majority committed and the
    /// commit phase is over: the lease of every claimed slot (committed or not) has ended. So a fast
    /// majority cannot shut out the other replicas: they have at least a lease to claim and commit.
    function _mayOpenReveal(uint256 jobId, uint256 k) internal view returns (bool) {
        uint256 committed;
        for (uint256 s = 0; s < k; ++s) {
            Replica storage r = _replicas[jobId][s];
            if (r.state == ReplicaState.Empty) continue;
            if (block.timestamp <= r.leaseEnd) return false;
            if (r.state == ReplicaState.Committed) ++committed;
        }
        return committed * 2 > k;
    }

    function _complete(
        uint256 jobId,
        Terms calldata terms,
        string calldata resultCid,
        uint8 exitCode,
        bytes calldata result
    ) internal {
        emit JobCompleted(jobId, resultCid, exitCode, result, msg.sender);
        if (terms.consumer != address(0)) {
            JobLib.callConsumer(
                jobId,
                terms.consumer,
                terms.callbackGasLimit,
                abi.encodeCall(IJobConsumer.onJobResult, (jobId, resultCid, exitCode, result))
            );
        }
    }

    /// @dev Pays a completed replicated job: the agreeing operators split the fee; the others are
    /// slashed; the slashed stake is shared equally by the requester and the agreeing operators.
    function _payout(uint256 jobId, Terms calldata terms, bytes20 answer) internal {
        uint256 k = terms.replicas;
        uint256 agreeing;
        uint256 slashed;
        for (uint256 s = 0; s < k; ++s) {
            Replica storage r = _replicas[jobId][s];
            ReplicaState state = r.state;
            if (state == ReplicaState.Revealed && r.answer == answer) ++agreeing;
            else if (state == ReplicaState.Revealed) slashed += _slash(jobId, r.operator, disagreePenalty, 2);
            else if (state == ReplicaState.Committed) slashed += _slash(jobId, r.operator, disagreePenalty, 3);
            else if (state == ReplicaState.Claimed) slashed += _slash(jobId, r.operator, lapsePenalty, 1);
        }
        uint256 feeShare = terms.fee / agreeing;
        uint256 slashShare = slashed / (agreeing + 1);
        for (uint256 s = 0; s < k; ++s) {
            Replica storage r = _replicas[jobId][s];
            if (r.state == ReplicaState.Revealed && r.answer == answer) {
                address a = _operatorAt[r.operator];
                _credit(_operators[a], a, feeShare + slashShare);
            }
        }
        _balances[terms.requester] += terms.fee - feeShare * agreeing + slashed - slashShare * agreeing;
        emit JobFinalized(jobId, uint8(agreeing), slashed);
    }
}

// JobManager v2: staked operators, leases, single-replica settlement, replicated commit-reveal
// agreement, batches, callbacks, refunds and withdrawals. Gas figures live in the gas report
// (scripts/gas-report.js); nothing here asserts a gas target.
const { expect } = require("chai");
const { ethers } = require("hardhat");
const { loadFixture, time } = require("@nomicfoundation/hardhat-network-helpers");
const { anyValue } = require("@nomicfoundation/hardhat-chai-matchers/withArgs");
const H = require("./helpers");

const { S, R, RS } = H;
const SPEC = H.typicalSpec();
const ZERO = ethers.ZeroAddress;
const NO_OPTS = [0, 0, []];

/** Sends a request and returns its id and terms (from the receipt). */
async function request(manager, signer, { spec = SPEC, consumer = ZERO, gas = 0, value = H.MIN_FEE, opts } = {}) {
  const m = manager.connect(signer);
  const tx = opts ? await m.requestJobWith(spec, consumer, gas, opts, { value }) : await m.requestJob(spec, consumer, gas, { value });
  const receipt = await tx.wait();
  const ev = receipt.logs.map((l) => manager.interface.parseLog(l)).find((e) => e && e.name === "JobRequested");
  return { jobId: ev.args.jobId, terms: H.plain(ev.args.terms), receipt };
}

const rejected = (manager, promise, jobId, reason) =>
  expect(promise).to.be.revertedWithCustomError(manager, "JobManagerRejected").withArgs(jobId, reason);

describe("JobManager", function () {
  async function requestedFixture() {
    const f = await H.deployWithThreeOperators();
    const { jobId, terms } = await request(f.manager, f.requester);
    return { ...f, jobId, terms };
  }

  async function claimedFixture() {
    const f = await requestedFixture();
    await f.manager.connect(f.oracle).claimJob(f.jobId, f.terms);
    return f;
  }

  async function consumerFixture(name, ...args) {
    const f = await H.deployManager();
    const consumer = await (await ethers.getContractFactory(name)).deploy(...args);
    const gas = 200_000n;
    const { jobId, terms } = await request(f.manager, f.requester, { consumer: await consumer.getAddress(), gas });
    await f.manager.connect(f.oracle).claimJob(jobId, terms);
    return { ...f, consumer, jobId, terms, gas };
  }

  describe("deployment and admin", function () {
    it("sets owner, parameters and the first job id", async function () {
      const { manager, owner } = await loadFixture(H.deployManager);
      expect(await manager.owner()).to.equal(owner.address);
      expect(await manager.minFee()).to.equal(H.MIN_FEE);
      expect(await manager.jobWindow()).to.equal(H.JOB_WINDOW);
      expect(await manager.maxCallbackGasLimit()).to.equal(H.MAX_CALLBACK_GAS);
      expect(await manager.callbackGasPrice()).to.equal(0n);
      expect(await manager.minStake()).to.equal(H.MIN_STAKE);
      expect(await manager.unbondingDelay()).to.equal(H.UNBONDING_DELAY);
      expect(await manager.lapsePenalty()).to.equal(H.MIN_STAKE / 10n);
      expect(await manager.disagreePenalty()).to.equal(H.MIN_STAKE / 2n);
      expect(await manager.defaultLease()).to.equal(900n);
      expect(await manager.nextJobId()).to.equal(1n);
      expect(await manager.paused()).to.equal(false);
    });

    it("rejects bad configuration: job window bounds and vs unbonding, gas cap, zero stake, penalties", async function () {
      const F = await ethers.getContractFactory("JobManager");
      await expect(F.deploy(1n, 59n, 1000n, 0n, H.MIN_STAKE, H.UNBONDING_DELAY)).to.be.revertedWithCustomError(F, "JobManagerInvalidConfig");
      await expect(F.deploy(1n, 3600n, 5_000_001n, 0n, H.MIN_STAKE, H.UNBONDING_DELAY)).to.be.revertedWithCustomError(F, "JobManagerInvalidConfig");
      await expect(F.deploy(1n, 3600n, 1000n, 0n, 0n, H.UNBONDING_DELAY)).to.be.revertedWithCustomError(F, "JobManagerInvalidConfig");
      // the unbonding delay must outlast any claim: jobWindow + REVEAL_WINDOW <= unbondingDelay
      await expect(F.deploy(1n, 3600n, 1000n, 0n, H.MIN_STAKE, 3600n + 599n)).to.be.revertedWithCustomError(F, "JobManagerInvalidConfig");
      await F.deploy(1n, 3600n, 1000n, 0n, H.MIN_STAKE, 3600n + 600n);
      const { manager, owner } = await loadFixture(H.deployManager);
      await expect(manager.connect(owner).setPenalties(H.MIN_STAKE + 1n, 0n)).to.be.revertedWithCustomError(manager, "JobManagerInvalidConfig");
      await expect(manager.connect(owner).setDefaultLease(59n)).to.be.revertedWithCustomError(manager, "JobManagerInvalidConfig");
      await expect(manager.connect(owner).setPenalties(1n, 2n)).to.emit(manager, "PenaltiesSet").withArgs(1n, 2n);
    });

    it("only the owner can call admin functions; ownership cannot be renounced; no operator picking", async function () {
      const { manager, owner, stranger } = await loadFixture(H.deployManager);
      const m = manager.connect(stranger);
      const calls = [
        () => m.setMinFee(1n), () => m.setJobWindow(120n), () => m.setMaxCallbackGasLimit(1n),
        () => m.setCallbackGasPrice(1n), () => m.setDefaultLease(120n), () => m.setPenalties(0n, 0n),
        () => m.pause(), () => m.unpause(),
      ];
      for (const call of calls) {
        await expect(call()).to.be.revertedWithCustomError(manager, "OwnableUnauthorizedAccount").withArgs(stranger.address);
      }
      await expect(manager.connect(owner).renounceOwnership()).to.be.revertedWithCustomError(manager, "JobManagerRenounceDisabled");
      // open mode: the v1 oracle set is gone
      expect(manager.interface.getFunction("setOracle")).to.equal(null);
      expect(manager.interface.getFunction("activateOracle")).to.equal(null);
    });
  });

  describe("requests", function () {
    it("emits the full terms and the spec, and stores one word", async function () {
      const { manager, requester } = await loadFixture(H.deployManager);
      const tx = manager.connect(requester).requestJob(SPEC, ZERO, 0, { value: H.MIN_FEE });
      await expect(tx).to.emit(manager, "JobRequested")
        .withArgs(1n, requester.address, ZERO, H.termsLike(1n, requester.address, ZERO, SPEC, H.MIN_FEE, 0n), SPEC);
      await expect(tx).to.changeEtherBalances([requester, manager], [-H.MIN_FEE, H.MIN_FEE]);
      const terms = await H.termsOf(manager, 1n);
      const ts = BigInt((await ethers.provider.getBlock("latest")).timestamp);
      expect(terms[3]).to.equal(ts + H.JOB_WINDOW);
      expect(terms[6]).to.equal(900n); // default lease
      expect(terms[7]).to.equal(false);
      const job = await manager.getJob(1n);
      expect(job.status).to.equal(S.Requested);
      expect(job.digest).to.equal(H.hashTerms(terms));
      expect(await manager.hashTerms(terms)).to.equal(H.hashTerms(terms));
      expect(await manager.resultDigest(1n)).to.equal("0x" + "00".repeat(20));
    });

    it("returns consecutive ids; stores a callback limit as 0 without consumer and charges no callback gas", async function () {
      const { manager, requester } = await loadFixture(H.deployManager);
      expect((await request(manager, requester)).jobId).to.equal(1n);
      const second = await request(manager, requester, { gas: 500_000 });
      expect(second.jobId).to.equal(2n);
      expect(second.terms[4]).to.equal(0n);
    });

    it("charges callback gas and replicas: quoteFee is the least fee accepted", async function () {
      const { manager, requester } = await H.deployManager(10n ** 9n);
      const consumer = ethers.Wallet.createRandom().address;
      const quote = await manager.quoteFee(consumer, 300_000, 1);
      expect(quote).to.equal(H.MIN_FEE + 300_000n * 10n ** 9n);
      expect(await manager.quoteFee(consumer, 300_000, 3)).to.equal(3n * quote);
      expect(await manager.quoteFee(ZERO, 300_000, 1)).to.equal(H.MIN_FEE);
      await expect(manager.connect(requester).requestJob(SPEC, consumer, 300_000, { value: quote - 1n }))
        .to.be.revertedWithCustomError(manager, "JobManagerFeeTooLow").withArgs(quote - 1n, quote);
      await expect(manager.connect(requester).requestJobWith(SPEC, consumer, 300_000, [3, 0, []], { value: 3n * quote - 1n }))
        .to.be.revertedWithCustomError(manager, "JobManagerFeeTooLow").withArgs(3n * quote - 1n, 3n * quote);
      await request(manager, requester, { consumer, gas: 300_000, value: 3n * quote, opts: [3, 0, []] });
    });

    it("rejects bad specs, too much callback gas, too high fees, and requests while paused", async function () {
      const { manager, owner, requester } = await loadFixture(H.deployManager);
      const m = manager.connect(requester);
      await expect(m.requestJob("", ZERO, 0, { value: H.MIN_FEE })).to.be.revertedWithCustomError(manager, "JobManagerInvalidSpecLength").withArgs(0n, 8192n);
      await expect(m.requestJob("x".repeat(8193), ZERO, 0, { value: H.MIN_FEE })).to.be.revertedWithCustomError(manager, "JobManagerInvalidSpecLength");
      await m.requestJob("x".repeat(8192), ZERO, 0, { value: H.MIN_FEE });
      await expect(m.requestJob(SPEC, ZERO, H.MAX_CALLBACK_GAS + 1n, { value: H.MIN_FEE }))
        .to.be.revertedWithCustomError(manager, "JobManagerCallbackGasLimitTooHigh").withArgs(H.MAX_CALLBACK_GAS + 1n, H.MAX_CALLBACK_GAS);
      const huge = 2n ** 96n;
      await ethers.provider.send("hardhat_setBalance", [requester.address, "0x" + (huge * 2n).toString(16)]);
      await expect(m.requestJob(SPEC, ZERO, 0, { value: huge })).to.be.revertedWithCustomError(manager, "JobManagerFeeTooHigh");
      await expect(manager.connect(owner).pause()).to.emit(manager, "Paused").withArgs(owner.address);
      await expect(m.requestJob(SPEC, ZERO, 0, { value: H.MIN_FEE })).to.be.revertedWithCustomError(manager, "JobManagerPaused");
      await expect(manager.connect(owner).unpause()).to.emit(manager, "Unpaused").withArgs(owner.address);
      await m.requestJob(SPEC, ZERO, 0, { value: H.MIN_FEE });
    });

    it("requestJobWith: replicas 1..7, lease in [MIN_LEASE, jobWindow], claimers bounded and stored", async function () {
      const { manager, requester, oracle, oracle2 } = await loadFixture(H.deployManager);
      const m = manager.connect(requester);
      await expect(m.requestJobWith(SPEC, ZERO, 0, [8, 0, []], { value: 8n * H.MIN_FEE }))
        .to.be.revertedWithCustomError(manager, "JobManagerInvalidReplicas").withArgs(8n);
      await expect(m.requestJobWith(SPEC, ZERO, 0, [1, 59, []], { value: H.MIN_FEE }))
        .to.be.revertedWithCustomError(manager, "JobManagerInvalidLease").withArgs(59n);
      await expect(m.requestJobWith(SPEC, ZERO, 0, [1, Number(H.JOB_WINDOW) + 1, []], { value: H.MIN_FEE }))
        .to.be.revertedWithCustomError(manager, "JobManagerInvalidLease");
      await expect(m.requestJobWith(SPEC, ZERO, 0, [1, 0, [ZERO]], { value: H.MIN_FEE }))
        .to.be.revertedWithCustomError(manager, "JobManagerInvalidClaimers");
      const many = Array.from({ length: 33 }, () => ethers.Wallet.createRandom().address);
      await expect(m.requestJobWith(SPEC, ZERO, 0, [1, 0, many], { value: H.MIN_FEE }))
        .to.be.revertedWithCustomError(manager, "JobManagerInvalidClaimers");
      const tx = m.requestJobWith(SPEC, ZERO, 0, [0, 120, [oracle.address]], { value: H.MIN_FEE });
      await expect(tx).to.emit(manager, "ClaimersSet").withArgs(1n, [oracle.address]);
      const terms = await H.termsOf(manager, 1n);
      expect([terms[5], terms[6], terms[7]]).to.deep.equal([1n, 120n, true]);
      expect(await manager.mayClaim(1n, oracle.address)).to.equal(true);
      expect(await manager.mayClaim(1n, oracle2.address)).to.equal(false);
    });
  });

  describe("operators", function () {
    it("register with at least minStake, add stake, exit, unbond, withdraw", async function () {
      const { manager, stranger, requester } = await loadFixture(H.deployManager);
      await expect(manager.connect(stranger).registerOperator({ value: H.MIN_STAKE - 1n }))
        .to.be.revertedWithCustomError(manager, "JobManagerStakeTooLow").withArgs(H.MIN_STAKE - 1n, H.MIN_STAKE);
      await expect(manager.connect(stranger).registerOperator({ value: H.MIN_STAKE }))
        .to.emit(manager, "OperatorRegistered").withArgs(stranger.address, 2n, H.MIN_STAKE);
      expect(await manager.operatorAt(2)).to.equal(stranger.address);
      await expect(manager.connect(stranger).registerOperator({ value: H.MIN_STAKE }))
        .to.be.revertedWithCustomError(manager, "JobManagerAlreadyRegistered");
      await expect(manager.connect(stranger).addStake({ value: 5n }))
        .to.emit(manager, "StakeAdded").withArgs(stranger.address, 5n, H.MIN_STAKE + 5n);
      await expect(manager.connect(requester).addStake({ value: 5n })).to.be.revertedWithCustomError(manager, "JobManagerNotOperator");
      await expect(manager.connect(stranger).withdrawStake()).to.be.revertedWithCustomError(manager, "JobManagerNotUnbonded").withArgs(stranger.address, 0n);
      const tx = await manager.connect(stranger).requestExit();
      const exitAt = BigInt((await ethers.provider.getBlock(tx.blockNumber)).timestamp) + H.UNBONDING_DELAY;
      await expect(tx).to.emit(manager, "ExitRequested").withArgs(stranger.address, exitAt);
      await expect(manager.connect(stranger).requestExit()).to.be.revertedWithCustomError(manager, "JobManagerExiting");
      // no new claims after requestExit
      const { jobId, terms } = await request(manager, requester);
      await expect(manager.connect(stranger).claimJob(jobId, terms)).to.be.revertedWithCustomError(manager, "JobManagerNotEligible").withArgs(stranger.address);
      await time.setNextBlockTimestamp(exitAt - 1n);
      await expect(manager.connect(stranger).withdrawStake()).to.be.revertedWithCustomError(manager, "JobManagerNotUnbonded").withArgs(stranger.address, exitAt);
      await time.setNextBlockTimestamp(exitAt);
      const w = manager.connect(stranger).withdrawStake();
      await expect(w).to.emit(manager, "StakeWithdrawn").withArgs(stranger.address, H.MIN_STAKE + 5n);
      await expect(w).to.changeEtherBalances([stranger, manager], [H.MIN_STAKE + 5n, -(H.MIN_STAKE + 5n)]);
      expect((await manager.getOperator(stranger.address)).stake).to.equal(0n);
      // and may come back, with the same index
      await expect(manager.connect(stranger).registerOperator({ value: H.MIN_STAKE }))
        .to.emit(manager, "OperatorRegistered").withArgs(stranger.address, 2n, H.MIN_STAKE);
      const later = await request(manager, requester);
      await expect(manager.connect(stranger).claimJob(later.jobId, later.terms)).to.emit(manager, "JobClaimed");
    });

    it("an account without a registration or below minStake cannot claim", async function () {
      const { manager, stranger, jobId, terms } = await loadFixture(requestedFixture);
      await expect(manager.connect(stranger).claimJob(jobId, terms)).to.be.revertedWithCustomError(manager, "JobManagerNotEligible").withArgs(stranger.address);
    });
  });

  describe("claims and leases", function () {
    it("a claim holds the job until min(now + lease, deadline); nobody else may claim it meanwhile", async function () {
      const { manager, oracle, oracle2, jobId, terms } = await loadFixture(requestedFixture);
      const tx = await manager.connect(oracle).claimJob(jobId, terms);
      const ts = BigInt((await ethers.provider.getBlock(tx.blockNumber)).timestamp);
      await expect(tx).to.emit(manager, "JobClaimed").withArgs(jobId, oracle.address, ts + 900n);
      const job = await manager.getJob(jobId);
      expect([job.status, job.leaseEnd, job.claimer]).to.deep.equal([S.Claimed, ts + 900n, oracle.address]);
      await expect(manager.connect(oracle2).claimJob(jobId, terms)).to.be.revertedWithCustomError(manager, "JobManagerCannotClaim").withArgs(jobId, oracle2.address);
      await expect(manager.connect(oracle).claimJob(jobId, terms)).to.be.revertedWithCustomError(manager, "JobManagerCannotClaim");
      // a lease longer than the time left is cut at the deadline
      const { manager: m2, requester } = { manager, requester: (await ethers.getSigners())[2] };
      const b = await request(m2, requester, { opts: [1, Number(H.JOB_WINDOW), []] });
      await time.increase(100);
      await expect(m2.connect(oracle).claimJob(b.jobId, b.terms)).to.emit(m2, "JobClaimed").withArgs(b.jobId, oracle.address, b.terms[3]);
    });

    it("rejects a claim quoting other terms, or after the deadline, or on a settled job", async function () {
      const { manager, oracle, jobId, terms } = await loadFixture(requestedFixture);
      const forged = [...terms];
      forged[2] = forged[2] + 1n;
      await rejected(manager, manager.connect(oracle).claimJob(jobId, forged), jobId, R.TermsMismatch);
      await rejected(manager, manager.connect(oracle).claimJob(99n, terms), 99n, R.TermsMismatch);
      await time.increaseTo(terms[3] + 1n);
      await rejected(manager, manager.connect(oracle).claimJob(jobId, terms), jobId, R.DeadlinePassed);
    });

    it("a lapsed lease is reclaimed by another operator: the lapsed one pays lapsePenalty to the requester and is barred", async function () {
      const { manager, oracle, oracle2, op3, requester, jobId, terms } = await loadFixture(claimedFixture);
      const leaseEnd = (await manager.getJob(jobId)).leaseEnd;
      await time.setNextBlockTimestamp(leaseEnd);
      await expect(manager.connect(oracle2).claimJob(jobId, terms)).to.be.revertedWithCustomError(manager, "JobManagerCannotClaim");
      await time.setNextBlockTimestamp(leaseEnd + 1n);
      const penalty = H.MIN_STAKE / 10n;
      const tx = manager.connect(oracle2).claimJob(jobId, terms);
      await expect(tx).to.emit(manager, "LeaseLapsed").withArgs(jobId, oracle.address, penalty);
      await expect(tx).to.emit(manager, "Slashed").withArgs(oracle.address, jobId, penalty, 1n);
      await expect(tx).to.emit(manager, "JobClaimed").withArgs(jobId, oracle2.address, anyValue);
      expect((await manager.getOperator(oracle.address)).stake).to.equal(H.MIN_STAKE - penalty);
      expect(await manager.withdrawable(requester.address)).to.equal(penalty);
      expect(await manager.hasLapsed(jobId, oracle.address)).to.equal(true);
      expect((await manager.getJob(jobId)).claimer).to.equal(oracle2.address);
      // the lapsed operator lost the job: it can neither fulfil it nor claim it back later
      await rejected(manager, manager.connect(oracle).fulfillJob(jobId, terms, H.CID_1, 0, "0x"), jobId, R.NotClaimer);
      await time.increase(901);
      await manager.connect(oracle).addStake({ value: penalty }); // back above minStake: still barred from this job
      await expect(manager.connect(oracle).claimJob(jobId, terms)).to.be.revertedWithCustomError(manager, "JobManagerCannotClaim");
      // a third operator can take it over from the second lapsed one
      await expect(manager.connect(op3).claimJob(jobId, terms)).to.emit(manager, "LeaseLapsed").withArgs(jobId, oracle2.address, penalty);
      await expect(manager.connect(op3).fulfillJob(jobId, terms, H.CID_1, 0, "0x")).to.emit(manager, "JobCompleted");
      expect(await manager.withdrawable(op3.address)).to.equal(H.MIN_FEE);
      expect(await manager.withdrawable(requester.address)).to.equal(2n * penalty);
    });

    it("a claimer whose lease lapsed may still deliver until someone reclaims (before the deadline)", async function () {
      const { manager, oracle, jobId, terms } = await loadFixture(claimedFixture);
      await time.increase(2000);
      await expect(manager.connect(oracle).fulfillJob(jobId, terms, H.CID_1, 0, "0x")).to.emit(manager, "JobCompleted");
    });

    it("restricted claimers: only the named operators may claim", async function () {
      const { manager, requester, oracle, oracle2 } = await loadFixture(H.deployWithTwoOracles);
      const { jobId, terms } = await request(manager, requester, { opts: [1, 0, [oracle2.address]] });
      await expect(manager.connect(oracle).claimJob(jobId, terms)).to.be.revertedWithCustomError(manager, "JobManagerCannotClaim").withArgs(jobId, oracle.address);
      // flipping `restricted` in the quoted terms does not help
      const open = [...terms];
      open[7] = false;
      await rejected(manager, manager.connect(oracle).claimJob(jobId, open), jobId, R.TermsMismatch);
      await expect(manager.connect(oracle2).claimJob(jobId, terms)).to.emit(manager, "JobClaimed");
    });
  });

  describe("fulfillJob (single replica)", function () {
    it("records the result digest, credits the claimer, emits the result", async function () {
      const { manager, oracle, jobId, terms } = await loadFixture(claimedFixture);
      const tx = manager.connect(oracle).fulfillJob(jobId, terms, H.CID_1, 3, "0x2a");
      await expect(tx).to.emit(manager, "JobCompleted").withArgs(jobId, H.CID_1, 3, "0x2a", oracle.address);
      const job = await manager.getJob(jobId);
      expect(job.status).to.equal(S.Completed);
      expect(await manager.resultDigest(jobId)).to.equal(H.resultHash(H.CID_1, 3, "0x2a"));
      expect(await manager.resultHash(H.CID_1, 3, "0x2a")).to.equal(H.resultHash(H.CID_1, 3, "0x2a"));
      expect(await manager.withdrawable(oracle.address)).to.equal(H.MIN_FEE);
      expect((await manager.getOperator(oracle.address)).earned).to.equal(H.MIN_FEE);
    });

    it("only the claimer can fulfil: a copier of the CID from the mempool reverts (attack: front-running)", async function () {
      const { manager, oracle, oracle2, stranger, jobId, terms } = await loadFixture(claimedFixture);
      await rejected(manager, manager.connect(oracle2).fulfillJob(jobId, terms, H.CID_1, 0, "0x"), jobId, R.NotClaimer);
      await rejected(manager, manager.connect(stranger).fulfillJob(jobId, terms, H.CID_1, 0, "0x"), jobId, R.NotClaimer);
      await rejected(manager, manager.connect(oracle2).failJob(jobId, terms, "x"), jobId, R.NotClaimer);
      await manager.connect(oracle).fulfillJob(jobId, terms, H.CID_1, 0, "0x");
      expect(await manager.withdrawable(oracle2.address)).to.equal(0n);
    });

    it("an unclaimed job cannot be fulfilled", async function () {
      const { manager, oracle, jobId, terms } = await loadFixture(requestedFixture);
      await rejected(manager, manager.connect(oracle).fulfillJob(jobId, terms, H.CID_1, 0, "0x"), jobId, R.WrongStatus);
    });

    it("rejects a second fulfilment and other terms (attack: double fulfil, reorged id)", async function () {
      const { manager, oracle, jobId, terms } = await loadFixture(claimedFixture);
      const other = [...terms];
      other[8] = ethers.ZeroHash;
      await rejected(manager, manager.connect(oracle).fulfillJob(jobId, other, H.CID_1, 0, "0x"), jobId, R.TermsMismatch);
      await manager.connect(oracle).fulfillJob(jobId, terms, H.CID_1, 0, "0x");
      await rejected(manager, manager.connect(oracle).fulfillJob(jobId, terms, H.CID_2, 0, "0x"), jobId, R.WrongStatus);
      await rejected(manager, manager.connect(oracle).failJob(jobId, terms, "x"), jobId, R.WrongStatus);
      expect(await manager.withdrawable(oracle.address)).to.equal(H.MIN_FEE);
    });

    it("accepts a fulfilment at the deadline and rejects one after it (attack: late fulfil)", async function () {
      const { manager, oracle, jobId, terms } = await loadFixture(claimedFixture);
      await time.setNextBlockTimestamp(terms[3] + 1n);
      await rejected(manager, manager.connect(oracle).fulfillJob(jobId, terms, H.CID_1, 0, "0x"), jobId, R.DeadlinePassed);
      const f = await loadFixture(claimedFixture);
      await time.setNextBlockTimestamp(f.terms[3]);
      await expect(f.manager.connect(f.oracle).fulfillJob(f.jobId, f.terms, H.CID_1, 0, "0x")).to.emit(f.manager, "JobCompleted");
    });

    it("rejects an empty or over-long CID and a result over 256 bytes; accepts the bounds", async function () {
      const { manager, oracle, jobId, terms } = await loadFixture(claimedFixture);
      const m = manager.connect(oracle);
      await rejected(manager, m.fulfillJob(jobId, terms, "", 0, "0x"), jobId, R.InvalidResult);
      await rejected(manager, m.fulfillJob(jobId, terms, "b".repeat(129), 0, "0x"), jobId, R.InvalidResult);
      await rejected(manager, m.fulfillJob(jobId, terms, H.CID_1, 0, "0x" + "ab".repeat(257)), jobId, R.InvalidResult);
      await expect(m.fulfillJob(jobId, terms, "b".repeat(128), 0, "0x" + "ab".repeat(256))).to.emit(manager, "JobCompleted");
    });

    it("keeps working while paused", async function () {
      const { manager, owner, oracle, jobId, terms } = await loadFixture(claimedFixture);
      await manager.connect(owner).pause();
      await expect(manager.connect(oracle).fulfillJob(jobId, terms, H.CID_1, 0, "0x")).to.emit(manager, "JobCompleted");
      await expect(manager.connect(oracle).withdraw()).to.emit(manager, "Withdrawn");
    });
  });

  describe("callbacks", function () {
    it("delivers CID, exit code and the small result after the state is final", async function () {
      const { manager, oracle } = await loadFixture(H.deployManager);
      const consumer = await (await ethers.getContractFactory("TestConsumer")).deploy(await manager.getAddress());
      await oracle.sendTransaction({ to: await consumer.getAddress(), value: H.MIN_FEE });
      await consumer.request(SPEC, H.MIN_FEE, 300_000);
      const small = ethers.AbiCoder.defaultAbiCoder().encode(["uint256"], [12345]);
      await expect(H.fulfil(manager, oracle, 1n, H.CID_1, 7, small)).not.to.emit(manager, "CallbackFailed");
      expect(await consumer.lastJobId()).to.equal(1n);
      expect(await consumer.lastResultCid()).to.equal(H.CID_1);
      expect(await consumer.lastExitCode()).to.equal(7n);
      expect(await consumer.lastResult()).to.equal(small);
      expect(await consumer.statusAtCallback()).to.equal(S.Completed);
      expect(await manager.withdrawable(oracle.address)).to.equal(H.MIN_FEE);
    });

    it("gives the callback exactly its gas limit, also at the smallest sufficient tx gas", async function () {
      const f = await H.deployManager();
      const probe = await (await ethers.getContractFactory("GasProbeConsumer")).deploy();
      for (let i = 0; i < 2; i++) await request(f.manager, f.requester, { consumer: await probe.getAddress(), gas: 200_000 });
      await (await H.fulfil(f.manager, f.oracle, 1n, H.CID_1, 0, "0x", { gasLimit: 2_000_000 })).wait();
      const generous = await probe.gasAtEntry();
      expect(generous).to.be.lte(200_000n);
      expect(generous).to.be.gte(199_000n);
      const terms = await H.claim(f.manager, f.oracle, 2n);
      const estimate = await f.manager.connect(f.oracle).fulfillJob.estimateGas(2n, terms, H.CID_1, 0, "0x");
      await f.manager.connect(f.oracle).fulfillJob(2n, terms, H.CID_1, 0, "0x", { gasLimit: estimate });
      expect(await probe.gasAtEntry()).to.equal(generous);
    });

    it("records a consumer with no code as a failed callback", async function () {
      const { manager, oracle, requester } = await loadFixture(H.deployManager);
      const eoa = ethers.Wallet.createRandom().address;
      await request(manager, requester, { consumer: eoa, gas: 100_000 });
      const reason = manager.interface.encodeErrorResult("JobManagerConsumerNotContract", [eoa]);
      await expect(H.fulfil(manager, oracle, 1n)).to.emit(manager, "CallbackFailed").withArgs(1n, reason);
      expect((await manager.getJob(1n)).status).to.equal(S.Completed);
    });

    it("records a reverting consumer's reason; the result stands and the operator is paid", async function () {
      const { manager, oracle, consumer, jobId, terms } = await loadFixture(consumerFixture.bind(null, "RevertingConsumer"));
      const reason = consumer.interface.encodeErrorResult("RevertingConsumerRefused", [jobId]);
      await expect(manager.connect(oracle).fulfillJob(jobId, terms, H.CID_1, 0, "0x"))
        .to.emit(manager, "CallbackFailed").withArgs(jobId, reason)
        .and.to.emit(manager, "JobCompleted");
      expect(await manager.withdrawable(oracle.address)).to.equal(H.MIN_FEE);
    });

    it("contains a gas-griefing consumer to its limit (attack: gas griefing)", async function () {
      const { manager, oracle, jobId, terms, gas } = await loadFixture(consumerFixture.bind(null, "GasGriefingConsumer"));
      const tx = await manager.connect(oracle).fulfillJob(jobId, terms, H.CID_1, 0, "0x", { gasLimit: 1_000_000 });
      await expect(tx).to.emit(manager, "CallbackFailed").withArgs(jobId, "0x");
      expect((await tx.wait()).gasUsed).to.be.lt(gas + 150_000n);
      expect((await manager.getJob(jobId)).status).to.equal(S.Completed);
    });

    it("makes a max-gas, gas-burning consumer pay the operator's whole gas at the floor price (attack: drain the operator)", async function () {
      const price = 10n ** 9n;
      const minFee = H.FULFIL_OVERHEAD_GAS * price;
      const [, oracle, attacker] = await ethers.getSigners();
      const manager = await (await ethers.getContractFactory("JobManager")).deploy(
        minFee, H.JOB_WINDOW, H.MAX_CALLBACK_GAS, price, H.MIN_STAKE, H.UNBONDING_DELAY);
      await manager.connect(oracle).registerOperator({ value: H.MIN_STAKE });
      const griefer = await (await ethers.getContractFactory("GasGriefingConsumer")).deploy();
      const target = await griefer.getAddress();
      const fee = await manager.quoteFee(target, H.MAX_CALLBACK_GAS, 1);
      await expect(manager.connect(attacker).requestJob(SPEC, target, H.MAX_CALLBACK_GAS, { value: minFee }))
        .to.be.revertedWithCustomError(manager, "JobManagerFeeTooLow").withArgs(minFee, fee);
      await request(manager, attacker, { consumer: target, gas: H.MAX_CALLBACK_GAS, value: fee });
      const tx = await H.fulfil(manager, oracle, 1n, "b".repeat(128), 255, "0x" + "ff".repeat(256), { gasLimit: 3_000_000 });
      await expect(tx).to.emit(manager, "CallbackFailed").withArgs(1n, "0x");
      const { gasUsed } = await tx.wait();
      console.log(`      fulfil with a ${H.MAX_CALLBACK_GAS}-gas burning callback: ${gasUsed} gas ` +
        `(${gasUsed - H.MAX_CALLBACK_GAS} beyond the callback; rule ${H.FULFIL_OVERHEAD_GAS})`);
      expect(gasUsed - H.MAX_CALLBACK_GAS).to.be.lte(H.FULFIL_OVERHEAD_GAS);
      expect(fee).to.be.gte(gasUsed * price);
    });

    it("caps onJobFailed's gas at FAIL_CALLBACK_GAS_LIMIT (attack: gas griefing on failure)", async function () {
      const { manager, oracle, requester } = await loadFixture(H.deployManager);
      const griefer = await (await ethers.getContractFactory("GasGriefingConsumer")).deploy();
      const probe = await (await ethers.getContractFactory("GasProbeConsumer")).deploy();
      for (const [c, limit] of [[griefer, H.MAX_CALLBACK_GAS], [probe, H.MAX_CALLBACK_GAS], [probe, 30_000n]]) {
        await request(manager, requester, { consumer: await c.getAddress(), gas: limit });
      }
      const tx = await H.fail(manager, oracle, 1n, "x", { gasLimit: 3_000_000 });
      await expect(tx).to.emit(manager, "CallbackFailed").withArgs(1n, "0x");
      expect((await tx.wait()).gasUsed).to.be.lt(50_000n + 100_000n);
      await (await H.fail(manager, oracle, 2n, "x", { gasLimit: 3_000_000 })).wait();
      expect(await probe.gasAtEntry()).to.be.lte(50_000n);
      expect(await probe.gasAtEntry()).to.be.gte(49_000n);
      await (await H.fail(manager, oracle, 3n, "x", { gasLimit: 3_000_000 })).wait();
      expect(await probe.gasAtEntry()).to.be.lte(30_000n);
      expect(await probe.gasAtEntry()).to.be.gte(29_000n);
    });

    it("copies at most 256 bytes of a huge revert; ignores huge return data of a success (attack: huge return data)", async function () {
      const { manager, oracle, requester } = await loadFixture(H.deployManager);
      const loud = await (await ethers.getContractFactory("HugeDataConsumer")).deploy(10_000);
      await request(manager, requester, { consumer: await loud.getAddress(), gas: 2_000_000 });
      await expect(H.fail(manager, oracle, 1n, "boom")).to.emit(manager, "CallbackFailed").withArgs(1n, "0x" + "ab".repeat(256));
      const quiet = await (await ethers.getContractFactory("HugeDataConsumer")).deploy(100_000);
      await request(manager, requester, { consumer: await quiet.getAddress(), gas: 2_000_000 });
      const tx = await H.fulfil(manager, oracle, 2n);
      await expect(tx).not.to.emit(manager, "CallbackFailed");
      expect((await tx.wait()).gasUsed).to.be.lt(2_000_000n);
    });

    it("reverts with InsufficientGasForCallback when the tx gas cannot cover the limit; nothing changes", async function () {
      const { manager, oracle, consumer, jobId, terms } = await loadFixture(consumerFixture.bind(null, "GasGriefingConsumer"));
      await expect(manager.connect(oracle).fulfillJob(jobId, terms, H.CID_1, 0, "0x", { gasLimit: 150_000 }))
        .to.be.revertedWithCustomError(manager, "InsufficientGasForCallback");
      const failEstimate = await manager.connect(oracle).failJob.estimateGas(jobId, terms, "x");
      await expect(manager.connect(oracle).failJob(jobId, terms, "x", { gasLimit: failEstimate - 1_000n }))
        .to.be.revertedWithCustomError(manager, "InsufficientGasForCallback").withArgs(jobId, 50_000n);
      expect((await manager.getJob(jobId)).status).to.equal(S.Claimed);
      expect(await consumer.counter()).to.equal(0n);
      // the smallest sufficient gas still records CallbackFailed
      const estimate = await manager.connect(oracle).fulfillJob.estimateGas(jobId, terms, H.CID_1, 0, "0x");
      await expect(manager.connect(oracle).fulfillJob(jobId, terms, H.CID_1, 0, "0x", { gasLimit: estimate }))
        .to.emit(manager, "CallbackFailed").withArgs(jobId, "0x");
    });

    it("stops a malicious consumer-operator from re-fulfilling or double-withdrawing (attack: re-entrancy)", async function () {
      const { manager } = await loadFixture(H.deployManager);
      const evil = await (await ethers.getContractFactory("ReentrantConsumer")).deploy(await manager.getAddress());
      const evilAddr = await evil.getAddress();
      await evil.register({ value: H.MIN_STAKE });
      await evil.request(SPEC, { value: H.MIN_FEE });
      await evil.claim(1n, await H.termsOf(manager, 1n));
      const before = await ethers.provider.getBalance(await manager.getAddress());
      const tx = evil.fulfil(1n, H.CID_1);
      await expect(tx).not.to.emit(manager, "CallbackFailed");
      const settled = manager.interface.encodeErrorResult("JobManagerRejected", [1n, R.WrongStatus]);
      await expect(tx).to.emit(evil, "AttemptReverted").withArgs("refulfil", settled);
      await expect(tx).to.emit(evil, "AttemptReverted").withArgs("refail", settled);
      await expect(tx).to.emit(evil, "AttemptReverted").withArgs("second withdraw",
        manager.interface.encodeErrorResult("JobManagerNothingToWithdraw", [evilAddr]));
      await expect(tx).to.emit(evil, "WithdrawnInCallback").withArgs(H.MIN_FEE);
      expect(await ethers.provider.getBalance(await manager.getAddress())).to.equal(before - H.MIN_FEE);
      expect(await manager.withdrawable(evilAddr)).to.equal(0n);
    });

    it("stops a malicious consumer-operator re-entering from onJobFailed", async function () {
      const { manager } = await loadFixture(H.deployManager);
      const evil = await (await ethers.getContractFactory("ReentrantConsumer")).deploy(await manager.getAddress());
      await evil.register({ value: H.MIN_STAKE });
      await evil.request(SPEC, { value: H.MIN_FEE });
      await evil.claim(1n, await H.termsOf(manager, 1n));
      const tx = evil.fail(1n);
      const failed = manager.interface.encodeErrorResult("JobManagerRejected", [1n, R.WrongStatus]);
      await expect(tx).to.emit(evil, "AttemptReverted").withArgs("refulfil", failed);
      await expect(tx).to.emit(evil, "AttemptReverted").withArgs("refail", failed);
      await expect(tx).to.emit(evil, "WithdrawnInCallback").withArgs(H.MIN_FEE); // its refund, as requester, once
      expect(await ethers.provider.getBalance(await manager.getAddress())).to.equal(2n * H.MIN_STAKE); // the two stakes
    });
  });

  describe("failJob", function () {
    it("refunds the whole fee to the requester (no failure fee: failing must not pay)", async function () {
      const { manager, oracle, requester, jobId, terms } = await loadFixture(claimedFixture);
      await expect(manager.connect(oracle).failJob(jobId, terms, "image not found"))
        .to.emit(manager, "JobFailed").withArgs(jobId, "image not found", oracle.address);
      expect((await manager.getJob(jobId)).status).to.equal(S.Failed);
      expect(await manager.withdrawable(requester.address)).to.equal(H.MIN_FEE);
      expect(await manager.withdrawable(oracle.address)).to.equal(0n);
    });

    it("is allowed after the deadline and while paused; the reason is bounded", async function () {
      const { manager, owner, oracle, jobId, terms } = await loadFixture(claimedFixture);
      await rejected(manager, manager.connect(oracle).failJob(jobId, terms, "x".repeat(1025)), jobId, R.ReasonTooLong);
      await manager.connect(owner).pause();
      await time.increaseTo(terms[3] + 10n);
      await expect(manager.connect(oracle).failJob(jobId, terms, "x".repeat(1024))).to.emit(manager, "JobFailed");
    });

    it("calls onJobFailed on the consumer", async function () {
      const { manager, oracle } = await loadFixture(H.deployManager);
      const consumer = await (await ethers.getContractFactory("TestConsumer")).deploy(await manager.getAddress());
      await oracle.sendTransaction({ to: await consumer.getAddress(), value: H.MIN_FEE });
      await consumer.request(SPEC, H.MIN_FEE, 300_000);
      await expect(H.fail(manager, oracle, 1n, "no such image")).to.emit(consumer, "FailureSeen")
        .withArgs(1n, "no such image", S.Failed, (g) => g <= 50_000n);
      expect(await consumer.failures()).to.equal(1n);
    });
  });

  describe("cancelJob", function () {
    it("refunds the requester after the deadline, not before (attack: early cancel), not a stranger", async function () {
      const { manager, requester, stranger, jobId, terms } = await loadFixture(requestedFixture);
      await time.setNextBlockTimestamp(terms[3]);
      await expect(manager.connect(requester).cancelJob(jobId, terms)).to.be.revertedWithCustomError(manager, "JobManagerDeadlineNotReached").withArgs(jobId, terms[3]);
      await expect(manager.connect(stranger).cancelJob(jobId, terms)).to.be.revertedWithCustomError(manager, "JobManagerUnauthorizedRequester");
      await expect(manager.connect(requester).cancelJob(jobId, terms)).to.emit(manager, "JobCancelled").withArgs(jobId);
      expect(await manager.withdrawable(requester.address)).to.equal(H.MIN_FEE);
      await rejected(manager, manager.connect(requester).cancelJob(jobId, terms), jobId, R.WrongStatus);
    });

    it("slashes a claimer that held the job to its deadline without a result (to the requester)", async function () {
      const { manager, oracle, requester, jobId, terms } = await loadFixture(claimedFixture);
      await time.increaseTo(terms[3] + 1n);
      const penalty = H.MIN_STAKE / 10n;
      await expect(manager.connect(requester).cancelJob(jobId, terms)).to.emit(manager, "LeaseLapsed").withArgs(jobId, oracle.address, penalty);
      expect(await manager.withdrawable(requester.address)).to.equal(H.MIN_FEE + penalty);
      await rejected(manager, manager.connect(oracle).fulfillJob(jobId, terms, H.CID_1, 0, "0x"), jobId, R.WrongStatus);
    });

    it("cannot cancel a fulfilled job", async function () {
      const { manager, oracle, requester, jobId, terms } = await loadFixture(claimedFixture);
      await manager.connect(oracle).fulfillJob(jobId, terms, H.CID_1, 0, "0x");
      await time.increaseTo(terms[3] + 1n);
      await rejected(manager, manager.connect(requester).cancelJob(jobId, terms), jobId, R.WrongStatus);
    });
  });

  describe("withdraw / withdrawTo", function () {
    async function creditedFixture() {
      const f = await claimedFixture();
      await f.manager.connect(f.oracle).fulfillJob(f.jobId, f.terms, H.CID_1, 0, "0x");
      return f;
    }

    it("sends the whole balance (earnings and refunds) to the caller or another address", async function () {
      const { manager, oracle, stranger } = await loadFixture(creditedFixture);
      const tx = manager.connect(oracle).withdrawTo(stranger.address);
      await expect(tx).to.emit(manager, "Withdrawn").withArgs(oracle.address, stranger.address, H.MIN_FEE);
      await expect(tx).to.changeEtherBalances([stranger, manager], [H.MIN_FEE, -H.MIN_FEE]);
      expect(await manager.withdrawable(oracle.address)).to.equal(0n);
      await expect(manager.connect(oracle).withdraw()).to.be.revertedWithCustomError(manager, "JobManagerNothingToWithdraw").withArgs(oracle.address);
      await expect(manager.connect(oracle).withdrawTo(ZERO)).to.be.revertedWithCustomError(manager, "JobManagerZeroAddress");
    });

    async function contractRequesterFixture() {
      const f = await H.deployManager();
      const req = await (await ethers.getContractFactory("ContractRequester")).deploy(await f.manager.getAddress());
      await req.request(SPEC, { value: H.MIN_FEE });
      await (await H.fail(f.manager, f.oracle, 1n, "refund me")).wait();
      return { ...f, req };
    }

    it("reverts and keeps the balance when the recipient rejects ETH", async function () {
      const { manager, req } = await loadFixture(contractRequesterFixture);
      await req.setMode(1);
      const reqAddr = await req.getAddress();
      await expect(req.withdraw()).to.be.revertedWithCustomError(manager, "JobManagerWithdrawFailed").withArgs(reqAddr, H.MIN_FEE);
      expect(await manager.withdrawable(reqAddr)).to.equal(H.MIN_FEE);
      await req.setMode(0);
      await req.withdraw();
      expect(await req.received()).to.equal(H.MIN_FEE);
    });

    it("blocks a recipient re-entering withdraw / withdrawTo (attack: re-entrancy on withdraw)", async function () {
      for (const mode of [2, 3]) {
        const { manager, req } = await loadFixture(contractRequesterFixture);
        await req.setMode(mode);
        const call = mode === 2 ? req.withdraw() : req.withdrawTo(await req.getAddress());
        await expect(call).to.changeEtherBalances([req, manager], [H.MIN_FEE, -H.MIN_FEE]);
        expect(await req.reentryError()).to.equal(manager.interface.encodeErrorResult("ReentrancyGuardReentrantCall", []));
        expect(await req.received()).to.equal(H.MIN_FEE);
      }
    });

    it("lets a contract requester cancel and get its refund", async function () {
      const { manager } = await loadFixture(H.deployManager);
      const req = await (await ethers.getContractFactory("ContractRequester")).deploy(await manager.getAddress());
      await req.request(SPEC, { value: H.MIN_FEE });
      await time.increase(H.JOB_WINDOW + 1n);
      await req.cancel(1n, await H.termsOf(manager, 1n));
      await req.withdraw();
      expect(await req.received()).to.equal(H.MIN_FEE);
    });
  });

  describe("fulfillBatch", function () {
    it("settles the good items, skips a bad one with its reason, credits the fees once", async function () {
      const { manager, requester, oracle, oracle2 } = await loadFixture(H.deployWithTwoOracles);
      const jobs = [];
      for (let i = 0; i < 5; i++) jobs.push(await request(manager, requester));
      for (const [i, j] of jobs.entries()) await manager.connect(i === 3 ? oracle2 : oracle).claimJob(j.jobId, j.terms);
      const items = jobs.map((j) => [j.jobId, j.terms, H.CID_1, 0, "0x"]);
      items[1] = [jobs[1].jobId, jobs[1].terms, "", 0, "0x"]; // bad CID
      const forged = [...jobs[4].terms];
      forged[2] = 1n;
      items[4] = [jobs[4].jobId, forged, H.CID_1, 0, "0x"]; // other terms
      // item 3 is held by oracle2
      const tx = manager.connect(oracle).fulfillBatch(items);
      await expect(tx).to.emit(manager, "SettlementSkipped").withArgs(jobs[1].jobId, R.InvalidResult);
      await expect(tx).to.emit(manager, "SettlementSkipped").withArgs(jobs[3].jobId, R.NotClaimer);
      await expect(tx).to.emit(manager, "SettlementSkipped").withArgs(jobs[4].jobId, R.TermsMismatch);
      await expect(tx).to.emit(manager, "JobCompleted").withArgs(jobs[0].jobId, H.CID_1, 0, "0x", oracle.address);
      await expect(tx).to.emit(manager, "JobCompleted").withArgs(jobs[2].jobId, H.CID_1, 0, "0x", oracle.address);
      expect((await manager.getJob(jobs[0].jobId)).status).to.equal(S.Completed);
      expect((await manager.getJob(jobs[1].jobId)).status).to.equal(S.Claimed);
      expect(await manager.withdrawable(oracle.address)).to.equal(2n * H.MIN_FEE);
      // a resubmitted batch skips the settled ones (no double pay)
      await expect(manager.connect(oracle).fulfillBatch([items[0]])).to.emit(manager, "SettlementSkipped").withArgs(jobs[0].jobId, R.WrongStatus);
      expect(await manager.withdrawable(oracle.address)).to.equal(2n * H.MIN_FEE);
    });

    it("calls each consumer back; skips an item whose callback gas cannot be given", async function () {
      const { manager, requester, oracle } = await loadFixture(H.deployManager);
      const consumer = await (await ethers.getContractFactory("TestConsumer")).deploy(await manager.getAddress());
      const addr = await consumer.getAddress();
      await oracle.sendTransaction({ to: addr, value: 2n * H.MIN_FEE });
      await consumer.request(SPEC, H.MIN_FEE, 300_000);
      await consumer.request(SPEC, H.MIN_FEE, 1_900_000);
      const t1 = await H.claim(manager, oracle, 1n);
      const t2 = await H.claim(manager, oracle, 2n);
      const tx = manager.connect(oracle).fulfillBatch([[1n, t1, H.CID_1, 0, "0x01"], [2n, t2, H.CID_2, 0, "0x02"]], { gasLimit: 900_000 });
      await expect(tx).to.emit(manager, "SettlementSkipped").withArgs(2n, R.InsufficientGas);
      expect(await consumer.lastJobId()).to.equal(1n);
      expect(await consumer.lastResult()).to.equal("0x01");
      expect((await manager.getJob(2n)).status).to.equal(S.Claimed);
    });
  });

  describe("replicated jobs (commit-reveal)", function () {
    const SALT = (n) => ethers.zeroPadValue(ethers.toBeHex(n), 32);

    async function replicatedFixture(k = 3, consumerName = "TestConsumer") {
      const f = await H.deployWithThreeOperators();
      const consumer = await (await ethers.getContractFactory(consumerName)).deploy(await f.manager.getAddress());
      const addr = await consumer.getAddress();
      const fee = BigInt(k) * H.MIN_FEE;
      await f.requester.sendTransaction({ to: addr, value: fee });
      // TestConsumer only requests single jobs; request on its behalf is refused by JobConsumer, so
      // the requester asks with the consumer's address and the callback is checked by event
      const { jobId, terms } = await request(f.manager, f.requester, { consumer: addr, gas: 300_000, value: fee, opts: [k, 600, []] });
      const ops = [f.oracle, f.oracle2, f.op3].slice(0, k);
      for (const op of ops) await f.manager.connect(op).claimJob(jobId, terms);
      return { ...f, consumer, jobId, terms, ops, fee };
    }

    const commit = (f, op, cid, exit, result, salt) =>
      f.manager.connect(op).commitResult(f.jobId, f.terms, H.commitment(f.jobId, op.address, cid, exit, result, salt));
    const reveal = (f, op, cid, exit, result, salt) =>
      f.manager.connect(op).revealResult(f.jobId, f.terms, cid, exit, result, salt);

    it("k distinct operators claim; a fourth claim and a second claim by the same operator are refused", async function () {
      const f = await H.deployWithThreeOperators();
      const { jobId, terms } = await request(f.manager, f.requester, { value: 2n * H.MIN_FEE, opts: [2, 0, []] });
      await f.manager.connect(f.oracle).claimJob(jobId, terms);
      await expect(f.manager.connect(f.oracle).claimJob(jobId, terms)).to.be.revertedWithCustomError(f.manager, "JobManagerCannotClaim");
      await f.manager.connect(f.oracle2).claimJob(jobId, terms);
      await expect(f.manager.connect(f.op3).claimJob(jobId, terms)).to.be.revertedWithCustomError(f.manager, "JobManagerCannotClaim");
      expect((await f.manager.getReplica(jobId, 1)).operator).to.equal(f.oracle2.address);
      await rejected(f.manager, f.manager.connect(f.oracle).fulfillJob(jobId, terms, H.CID_1, 0, "0x"), jobId, R.WrongReplicas);
    });

    it("replicas=3 with one wrong reveal: the majority wins, the consumer gets its answer, the rogue is slashed to requester and honest operators", async function () {
      const f = await replicatedFixture(3);
      const [a, b, rogue] = f.ops;
      const small = "0x0539";
      await commit(f, a, H.CID_1, 0, small, SALT(1));
      await commit(f, rogue, H.CID_2, 0, "0x0666", SALT(3));
      await expect(commit(f, b, H.CID_1, 0, small, SALT(2))).to.emit(f.manager, "RevealOpened");
      expect((await f.manager.getJob(f.jobId)).status).to.equal(S.Revealing);
      await reveal(f, rogue, H.CID_2, 0, "0x0666", SALT(3));
      await reveal(f, a, H.CID_1, 0, small, SALT(1));
      const tx = reveal(f, b, H.CID_1, 0, small, SALT(2));
      // the consumer is not one of TestConsumer's own requests: JobConsumer refuses, recorded as CallbackFailed,
      // which proves the JobManager called onJobResult with the majority's answer exactly once
      await expect(tx).to.emit(f.manager, "JobCompleted").withArgs(f.jobId, H.CID_1, 0, small, b.address);
      await expect(tx).to.emit(f.manager, "CallbackFailed").withArgs(f.jobId, f.consumer.interface.encodeErrorResult("JobConsumerUnknownJob", [f.jobId]));
      expect(await f.manager.resultDigest(f.jobId)).to.equal(H.resultHash(H.CID_1, 0, small));
      expect((await f.manager.getJob(f.jobId)).settlePending).to.equal(true);
      // every committed replica revealed: finalize at once
      const penalty = H.MIN_STAKE / 2n;
      const fin = f.manager.connect(f.stranger).finalize(f.jobId, f.terms);
      await expect(fin).to.emit(f.manager, "Slashed").withArgs(rogue.address, f.jobId, penalty, 2n);
      await expect(fin).to.emit(f.manager, "JobFinalized").withArgs(f.jobId, 2n, penalty);
      const share = penalty / 3n;
      expect(await f.manager.withdrawable(a.address)).to.equal(f.fee / 2n + share);
      expect(await f.manager.withdrawable(b.address)).to.equal(f.fee / 2n + share);
      expect(await f.manager.withdrawable(rogue.address)).to.equal(0n);
      expect(await f.manager.withdrawable(f.requester.address)).to.equal(penalty - 2n * share);
      expect((await f.manager.getOperator(rogue.address)).stake).to.equal(H.MIN_STAKE - penalty);
      expect((await f.manager.getJob(f.jobId)).settlePending).to.equal(false);
      await rejected(f.manager, f.manager.finalize(f.jobId, f.terms), f.jobId, R.WrongStatus);
    });

    it("delivers the majority's answer to a real consumer exactly once", async function () {
      const f = await H.deployWithThreeOperators();
      const consumer = await (await ethers.getContractFactory("ReplicatedConsumer")).deploy(await f.manager.getAddress());
      const addr = await consumer.getAddress();
      await f.requester.sendTransaction({ to: addr, value: 3n * H.MIN_FEE });
      await consumer.request(SPEC, 3n * H.MIN_FEE, 300_000, 3);
      const jobId = 1n;
      const terms = await H.termsOf(f.manager, jobId);
      const g = { manager: f.manager, jobId, terms };
      const ops = [f.oracle, f.oracle2, f.op3];
      for (const op of ops) await f.manager.connect(op).claimJob(jobId, terms);
      await commit(g, ops[0], H.CID_1, 0, "0x07", SALT(1));
      await commit(g, ops[1], H.CID_2, 1, "0x08", SALT(2));
      await commit(g, ops[2], H.CID_1, 0, "0x07", SALT(3));
      await reveal(g, ops[0], H.CID_1, 0, "0x07", SALT(1));
      await reveal(g, ops[1], H.CID_2, 1, "0x08", SALT(2));
      await expect(reveal(g, ops[2], H.CID_1, 0, "0x07", SALT(3))).not.to.emit(f.manager, "CallbackFailed");
      expect(await consumer.lastResultCid()).to.equal(H.CID_1);
      expect(await consumer.lastResult()).to.equal("0x07");
      expect(await consumer.results()).to.equal(1n);
    });

    it("replicas=2 disagreement: the job fails with a refund of the whole fee", async function () {
      const f = await replicatedFixture(2);
      const [a, b] = f.ops;
      await commit(f, a, H.CID_1, 0, "0x", SALT(1));
      await commit(f, b, H.CID_2, 0, "0x", SALT(2));
      await reveal(f, a, H.CID_1, 0, "0x", SALT(1));
      await expect(reveal(f, b, H.CID_2, 0, "0x", SALT(2))).not.to.emit(f.manager, "JobCompleted");
      const fin = f.manager.finalize(f.jobId, f.terms);
      await expect(fin).to.emit(f.manager, "JobFailed").withArgs(f.jobId, "replicas disagree", ZERO);
      expect((await f.manager.getJob(f.jobId)).status).to.equal(S.Failed);
      expect(await f.manager.withdrawable(f.requester.address)).to.equal(f.fee);
      expect(await f.manager.withdrawable(a.address)).to.equal(0n);
      expect((await f.manager.getOperator(a.address)).stake).to.equal(H.MIN_STAKE);
    });

    it("the small result is covered by the agreement: same CID and exit code, other result → no majority", async function () {
      const f = await replicatedFixture(2);
      const [a, b] = f.ops;
      await commit(f, a, H.CID_1, 0, "0x01", SALT(1));
      await commit(f, b, H.CID_1, 0, "0x02", SALT(2));
      await reveal(f, a, H.CID_1, 0, "0x01", SALT(1));
      await expect(reveal(f, b, H.CID_1, 0, "0x02", SALT(2))).not.to.emit(f.manager, "JobCompleted");
      expect((await f.manager.getReplica(f.jobId, 0)).answer).to.equal(H.resultHash(H.CID_1, 0, "0x01"));
      expect((await f.manager.getReplica(f.jobId, 1)).answer).to.equal(H.resultHash(H.CID_1, 0, "0x02"));
      await expect(f.manager.finalize(f.jobId, f.terms)).to.emit(f.manager, "JobFailed").withArgs(f.jobId, "replicas disagree", ZERO);
    });

    it("a copied commitment cannot be revealed by the copier (attack: copy the commit or the reveal)", async function () {
      const f = await replicatedFixture(3);
      const [a, copier, c] = f.ops;
      const honest = H.commitment(f.jobId, a.address, H.CID_1, 0, "0x", SALT(1));
      await f.manager.connect(a).commitResult(f.jobId, f.terms, honest);
      await f.manager.connect(copier).commitResult(f.jobId, f.terms, honest); // copied from the mempool
      await commit(f, c, H.CID_1, 0, "0x", SALT(3));
      await reveal(f, a, H.CID_1, 0, "0x", SALT(1));
      // having seen a's reveal, the copier replays it: the commitment binds a's address, not the copier's
      await rejected(f.manager, reveal(f, copier, H.CID_1, 0, "0x", SALT(1)), f.jobId, R.BadReveal);
      await reveal(f, c, H.CID_1, 0, "0x", SALT(3));
      await time.increase(601);
      const fin = f.manager.finalize(f.jobId, f.terms);
      await expect(fin).to.emit(f.manager, "Slashed").withArgs(copier.address, f.jobId, H.MIN_STAKE / 2n, 3n);
      expect(await f.manager.withdrawable(copier.address)).to.equal(0n);
    });

    it("commit without reveal is slashed at finalize; finalize waits for the reveal window", async function () {
      const f = await replicatedFixture(3);
      const [a, b, silent] = f.ops;
      await commit(f, a, H.CID_1, 0, "0x", SALT(1));
      await commit(f, b, H.CID_1, 0, "0x", SALT(2));
      await commit(f, silent, H.CID_1, 0, "0x", SALT(3));
      await reveal(f, a, H.CID_1, 0, "0x", SALT(1));
      await expect(reveal(f, b, H.CID_1, 0, "0x", SALT(2))).to.emit(f.manager, "JobCompleted");
      await expect(f.manager.finalize(f.jobId, f.terms)).to.be.revertedWithCustomError(f.manager, "JobManagerRevealWindowOpen");
      await time.increase(601);
      await rejected(f.manager, reveal(f, silent, H.CID_1, 0, "0x", SALT(3)), f.jobId, R.RevealNotOpen);
      const penalty = H.MIN_STAKE / 2n;
      await expect(f.manager.finalize(f.jobId, f.terms)).to.emit(f.manager, "Slashed").withArgs(silent.address, f.jobId, penalty, 3n);
      expect((await f.manager.getOperator(silent.address)).stake).to.equal(H.MIN_STAKE - penalty);
    });

    it("a late honest reveal (after the majority, within the window) still earns its share", async function () {
      const f = await replicatedFixture(3);
      for (const [i, op] of f.ops.entries()) await commit(f, op, H.CID_1, 0, "0x", SALT(i));
      await reveal(f, f.ops[0], H.CID_1, 0, "0x", SALT(0));
      await reveal(f, f.ops[1], H.CID_1, 0, "0x", SALT(1));
      await expect(reveal(f, f.ops[2], H.CID_1, 0, "0x", SALT(2))).not.to.emit(f.manager, "JobCompleted");
      await expect(f.manager.finalize(f.jobId, f.terms)).to.emit(f.manager, "JobFinalized").withArgs(f.jobId, 3n, 0n);
      for (const op of f.ops) expect(await f.manager.withdrawable(op.address)).to.equal(H.MIN_FEE);
    });

    it("a lapsed replica slot is reclaimed; with a majority committed and the rest lapsed the reveal opens early", async function () {
      const f = await replicatedFixture(3);
      const [a, b, lazy] = f.ops;
      await commit(f, a, H.CID_1, 0, "0x", SALT(1));
      await commit(f, b, H.CID_1, 0, "0x", SALT(2));
      await rejected(f.manager, reveal(f, a, H.CID_1, 0, "0x", SALT(1)), f.jobId, R.RevealNotOpen); // lazy's lease holds
      await time.increase(601);
      await expect(reveal(f, a, H.CID_1, 0, "0x", SALT(1))).to.emit(f.manager, "RevealOpened");
      await reveal(f, b, H.CID_1, 0, "0x", SALT(2));
      const fin = f.manager.finalize(f.jobId, f.terms);
      await expect(fin).to.emit(f.manager, "Slashed").withArgs(lazy.address, f.jobId, H.MIN_STAKE / 10n, 1n);
      await expect(fin).to.emit(f.manager, "JobFinalized").withArgs(f.jobId, 2n, H.MIN_STAKE / 10n);
    });

    it("a fast majority cannot open the reveal before the commit phase ends (attack: shut out a replica)", async function () {
      const f = await H.deployWithThreeOperators();
      const { jobId, terms } = await request(f.manager, f.requester, { value: 3n * H.MIN_FEE, opts: [3, 300, []] });
      const g = { manager: f.manager, jobId, terms };
      await f.manager.connect(f.oracle).claimJob(jobId, terms);
      await f.manager.connect(f.oracle2).claimJob(jobId, terms);
      await commit(g, f.oracle, H.CID_2, 0, "0x", SALT(1));
      await commit(g, f.oracle2, H.CID_2, 0, "0x", SALT(2));
      // the third slot is still empty, but the two leases run: no reveal yet
      await rejected(f.manager, reveal(g, f.oracle, H.CID_2, 0, "0x", SALT(1)), jobId, R.RevealNotOpen);
      await time.increase(200);
      await f.manager.connect(f.op3).claimJob(jobId, terms); // the third replica joins in time
      await time.increase(150); // the first two leases ended, the third's holds
      await rejected(f.manager, reveal(g, f.oracle, H.CID_2, 0, "0x", SALT(1)), jobId, R.RevealNotOpen);
      await expect(commit(g, f.op3, H.CID_1, 0, "0x", SALT(3))).to.emit(f.manager, "RevealOpened");
    });

    it("a lapsed replica slot can be taken over by a new operator", async function () {
      const f = await H.deployWithThreeOperators();
      const [, , , , , , fourth] = await ethers.getSigners();
      await f.manager.connect(fourth).registerOperator({ value: H.MIN_STAKE });
      const { jobId, terms } = await request(f.manager, f.requester, { value: 2n * H.MIN_FEE, opts: [2, 120, []] });
      await f.manager.connect(f.oracle).claimJob(jobId, terms);
      await f.manager.connect(f.oracle2).claimJob(jobId, terms);
      await time.increase(121);
      await expect(f.manager.connect(fourth).claimJob(jobId, terms)).to.emit(f.manager, "LeaseLapsed").withArgs(jobId, f.oracle.address, H.MIN_STAKE / 10n);
      expect((await f.manager.getReplica(jobId, 0)).operator).to.equal(fourth.address);
      await rejected(f.manager, f.manager.connect(f.oracle).commitResult(jobId, terms, ethers.ZeroHash), jobId, R.NotClaimer);
    });

    it("batches commits and reveals, skipping bad items", async function () {
      const f = await replicatedFixture(3);
      const second = await request(f.manager, f.requester, { value: 3n * H.MIN_FEE, opts: [3, 0, []] });
      for (const op of f.ops) await f.manager.connect(op).claimJob(second.jobId, second.terms);
      for (const [i, op] of f.ops.entries()) {
        const tx = f.manager.connect(op).commitBatch([
          [f.jobId, f.terms, H.commitment(f.jobId, op.address, H.CID_1, 0, "0x", SALT(i))],
          [second.jobId, second.terms, H.commitment(second.jobId, op.address, H.CID_2, 0, "0x", SALT(i))],
          [99n, f.terms, ethers.ZeroHash],
        ]);
        await expect(tx).to.emit(f.manager, "SettlementSkipped").withArgs(99n, R.TermsMismatch);
      }
      for (const [i, op] of f.ops.entries()) {
        const tx = f.manager.connect(op).revealBatch([
          [f.jobId, f.terms, H.CID_1, 0, "0x", SALT(i)],
          [second.jobId, second.terms, H.CID_2, 0, "0x", SALT(i + 7)], // wrong salt
        ]);
        await expect(tx).to.emit(f.manager, "SettlementSkipped").withArgs(second.jobId, R.BadReveal);
      }
      expect(await f.manager.resultDigest(f.jobId)).to.equal(H.resultHash(H.CID_1, 0, "0x"));
      expect((await f.manager.getJob(second.jobId)).status).to.equal(S.Revealing);
    });

    it("a replicated job nobody committed enough for is cancelled after its deadline; claimers without commit are slashed", async function () {
      const f = await replicatedFixture(3);
      await commit(f, f.ops[0], H.CID_1, 0, "0x", SALT(1));
      await time.increaseTo(f.terms[3] + 1n);
      const tx = f.manager.connect(f.requester).cancelJob(f.jobId, f.terms);
      await expect(tx).to.emit(f.manager, "LeaseLapsed").withArgs(f.jobId, f.ops[1].address, H.MIN_STAKE / 10n);
      await expect(tx).to.emit(f.manager, "LeaseLapsed").withArgs(f.jobId, f.ops[2].address, H.MIN_STAKE / 10n);
      expect(await f.manager.withdrawable(f.requester.address)).to.equal(f.fee + H.MIN_STAKE / 5n);
    });
  });
});

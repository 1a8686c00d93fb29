const { expect } = require("chai");
const { ethers } = require("hardhat");
const { loadFixture, time, setBalance } = require("@nomicfoundation/hardhat-network-helpers");
const H = require("./helpers");

const Status = { None: 0n, Requested: 1n, Completed: 2n, Failed: 3n, Cancelled: 4n };
const SPEC = H.typicalSpec();

describe("JobManager", function () {
  async function requestedFixture() {
    const f = await H.deployManager();
    await f.manager.connect(f.requester).requestJob(SPEC, ethers.ZeroAddress, 0, { value: H.MIN_FEE });
    const job = await f.manager.getJob(1n);
    return { ...f, jobId: 1n, deadline: job.deadline };
  }

  async function consumerFixture(name, ...args) {
    const f = await H.deployManager();
    const consumer = await (await ethers.getContractFactory(name)).deploy(...args);
    const gas = 200_000n;
    await f.manager
      .connect(f.requester)
      .requestJob(SPEC, await consumer.getAddress(), gas, { value: H.MIN_FEE });
    return { ...f, consumer, jobId: 1n, gas };
  }

  describe("deployment", function () {
    it("sets owner, parameters and the first job id", async function () {
      const { manager, owner } = await loadFixture(H.deployManager);
      expect(await manager.owner()).to.equal(owner.address);
      expect(await manager.minFee()).to.equal(H.MIN_FEE);
      expect(await manager.jobWindow()).to.equal(H.JOB_WINDOW);
      expect(await manager.maxCallbackGasLimit()).to.equal(H.MAX_CALLBACK_GAS);
      expect(await manager.failureFee()).to.equal(0n);
      expect(await manager.nextJobId()).to.equal(1n);
      expect(await manager.totalEscrowed()).to.equal(0n);
      expect(await manager.paused()).to.equal(false);
      expect(await manager.MAX_SPEC_BYTES()).to.equal(8192n);
      expect((await manager.getJob(0n)).status).to.equal(Status.None);
    });

    it("emits the parameter events", async function () {
      const JobManager = await ethers.getContractFactory("JobManager");
      const manager = await JobManager.deploy(5n, 120n, 1000n);
      const tx = manager.deploymentTransaction();
      await expect(tx).to.emit(manager, "MinFeeSet").withArgs(5n);
      await expect(tx).to.emit(manager, "JobWindowSet").withArgs(120n);
      await expect(tx).to.emit(manager, "MaxCallbackGasLimitSet").withArgs(1000n);
    });

    it("rejects a bad job window or callback gas cap", async function () {
      const JobManager = await ethers.getContractFactory("JobManager");
      await expect(JobManager.deploy(0n, 59n, 0n)).to.be.revertedWithCustomError(
        JobManager,
        "JobManagerInvalidJobWindow",
      );
      await expect(JobManager.deploy(0n, 60n, 5_000_001n)).to.be.revertedWithCustomError(
        JobManager,
        "JobManagerInvalidMaxCallbackGasLimit",
      );
    });
  });

  describe("requestJob", function () {
    it("escrows the fee, stores the job and emits the spec", async function () {
      const { manager, requester } = await loadFixture(H.deployManager);
      const consumer = ethers.Wallet.createRandom().address;
      const fee = H.MIN_FEE + 7n;
      const tx = manager.connect(requester).requestJob(SPEC, consumer, 123_456, { value: fee });
      const ts = BigInt((await ethers.provider.getBlock("latest")).timestamp) + 1n;
      await time.setNextBlockTimestamp(ts);
      await expect(tx)
        .to.emit(manager, "JobRequested")
        .withArgs(1n, requester.address, consumer, SPEC, fee, ts + H.JOB_WINDOW);
      await expect(tx).to.changeEtherBalances([requester, manager], [-fee, fee]);
      const job = await manager.getJob(1n);
      expect(job.requester).to.equal(requester.address);
      expect(job.consumer).to.equal(consumer);
      expect(job.fee).to.equal(fee);
      expect(job.deadline).to.equal(ts + H.JOB_WINDOW);
      expect(job.callbackGasLimit).to.equal(123_456n);
      expect(job.status).to.equal(Status.Requested);
      expect(job.exitCode).to.equal(0n);
      expect(job.resultCid).to.equal("");
      expect(await manager.totalEscrowed()).to.equal(fee);
      expect(await manager.nextJobId()).to.equal(2n);
    });

    it("returns consecutive ids starting at 1", async function () {
      const { manager, requester } = await loadFixture(H.deployManager);
      const id = await manager.connect(requester).requestJob.staticCall(SPEC, ethers.ZeroAddress, 0, {
        value: H.MIN_FEE,
      });
      expect(id).to.equal(1n);
      await manager.connect(requester).requestJob(SPEC, ethers.ZeroAddress, 0, { value: H.MIN_FEE });
      await expect(manager.connect(requester).requestJob(SPEC, ethers.ZeroAddress, 0, { value: H.MIN_FEE }))
        .to.emit(manager, "JobRequested")
        .withArgs(2n, requester.address, ethers.ZeroAddress, SPEC, H.MIN_FEE, (d) => d > 0n);
    });

    it("accepts a callback gas limit with no consumer (ignored) and one at the maximum", async function () {
      const { manager, requester, oracle } = await loadFixture(H.deployManager);
      await manager.connect(requester).requestJob(SPEC, ethers.ZeroAddress, H.MAX_CALLBACK_GAS, { value: H.MIN_FEE });
      await expect(manager.connect(oracle).fulfillJob(1n, H.CID_1, 0)).not.to.emit(manager, "CallbackFailed");
    });

    it("rejects a fee below the minimum", async function () {
      const { manager, requester } = await loadFixture(H.deployManager);
      await expect(manager.connect(requester).requestJob(SPEC, ethers.ZeroAddress, 0, { value: H.MIN_FEE - 1n }))
        .to.be.revertedWithCustomError(manager, "JobManagerFeeTooLow")
        .withArgs(H.MIN_FEE - 1n, H.MIN_FEE);
    });

    it("rejects a fee that does not fit in uint96", async function () {
      const { manager, requester } = await loadFixture(H.deployManager);
      const tooMuch = 2n ** 96n;
      await setBalance(requester.address, tooMuch * 2n);
      await expect(manager.connect(requester).requestJob(SPEC, ethers.ZeroAddress, 0, { value: tooMuch }))
        .to.be.revertedWithCustomError(manager, "JobManagerFeeTooHigh")
        .withArgs(tooMuch);
    });

    it("rejects an empty spec and one over MAX_SPEC_BYTES, accepts exactly MAX_SPEC_BYTES", async function () {
      const { manager, requester } = await loadFixture(H.deployManager);
      await expect(manager.connect(requester).requestJob("", ethers.ZeroAddress, 0, { value: H.MIN_FEE }))
        .to.be.revertedWithCustomError(manager, "JobManagerInvalidSpecLength")
        .withArgs(0n, 8192n);
      await expect(manager.connect(requester).requestJob("x".repeat(8193), ethers.ZeroAddress, 0, { value: H.MIN_FEE }))
        .to.be.revertedWithCustomError(manager, "JobManagerInvalidSpecLength")
        .withArgs(8193n, 8192n);
      await expect(manager.connect(requester).requestJob("x".repeat(8192), ethers.ZeroAddress, 0, { value: H.MIN_FEE }))
        .to.emit(manager, "JobRequested");
    });

    it("rejects a callback gas limit above the maximum", async function () {
      const { manager, requester } = await loadFixture(H.deployManager);
      await expect(
        manager.connect(requester).requestJob(SPEC, requester.address, H.MAX_CALLBACK_GAS + 1n, { value: H.MIN_FEE }),
      )
        .to.be.revertedWithCustomError(manager, "JobManagerCallbackGasLimitTooHigh")
        .withArgs(H.MAX_CALLBACK_GAS + 1n, H.MAX_CALLBACK_GAS);
    });

    it("rejects requests while paused and accepts them again after unpause", async function () {
      const { manager, requester, owner } = await loadFixture(H.deployManager);
      await expect(manager.connect(owner).pause()).to.emit(manager, "Paused").withArgs(owner.address);
      await expect(
        manager.connect(requester).requestJob(SPEC, ethers.ZeroAddress, 0, { value: H.MIN_FEE }),
      ).to.be.revertedWithCustomError(manager, "EnforcedPause");
      await expect(manager.connect(owner).unpause()).to.emit(manager, "Unpaused").withArgs(owner.address);
      await expect(manager.connect(requester).requestJob(SPEC, ethers.ZeroAddress, 0, { value: H.MIN_FEE })).to.emit(
        manager,
        "JobRequested",
      );
    });
  });

  describe("fulfillJob", function () {
    it("records the result, credits the oracle and releases the escrow", async function () {
      const { manager, oracle, jobId } = await loadFixture(requestedFixture);
      await expect(manager.connect(oracle).fulfillJob(jobId, H.CID_1, 3))
        .to.emit(manager, "JobCompleted")
        .withArgs(jobId, H.CID_1, 3);
      const job = await manager.getJob(jobId);
      expect(job.status).to.equal(Status.Completed);
      expect(job.resultCid).to.equal(H.CID_1);
      expect(job.exitCode).to.equal(3n);
      expect(await manager.withdrawable(oracle.address)).to.equal(H.MIN_FEE);
      expect(await manager.totalEscrowed()).to.equal(0n);
    });

    it("rejects an unauthorised caller (attack: unauthorised fulfil)", async function () {
      const { manager, stranger, requester, jobId } = await loadFixture(requestedFixture);
      for (const who of [stranger, requester]) {
        await expect(manager.connect(who).fulfillJob(jobId, H.CID_1, 0))
          .to.be.revertedWithCustomError(manager, "JobManagerUnauthorizedOracle")
          .withArgs(who.address);
      }
    });

    it("rejects a removed oracle", async function () {
      const { manager, owner, oracle, jobId } = await loadFixture(requestedFixture);
      await expect(manager.connect(owner).setOracle(oracle.address, false))
        .to.emit(manager, "OracleSet")
        .withArgs(oracle.address, false);
      await expect(manager.connect(oracle).fulfillJob(jobId, H.CID_1, 0)).to.be.revertedWithCustomError(
        manager,
        "JobManagerUnauthorizedOracle",
      );
    });

    it("rejects a second fulfilment, by the same or another oracle (attack: double fulfil)", async function () {
      const { manager, owner, oracle, oracle2, jobId } = await loadFixture(requestedFixture);
      await manager.connect(owner).setOracle(oracle2.address, true);
      await manager.connect(oracle).fulfillJob(jobId, H.CID_1, 0);
      for (const who of [oracle, oracle2]) {
        await expect(manager.connect(who).fulfillJob(jobId, H.CID_2, 0))
          .to.be.revertedWithCustomError(manager, "JobManagerJobNotRequested")
          .withArgs(jobId, Status.Completed);
      }
      await expect(manager.connect(oracle).failJob(jobId, "late"))
        .to.be.revertedWithCustomError(manager, "JobManagerJobNotRequested")
        .withArgs(jobId, Status.Completed);
      expect((await manager.getJob(jobId)).resultCid).to.equal(H.CID_1);
      expect(await manager.withdrawable(oracle2.address)).to.equal(0n);
    });

    it("rejects unknown jobs, including id 0", async function () {
      const { manager, oracle } = await loadFixture(requestedFixture);
      for (const id of [0n, 2n, 999n]) {
        await expect(manager.connect(oracle).fulfillJob(id, H.CID_1, 0))
          .to.be.revertedWithCustomError(manager, "JobManagerJobNotRequested")
          .withArgs(id, Status.None);
      }
    });

    it("accepts a fulfilment at the deadline and rejects one after it (attack: late fulfil)", async function () {
      const { manager, oracle, jobId, deadline } = await loadFixture(requestedFixture);
      await time.setNextBlockTimestamp(deadline + 1n);
      await expect(manager.connect(oracle).fulfillJob(jobId, H.CID_1, 0))
        .to.be.revertedWithCustomError(manager, "JobManagerDeadlinePassed")
        .withArgs(jobId, deadline);
    });

    it("accepts a fulfilment in the deadline's own block", async function () {
      const { manager, oracle, jobId, deadline } = await loadFixture(requestedFixture);
      await time.setNextBlockTimestamp(deadline);
      await expect(manager.connect(oracle).fulfillJob(jobId, H.CID_1, 0)).to.emit(manager, "JobCompleted");
    });

    it("rejects an empty or over-long result CID", async function () {
      const { manager, oracle, jobId } = await loadFixture(requestedFixture);
      await expect(manager.connect(oracle).fulfillJob(jobId, "", 0))
        .to.be.revertedWithCustomError(manager, "JobManagerInvalidResultCidLength")
        .withArgs(0n, 128n);
      await expect(manager.connect(oracle).fulfillJob(jobId, "b".repeat(129), 0))
        .to.be.revertedWithCustomError(manager, "JobManagerInvalidResultCidLength")
        .withArgs(129n, 128n);
      await expect(manager.connect(oracle).fulfillJob(jobId, "b".repeat(128), 0)).to.emit(manager, "JobCompleted");
    });

    it("keeps working while paused", async function () {
      const { manager, owner, oracle, jobId } = await loadFixture(requestedFixture);
      await manager.connect(owner).pause();
      await expect(manager.connect(oracle).fulfillJob(jobId, H.CID_1, 0)).to.emit(manager, "JobCompleted");
      await expect(manager.connect(oracle).withdraw()).to.emit(manager, "Withdrawn");
    });
  });

  describe("callbacks", function () {
    it("calls a consumer's onJobResult after the state is final", async function () {
      const { manager, oracle } = await loadFixture(H.deployManager);
      const consumer = await (await ethers.getContractFactory("TestConsumer")).deploy(await manager.getAddress());
      await oracle.sendTransaction({ to: await consumer.getAddress(), value: H.MIN_FEE });
      await consumer.request(SPEC, H.MIN_FEE, 300_000);
      await expect(manager.connect(oracle).fulfillJob(1n, H.CID_1, 7)).not.to.emit(manager, "CallbackFailed");
      expect(await consumer.lastJobId()).to.equal(1n);
      expect(await consumer.lastResultCid()).to.equal(H.CID_1);
      expect(await consumer.lastExitCode()).to.equal(7n);
      expect(await consumer.results()).to.equal(1n);
      expect(await consumer.statusAtCallback()).to.equal(Status.Completed);
      expect(await manager.withdrawable(oracle.address)).to.equal(H.MIN_FEE);
    });

    it("gives the callback exactly its gas limit", async function () {
      const { manager, oracle, consumer, jobId, gas } = await loadFixture(
        consumerFixture.bind(null, "GasProbeConsumer"),
      );
      await manager.connect(oracle).fulfillJob(jobId, H.CID_1, 0, { gasLimit: 1_000_000 });
      const atEntry = await consumer.gasAtEntry();
      expect(atEntry).to.be.lte(gas);
      expect(atEntry).to.be.gte(gas - 1_000n); // only dispatch and calldata decoding before gasleft()
    });

    it("gives the callback the same gas at the smallest sufficient tx gas limit", async function () {
      const f = await H.deployManager();
      const probe = await (await ethers.getContractFactory("GasProbeConsumer")).deploy();
      for (let i = 0; i < 2; i++) {
        await f.manager.connect(f.requester).requestJob(SPEC, await probe.getAddress(), 200_000, { value: H.MIN_FEE });
      }
      await f.manager.connect(f.oracle).fulfillJob(1n, H.CID_1, 0, { gasLimit: 2_000_000 });
      const generous = await probe.gasAtEntry();
      const estimate = await f.manager.connect(f.oracle).fulfillJob.estimateGas(2n, H.CID_1, 0);
      await f.manager.connect(f.oracle).fulfillJob(2n, H.CID_1, 0, { gasLimit: estimate });
      expect(await probe.gasAtEntry()).to.equal(generous);
    });

    it("records a consumer with no code as a failed callback", async function () {
      const { manager, oracle, requester } = await loadFixture(H.deployManager);
      const eoa = ethers.Wallet.createRandom().address;
      await manager.connect(requester).requestJob(SPEC, eoa, 100_000, { value: H.MIN_FEE });
      const reason = manager.interface.encodeErrorResult("JobManagerConsumerNotContract", [eoa]);
      await expect(manager.connect(oracle).fulfillJob(1n, H.CID_1, 0))
        .to.emit(manager, "CallbackFailed")
        .withArgs(1n, reason);
      expect((await manager.getJob(1n)).status).to.equal(Status.Completed);
    });

    it("records a reverting consumer's reason; the result stands and the oracle is paid", async function () {
      const { manager, oracle, consumer, jobId } = await loadFixture(consumerFixture.bind(null, "RevertingConsumer"));
      const reason = consumer.interface.encodeErrorResult("RevertingConsumerRefused", [jobId]);
      await expect(manager.connect(oracle).fulfillJob(jobId, H.CID_1, 0))
        .to.emit(manager, "CallbackFailed")
        .withArgs(jobId, reason)
        .and.to.emit(manager, "JobCompleted");
      expect((await manager.getJob(jobId)).status).to.equal(Status.Completed);
      expect(await manager.withdrawable(oracle.address)).to.equal(H.MIN_FEE);
    });

    it("contains a gas-griefing consumer to its limit (attack: gas griefing)", async function () {
      const { manager, oracle, jobId, gas } = await loadFixture(consumerFixture.bind(null, "GasGriefingConsumer"));
      const tx = await manager.connect(oracle).fulfillJob(jobId, H.CID_1, 0, { gasLimit: 1_000_000 });
      await expect(tx).to.emit(manager, "CallbackFailed").withArgs(jobId, "0x");
      const receipt = await tx.wait();
      expect(receipt.gasUsed).to.be.lt(gas + 150_000n);
      expect((await manager.getJob(jobId)).status).to.equal(Status.Completed);
    });

    it("copies at most 256 bytes of a huge revert (attack: huge return data)", async function () {
      const { manager, owner, oracle, requester } = await loadFixture(H.deployManager);
      await manager.connect(owner).setOracle(oracle.address, true);
      const consumer = await (await ethers.getContractFactory("HugeDataConsumer")).deploy(100_000);
      await manager.connect(requester).requestJob(SPEC, await consumer.getAddress(), 2_000_000, { value: H.MIN_FEE });
      await expect(manager.connect(oracle).failJob(1n, "boom"))
        .to.emit(manager, "CallbackFailed")
        .withArgs(1n, "0x" + "ab".repeat(256));
    });

    it("ignores huge return data of a successful callback", async function () {
      const { manager, oracle, requester } = await loadFixture(H.deployManager);
      const consumer = await (await ethers.getContractFactory("HugeDataConsumer")).deploy(100_000);
      await manager.connect(requester).requestJob(SPEC, await consumer.getAddress(), 2_000_000, { value: H.MIN_FEE });
      const tx = await manager.connect(oracle).fulfillJob(1n, H.CID_1, 0);
      await expect(tx).not.to.emit(manager, "CallbackFailed");
      expect((await tx.wait()).gasUsed).to.be.lt(2_000_000n);
    });

    it("reverts with InsufficientGasForCallback when the tx gas cannot cover the limit", async function () {
      const { manager, oracle, consumer, jobId } = await loadFixture(consumerFixture.bind(null, "GasGriefingConsumer"));
      await expect(
        manager.connect(oracle).fulfillJob(jobId, H.CID_1, 0, { gasLimit: 150_000 }),
      ).to.be.revertedWithCustomError(manager, "InsufficientGasForCallback");
      // same for failJob; nothing changed
      await expect(manager.connect(oracle).failJob(jobId, "x", { gasLimit: 150_000 }))
        .to.be.revertedWithCustomError(manager, "InsufficientGasForCallback")
        .withArgs(jobId, 200_000n);
      expect((await manager.getJob(jobId)).status).to.equal(Status.Requested);
      expect(await consumer.counter()).to.equal(0n);
    });

    it("with a griefing consumer, the smallest sufficient gas still records CallbackFailed", async function () {
      const { manager, oracle, jobId } = await loadFixture(consumerFixture.bind(null, "GasGriefingConsumer"));
      const estimate = await manager.connect(oracle).fulfillJob.estimateGas(jobId, H.CID_1, 0);
      await expect(manager.connect(oracle).fulfillJob(jobId, H.CID_1, 0, { gasLimit: estimate }))
        .to.emit(manager, "CallbackFailed")
        .withArgs(jobId, "0x");
    });

    it("stops a malicious consumer-oracle from re-fulfilling or double-withdrawing (attack: re-entrancy)", async function () {
      const { manager, owner } = await loadFixture(H.deployManager);
      const evil = await (await ethers.getContractFactory("ReentrantConsumer")).deploy(await manager.getAddress());
      const evilAddr = await evil.getAddress();
      await manager.connect(owner).setOracle(evilAddr, true);
      await evil.request(SPEC, { value: H.MIN_FEE });
      const before = await ethers.provider.getBalance(await manager.getAddress());
      await expect(evil.fulfil(1n, H.CID_1)).not.to.emit(manager, "CallbackFailed");
      const notRequested = manager.interface.encodeErrorResult("JobManagerJobNotRequested", [1n, Status.Completed]);
      expect(await evil.refulfilError()).to.equal(notRequested);
      expect(await evil.refailError()).to.equal(notRequested);
      expect(await evil.secondWithdrawError()).to.equal(
        manager.interface.encodeErrorResult("JobManagerNothingToWithdraw", [evilAddr]),
      );
      // it got its own fee exactly once
      expect(await evil.withdrawnInCallback()).to.equal(H.MIN_FEE);
      expect(await ethers.provider.getBalance(await manager.getAddress())).to.equal(before - H.MIN_FEE);
      expect(await manager.withdrawable(evilAddr)).to.equal(0n);
      expect(await manager.totalEscrowed()).to.equal(0n);
    });

    it("stops a malicious consumer-oracle re-entering from onJobFailed", async function () {
      const { manager, owner } = await loadFixture(H.deployManager);
      const evil = await (await ethers.getContractFactory("ReentrantConsumer")).deploy(await manager.getAddress());
      await manager.connect(owner).setFailureFee(H.MIN_FEE / 2n);
      await manager.connect(owner).setOracle(await evil.getAddress(), true);
      await evil.request(SPEC, { value: H.MIN_FEE });
      await expect(evil.fail(1n)).not.to.emit(manager, "CallbackFailed");
      const notRequested = manager.interface.encodeErrorResult("JobManagerJobNotRequested", [1n, Status.Failed]);
      expect(await evil.refulfilError()).to.equal(notRequested);
      expect(await evil.refailError()).to.equal(notRequested);
      // as oracle and requester it was credited the whole fee, and withdrew it once
      expect(await evil.withdrawnInCallback()).to.equal(H.MIN_FEE);
      expect(await ethers.provider.getBalance(await manager.getAddress())).to.equal(0n);
    });
  });

  describe("failJob", function () {
    it("refunds the whole fee to the requester when the failure fee is 0", async function () {
      const { manager, oracle, requester, jobId } = await loadFixture(requestedFixture);
      await expect(manager.connect(oracle).failJob(jobId, "image not found"))
        .to.emit(manager, "JobFailed")
        .withArgs(jobId, "image not found");
      const job = await manager.getJob(jobId);
      expect(job.status).to.equal(Status.Failed);
      expect(await manager.withdrawable(requester.address)).to.equal(H.MIN_FEE);
      expect(await manager.withdrawable(oracle.address)).to.equal(0n);
      expect(await manager.totalEscrowed()).to.equal(0n);
    });

    it("pays the oracle the failure fee and refunds the rest", async function () {
      const { manager, owner, oracle, requester } = await loadFixture(H.deployManager);
      const failureFee = H.MIN_FEE / 4n;
      await expect(manager.connect(owner).setFailureFee(failureFee)).to.emit(manager, "FailureFeeSet").withArgs(failureFee);
      await manager.connect(requester).requestJob(SPEC, ethers.ZeroAddress, 0, { value: 3n * H.MIN_FEE });
      await manager.connect(oracle).failJob(1n, "bad spec");
      expect(await manager.withdrawable(oracle.address)).to.equal(failureFee);
      expect(await manager.withdrawable(requester.address)).to.equal(3n * H.MIN_FEE - failureFee);
    });

    it("caps the oracle's share at the job's fee", async function () {
      const { manager, owner, oracle, requester, jobId } = await loadFixture(requestedFixture);
      // fees rise after the request: the job's fee is now below the failure fee
      await manager.connect(owner).setMinFee(10n * H.MIN_FEE);
      await manager.connect(owner).setFailureFee(5n * H.MIN_FEE);
      await manager.connect(oracle).failJob(jobId, "bad spec");
      expect(await manager.withdrawable(oracle.address)).to.equal(H.MIN_FEE);
      expect(await manager.withdrawable(requester.address)).to.equal(0n);
    });

    it("is allowed after the deadline, and while paused", async function () {
      const { manager, owner, oracle, jobId, deadline } = await loadFixture(requestedFixture);
      await manager.connect(owner).pause();
      await time.increaseTo(deadline + 100n);
      await expect(manager.connect(oracle).failJob(jobId, "timed out")).to.emit(manager, "JobFailed");
    });

    it("accepts an empty reason and rejects one over MAX_REASON_BYTES", async function () {
      const { manager, oracle, jobId } = await loadFixture(requestedFixture);
      await expect(manager.connect(oracle).failJob(jobId, "r".repeat(1025)))
        .to.be.revertedWithCustomError(manager, "JobManagerReasonTooLong")
        .withArgs(1025n, 1024n);
      await expect(manager.connect(oracle).failJob(jobId, "")).to.emit(manager, "JobFailed").withArgs(jobId, "");
    });

    it("rejects unauthorised callers and settled jobs", async function () {
      const { manager, oracle, stranger, requester, jobId } = await loadFixture(requestedFixture);
      await expect(manager.connect(stranger).failJob(jobId, "x"))
        .to.be.revertedWithCustomError(manager, "JobManagerUnauthorizedOracle")
        .withArgs(stranger.address);
      await expect(manager.connect(requester).failJob(jobId, "x")).to.be.revertedWithCustomError(
        manager,
        "JobManagerUnauthorizedOracle",
      );
      await manager.connect(oracle).failJob(jobId, "x");
      await expect(manager.connect(oracle).failJob(jobId, "x"))
        .to.be.revertedWithCustomError(manager, "JobManagerJobNotRequested")
        .withArgs(jobId, Status.Failed);
      await expect(manager.connect(oracle).fulfillJob(jobId, H.CID_1, 0))
        .to.be.revertedWithCustomError(manager, "JobManagerJobNotRequested")
        .withArgs(jobId, Status.Failed);
    });

    it("calls onJobFailed on the consumer", async function () {
      const { manager, oracle } = await loadFixture(H.deployManager);
      const consumer = await (await ethers.getContractFactory("TestConsumer")).deploy(await manager.getAddress());
      await oracle.sendTransaction({ to: await consumer.getAddress(), value: H.MIN_FEE });
      await consumer.request(SPEC, H.MIN_FEE, 300_000);
      await expect(manager.connect(oracle).failJob(1n, "no such image")).not.to.emit(manager, "CallbackFailed");
      expect(await consumer.lastReason()).to.equal("no such image");
      expect(await consumer.failures()).to.equal(1n);
      expect(await consumer.statusAtCallback()).to.equal(Status.Failed);
      expect(await manager.withdrawable(await consumer.getAddress())).to.equal(H.MIN_FEE);
    });

    it("records a reverting onJobFailed as CallbackFailed", async function () {
      const { manager, oracle, jobId } = await loadFixture(consumerFixture.bind(null, "RevertingConsumer"));
      const reason = ethers.AbiCoder.defaultAbiCoder().encode(["string"], ["RevertingConsumer: no"]);
      await expect(manager.connect(oracle).failJob(jobId, "x"))
        .to.emit(manager, "CallbackFailed")
        .withArgs(jobId, "0x08c379a0" + reason.slice(2));
    });
  });

  describe("cancelJob", function () {
    it("refunds the requester after the deadline", async function () {
      const { manager, requester, jobId, deadline } = await loadFixture(requestedFixture);
      await time.setNextBlockTimestamp(deadline + 1n);
      await expect(manager.connect(requester).cancelJob(jobId)).to.emit(manager, "JobCancelled").withArgs(jobId);
      expect((await manager.getJob(jobId)).status).to.equal(Status.Cancelled);
      expect(await manager.withdrawable(requester.address)).to.equal(H.MIN_FEE);
      expect(await manager.totalEscrowed()).to.equal(0n);
    });

    it("rejects a cancel before or at the deadline (attack: early cancel)", async function () {
      const { manager, requester, jobId, deadline } = await loadFixture(requestedFixture);
      await expect(manager.connect(requester).cancelJob(jobId))
        .to.be.revertedWithCustomError(manager, "JobManagerDeadlineNotReached")
        .withArgs(jobId, deadline);
      await time.setNextBlockTimestamp(deadline);
      await expect(manager.connect(requester).cancelJob(jobId)).to.be.revertedWithCustomError(
        manager,
        "JobManagerDeadlineNotReached",
      );
    });

    it("rejects a stranger, even the oracle or owner (attack: cancel by a stranger)", async function () {
      const { manager, stranger, oracle, owner, jobId, deadline } = await loadFixture(requestedFixture);
      await time.increaseTo(deadline + 1n);
      for (const who of [stranger, oracle, owner]) {
        await expect(manager.connect(who).cancelJob(jobId))
          .to.be.revertedWithCustomError(manager, "JobManagerUnauthorizedRequester")
          .withArgs(jobId, who.address);
      }
    });

    it("rejects settled and unknown jobs; a cancelled job cannot be fulfilled", async function () {
      const { manager, requester, oracle, jobId, deadline } = await loadFixture(requestedFixture);
      await expect(manager.connect(requester).cancelJob(42n))
        .to.be.revertedWithCustomError(manager, "JobManagerJobNotRequested")
        .withArgs(42n, Status.None);
      await time.increaseTo(deadline + 1n);
      await manager.connect(requester).cancelJob(jobId);
      await expect(manager.connect(requester).cancelJob(jobId))
        .to.be.revertedWithCustomError(manager, "JobManagerJobNotRequested")
        .withArgs(jobId, Status.Cancelled);
      await expect(manager.connect(oracle).failJob(jobId, "x")).to.be.revertedWithCustomError(
        manager,
        "JobManagerJobNotRequested",
      );
    });

    it("cannot cancel a fulfilled job", async function () {
      const { manager, requester, oracle, jobId, deadline } = await loadFixture(requestedFixture);
      await manager.connect(oracle).fulfillJob(jobId, H.CID_1, 0);
      await time.increaseTo(deadline + 1n);
      await expect(manager.connect(requester).cancelJob(jobId))
        .to.be.revertedWithCustomError(manager, "JobManagerJobNotRequested")
        .withArgs(jobId, Status.Completed);
    });

    it("keeps working while paused", async function () {
      const { manager, owner, requester, jobId, deadline } = await loadFixture(requestedFixture);
      await manager.connect(owner).pause();
      await time.increaseTo(deadline + 1n);
      await expect(manager.connect(requester).cancelJob(jobId)).to.emit(manager, "JobCancelled");
    });
  });

  describe("withdraw / withdrawTo", function () {
    async function creditedFixture() {
      const f = await requestedFixture();
      await f.manager.connect(f.oracle).fulfillJob(f.jobId, H.CID_1, 0);
      return f;
    }

    it("sends the whole balance to the caller", async function () {
      const { manager, oracle } = await loadFixture(creditedFixture);
      const tx = manager.connect(oracle).withdraw();
      await expect(tx).to.emit(manager, "Withdrawn").withArgs(oracle.address, oracle.address, H.MIN_FEE);
      await expect(tx).to.changeEtherBalances([oracle, manager], [H.MIN_FEE, -H.MIN_FEE]);
      expect(await manager.withdrawable(oracle.address)).to.equal(0n);
    });

    it("sends the whole balance to another address", async function () {
      const { manager, oracle, stranger } = await loadFixture(creditedFixture);
      const tx = manager.connect(oracle).withdrawTo(stranger.address);
      await expect(tx).to.emit(manager, "Withdrawn").withArgs(oracle.address, stranger.address, H.MIN_FEE);
      await expect(tx).to.changeEtherBalances([stranger, manager], [H.MIN_FEE, -H.MIN_FEE]);
    });

    it("rejects an empty balance and the zero address", async function () {
      const { manager, oracle, stranger } = await loadFixture(creditedFixture);
      await expect(manager.connect(stranger).withdraw())
        .to.be.revertedWithCustomError(manager, "JobManagerNothingToWithdraw")
        .withArgs(stranger.address);
      await expect(manager.connect(stranger).withdrawTo(stranger.address)).to.be.revertedWithCustomError(
        manager,
        "JobManagerNothingToWithdraw",
      );
      await expect(manager.connect(oracle).withdrawTo(ethers.ZeroAddress)).to.be.revertedWithCustomError(
        manager,
        "JobManagerZeroAddress",
      );
    });

    async function contractRequesterFixture() {
      const f = await H.deployManager();
      const req = await (await ethers.getContractFactory("ContractRequester")).deploy(await f.manager.getAddress());
      await req.request(SPEC, { value: H.MIN_FEE });
      await f.manager.connect(f.oracle).failJob(1n, "refund me");
      return { ...f, req };
    }

    it("reverts and keeps the balance when the recipient rejects ETH", async function () {
      const { manager, req } = await loadFixture(contractRequesterFixture);
      await req.setMode(1);
      const reqAddr = await req.getAddress();
      await expect(req.withdraw())
        .to.be.revertedWithCustomError(manager, "JobManagerWithdrawFailed")
        .withArgs(reqAddr, H.MIN_FEE);
      expect(await manager.withdrawable(reqAddr)).to.equal(H.MIN_FEE);
      await req.setMode(0);
      await req.withdraw();
      expect(await req.received()).to.equal(H.MIN_FEE);
    });

    it("blocks a recipient re-entering withdraw (attack: re-entrancy on withdraw)", async function () {
      const { manager, req } = await loadFixture(contractRequesterFixture);
      await req.setMode(2);
      await expect(req.withdraw()).to.changeEtherBalances([req, manager], [H.MIN_FEE, -H.MIN_FEE]);
      expect(await req.reentryError()).to.equal(manager.interface.encodeErrorResult("ReentrancyGuardReentrantCall", []));
      expect(await req.received()).to.equal(H.MIN_FEE);
      expect(await manager.withdrawable(await req.getAddress())).to.equal(0n);
    });

    it("blocks a recipient re-entering withdrawTo", async function () {
      const { manager, req } = await loadFixture(contractRequesterFixture);
      await req.setMode(3);
      await expect(req.withdrawTo(await req.getAddress())).to.changeEtherBalances([req, manager], [H.MIN_FEE, -H.MIN_FEE]);
      expect(await req.reentryError()).to.equal(manager.interface.encodeErrorResult("ReentrancyGuardReentrantCall", []));
      expect(await req.received()).to.equal(H.MIN_FEE);
    });

    it("lets a contract requester cancel and get its refund", async function () {
      const { manager, oracle } = await loadFixture(H.deployManager);
      const req = await (await ethers.getContractFactory("ContractRequester")).deploy(await manager.getAddress());
      await req.request(SPEC, { value: H.MIN_FEE });
      await time.increase(H.JOB_WINDOW + 1n);
      await req.cancel(1n);
      await req.withdraw();
      expect(await req.received()).to.equal(H.MIN_FEE);
      expect(await manager.withdrawable(oracle.address)).to.equal(0n);
    });
  });

  describe("admin", function () {
    it("only the owner can call admin functions", async function () {
      const { manager, stranger } = await loadFixture(H.deployManager);
      const m = manager.connect(stranger);
      const calls = [
        () => m.setOracle(stranger.address, true),
        () => m.setMinFee(1n),
        () => m.setFailureFee(0n),
        () => m.setJobWindow(120n),
        () => m.setMaxCallbackGasLimit(1n),
        () => m.pause(),
        () => m.unpause(),
      ];
      for (const call of calls) {
        await expect(call()).to.be.revertedWithCustomError(manager, "OwnableUnauthorizedAccount").withArgs(stranger.address);
      }
    });

    it("setOracle allows and disallows, rejects the zero address", async function () {
      const { manager, owner, oracle2 } = await loadFixture(H.deployManager);
      expect(await manager.isOracle(oracle2.address)).to.equal(false);
      await expect(manager.connect(owner).setOracle(oracle2.address, true))
        .to.emit(manager, "OracleSet")
        .withArgs(oracle2.address, true);
      expect(await manager.isOracle(oracle2.address)).to.equal(true);
      await manager.connect(owner).setOracle(oracle2.address, false);
      expect(await manager.isOracle(oracle2.address)).to.equal(false);
      await expect(manager.connect(owner).setOracle(ethers.ZeroAddress, true)).to.be.revertedWithCustomError(
        manager,
        "JobManagerZeroAddress",
      );
    });

    it("setMinFee / setFailureFee keep failureFee <= minFee", async function () {
      const { manager, owner } = await loadFixture(H.deployManager);
      await expect(manager.connect(owner).setMinFee(10n)).to.emit(manager, "MinFeeSet").withArgs(10n);
      expect(await manager.minFee()).to.equal(10n);
      await expect(manager.connect(owner).setFailureFee(11n))
        .to.be.revertedWithCustomError(manager, "JobManagerFailureFeeAboveMinFee")
        .withArgs(11n, 10n);
      await manager.connect(owner).setFailureFee(10n);
      expect(await manager.failureFee()).to.equal(10n);
      await expect(manager.connect(owner).setMinFee(9n))
        .to.be.revertedWithCustomError(manager, "JobManagerFailureFeeAboveMinFee")
        .withArgs(10n, 9n);
    });

    it("setJobWindow is bounded to [60 s, 30 days] and applies to new requests", async function () {
      const { manager, owner, requester } = await loadFixture(H.deployManager);
      const month = 30n * 24n * 3600n;
      await expect(manager.connect(owner).setJobWindow(59n))
        .to.be.revertedWithCustomError(manager, "JobManagerInvalidJobWindow")
        .withArgs(59n);
      await expect(manager.connect(owner).setJobWindow(month + 1n))
        .to.be.revertedWithCustomError(manager, "JobManagerInvalidJobWindow")
        .withArgs(month + 1n);
      await expect(manager.connect(owner).setJobWindow(month)).to.emit(manager, "JobWindowSet").withArgs(month);
      await expect(manager.connect(owner).setJobWindow(60n)).to.emit(manager, "JobWindowSet").withArgs(60n);
      await manager.connect(requester).requestJob(SPEC, ethers.ZeroAddress, 0, { value: H.MIN_FEE });
      const ts = BigInt((await ethers.provider.getBlock("latest")).timestamp);
      expect((await manager.getJob(1n)).deadline).to.equal(ts + 60n);
    });

    it("setMaxCallbackGasLimit is capped", async function () {
      const { manager, owner } = await loadFixture(H.deployManager);
      await expect(manager.connect(owner).setMaxCallbackGasLimit(5_000_001n))
        .to.be.revertedWithCustomError(manager, "JobManagerInvalidMaxCallbackGasLimit")
        .withArgs(5_000_001n);
      await expect(manager.connect(owner).setMaxCallbackGasLimit(5_000_000n))
        .to.emit(manager, "MaxCallbackGasLimitSet")
        .withArgs(5_000_000n);
      expect(await manager.maxCallbackGasLimit()).to.equal(5_000_000n);
    });

    it("transfers ownership in two steps", async function () {
      const { manager, owner, stranger } = await loadFixture(H.deployManager);
      await manager.connect(owner).transferOwnership(stranger.address);
      expect(await manager.owner()).to.equal(owner.address);
      await manager.connect(stranger).acceptOwnership();
      expect(await manager.owner()).to.equal(stranger.address);
    });
  });
});

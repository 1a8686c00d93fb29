const { expect } = require("chai");
const { ethers } = require("hardhat");
const { loadFixture, time, setBalance } = require("@nomicfoundation/hardhat-network-helpers");
const H = require("./helpers");

const Status = { None: 0n, Requested: 1n, Completed: 2n, Failed: 3n, Cancelled: 4n };
const SPEC = H.typicalSpec();

describe("JobManager", function () {
  async function requestedFixture() {
    const f = await H.deployWithTwoOracles();
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
      expect(await manager.callbackGasPrice()).to.equal(0n);
      expect(await manager.FAIL_CALLBACK_GAS_LIMIT()).to.equal(50_000n);
      expect(await manager.ORACLE_DELAY()).to.equal(2n * 24n * 3600n);
      expect((await manager.getJob(0n)).status).to.equal(Status.None);
    });

    it("emits the parameter events and allows the initial oracles at once", async function () {
      const [, a, b] = await ethers.getSigners();
      const JobManager = await ethers.getContractFactory("JobManager");
      const manager = await JobManager.deploy(5n, 120n, 1000n, 7n, [a.address, b.address]);
      const tx = manager.deploymentTransaction();
      await expect(tx).to.emit(manager, "MinFeeSet").withArgs(5n);
      await expect(tx).to.emit(manager, "JobWindowSet").withArgs(120n);
      await expect(tx).to.emit(manager, "MaxCallbackGasLimitSet").withArgs(1000n);
      await expect(tx).to.emit(manager, "CallbackGasPriceSet").withArgs(7n);
      await expect(tx).to.emit(manager, "OracleSet").withArgs(a.address, true);
      await expect(tx).to.emit(manager, "OracleSet").withArgs(b.address, true);
      await expect(tx).not.to.emit(manager, "OracleChangeScheduled");
      expect(await manager.isOracle(a.address)).to.equal(true);
      expect(await manager.isOracle(b.address)).to.equal(true);
      expect(await manager.callbackGasPrice()).to.equal(7n);
    });

    it("rejects a bad job window, callback gas cap or a zero initial oracle", async function () {
      const JobManager = await ethers.getContractFactory("JobManager");
      await expect(JobManager.deploy(0n, 59n, 0n, 0n, [])).to.be.revertedWithCustomError(
        JobManager,
        "JobManagerInvalidJobWindow",
      );
      await expect(JobManager.deploy(0n, 60n, 5_000_001n, 0n, [])).to.be.revertedWithCustomError(
        JobManager,
        "JobManagerInvalidMaxCallbackGasLimit",
      );
      await expect(JobManager.deploy(0n, 60n, 0n, 0n, [ethers.ZeroAddress])).to.be.revertedWithCustomError(
        JobManager,
        "JobManagerZeroAddress",
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
      const hash = H.requestHash(1n, requester.address, consumer, SPEC, fee, 123_456n);
      await expect(tx)
        .to.emit(manager, "JobRequested")
        .withArgs(1n, requester.address, consumer, SPEC, fee, ts + H.JOB_WINDOW, 123_456n, hash);
      await expect(tx).to.changeEtherBalances([requester, manager], [-fee, fee]);
      const job = await manager.getJob(1n);
      expect(job.requester).to.equal(requester.address);
      expect(job.consumer).to.equal(consumer);
      expect(job.fee).to.equal(fee);
      expect(job.deadline).to.equal(ts + H.JOB_WINDOW);
      expect(job.callbackGasLimit).to.equal(123_456n);
      expect(job.status).to.equal(Status.Requested);
      expect(job.exitCode).to.equal(0n);
      expect(job.failureFee).to.equal(0n);
      expect(job.resultCid).to.equal("");
      expect(job.requestHash).to.equal(hash);
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
        .withArgs(2n, requester.address, ethers.ZeroAddress, SPEC, H.MIN_FEE, (d) => d > 0n, 0n,
          H.requestHash(2n, requester.address, ethers.ZeroAddress, SPEC, H.MIN_FEE, 0n));
    });

    it("stores a callback gas limit as 0 without consumer, and charges no callback gas for it", async function () {
      const { manager, requester, oracle } = await H.deployManager(10n ** 9n);
      const tx = manager.connect(requester).requestJob(SPEC, ethers.ZeroAddress, H.MAX_CALLBACK_GAS, { value: H.MIN_FEE });
      await expect(tx)
        .to.emit(manager, "JobRequested")
        .withArgs(1n, requester.address, ethers.ZeroAddress, SPEC, H.MIN_FEE, (d) => d > 0n, 0n,
          H.requestHash(1n, requester.address, ethers.ZeroAddress, SPEC, H.MIN_FEE, 0n));
      expect((await manager.getJob(1n)).callbackGasLimit).to.equal(0n);
      expect(await manager.quoteFee(ethers.ZeroAddress, H.MAX_CALLBACK_GAS)).to.equal(H.MIN_FEE);
      await expect(manager.connect(oracle).fulfillJob(1n, await H.rh(manager, 1n), H.CID_1, 0)).not.to.emit(manager, "CallbackFailed");
    });

    it("charges callback gas at callbackGasPrice: quoteFee is the least fee accepted", async function () {
      const price = 10n ** 9n;
      const { manager, owner, requester } = await H.deployManager(price);
      const consumer = ethers.Wallet.createRandom().address;
      const quote = await manager.quoteFee(consumer, 300_000);
      expect(quote).to.equal(H.MIN_FEE + 300_000n * price);
      await expect(manager.connect(requester).requestJob(SPEC, consumer, 300_000, { value: quote - 1n }))
        .to.be.revertedWithCustomError(manager, "JobManagerFeeTooLow")
        .withArgs(quote - 1n, quote);
      await expect(manager.connect(requester).requestJob(SPEC, consumer, 300_000, { value: quote })).to.emit(
        manager,
        "JobRequested",
      );
      // a new price applies to later requests only
      await expect(manager.connect(owner).setCallbackGasPrice(2n * price))
        .to.emit(manager, "CallbackGasPriceSet")
        .withArgs(2n * price);
      expect((await manager.getJob(1n)).fee).to.equal(quote);
      expect(await manager.quoteFee(consumer, 300_000)).to.equal(H.MIN_FEE + 600_000n * price);
      await expect(manager.connect(requester).requestJob(SPEC, consumer, 300_000, { value: quote }))
        .to.be.revertedWithCustomError(manager, "JobManagerFeeTooLow")
        .withArgs(quote, H.MIN_FEE + 600_000n * price);
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
      await expect(manager.connect(oracle).fulfillJob(jobId, await H.rh(manager, jobId), H.CID_1, 3))
        .to.emit(manager, "JobCompleted")
        .withArgs(jobId, H.CID_1, 3, oracle.address);
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
        await expect(manager.connect(who).fulfillJob(jobId, await H.rh(manager, jobId), H.CID_1, 0))
          .to.be.revertedWithCustomError(manager, "JobManagerUnauthorizedOracle")
          .withArgs(who.address);
      }
    });

    it("rejects a removed oracle", async function () {
      const { manager, owner, oracle, jobId } = await loadFixture(requestedFixture);
      await expect(manager.connect(owner).setOracle(oracle.address, false))
        .to.emit(manager, "OracleSet")
        .withArgs(oracle.address, false);
      await expect(manager.connect(oracle).fulfillJob(jobId, await H.rh(manager, jobId), H.CID_1, 0)).to.be.revertedWithCustomError(
        manager,
        "JobManagerUnauthorizedOracle",
      );
    });

    it("rejects a second fulfilment, by the same or another oracle (attack: double fulfil)", async function () {
      const { manager, oracle, oracle2, jobId } = await loadFixture(requestedFixture);
      await manager.connect(oracle).fulfillJob(jobId, await H.rh(manager, jobId), H.CID_1, 0);
      for (const who of [oracle, oracle2]) {
        await expect(manager.connect(who).fulfillJob(jobId, await H.rh(manager, jobId), H.CID_2, 0))
          .to.be.revertedWithCustomError(manager, "JobManagerJobNotRequested")
          .withArgs(jobId, Status.Completed);
      }
      await expect(manager.connect(oracle).failJob(jobId, await H.rh(manager, jobId), "late"))
        .to.be.revertedWithCustomError(manager, "JobManagerJobNotRequested")
        .withArgs(jobId, Status.Completed);
      expect((await manager.getJob(jobId)).resultCid).to.equal(H.CID_1);
      expect(await manager.withdrawable(oracle2.address)).to.equal(0n);
    });

    it("rejects unknown jobs, including id 0", async function () {
      const { manager, oracle, jobId } = await loadFixture(requestedFixture);
      const someHash = await H.rh(manager, jobId);
      for (const id of [0n, 2n, 999n]) {
        // the stored hash of a job that does not exist is zero: any real hash mismatches
        await expect(manager.connect(oracle).fulfillJob(id, someHash, H.CID_1, 0))
          .to.be.revertedWithCustomError(manager, "JobManagerRequestMismatch")
          .withArgs(id, ethers.ZeroHash, someHash);
        await expect(manager.connect(oracle).fulfillJob(id, ethers.ZeroHash, H.CID_1, 0))
          .to.be.revertedWithCustomError(manager, "JobManagerJobNotRequested")
          .withArgs(id, Status.None);
        await expect(manager.connect(oracle).failJob(id, ethers.ZeroHash, "x"))
          .to.be.revertedWithCustomError(manager, "JobManagerJobNotRequested")
          .withArgs(id, Status.None);
      }
    });

    it("refuses a fulfilment or failure quoting another request's hash (attack: reorg reuses the job id)", async function () {
      const { manager, oracle, requester, stranger } = await loadFixture(H.deployManager);
      // request A is mined and seen by the oracle, then a reorg drops it ...
      const snapshot = await ethers.provider.send("evm_snapshot", []);
      await manager.connect(requester).requestJob(SPEC, ethers.ZeroAddress, 0, { value: H.MIN_FEE });
      const hashA = await H.rh(manager, 1n);
      await ethers.provider.send("evm_revert", [snapshot]);
      // ... and request B, from someone else, gets the same id
      const specB = '{"image":"evil"}';
      await manager.connect(stranger).requestJob(specB, ethers.ZeroAddress, 0, { value: H.MIN_FEE });
      const hashB = await H.rh(manager, 1n);
      expect(hashB).to.equal(H.requestHash(1n, stranger.address, ethers.ZeroAddress, specB, H.MIN_FEE, 0n));
      expect(hashB).not.to.equal(hashA);
      // the oracle's transaction for A cannot settle B
      await expect(manager.connect(oracle).fulfillJob(1n, hashA, H.CID_1, 0))
        .to.be.revertedWithCustomError(manager, "JobManagerRequestMismatch")
        .withArgs(1n, hashB, hashA);
      await expect(manager.connect(oracle).failJob(1n, hashA, "no"))
        .to.be.revertedWithCustomError(manager, "JobManagerRequestMismatch")
        .withArgs(1n, hashB, hashA);
      expect((await manager.getJob(1n)).status).to.equal(Status.Requested);
      await expect(manager.connect(oracle).fulfillJob(1n, hashB, H.CID_1, 0)).to.emit(manager, "JobCompleted");
    });

    it("accepts a fulfilment at the deadline and rejects one after it (attack: late fulfil)", async function () {
      const { manager, oracle, jobId, deadline } = await loadFixture(requestedFixture);
      await time.setNextBlockTimestamp(deadline + 1n);
      await expect(manager.connect(oracle).fulfillJob(jobId, await H.rh(manager, jobId), H.CID_1, 0))
        .to.be.revertedWithCustomError(manager, "JobManagerDeadlinePassed")
        .withArgs(jobId, deadline);
    });

    it("accepts a fulfilment in the deadline's own block", async function () {
      const { manager, oracle, jobId, deadline } = await loadFixture(requestedFixture);
      await time.setNextBlockTimestamp(deadline);
      await expect(manager.connect(oracle).fulfillJob(jobId, await H.rh(manager, jobId), H.CID_1, 0)).to.emit(manager, "JobCompleted");
    });

    it("rejects an empty or over-long result CID", async function () {
      const { manager, oracle, jobId } = await loadFixture(requestedFixture);
      await expect(manager.connect(oracle).fulfillJob(jobId, await H.rh(manager, jobId), "", 0))
        .to.be.revertedWithCustomError(manager, "JobManagerInvalidResultCidLength")
        .withArgs(0n, 128n);
      await expect(manager.connect(oracle).fulfillJob(jobId, await H.rh(manager, jobId), "b".repeat(129), 0))
        .to.be.revertedWithCustomError(manager, "JobManagerInvalidResultCidLength")
        .withArgs(129n, 128n);
      await expect(manager.connect(oracle).fulfillJob(jobId, await H.rh(manager, jobId), "b".repeat(128), 0)).to.emit(manager, "JobCompleted");
    });

    it("keeps working while paused", async function () {
      const { manager, owner, oracle, jobId } = await loadFixture(requestedFixture);
      await manager.connect(owner).pause();
      await expect(manager.connect(oracle).fulfillJob(jobId, await H.rh(manager, jobId), H.CID_1, 0)).to.emit(manager, "JobCompleted");
      await expect(manager.connect(oracle).withdraw()).to.emit(manager, "Withdrawn");
    });
  });

  describe("callbacks", function () {
    it("calls a consumer's onJobResult after the state is final", async function () {
      const { manager, oracle } = await loadFixture(H.deployManager);
      const consumer = await (await ethers.getContractFactory("TestConsumer")).deploy(await manager.getAddress());
      await oracle.sendTransaction({ to: await consumer.getAddress(), value: H.MIN_FEE });
      await consumer.request(SPEC, H.MIN_FEE, 300_000);
      await expect(manager.connect(oracle).fulfillJob(1n, await H.rh(manager, 1n), H.CID_1, 7)).not.to.emit(manager, "CallbackFailed");
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
      await manager.connect(oracle).fulfillJob(jobId, await H.rh(manager, jobId), H.CID_1, 0, { gasLimit: 1_000_000 });
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
      await f.manager.connect(f.oracle).fulfillJob(1n, await H.rh(f.manager, 1n), H.CID_1, 0, { gasLimit: 2_000_000 });
      const generous = await probe.gasAtEntry();
      const estimate = await f.manager.connect(f.oracle).fulfillJob.estimateGas(2n, await H.rh(f.manager, 2n), H.CID_1, 0);
      await f.manager.connect(f.oracle).fulfillJob(2n, await H.rh(f.manager, 2n), H.CID_1, 0, { gasLimit: estimate });
      expect(await probe.gasAtEntry()).to.equal(generous);
    });

    it("records a consumer with no code as a failed callback", async function () {
      const { manager, oracle, requester } = await loadFixture(H.deployManager);
      const eoa = ethers.Wallet.createRandom().address;
      await manager.connect(requester).requestJob(SPEC, eoa, 100_000, { value: H.MIN_FEE });
      const reason = manager.interface.encodeErrorResult("JobManagerConsumerNotContract", [eoa]);
      await expect(manager.connect(oracle).fulfillJob(1n, await H.rh(manager, 1n), H.CID_1, 0))
        .to.emit(manager, "CallbackFailed")
        .withArgs(1n, reason);
      expect((await manager.getJob(1n)).status).to.equal(Status.Completed);
    });

    it("records a reverting consumer's reason; the result stands and the oracle is paid", async function () {
      const { manager, oracle, consumer, jobId } = await loadFixture(consumerFixture.bind(null, "RevertingConsumer"));
      const reason = consumer.interface.encodeErrorResult("RevertingConsumerRefused", [jobId]);
      await expect(manager.connect(oracle).fulfillJob(jobId, await H.rh(manager, jobId), H.CID_1, 0))
        .to.emit(manager, "CallbackFailed")
        .withArgs(jobId, reason)
        .and.to.emit(manager, "JobCompleted");
      expect((await manager.getJob(jobId)).status).to.equal(Status.Completed);
      expect(await manager.withdrawable(oracle.address)).to.equal(H.MIN_FEE);
    });

    it("contains a gas-griefing consumer to its limit (attack: gas griefing)", async function () {
      const { manager, oracle, jobId, gas } = await loadFixture(consumerFixture.bind(null, "GasGriefingConsumer"));
      const tx = await manager.connect(oracle).fulfillJob(jobId, await H.rh(manager, jobId), H.CID_1, 0, { gasLimit: 1_000_000 });
      await expect(tx).to.emit(manager, "CallbackFailed").withArgs(jobId, "0x");
      const receipt = await tx.wait();
      expect(receipt.gasUsed).to.be.lt(gas + 150_000n);
      expect((await manager.getJob(jobId)).status).to.equal(Status.Completed);
    });

    it("makes a max-gas, gas-burning consumer pay the oracle's whole gas at the floor price (attack: drain the oracle)", async function () {
      // The old contract took minFee for any callback gas limit: 2M gas burnt for the price of a
      // plain fulfilment. Now minFee covers the fulfil transaction's own gas (the docs rule:
      // minFee >= FULFIL_OVERHEAD_GAS * callbackGasPrice) and each callback gas is paid for.
      const price = 10n ** 9n; // floor price: 1 gwei
      const minFee = H.FULFIL_OVERHEAD_GAS * price;
      const [, oracle, attacker] = await ethers.getSigners();
      const manager = await (await ethers.getContractFactory("JobManager")).deploy(
        minFee, H.JOB_WINDOW, H.MAX_CALLBACK_GAS, price, [oracle.address]);
      const griefer = await (await ethers.getContractFactory("GasGriefingConsumer")).deploy();
      const target = await griefer.getAddress();
      const fee = await manager.quoteFee(target, H.MAX_CALLBACK_GAS);
      await expect(manager.connect(attacker).requestJob(SPEC, target, H.MAX_CALLBACK_GAS, { value: minFee }))
        .to.be.revertedWithCustomError(manager, "JobManagerFeeTooLow")
        .withArgs(minFee, fee);
      await manager.connect(attacker).requestJob(SPEC, target, H.MAX_CALLBACK_GAS, { value: fee });
      // another job stays escrowed, so totalEscrowed does not drop to 0 (no gas refund)
      await manager.connect(attacker).requestJob(SPEC, ethers.ZeroAddress, 0, { value: minFee });
      // the worst case for the oracle: the longest CID, the whole callback gas burnt, a fresh balance slot
      const tx = await manager.connect(oracle).fulfillJob(1n, await H.rh(manager, 1n), "b".repeat(128), 255,
        { gasLimit: 3_000_000 });
      await expect(tx).to.emit(manager, "CallbackFailed").withArgs(1n, "0x");
      const { gasUsed } = await tx.wait();
      console.log(`      fulfil with a ${H.MAX_CALLBACK_GAS}-gas burning callback: ${gasUsed} gas ` +
        `(${gasUsed - H.MAX_CALLBACK_GAS} beyond the callback; rule ${H.FULFIL_OVERHEAD_GAS})`);
      expect(gasUsed - H.MAX_CALLBACK_GAS).to.be.lte(H.FULFIL_OVERHEAD_GAS);
      expect(fee).to.be.gte(gasUsed * price);
      expect(await manager.withdrawable(oracle.address)).to.equal(fee);
    });

    it("caps onJobFailed's gas at FAIL_CALLBACK_GAS_LIMIT (attack: gas griefing on failure)", async function () {
      const { manager, oracle, requester } = await loadFixture(H.deployManager);
      const griefer = await (await ethers.getContractFactory("GasGriefingConsumer")).deploy();
      const probe = await (await ethers.getContractFactory("GasProbeConsumer")).deploy();
      const requests = [[griefer, H.MAX_CALLBACK_GAS], [probe, H.MAX_CALLBACK_GAS], [probe, 30_000n]];
      for (const [c, limit] of requests) {
        await manager.connect(requester).requestJob(SPEC, await c.getAddress(), limit, { value: H.MIN_FEE });
      }
      // job 1: a 2M-gas limit; the griefer burns only 50k of the oracle's gas
      const tx = await manager.connect(oracle).failJob(1n, await H.rh(manager, 1n), "x", { gasLimit: 3_000_000 });
      await expect(tx).to.emit(manager, "CallbackFailed").withArgs(1n, "0x");
      const { gasUsed } = await tx.wait();
      expect(gasUsed).to.be.lt(50_000n + 100_000n);
      // job 2: the callback is given exactly 50k, not its 2M
      await manager.connect(oracle).failJob(2n, await H.rh(manager, 2n), "x", { gasLimit: 3_000_000 });
      const atEntry = await probe.gasAtEntry();
      expect(atEntry).to.be.lte(50_000n);
      expect(atEntry).to.be.gte(49_000n);
      // job 3: a limit below the cap is kept
      await manager.connect(oracle).failJob(3n, await H.rh(manager, 3n), "x", { gasLimit: 3_000_000 });
      expect(await probe.gasAtEntry()).to.be.lte(30_000n);
      expect(await probe.gasAtEntry()).to.be.gte(29_000n);
    });

    it("copies at most 256 bytes of a huge revert (attack: huge return data)", async function () {
      const { manager, oracle, requester } = await loadFixture(H.deployManager);
      // onJobFailed has 50k gas: 10,000 bytes of revert data is about what it can produce
      const consumer = await (await ethers.getContractFactory("HugeDataConsumer")).deploy(10_000);
      await manager.connect(requester).requestJob(SPEC, await consumer.getAddress(), 2_000_000, { value: H.MIN_FEE });
      await expect(manager.connect(oracle).failJob(1n, await H.rh(manager, 1n), "boom"))
        .to.emit(manager, "CallbackFailed")
        .withArgs(1n, "0x" + "ab".repeat(256));
    });

    it("ignores huge return data of a successful callback", async function () {
      const { manager, oracle, requester } = await loadFixture(H.deployManager);
      const consumer = await (await ethers.getContractFactory("HugeDataConsumer")).deploy(100_000);
      await manager.connect(requester).requestJob(SPEC, await consumer.getAddress(), 2_000_000, { value: H.MIN_FEE });
      const tx = await manager.connect(oracle).fulfillJob(1n, await H.rh(manager, 1n), H.CID_1, 0);
      await expect(tx).not.to.emit(manager, "CallbackFailed");
      expect((await tx.wait()).gasUsed).to.be.lt(2_000_000n);
    });

    it("reverts with InsufficientGasForCallback when the tx gas cannot cover the limit", async function () {
      const { manager, oracle, consumer, jobId } = await loadFixture(consumerFixture.bind(null, "GasGriefingConsumer"));
      await expect(
        manager.connect(oracle).fulfillJob(jobId, await H.rh(manager, jobId), H.CID_1, 0, { gasLimit: 150_000 }),
      ).to.be.revertedWithCustomError(manager, "InsufficientGasForCallback");
      // same for failJob (its callback gets the capped 50k); nothing changed
      const failEstimate = await manager.connect(oracle).failJob.estimateGas(jobId, await H.rh(manager, jobId), "x");
      await expect(manager.connect(oracle).failJob(jobId, await H.rh(manager, jobId), "x", { gasLimit: failEstimate - 1_000n }))
        .to.be.revertedWithCustomError(manager, "InsufficientGasForCallback")
        .withArgs(jobId, 50_000n);
      expect((await manager.getJob(jobId)).status).to.equal(Status.Requested);
      expect(await consumer.counter()).to.equal(0n);
    });

    it("with a griefing consumer, the smallest sufficient gas still records CallbackFailed", async function () {
      const { manager, oracle, jobId } = await loadFixture(consumerFixture.bind(null, "GasGriefingConsumer"));
      const estimate = await manager.connect(oracle).fulfillJob.estimateGas(jobId, await H.rh(manager, jobId), H.CID_1, 0);
      await expect(manager.connect(oracle).fulfillJob(jobId, await H.rh(manager, jobId), H.CID_1, 0, { gasLimit: estimate }))
        .to.emit(manager, "CallbackFailed")
        .withArgs(jobId, "0x");
    });

    it("stops a malicious consumer-oracle from re-fulfilling or double-withdrawing (attack: re-entrancy)", async function () {
      const { manager, owner } = await loadFixture(H.deployManager);
      const evil = await (await ethers.getContractFactory("ReentrantConsumer")).deploy(await manager.getAddress());
      const evilAddr = await evil.getAddress();
      await H.addOracle(manager, owner, evilAddr);
      await evil.request(SPEC, { value: H.MIN_FEE });
      const before = await ethers.provider.getBalance(await manager.getAddress());
      const tx = evil.fulfil(1n, H.CID_1);
      await expect(tx).not.to.emit(manager, "CallbackFailed");
      const notRequested = manager.interface.encodeErrorResult("JobManagerJobNotRequested", [1n, Status.Completed]);
      await expect(tx).to.emit(evil, "AttemptReverted").withArgs("refulfil", notRequested);
      await expect(tx).to.emit(evil, "AttemptReverted").withArgs("refail", notRequested);
      await expect(tx).to.emit(evil, "AttemptReverted").withArgs("second withdraw",
        manager.interface.encodeErrorResult("JobManagerNothingToWithdraw", [evilAddr]));
      // it got its own fee exactly once
      await expect(tx).to.emit(evil, "WithdrawnInCallback").withArgs(H.MIN_FEE);
      expect(await ethers.provider.getBalance(await manager.getAddress())).to.equal(before - H.MIN_FEE);
      expect(await manager.withdrawable(evilAddr)).to.equal(0n);
      expect(await manager.totalEscrowed()).to.equal(0n);
    });

    it("stops a malicious consumer-oracle re-entering from onJobFailed", async function () {
      const { manager, owner } = await loadFixture(H.deployManager);
      const evil = await (await ethers.getContractFactory("ReentrantConsumer")).deploy(await manager.getAddress());
      await manager.connect(owner).setFailureFee(H.MIN_FEE / 2n);
      await H.addOracle(manager, owner, await evil.getAddress());
      await evil.request(SPEC, { value: H.MIN_FEE });
      const tx = evil.fail(1n);
      await expect(tx).not.to.emit(manager, "CallbackFailed");
      const notRequested = manager.interface.encodeErrorResult("JobManagerJobNotRequested", [1n, Status.Failed]);
      await expect(tx).to.emit(evil, "AttemptReverted").withArgs("refulfil", notRequested);
      await expect(tx).to.emit(evil, "AttemptReverted").withArgs("refail", notRequested);
      // as oracle and requester it was credited the whole fee, and withdrew it once
      await expect(tx).to.emit(evil, "WithdrawnInCallback").withArgs(H.MIN_FEE);
      expect(await ethers.provider.getBalance(await manager.getAddress())).to.equal(0n);
    });
  });

  describe("failJob", function () {
    it("refunds the whole fee to the requester when the failure fee is 0", async function () {
      const { manager, oracle, requester, jobId } = await loadFixture(requestedFixture);
      await expect(manager.connect(oracle).failJob(jobId, await H.rh(manager, jobId), "image not found"))
        .to.emit(manager, "JobFailed")
        .withArgs(jobId, "image not found", oracle.address);
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
      expect((await manager.getJob(1n)).failureFee).to.equal(failureFee);
      await manager.connect(oracle).failJob(1n, await H.rh(manager, 1n), "bad spec");
      expect(await manager.withdrawable(oracle.address)).to.equal(failureFee);
      expect(await manager.withdrawable(requester.address)).to.equal(3n * H.MIN_FEE - failureFee);
    });

    it("pays the oracle the whole fee when the failure fee equals it", async function () {
      const { manager, owner, oracle, requester } = await loadFixture(H.deployManager);
      await manager.connect(owner).setFailureFee(H.MIN_FEE);
      await manager.connect(requester).requestJob(SPEC, ethers.ZeroAddress, 0, { value: H.MIN_FEE });
      await manager.connect(oracle).failJob(1n, await H.rh(manager, 1n), "bad spec");
      expect(await manager.withdrawable(oracle.address)).to.equal(H.MIN_FEE);
      expect(await manager.withdrawable(requester.address)).to.equal(0n);
    });

    it("splits by the failure fee of the request, not a later one (attack: owner raises it after the request)", async function () {
      const { manager, owner, oracle, requester } = await loadFixture(H.deployManager);
      await manager.connect(requester).requestJob(SPEC, ethers.ZeroAddress, 0, { value: H.MIN_FEE }); // failureFee 0
      await manager.connect(owner).setFailureFee(H.MIN_FEE / 2n);
      await manager.connect(requester).requestJob(SPEC, ethers.ZeroAddress, 0, { value: H.MIN_FEE }); // failureFee 1/2
      // raised to the whole fee after both requests: neither job's split changes
      await manager.connect(owner).setFailureFee(H.MIN_FEE);
      expect((await manager.getJob(1n)).failureFee).to.equal(0n);
      expect((await manager.getJob(2n)).failureFee).to.equal(H.MIN_FEE / 2n);
      await manager.connect(oracle).failJob(1n, await H.rh(manager, 1n), "bad spec");
      expect(await manager.withdrawable(oracle.address)).to.equal(0n);
      expect(await manager.withdrawable(requester.address)).to.equal(H.MIN_FEE);
      await manager.connect(oracle).failJob(2n, await H.rh(manager, 2n), "bad spec");
      expect(await manager.withdrawable(oracle.address)).to.equal(H.MIN_FEE / 2n);
      expect(await manager.withdrawable(requester.address)).to.equal(H.MIN_FEE + H.MIN_FEE / 2n);
    });

    it("is allowed after the deadline, and while paused", async function () {
      const { manager, owner, oracle, jobId, deadline } = await loadFixture(requestedFixture);
      await manager.connect(owner).pause();
      await time.increaseTo(deadline + 100n);
      await expect(manager.connect(oracle).failJob(jobId, await H.rh(manager, jobId), "timed out")).to.emit(manager, "JobFailed");
    });

    it("accepts an empty reason and rejects one over MAX_REASON_BYTES", async function () {
      const { manager, oracle, jobId } = await loadFixture(requestedFixture);
      await expect(manager.connect(oracle).failJob(jobId, await H.rh(manager, jobId), "r".repeat(1025)))
        .to.be.revertedWithCustomError(manager, "JobManagerReasonTooLong")
        .withArgs(1025n, 1024n);
      await expect(manager.connect(oracle).failJob(jobId, await H.rh(manager, jobId), ""))
        .to.emit(manager, "JobFailed")
        .withArgs(jobId, "", oracle.address);
    });

    it("rejects unauthorised callers and settled jobs", async function () {
      const { manager, oracle, stranger, requester, jobId } = await loadFixture(requestedFixture);
      await expect(manager.connect(stranger).failJob(jobId, await H.rh(manager, jobId), "x"))
        .to.be.revertedWithCustomError(manager, "JobManagerUnauthorizedOracle")
        .withArgs(stranger.address);
      await expect(manager.connect(requester).failJob(jobId, await H.rh(manager, jobId), "x")).to.be.revertedWithCustomError(
        manager,
        "JobManagerUnauthorizedOracle",
      );
      await manager.connect(oracle).failJob(jobId, await H.rh(manager, jobId), "x");
      await expect(manager.connect(oracle).failJob(jobId, await H.rh(manager, jobId), "x"))
        .to.be.revertedWithCustomError(manager, "JobManagerJobNotRequested")
        .withArgs(jobId, Status.Failed);
      await expect(manager.connect(oracle).fulfillJob(jobId, await H.rh(manager, jobId), H.CID_1, 0))
        .to.be.revertedWithCustomError(manager, "JobManagerJobNotRequested")
        .withArgs(jobId, Status.Failed);
    });

    it("calls onJobFailed on the consumer", async function () {
      const { manager, oracle } = await loadFixture(H.deployManager);
      const consumer = await (await ethers.getContractFactory("TestConsumer")).deploy(await manager.getAddress());
      await oracle.sendTransaction({ to: await consumer.getAddress(), value: H.MIN_FEE });
      await consumer.request(SPEC, H.MIN_FEE, 300_000);
      const tx = manager.connect(oracle).failJob(1n, await H.rh(manager, 1n), "no such image");
      await expect(tx).not.to.emit(manager, "CallbackFailed");
      await expect(tx)
        .to.emit(consumer, "FailureSeen")
        .withArgs(1n, "no such image", Status.Failed, (g) => g <= 50_000n);
      expect(await consumer.failures()).to.equal(1n);
      expect(await consumer.isPendingJob(1n)).to.equal(false);
      expect(await manager.withdrawable(await consumer.getAddress())).to.equal(H.MIN_FEE);
    });

    it("records a reverting onJobFailed as CallbackFailed", async function () {
      const { manager, oracle, jobId } = await loadFixture(consumerFixture.bind(null, "RevertingConsumer"));
      const reason = ethers.AbiCoder.defaultAbiCoder().encode(["string"], ["RevertingConsumer: no"]);
      await expect(manager.connect(oracle).failJob(jobId, await H.rh(manager, jobId), "x"))
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
      await expect(manager.connect(oracle).failJob(jobId, await H.rh(manager, jobId), "x")).to.be.revertedWithCustomError(
        manager,
        "JobManagerJobNotRequested",
      );
    });

    it("cannot cancel a fulfilled job", async function () {
      const { manager, requester, oracle, jobId, deadline } = await loadFixture(requestedFixture);
      await manager.connect(oracle).fulfillJob(jobId, await H.rh(manager, jobId), H.CID_1, 0);
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
      await f.manager.connect(f.oracle).fulfillJob(f.jobId, await H.rh(f.manager, f.jobId), H.CID_1, 0);
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
      await f.manager.connect(f.oracle).failJob(1n, await H.rh(f.manager, 1n), "refund me");
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
        () => m.setCallbackGasPrice(1n),
        () => m.pause(),
        () => m.unpause(),
      ];
      for (const call of calls) {
        await expect(call()).to.be.revertedWithCustomError(manager, "OwnableUnauthorizedAccount").withArgs(stranger.address);
      }
    });

    it("setOracle(true) only schedules: the new oracle cannot settle before ORACLE_DELAY (attack: owner adds a rogue oracle)", async function () {
      const { manager, owner, oracle2, requester, stranger } = await loadFixture(H.deployManager);
      await manager.connect(requester).requestJob(SPEC, ethers.ZeroAddress, 0, { value: H.MIN_FEE });
      const ts = BigInt((await ethers.provider.getBlock("latest")).timestamp) + 1n;
      await time.setNextBlockTimestamp(ts);
      const tx = manager.connect(owner).setOracle(oracle2.address, true);
      const effectiveAt = ts + 2n * 24n * 3600n;
      await expect(tx).to.emit(manager, "OracleChangeScheduled").withArgs(oracle2.address, effectiveAt);
      await expect(tx).not.to.emit(manager, "OracleSet");
      expect(await manager.isOracle(oracle2.address)).to.equal(false);
      expect(await manager.oracleEffectiveAt(oracle2.address)).to.equal(effectiveAt);
      await expect(manager.connect(oracle2).fulfillJob(1n, await H.rh(manager, 1n), H.CID_1, 0))
        .to.be.revertedWithCustomError(manager, "JobManagerUnauthorizedOracle")
        .withArgs(oracle2.address);
      // not even the owner can activate it early
      await time.setNextBlockTimestamp(effectiveAt - 1n);
      await expect(manager.connect(owner).activateOracle(oracle2.address))
        .to.be.revertedWithCustomError(manager, "JobManagerOracleChangeNotReady")
        .withArgs(oracle2.address, effectiveAt);
      // from effectiveAt on, anyone activates it
      await time.setNextBlockTimestamp(effectiveAt);
      await expect(manager.connect(stranger).activateOracle(oracle2.address))
        .to.emit(manager, "OracleSet")
        .withArgs(oracle2.address, true);
      expect(await manager.isOracle(oracle2.address)).to.equal(true);
      expect(await manager.oracleEffectiveAt(oracle2.address)).to.equal(0n);
      await expect(manager.activateOracle(oracle2.address))
        .to.be.revertedWithCustomError(manager, "JobManagerOracleChangeNotReady")
        .withArgs(oracle2.address, 0n);
      // a new request (the first one's deadline has passed) is settled by the new oracle
      await manager.connect(requester).requestJob(SPEC, ethers.ZeroAddress, 0, { value: H.MIN_FEE });
      await expect(manager.connect(oracle2).fulfillJob(2n, await H.rh(manager, 2n), H.CID_1, 0))
        .to.emit(manager, "JobCompleted")
        .withArgs(2n, H.CID_1, 0, oracle2.address);
    });

    it("setOracle(false) is immediate and cancels a scheduled addition; zero address rejected", async function () {
      const { manager, owner, oracle, oracle2, jobId } = await loadFixture(requestedFixture);
      await expect(manager.connect(owner).setOracle(oracle.address, false))
        .to.emit(manager, "OracleSet")
        .withArgs(oracle.address, false);
      expect(await manager.isOracle(oracle.address)).to.equal(false);
      await expect(manager.connect(oracle).failJob(jobId, await H.rh(manager, jobId), "x"))
        .to.be.revertedWithCustomError(manager, "JobManagerUnauthorizedOracle")
        .withArgs(oracle.address);
      // re-adding a removed oracle takes the delay too
      await manager.connect(owner).setOracle(oracle.address, true);
      expect(await manager.isOracle(oracle.address)).to.equal(false);
      // a scheduled addition removed before it is activated never becomes effective
      await manager.connect(owner).setOracle(oracle.address, false);
      await time.increase(await manager.ORACLE_DELAY());
      await expect(manager.activateOracle(oracle.address))
        .to.be.revertedWithCustomError(manager, "JobManagerOracleChangeNotReady")
        .withArgs(oracle.address, 0n);
      expect(await manager.isOracle(oracle.address)).to.equal(false);
      expect(await manager.isOracle(oracle2.address)).to.equal(true);
      await expect(manager.connect(owner).setOracle(ethers.ZeroAddress, true)).to.be.revertedWithCustomError(
        manager,
        "JobManagerZeroAddress",
      );
      await expect(manager.connect(owner).setOracle(ethers.ZeroAddress, false)).to.be.revertedWithCustomError(
        manager,
        "JobManagerZeroAddress",
      );
    });

    it("renounceOwnership always reverts (attack: freeze the oracle set)", async function () {
      const { manager, owner, stranger } = await loadFixture(H.deployManager);
      for (const who of [owner, stranger]) {
        await expect(manager.connect(who).renounceOwnership()).to.be.revertedWithCustomError(
          manager,
          "JobManagerRenounceDisabled",
        );
      }
      // also as a transaction (ethers makes a call of a pure function), from the owner
      const data = manager.interface.encodeFunctionData("renounceOwnership");
      await expect(owner.sendTransaction({ to: await manager.getAddress(), data, gasLimit: 100_000 }))
        .to.be.revertedWithCustomError(manager, "JobManagerRenounceDisabled");
      expect(await manager.owner()).to.equal(owner.address);
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

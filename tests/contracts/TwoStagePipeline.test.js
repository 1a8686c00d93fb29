const { expect } = require("chai");
const { ethers } = require("hardhat");
const { loadFixture, time } = require("@nomicfoundation/hardhat-network-helpers");
const H = require("./helpers");

describe("TwoStagePipeline", function () {
  async function pipelineFixture() {
    const base = await H.deployManager();
    const Pipeline = await ethers.getContractFactory("TwoStagePipeline");
    const pipeline = await Pipeline.deploy(
      await base.manager.getAddress(),
      H.specPrefix(1),
      H.SPEC_SUFFIX,
      H.specPrefix(2),
      H.SPEC_SUFFIX,
      H.MIN_FEE,
      H.DEFAULT_CALLBACK_GAS,
    );
    return { ...base, pipeline };
  }

  it("stores its configuration", async function () {
    const { pipeline, manager } = await loadFixture(pipelineFixture);
    expect(await pipeline.jobManager()).to.equal(await manager.getAddress());
    expect(await pipeline.stage1Prefix()).to.equal(H.specPrefix(1));
    expect(await pipeline.stage2Suffix()).to.equal(H.SPEC_SUFFIX);
    expect(await pipeline.stageFee()).to.equal(H.MIN_FEE);
    expect(await pipeline.callbackGasLimit()).to.equal(H.DEFAULT_CALLBACK_GAS);
  });

  it("runs end to end: stage 1 result chains into stage 2, then completes", async function () {
    const { manager, pipeline, oracle, requester } = await loadFixture(pipelineFixture);
    const addr = await pipeline.getAddress();
    const spec1 = H.specPrefix(1) + H.CID_IN + H.SPEC_SUFFIX;
    await expect(pipeline.connect(requester).start(H.CID_IN, { value: 2n * H.MIN_FEE }))
      .to.emit(pipeline, "PipelineStarted")
      .withArgs(1n, 1n, H.CID_IN)
      .and.to.emit(manager, "JobRequested")
      .withArgs(1n, addr, addr, H.termsLike(1n, addr, addr, spec1, H.MIN_FEE, H.DEFAULT_CALLBACK_GAS), spec1);
    expect(await pipeline.reserved()).to.equal(H.MIN_FEE);

    const spec2 = H.specPrefix(2) + H.CID_1 + H.SPEC_SUFFIX;
    const tx = H.fulfil(manager, oracle, 1n, H.CID_1, 0);
    await expect(tx).to.emit(pipeline, "StageCompleted").withArgs(1n, 1, 1n, H.CID_1, 0);
    await expect(tx).to.emit(manager, "JobRequested").withArgs(2n, addr, addr, H.termsLike(2n, addr, addr, spec2, H.MIN_FEE, H.DEFAULT_CALLBACK_GAS), spec2);
    await expect(tx).to.emit(pipeline, "StageRequested").withArgs(1n, 2, 2n);
    await expect(tx).not.to.emit(manager, "CallbackFailed");
    const receipt = await (await tx).wait();
    console.log(`      fulfillJob(stage 1) with chaining: ${receipt.gasUsed} gas`);
    expect(await pipeline.reserved()).to.equal(0n);
    expect(await pipeline.runOfJob(2n)).to.equal(1n);

    await expect(H.fulfil(manager, oracle, 2n, H.CID_2, 0))
      .to.emit(pipeline, "PipelineCompleted")
      .withArgs(1n, H.CID_2)
      .and.to.emit(pipeline, "StageCompleted")
      .withArgs(1n, 2, 2n, H.CID_2, 0);
    const run = await pipeline.getRun(1n);
    expect(run.stage1JobId).to.equal(1n);
    expect(run.stage2JobId).to.equal(2n);
    expect(run.stage1Cid).to.equal(H.CID_1);
    expect(run.finalCid).to.equal(H.CID_2);
    expect(run.status).to.equal(3);
    expect(await manager.withdrawable(oracle.address)).to.equal(2n * H.MIN_FEE);
    expect(await ethers.provider.getBalance(addr)).to.equal(0n);
  });
});

describe("TwoStagePipeline (edge cases)", function () {
  async function pipelineFixture(callbackGasLimit = H.DEFAULT_CALLBACK_GAS) {
    const base = await H.deployManager();
    const Pipeline = await ethers.getContractFactory("TwoStagePipeline");
    const pipeline = await Pipeline.deploy(
      await base.manager.getAddress(),
      H.specPrefix(1),
      H.SPEC_SUFFIX,
      H.specPrefix(2),
      H.SPEC_SUFFIX,
      H.MIN_FEE,
      callbackGasLimit,
    );
    return { ...base, pipeline };
  }
  const defaultFixture = () => pipelineFixture();

  async function startedFixture() {
    const f = await pipelineFixture();
    await f.pipeline.connect(f.requester).start(H.CID_IN, { value: 2n * H.MIN_FEE });
    return f;
  }

  it("rejects implausible CIDs (no JSON injection)", async function () {
    const { pipeline, requester } = await loadFixture(defaultFixture);
    const bad = ["short", "a".repeat(101), 'bafy","image":"evil', "bafybeig dyrzt5sfp7", "bafybeigdyrzt5sfp7\\u0022", "bafy-beigdyrzt5sfp7", "ünïcödeünïcöde"];
    for (const cid of bad) {
      await expect(pipeline.connect(requester).start(cid, { value: 2n * H.MIN_FEE }))
        .to.be.revertedWithCustomError(pipeline, "TwoStagePipelineInvalidCid")
        .withArgs(cid);
    }
    await expect(pipeline.connect(requester).start("a".repeat(10), { value: 2n * H.MIN_FEE })).to.emit(
      pipeline,
      "PipelineStarted",
    );
    await expect(pipeline.connect(requester).start("Z9".repeat(50), { value: 2n * H.MIN_FEE })).to.emit(
      pipeline,
      "PipelineStarted",
    );
  });

  it("requires funds for both stages beyond what is reserved", async function () {
    const { pipeline, requester } = await loadFixture(defaultFixture);
    await expect(pipeline.connect(requester).start(H.CID_IN, { value: 2n * H.MIN_FEE - 1n }))
      .to.be.revertedWithCustomError(pipeline, "TwoStagePipelineInsufficientFunds")
      .withArgs(2n * H.MIN_FEE - 1n, 2n * H.MIN_FEE);
    await requester.sendTransaction({ to: await pipeline.getAddress(), value: 3n * H.MIN_FEE });
    await pipeline.start(H.CID_IN); // uses 1 fee, reserves 1: 1 fee left unreserved
    await expect(pipeline.start(H.CID_IN))
      .to.be.revertedWithCustomError(pipeline, "TwoStagePipelineInsufficientFunds")
      .withArgs(H.MIN_FEE, 2n * H.MIN_FEE);
  });

  it("fails the run when stage 1 exits non-zero, releasing the reservation", async function () {
    const { manager, pipeline, oracle } = await loadFixture(startedFixture);
    const tx = H.fulfil(manager, oracle, 1n, H.CID_1, 2);
    await expect(tx).to.emit(pipeline, "StageCompleted").withArgs(1n, 1, 1n, H.CID_1, 2);
    await expect(tx).to.emit(pipeline, "PipelineFailed").withArgs(1n, 1, "stage 1 exited with a non-zero code");
    await expect(tx).not.to.emit(manager, "JobRequested");
    expect(await pipeline.reserved()).to.equal(0n);
    const run = await pipeline.getRun(1n);
    expect(run.status).to.equal(4);
    expect(run.stage1Cid).to.equal(H.CID_1);
  });

  it("fails the run when the stage-1 result CID is implausible", async function () {
    const { manager, pipeline, oracle } = await loadFixture(startedFixture);
    await expect(H.fulfil(manager, oracle, 1n, 'x","image":"evil', 0))
      .to.emit(pipeline, "PipelineFailed")
      .withArgs(1n, 1, "stage 1 result CID rejected");
    expect(await pipeline.reserved()).to.equal(0n);
  });

  it("fails the run when the stage-2 request is rejected (manager paused)", async function () {
    const { manager, pipeline, oracle, owner } = await loadFixture(startedFixture);
    await manager.connect(owner).pause();
    const tx = H.fulfil(manager, oracle, 1n, H.CID_1, 0);
    await expect(tx).to.emit(pipeline, "PipelineFailed").withArgs(1n, 2, "stage 2 request rejected");
    await expect(tx).not.to.emit(manager, "CallbackFailed");
    expect((await pipeline.getRun(1n)).status).to.equal(4);
    expect(await pipeline.reserved()).to.equal(0n);
    // the stage-2 fee is back in the free balance
    expect(await ethers.provider.getBalance(await pipeline.getAddress())).to.equal(H.MIN_FEE);
  });

  it("fails the run when stage 1 or stage 2 is failed by the oracle", async function () {
    const { manager, pipeline, oracle } = await loadFixture(startedFixture);
    await pipeline.start(H.CID_IN, { value: 2n * H.MIN_FEE }); // run 2, job 2
    await expect(H.fail(manager, oracle, 1n, "image not found"))
      .to.emit(pipeline, "PipelineFailed")
      .withArgs(1n, 1, "image not found");
    expect(await pipeline.reserved()).to.equal(H.MIN_FEE);
    await H.fulfil(manager, oracle, 2n, H.CID_1, 0); // run 2 → stage 2 = job 3
    await expect(H.fail(manager, oracle, 3n, "out of memory"))
      .to.emit(pipeline, "PipelineFailed")
      .withArgs(2n, 2, "out of memory");
    expect(await pipeline.reserved()).to.equal(0n);
    // refunds of both failed jobs are claimable by the pipeline
    expect(await manager.withdrawable(await pipeline.getAddress())).to.equal(2n * H.MIN_FEE);
    await expect(pipeline.claimRefunds()).to.changeEtherBalance(pipeline, 2n * H.MIN_FEE);
  });

  it("records a non-zero stage-2 exit as a failure with its result CID", async function () {
    const { manager, pipeline, oracle } = await loadFixture(startedFixture);
    await H.fulfil(manager, oracle, 1n, H.CID_1, 0);
    await expect(H.fulfil(manager, oracle, 2n, H.CID_2, 1))
      .to.emit(pipeline, "PipelineFailed")
      .withArgs(1n, 2, "stage 2 exited with a non-zero code");
    const run = await pipeline.getRun(1n);
    expect(run.finalCid).to.equal(H.CID_2);
    expect(run.status).to.equal(4);
  });

  it("refuses callbacks for jobs it did not request", async function () {
    const { manager, pipeline, oracle, stranger } = await loadFixture(startedFixture);
    const addr = await pipeline.getAddress();
    await manager.connect(stranger).requestJob(H.typicalSpec(), addr, 300_000, { value: H.MIN_FEE }); // job 2
    await manager.connect(stranger).requestJob(H.typicalSpec(), addr, 300_000, { value: H.MIN_FEE }); // job 3
    const unknown = (id) => pipeline.interface.encodeErrorResult("JobConsumerUnknownJob", [id]);
    await expect(H.fulfil(manager, oracle, 2n, H.CID_1, 0))
      .to.emit(manager, "CallbackFailed")
      .withArgs(2n, unknown(2n));
    await expect(H.fail(manager, oracle, 3n, "x")).to.emit(manager, "CallbackFailed").withArgs(3n, unknown(3n));
    expect((await pipeline.getRun(1n)).status).to.equal(1);
  });

  it("cancels a stalled stage after its deadline and gets the fee back", async function () {
    const { manager, pipeline, oracle } = await loadFixture(startedFixture);
    await expect(pipeline.cancelStalled(1n, await H.termsOf(manager, 1n))).to.be.revertedWithCustomError(manager, "JobManagerDeadlineNotReached");
    await time.increase(H.JOB_WINDOW + 1n);
    await expect(pipeline.cancelStalled(1n, await H.termsOf(manager, 1n)))
      .to.emit(pipeline, "PipelineFailed")
      .withArgs(1n, 1, "cancelled after deadline")
      .and.to.emit(manager, "JobCancelled")
      .withArgs(1n);
    expect(await pipeline.reserved()).to.equal(0n);
    await expect(pipeline.cancelStalled(1n, await H.termsOf(manager, 1n)))
      .to.be.revertedWithCustomError(pipeline, "TwoStagePipelineRunNotPending")
      .withArgs(1n);
    await expect(pipeline.cancelStalled(99n, await H.termsOf(manager, 1n))).to.be.revertedWithCustomError(pipeline, "TwoStagePipelineRunNotPending");
    await pipeline.claimRefunds();
    expect(await ethers.provider.getBalance(await pipeline.getAddress())).to.equal(2n * H.MIN_FEE);
    // stage 2 stalls too
    await pipeline.start(H.CID_IN);
    await H.fulfil(manager, oracle, 2n, H.CID_1, 0);
    await time.increase(H.JOB_WINDOW + 1n);
    await expect(pipeline.cancelStalled(2n, await H.termsOf(manager, 3n))).to.emit(pipeline, "PipelineFailed").withArgs(2n, 2, "cancelled after deadline");
    expect((await manager.getJob(3n)).status).to.equal(H.S.Cancelled);
  });

  it("recovers a run whose callback failed: cancelStalled fails it at once (was stuck forever)", async function () {
    // 100k gas cannot request stage 2: the stage-1 callback runs out of gas, the JobManager records
    // the result and CallbackFailed, and the run is left in STAGE1_PENDING with a Completed job.
    const { manager, pipeline, oracle } = await pipelineFixture(100_000n);
    await pipeline.start(H.CID_IN, { value: 2n * H.MIN_FEE });
    await expect(H.fulfil(manager, oracle, 1n, H.CID_1, 0))
      .to.emit(manager, "CallbackFailed")
      .withArgs(1n, "0x");
    expect((await pipeline.getRun(1n)).status).to.equal(1); // still STAGE1_PENDING
    expect((await manager.getJob(1n)).status).to.equal(H.S.Completed); // Completed: it will never call back
    expect(await pipeline.reserved()).to.equal(H.MIN_FEE);
    // the old cancelStalled called cancelJob on the completed job and always reverted; now it
    // fails the run without waiting for the deadline and releases the stage-2 reservation
    await expect(pipeline.cancelStalled(1n, await H.termsOf(manager, 1n)))
      .to.emit(pipeline, "PipelineFailed")
      .withArgs(1n, 1, "callback failed")
      .and.not.to.emit(manager, "JobCancelled");
    expect((await pipeline.getRun(1n)).status).to.equal(4);
    expect(await pipeline.reserved()).to.equal(0n);
    await expect(pipeline.cancelStalled(1n, await H.termsOf(manager, 1n)))
      .to.be.revertedWithCustomError(pipeline, "TwoStagePipelineRunNotPending")
      .withArgs(1n);
    // the released stage-2 fee funds a new run
    await expect(pipeline.start(H.CID_IN, { value: H.MIN_FEE })).to.emit(pipeline, "PipelineStarted");
  });

  it("each stage's onJobFailed fits in FAIL_CALLBACK_GAS_LIMIT with the longest reason", async function () {
    const { manager, pipeline, oracle } = await loadFixture(startedFixture);
    const reason = "r".repeat(1024); // MAX_REASON_BYTES
    await expect(H.fail(manager, oracle, 1n, reason, { gasLimit: 1_000_000 }))
      .to.emit(pipeline, "PipelineFailed")
      .withArgs(1n, 1, reason)
      .and.not.to.emit(manager, "CallbackFailed");
    await pipeline.start(H.CID_IN, { value: 2n * H.MIN_FEE }); // run 2: job 2, stage 2 = job 3
    await H.fulfil(manager, oracle, 2n, H.CID_1, 0);
    await expect(H.fail(manager, oracle, 3n, reason, { gasLimit: 1_000_000 }))
      .to.emit(pipeline, "PipelineFailed")
      .withArgs(2n, 2, reason)
      .and.not.to.emit(manager, "CallbackFailed");
  });

  it("lets only the owner withdraw unreserved funds", async function () {
    const { pipeline, manager, owner, stranger } = await loadFixture(startedFixture);
    await stranger.sendTransaction({ to: await pipeline.getAddress(), value: 5n });
    await expect(pipeline.connect(stranger).withdrawFunds(stranger.address, 1n)).to.be.revertedWithCustomError(
      pipeline,
      "OwnableUnauthorizedAccount",
    );
    await expect(pipeline.connect(owner).withdrawFunds(owner.address, 6n))
      .to.be.revertedWithCustomError(pipeline, "TwoStagePipelineInsufficientFunds")
      .withArgs(5n, 6n);
    const noReceive = await manager.getAddress(); // has no receive(): the send fails
    await expect(pipeline.connect(owner).withdrawFunds(noReceive, 5n))
      .to.be.revertedWithCustomError(pipeline, "TwoStagePipelineSendFailed")
      .withArgs(noReceive, 5n);
    await expect(pipeline.connect(owner).withdrawFunds(stranger.address, 5n)).to.changeEtherBalance(stranger, 5n);
  });

  it("default callback gas (500k) covers the chaining callback with room to spare", async function () {
    // Find the smallest callback gas limit with which stage 1's callback still chains stage 2.
    let lo = 50_000n;
    let hi = H.DEFAULT_CALLBACK_GAS;
    while (hi - lo > 1_000n) {
      const mid = (lo + hi) / 2n;
      const f = await pipelineFixture(mid);
      await f.pipeline.start(H.CID_IN, { value: 2n * H.MIN_FEE });
      const receipt = await (await H.fulfil(f.manager, f.oracle, 1n, H.CID_1, 0)).wait();
      const failed = receipt.logs.some((l) => l.fragment && l.fragment.name === "CallbackFailed");
      if (failed) lo = mid;
      else hi = mid;
    }
    console.log(`      stage-1 callback (chaining stage 2) needs ~${hi} gas; default limit ${H.DEFAULT_CALLBACK_GAS}`);
    expect(hi).to.be.lt((H.DEFAULT_CALLBACK_GAS * 3n) / 4n);
  });
});

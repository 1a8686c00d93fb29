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

  async function startedFixture() {
    const f = await pipelineFixture();
    await f.pipeline.connect(f.requester).start(H.CID_IN, { value: 2n * H.MIN_FEE });
    return { ...f, runId: 1n, stage1JobId: 1n };
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
      .withArgs(1n, addr, addr, spec1, H.MIN_FEE, (d) => d > 0n);
    expect(await pipeline.reserved()).to.equal(H.MIN_FEE);

    const spec2 = H.specPrefix(2) + H.CID_1 + H.SPEC_SUFFIX;
    const tx = manager.connect(oracle).fulfillJob(1n, H.CID_1, 0);
    await expect(tx).to.emit(pipeline, "StageCompleted").withArgs(1n, 1, 1n, H.CID_1, 0);
    await expect(tx).to.emit(manager, "JobRequested").withArgs(2n, addr, addr, spec2, H.MIN_FEE, (d) => d > 0n);
    await expect(tx).to.emit(pipeline, "StageRequested").withArgs(1n, 2, 2n);
    await expect(tx).not.to.emit(manager, "CallbackFailed");
    const receipt = await (await tx).wait();
    console.log(`      fulfillJob(stage 1) with chaining: ${receipt.gasUsed} gas`);
    expect(await pipeline.reserved()).to.equal(0n);
    expect(await pipeline.runOfJob(2n)).to.equal(1n);

    await expect(manager.connect(oracle).fulfillJob(2n, H.CID_2, 0))
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

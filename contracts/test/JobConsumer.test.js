const { expect } = require("chai");
const { ethers } = require("hardhat");
const { loadFixture } = require("@nomicfoundation/hardhat-network-helpers");
const H = require("./helpers");

describe("JobConsumer", function () {
  async function consumerFixture() {
    const f = await H.deployManager();
    const consumer = await (await ethers.getContractFactory("TestConsumer")).deploy(await f.manager.getAddress());
    return { ...f, consumer };
  }

  it("rejects a zero JobManager", async function () {
    const Factory = await ethers.getContractFactory("TestConsumer");
    await expect(Factory.deploy(ethers.ZeroAddress)).to.be.revertedWithCustomError(Factory, "JobConsumerZeroJobManager");
  });

  it("exposes its JobManager and accepts ETH", async function () {
    const { manager, consumer, stranger } = await loadFixture(consumerFixture);
    expect(await consumer.jobManager()).to.equal(await manager.getAddress());
    await expect(stranger.sendTransaction({ to: await consumer.getAddress(), value: 5n })).to.changeEtherBalance(
      consumer,
      5n,
    );
  });

  it("accepts callbacks only from the JobManager", async function () {
    const { consumer, stranger, oracle } = await loadFixture(consumerFixture);
    for (const who of [stranger, oracle]) {
      await expect(consumer.connect(who).onJobResult(1n, H.CID_1, 0))
        .to.be.revertedWithCustomError(consumer, "JobConsumerUnauthorizedCaller")
        .withArgs(who.address);
      await expect(consumer.connect(who).onJobFailed(1n, "x"))
        .to.be.revertedWithCustomError(consumer, "JobConsumerUnauthorizedCaller")
        .withArgs(who.address);
    }
  });

  it("requests jobs as requester and consumer, paying from its balance", async function () {
    const { manager, consumer, stranger } = await loadFixture(consumerFixture);
    const addr = await consumer.getAddress();
    await stranger.sendTransaction({ to: addr, value: H.MIN_FEE });
    await expect(consumer.request(H.typicalSpec(), H.MIN_FEE, 123))
      .to.emit(manager, "JobRequested")
      .withArgs(1n, addr, addr, H.typicalSpec(), H.MIN_FEE, (d) => d > 0n);
    const job = await manager.getJob(1n);
    expect(job.callbackGasLimit).to.equal(123n);
    expect(await ethers.provider.getBalance(addr)).to.equal(0n);
  });

  it("claims refunds of failed jobs back into itself", async function () {
    const { manager, consumer, oracle, stranger } = await loadFixture(consumerFixture);
    const addr = await consumer.getAddress();
    await stranger.sendTransaction({ to: addr, value: H.MIN_FEE });
    await consumer.request(H.typicalSpec(), H.MIN_FEE, 300_000);
    await manager.connect(oracle).failJob(1n, "bad image");
    expect(await consumer.lastReason()).to.equal("bad image");
    await expect(consumer.connect(stranger).claimRefunds()).to.changeEtherBalances(
      [consumer, manager],
      [H.MIN_FEE, -H.MIN_FEE],
    );
    await expect(consumer.claimRefunds()).to.be.revertedWithCustomError(manager, "JobManagerNothingToWithdraw");
  });
});

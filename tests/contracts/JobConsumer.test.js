const { expect } = require("chai");
const { ethers } = require("hardhat");
const { loadFixture, impersonateAccount, setBalance } = require("@nomicfoundation/hardhat-network-helpers");
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
      await expect(consumer.connect(who).onJobResult(1n, H.CID_1, 0, "0x"))
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
      .withArgs(1n, addr, addr, H.termsLike(1n, addr, addr, H.typicalSpec(), H.MIN_FEE, 123n), H.typicalSpec());
    expect(await consumer.isPendingJob(1n)).to.equal(true);
    expect((await H.termsOf(manager, 1n))[4]).to.equal(123n);
    expect(await ethers.provider.getBalance(addr)).to.equal(0n);
  });

  it("claims refunds of failed jobs back into itself", async function () {
    const { manager, consumer, oracle, stranger } = await loadFixture(consumerFixture);
    const addr = await consumer.getAddress();
    await stranger.sendTransaction({ to: addr, value: H.MIN_FEE });
    await consumer.request(H.typicalSpec(), H.MIN_FEE, 300_000);
    await expect(H.fail(manager, oracle, 1n, "bad image"))
      .to.emit(consumer, "FailureSeen")
      .withArgs(1n, "bad image", H.S.Failed, (g) => g > 0n);
    await expect(consumer.connect(stranger).claimRefunds()).to.changeEtherBalances(
      [consumer, manager],
      [H.MIN_FEE, -H.MIN_FEE],
    );
    await expect(consumer.claimRefunds()).to.be.revertedWithCustomError(manager, "JobManagerNothingToWithdraw");
  });

  it("refuses a callback for a job someone else requested naming it as consumer (attack: forged callback)", async function () {
    const { manager, consumer, oracle, stranger } = await loadFixture(consumerFixture);
    const addr = await consumer.getAddress();
    await stranger.sendTransaction({ to: addr, value: H.MIN_FEE });
    await consumer.request(H.typicalSpec(), H.MIN_FEE, 300_000); // job 1: its own
    // jobs 2 and 3: the stranger requests, naming the consumer, with a result of its choosing
    await manager.connect(stranger).requestJob(H.typicalSpec(), addr, 300_000, { value: H.MIN_FEE });
    await manager.connect(stranger).requestJob(H.typicalSpec(), addr, 300_000, { value: H.MIN_FEE });
    expect(await consumer.isPendingJob(2n)).to.equal(false);
    const unknown = (id) => consumer.interface.encodeErrorResult("JobConsumerUnknownJob", [id]);
    await expect(H.fulfil(manager, oracle, 2n, H.CID_2, 0))
      .to.emit(manager, "CallbackFailed")
      .withArgs(2n, unknown(2n));
    await expect(H.fail(manager, oracle, 3n, "forged"))
      .to.emit(manager, "CallbackFailed")
      .withArgs(3n, unknown(3n));
    expect(await consumer.results()).to.equal(0n);
    expect(await consumer.failures()).to.equal(0n);
    // its own job still goes through
    await expect(H.fulfil(manager, oracle, 1n, H.CID_1, 0)).not.to.emit(
      manager,
      "CallbackFailed",
    );
    expect(await consumer.lastResultCid()).to.equal(H.CID_1);
    expect(await consumer.isPendingJob(1n)).to.equal(false);
  });

  it("refuses a second callback for a job already settled (attack: replayed callback)", async function () {
    const { manager, consumer, oracle, stranger } = await loadFixture(consumerFixture);
    const managerAddr = await manager.getAddress();
    await stranger.sendTransaction({ to: await consumer.getAddress(), value: 2n * H.MIN_FEE });
    await consumer.request(H.typicalSpec(), H.MIN_FEE, 300_000);
    await consumer.request(H.typicalSpec(), H.MIN_FEE, 300_000);
    await H.fulfil(manager, oracle, 1n, H.CID_1, 0);
    await H.fail(manager, oracle, 2n, "x");
    // the JobManager never calls twice; pretend it did
    await impersonateAccount(managerAddr);
    await setBalance(managerAddr, 10n ** 18n);
    const asManager = await ethers.getSigner(managerAddr);
    for (const id of [1n, 2n]) {
      await expect(consumer.connect(asManager).onJobResult(id, H.CID_2, 0, "0x"))
        .to.be.revertedWithCustomError(consumer, "JobConsumerUnknownJob")
        .withArgs(id);
      await expect(consumer.connect(asManager).onJobFailed(id, "again"))
        .to.be.revertedWithCustomError(consumer, "JobConsumerUnknownJob")
        .withArgs(id);
    }
    expect(await consumer.results()).to.equal(1n);
    expect(await consumer.failures()).to.equal(1n);
  });

  it("_tryRequestJob records a pending job, or reports a refused request without reverting", async function () {
    const { manager, owner, consumer, stranger } = await loadFixture(consumerFixture);
    await stranger.sendTransaction({ to: await consumer.getAddress(), value: H.MIN_FEE });
    expect(await consumer.tryRequest.staticCall(H.typicalSpec(), H.MIN_FEE, 1_000)).to.deep.equal([true, 1n]);
    await consumer.tryRequest(H.typicalSpec(), H.MIN_FEE, 1_000);
    expect(await consumer.isPendingJob(1n)).to.equal(true);
    await manager.connect(owner).pause();
    expect(await consumer.tryRequest.staticCall(H.typicalSpec(), 0n, 1_000)).to.deep.equal([false, 0n]);
    await expect(consumer.tryRequest(H.typicalSpec(), 0n, 1_000)).not.to.emit(manager, "JobRequested");
  });
});

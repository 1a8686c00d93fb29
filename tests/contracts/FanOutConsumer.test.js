const { expect } = require("chai");
const { ethers } = require("hardhat");
const { loadFixture, time } = require("@nomicfoundation/hardhat-network-helpers");
const H = require("./helpers");

const MAP_PREFIX = '{"engine":"docker","image":"cod/map:latest","entrypoint":["/bin/wc","-l"],"inputs":[{"source":"ipfs://';
const MAP_SUFFIX = '","target":"/inputs/data"}],"timeout":60}';
const COMBINE_PREFIX = '{"engine":"docker","image":"cod/reduce:latest","entrypoint":["/bin/cat"],"inputs":[';
const COMBINE_SUFFIX = '],"timeout":60}';
const INPUTS = [H.CID_IN, H.CID_1, H.CID_2];
const mapCid = (i) => "bafkreimap" + String(i).padStart(3, "0") + "x".repeat(40);

function entries(cids) {
  return cids.map((c, i) => `{"source":"ipfs://${c}","target":"/inputs/${i}"}`).join(",");
}

describe("FanOutConsumer", function () {
  async function fanOutFixture(callbackGasLimit = 1_000_000n) {
    const base = await H.deployManager();
    const FanOut = await ethers.getContractFactory("FanOutConsumer");
    const fanOut = await FanOut.deploy(
      await base.manager.getAddress(),
      MAP_PREFIX,
      MAP_SUFFIX,
      COMBINE_PREFIX,
      COMBINE_SUFFIX,
      H.MIN_FEE,
      callbackGasLimit,
    );
    return { ...base, fanOut };
  }
  const defaultFixture = () => fanOutFixture();

  async function startedFixture() {
    const f = await fanOutFixture();
    await f.fanOut.connect(f.requester).start(INPUTS, { value: 4n * H.MIN_FEE });
    return f;
  }

  it("stores its configuration", async function () {
    const { fanOut } = await loadFixture(defaultFixture);
    expect(await fanOut.mapPrefix()).to.equal(MAP_PREFIX);
    expect(await fanOut.mapSuffix()).to.equal(MAP_SUFFIX);
    expect(await fanOut.combinePrefix()).to.equal(COMBINE_PREFIX);
    expect(await fanOut.combineSuffix()).to.equal(COMBINE_SUFFIX);
    expect(await fanOut.fee()).to.equal(H.MIN_FEE);
    expect(await fanOut.callbackGasLimit()).to.equal(1_000_000n);
  });

  it("runs end to end: N map jobs, then one combine job over their results", async function () {
    const { manager, fanOut, oracle, requester } = await loadFixture(defaultFixture);
    const addr = await fanOut.getAddress();
    const tx = fanOut.connect(requester).start(INPUTS, { value: 4n * H.MIN_FEE });
    await expect(tx).to.emit(fanOut, "BatchStarted").withArgs(1n, [1n, 2n, 3n]);
    for (let i = 0; i < 3; i++) {
      await expect(tx)
        .to.emit(manager, "JobRequested")
        .withArgs(BigInt(i + 1), addr, addr, H.termsLike(BigInt(i + 1), addr, addr, MAP_PREFIX + INPUTS[i] + MAP_SUFFIX, H.MIN_FEE, 1_000_000n), MAP_PREFIX + INPUTS[i] + MAP_SUFFIX);
    }
    expect(await fanOut.reserved()).to.equal(H.MIN_FEE);

    // results arrive out of order; only the last one triggers the combine job
    await expect(H.fulfil(manager, oracle, 3n, mapCid(2), 0))
      .to.emit(fanOut, "MapCompleted")
      .withArgs(1n, 2n, 3n, mapCid(2), 0)
      .and.not.to.emit(fanOut, "CombineRequested");
    await H.fulfil(manager, oracle, 1n, mapCid(0), 0);
    const last = H.fulfil(manager, oracle, 2n, mapCid(1), 0);
    const combineSpec = COMBINE_PREFIX + entries([mapCid(0), mapCid(1), mapCid(2)]) + COMBINE_SUFFIX;
    await expect(last).to.emit(fanOut, "CombineRequested").withArgs(1n, 4n);
    await expect(last).to.emit(manager, "JobRequested").withArgs(4n, addr, addr, H.termsLike(4n, addr, addr, combineSpec, H.MIN_FEE, 1_000_000n), combineSpec);
    await expect(last).not.to.emit(manager, "CallbackFailed");
    JSON.parse(combineSpec); // the combine spec is valid JSON
    expect(await fanOut.reserved()).to.equal(0n);

    await expect(H.fulfil(manager, oracle, 4n, H.CID_2, 0))
      .to.emit(fanOut, "BatchCompleted")
      .withArgs(1n, H.CID_2);
    const batch = await fanOut.getBatch(1n);
    expect(batch.status).to.equal(3n);
    expect(batch.finalCid).to.equal(H.CID_2);
    expect(batch.combineJobId).to.equal(4n);
    expect(batch.mapResultCids).to.deep.equal([mapCid(0), mapCid(1), mapCid(2)]);
  });

  it("handles the maximum fan-out within a 1M callback gas limit", async function () {
    const { manager, fanOut, oracle } = await loadFixture(defaultFixture);
    const inputs = Array.from({ length: 16 }, (_, i) => mapCid(i));
    await fanOut.start(inputs, { value: 17n * H.MIN_FEE });
    for (let i = 1; i <= 15; i++) await H.fulfil(manager, oracle, BigInt(i), mapCid(100 + i), 0);
    await expect(H.fulfil(manager, oracle, 16n, mapCid(116), 0))
      .to.emit(fanOut, "CombineRequested")
      .withArgs(1n, 17n);
  });

  it("validates the input count, CIDs and funds", async function () {
    const { fanOut } = await loadFixture(defaultFixture);
    await expect(fanOut.start([], { value: H.MIN_FEE }))
      .to.be.revertedWithCustomError(fanOut, "FanOutConsumerInvalidInputCount")
      .withArgs(0n, 16n);
    await expect(fanOut.start(Array(17).fill(H.CID_IN), { value: 18n * H.MIN_FEE }))
      .to.be.revertedWithCustomError(fanOut, "FanOutConsumerInvalidInputCount")
      .withArgs(17n, 16n);
    await expect(fanOut.start([H.CID_IN, 'bad"cid"injection'], { value: 3n * H.MIN_FEE }))
      .to.be.revertedWithCustomError(fanOut, "FanOutConsumerInvalidCid")
      .withArgs('bad"cid"injection');
    await expect(fanOut.start(INPUTS, { value: 3n * H.MIN_FEE }))
      .to.be.revertedWithCustomError(fanOut, "FanOutConsumerInsufficientFunds")
      .withArgs(3n * H.MIN_FEE, 4n * H.MIN_FEE);
  });

  it("fails the batch on a non-zero map exit and ignores late map results", async function () {
    const { manager, fanOut, oracle } = await loadFixture(startedFixture);
    await expect(H.fulfil(manager, oracle, 1n, mapCid(0), 1))
      .to.emit(fanOut, "BatchFailed")
      .withArgs(1n, 1n, "map job exited with a non-zero code");
    expect(await fanOut.reserved()).to.equal(0n);
    await H.fulfil(manager, oracle, 2n, mapCid(1), 0);
    const late = H.fulfil(manager, oracle, 3n, mapCid(2), 0);
    await expect(late).to.emit(fanOut, "MapCompleted").and.not.to.emit(fanOut, "CombineRequested");
    await expect(late).not.to.emit(manager, "CallbackFailed");
    expect((await fanOut.getBatch(1n)).status).to.equal(4n);
  });

  it("fails the batch on an implausible map result CID", async function () {
    const { manager, fanOut, oracle } = await loadFixture(startedFixture);
    await expect(H.fulfil(manager, oracle, 2n, '"},{"source":"https://evil', 0))
      .to.emit(fanOut, "BatchFailed")
      .withArgs(1n, 2n, "map result CID rejected");
  });

  it("fails the batch when a map or the combine job is failed by the oracle", async function () {
    const { manager, fanOut, oracle } = await loadFixture(startedFixture);
    await expect(H.fail(manager, oracle, 2n, "input not found"))
      .to.emit(fanOut, "BatchFailed")
      .withArgs(1n, 2n, "input not found");
    // a second failure in a failed batch is ignored
    await expect(H.fail(manager, oracle, 3n, "also")).not.to.emit(fanOut, "BatchFailed");

    await fanOut.start([H.CID_IN], { value: 2n * H.MIN_FEE }); // batch 2: job 4, combine 5
    await H.fulfil(manager, oracle, 4n, mapCid(0), 0);
    await expect(H.fail(manager, oracle, 5n, "combine broke"))
      .to.emit(fanOut, "BatchFailed")
      .withArgs(2n, 5n, "combine broke");
  });

  it("fails the batch on a non-zero combine exit, recording its CID", async function () {
    const { manager, fanOut, oracle } = await loadFixture(defaultFixture);
    await fanOut.start([H.CID_IN], { value: 2n * H.MIN_FEE });
    await H.fulfil(manager, oracle, 1n, mapCid(0), 0);
    await expect(H.fulfil(manager, oracle, 2n, H.CID_2, 3))
      .to.emit(fanOut, "BatchFailed")
      .withArgs(1n, 2n, "combine job exited with a non-zero code");
    expect((await fanOut.getBatch(1n)).finalCid).to.equal(H.CID_2);
  });

  it("fails the batch when the combine request is rejected", async function () {
    const { manager, fanOut, oracle, owner } = await loadFixture(defaultFixture);
    await fanOut.start([H.CID_IN], { value: 2n * H.MIN_FEE });
    await manager.connect(owner).pause();
    await expect(H.fulfil(manager, oracle, 1n, mapCid(0), 0))
      .to.emit(fanOut, "BatchFailed")
      .withArgs(1n, 0n, "combine request rejected");
  });

  it("refuses callbacks for unknown jobs", async function () {
    const { manager, fanOut, oracle, stranger } = await loadFixture(defaultFixture);
    const addr = await fanOut.getAddress();
    await manager.connect(stranger).requestJob(H.typicalSpec(), addr, 300_000, { value: H.MIN_FEE });
    await manager.connect(stranger).requestJob(H.typicalSpec(), addr, 300_000, { value: H.MIN_FEE });
    const unknown = (id) => fanOut.interface.encodeErrorResult("JobConsumerUnknownJob", [id]);
    await expect(H.fulfil(manager, oracle, 1n, H.CID_1, 0)).to.emit(manager, "CallbackFailed").withArgs(1n, unknown(1n));
    await expect(H.fail(manager, oracle, 2n, "x")).to.emit(manager, "CallbackFailed").withArgs(2n, unknown(2n));
  });

  it("cancels stalled jobs after the deadline and marks the batch failed", async function () {
    const { manager, fanOut, oracle } = await loadFixture(startedFixture);
    await H.fulfil(manager, oracle, 1n, mapCid(0), 0);
    await expect(fanOut.cancelStalled(1n, await H.termsList(manager, [1n, 2n, 3n, 4n].slice(0, Number(await manager.nextJobId()) - 1)))).to.be.revertedWithCustomError(manager, "JobManagerDeadlineNotReached");
    await time.increase(H.JOB_WINDOW + 1n);
    const tx = fanOut.cancelStalled(1n, await H.termsList(manager, [1n, 2n, 3n, 4n].slice(0, Number(await manager.nextJobId()) - 1)));
    await expect(tx).to.emit(fanOut, "BatchFailed").withArgs(1n, 0n, "cancelled after deadline");
    await expect(tx).to.emit(manager, "JobCancelled").withArgs(2n);
    await expect(tx).to.emit(manager, "JobCancelled").withArgs(3n);
    expect(await fanOut.reserved()).to.equal(0n);
    await expect(fanOut.claimRefunds()).to.changeEtherBalance(fanOut, 2n * H.MIN_FEE);
    // idempotent: nothing left to cancel
    await expect(fanOut.cancelStalled(1n, await H.termsList(manager, [1n, 2n, 3n, 4n].slice(0, Number(await manager.nextJobId()) - 1)))).not.to.emit(manager, "JobCancelled");
  });

  it("cancels a stalled combine job", async function () {
    const { manager, fanOut, oracle } = await loadFixture(defaultFixture);
    await fanOut.start([H.CID_IN], { value: 2n * H.MIN_FEE });
    await H.fulfil(manager, oracle, 1n, mapCid(0), 0);
    await time.increase(H.JOB_WINDOW + 1n);
    await expect(fanOut.cancelStalled(1n, await H.termsList(manager, [1n, 2n, 3n, 4n].slice(0, Number(await manager.nextJobId()) - 1)))).to.emit(manager, "JobCancelled").withArgs(2n);
    expect((await fanOut.getBatch(1n)).status).to.equal(4n);
  });

  it("a map's and the combine's onJobFailed fit in FAIL_CALLBACK_GAS_LIMIT with the longest reason", async function () {
    const { manager, fanOut, oracle } = await loadFixture(defaultFixture);
    const reason = "r".repeat(1024); // MAX_REASON_BYTES
    await fanOut.start(INPUTS, { value: 4n * H.MIN_FEE }); // batch 1: jobs 1-3
    await expect(H.fail(manager, oracle, 2n, reason, { gasLimit: 1_000_000 }))
      .to.emit(fanOut, "BatchFailed")
      .withArgs(1n, 2n, reason)
      .and.not.to.emit(manager, "CallbackFailed");
    // a later failure of the failed batch is ignored, also within the cap
    await expect(H.fail(manager, oracle, 3n, reason, { gasLimit: 1_000_000 }))
      .not.to.emit(manager, "CallbackFailed");
    await fanOut.start([H.CID_IN], { value: 2n * H.MIN_FEE }); // batch 2: job 4, combine 5
    await H.fulfil(manager, oracle, 4n, mapCid(0), 0);
    await expect(H.fail(manager, oracle, 5n, reason, { gasLimit: 1_000_000 }))
      .to.emit(fanOut, "BatchFailed")
      .withArgs(2n, 5n, reason)
      .and.not.to.emit(manager, "CallbackFailed");
  });

  it("lets only the owner withdraw unreserved funds", async function () {
    const { fanOut, manager, owner, stranger } = await loadFixture(startedFixture);
    await stranger.sendTransaction({ to: await fanOut.getAddress(), value: 5n });
    await expect(fanOut.connect(stranger).withdrawFunds(stranger.address, 1n)).to.be.revertedWithCustomError(
      fanOut,
      "OwnableUnauthorizedAccount",
    );
    await expect(fanOut.connect(owner).withdrawFunds(owner.address, 6n))
      .to.be.revertedWithCustomError(fanOut, "FanOutConsumerInsufficientFunds")
      .withArgs(5n, 6n);
    const noReceive = await manager.getAddress(); // has no receive(): the send fails
    await expect(fanOut.connect(owner).withdrawFunds(noReceive, 5n))
      .to.be.revertedWithCustomError(fanOut, "FanOutConsumerSendFailed")
      .withArgs(noReceive, 5n);
    await expect(fanOut.connect(owner).withdrawFunds(stranger.address, 5n)).to.changeEtherBalance(stranger, 5n);
  });
});

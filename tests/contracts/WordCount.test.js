// The consumer written for docs/contracts.md: request, result, failure and refunds, as documented.
const { expect } = require("chai");
const { ethers } = require("hardhat");
const { loadFixture, time } = require("@nomicfoundation/hardhat-network-helpers");
const H = require("./helpers");

const PREFIX = '{"image":"cod/busybox:latest","entrypoint":["sh","-c","wc -w < /inputs/text.txt > /outputs/count"],' +
  '"inputs":[{"source":"ipfs://';
const SUFFIX = '","target":"/inputs/text.txt"}],"timeout":60}';

describe("WordCount (docs example)", function () {
  async function fixture() {
    const base = await H.deployManager();
    const wordCount = await (await ethers.getContractFactory("WordCount")).connect(base.requester).deploy(
      await base.manager.getAddress(), PREFIX, SUFFIX, H.MIN_FEE, 200_000,
    );
    return { ...base, wordCount };
  }

  it("requests the job with the rendered spec and records the result", async function () {
    const { manager, oracle, requester, wordCount } = await loadFixture(fixture);
    const addr = await wordCount.getAddress();
    await expect(wordCount.connect(requester).count(H.CID_IN, { value: H.MIN_FEE }))
      .to.emit(manager, "JobRequested")
      .withArgs(1n, addr, addr, H.termsLike(1n, addr, addr, PREFIX + H.CID_IN + SUFFIX, H.MIN_FEE, 200_000n), PREFIX + H.CID_IN + SUFFIX)
      .and.to.emit(wordCount, "WordCountRequested")
      .withArgs(1n, H.CID_IN);
    await expect(H.fulfil(manager, oracle, 1n, H.CID_1, 0))
      .to.emit(wordCount, "WordCountCompleted")
      .withArgs(1n, H.CID_1, 0)
      .and.not.to.emit(manager, "CallbackFailed");
    const result = await wordCount.results(1n);
    expect([result.done, result.failed, result.exitCode, result.resultCid]).to.deep.equal([true, false, 0n, H.CID_1]);
  });

  it("refuses an implausible CID (no JSON injection) and callers other than its owner", async function () {
    const { wordCount, stranger, requester } = await loadFixture(fixture);
    const evil = 'x","target":"/etc"},{"source":"ipfs://y';
    await expect(wordCount.connect(requester).count(evil, { value: H.MIN_FEE }))
      .to.be.revertedWithCustomError(wordCount, "WordCountInvalidCid");
    await expect(wordCount.connect(stranger).count(H.CID_IN, { value: H.MIN_FEE }))
      .to.be.revertedWithCustomError(wordCount, "OwnableUnauthorizedAccount");
  });

  it("records a failure; the refund comes back with claimRefunds and out with withdrawFunds", async function () {
    const { manager, oracle, requester, stranger, wordCount } = await loadFixture(fixture);
    await wordCount.connect(requester).count(H.CID_IN, { value: H.MIN_FEE });
    await expect(H.fail(manager, oracle, 1n, "input not available"))
      .to.emit(wordCount, "WordCountFailed")
      .withArgs(1n, "input not available");
    expect((await wordCount.results(1n)).failed).to.equal(true);
    await expect(wordCount.connect(stranger).claimRefunds()).to.changeEtherBalance(wordCount, H.MIN_FEE);
    await expect(wordCount.connect(requester).withdrawFunds(requester.address, H.MIN_FEE))
      .to.changeEtherBalance(requester, H.MIN_FEE);
    await expect(wordCount.connect(stranger).withdrawFunds(stranger.address, 1n))
      .to.be.revertedWithCustomError(wordCount, "OwnableUnauthorizedAccount");
    await expect(wordCount.connect(requester).withdrawFunds(requester.address, 1n))
      .to.be.revertedWithCustomError(wordCount, "WordCountSendFailed");
  });

  it("records a failure within FAIL_CALLBACK_GAS_LIMIT, even with the longest reason", async function () {
    const { manager, oracle, requester, wordCount } = await loadFixture(fixture);
    await wordCount.connect(requester).count(H.CID_IN, { value: H.MIN_FEE });
    const reason = "r".repeat(1024); // MAX_REASON_BYTES
    await expect(H.fail(manager, oracle, 1n, reason, { gasLimit: 1_000_000 }))
      .to.emit(wordCount, "WordCountFailed")
      .withArgs(1n, reason)
      .and.not.to.emit(manager, "CallbackFailed");
    expect((await wordCount.results(1n)).failed).to.equal(true);
  });

  it("gets its fee back by cancelling a job past its deadline", async function () {
    const { manager, requester, stranger, wordCount } = await loadFixture(fixture);
    await wordCount.connect(requester).count(H.CID_IN, { value: H.MIN_FEE });
    await expect(wordCount.connect(requester).cancel(1n, await H.termsOf(manager, 1n)))
      .to.be.revertedWithCustomError(manager, "JobManagerDeadlineNotReached");
    await time.increase(H.JOB_WINDOW + 1n);
    await expect(wordCount.connect(stranger).cancel(1n, await H.termsOf(manager, 1n)))
      .to.be.revertedWithCustomError(wordCount, "OwnableUnauthorizedAccount");
    await expect(wordCount.connect(requester).cancel(1n, await H.termsOf(manager, 1n))).to.emit(manager, "JobCancelled").withArgs(1n);
    await expect(wordCount.claimRefunds()).to.changeEtherBalance(wordCount, H.MIN_FEE);
  });

  it("ignores results of jobs it did not request", async function () {
    const { manager, oracle, stranger, wordCount } = await loadFixture(fixture);
    await manager.connect(stranger).requestJob("{}", await wordCount.getAddress(), 100_000, { value: H.MIN_FEE });
    const unknown = (id) => wordCount.interface.encodeErrorResult("JobConsumerUnknownJob", [id]);
    const tx = H.fulfil(manager, oracle, 1n, H.CID_1, 0);
    await expect(tx).to.emit(manager, "CallbackFailed").withArgs(1n, unknown(1n));
    await expect(tx).not.to.emit(wordCount, "WordCountCompleted");
    await manager.connect(stranger).requestJob("{}", await wordCount.getAddress(), 100_000, { value: H.MIN_FEE });
    await expect(H.fail(manager, oracle, 2n, "x"))
      .to.emit(manager, "CallbackFailed")
      .withArgs(2n, unknown(2n));
  });
});

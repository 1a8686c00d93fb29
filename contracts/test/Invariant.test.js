// Property test: random sequences of operations keep
//   balance(JobManager) == totalEscrowed + sum(withdrawable)
// and totalEscrowed == sum of the fees of Requested jobs.
const { expect } = require("chai");
const { ethers } = require("hardhat");
const { time } = require("@nomicfoundation/hardhat-network-helpers");
const H = require("./helpers");

/** mulberry32: a small seeded PRNG, so a failing sequence can be replayed from its seed. */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SEEDS = (process.env.COD_INVARIANT_SEEDS || "1,2,3").split(",").map(Number);
const OPS = Number(process.env.COD_INVARIANT_OPS || 300);

describe("JobManager invariant (random operation sequences)", function () {
  for (const seed of SEEDS) {
    it(`holds for ${OPS} random operations (seed ${seed})`, async function () {
      const rand = prng(seed);
      const pick = (xs) => xs[Math.floor(rand() * xs.length)];
      const { manager, owner, oracle, oracle2 } = await H.deployManager();
      await manager.connect(owner).setOracle(oracle2.address, true);
      await manager.connect(owner).setFailureFee(H.MIN_FEE / 3n);
      const signers = await ethers.getSigners();
      const requesters = signers.slice(5, 9);
      const oracles = [oracle, oracle2];
      const consumers = [
        ethers.ZeroAddress,
        await (await ethers.getContractFactory("RevertingConsumer")).deploy().then((c) => c.getAddress()),
        await (await ethers.getContractFactory("GasProbeConsumer")).deploy().then((c) => c.getAddress()),
      ];
      const accounts = [...requesters, ...oracles].map((s) => s.address);
      const jobs = []; // {id, requester, fee, status}
      const addr = await manager.getAddress();
      const counts = { request: 0, fulfil: 0, fail: 0, cancel: 0, withdraw: 0, reverted: 0, warp: 0 };

      async function check() {
        let sumWithdrawable = 0n;
        for (const a of accounts) sumWithdrawable += await manager.withdrawable(a);
        const escrowed = await manager.totalEscrowed();
        const expectedEscrow = jobs.filter((j) => j.status === 1).reduce((s, j) => s + j.fee, 0n);
        expect(escrowed).to.equal(expectedEscrow);
        expect(await ethers.provider.getBalance(addr)).to.equal(escrowed + sumWithdrawable);
      }

      // a revert is an allowed outcome of a random op; it must change nothing
      async function attempt(promise) {
        try {
          await (await promise).wait();
          return true;
        } catch (e) {
          counts.reverted++;
          return false;
        }
      }

      for (let i = 0; i < OPS; i++) {
        const r = rand();
        const open = jobs.filter((j) => j.status === 1);
        if (r < 0.35 || jobs.length === 0) {
          const who = pick(requesters);
          const fee = H.MIN_FEE + BigInt(Math.floor(rand() * 1000)) * 10n ** 12n;
          const consumer = pick(consumers);
          if (await attempt(manager.connect(who).requestJob("{}", consumer, 50_000, { value: fee }))) {
            jobs.push({ id: BigInt(jobs.length + 1), requester: who, fee, status: 1 });
            counts.request++;
          }
        } else if (r < 0.55) {
          const job = open.length && rand() < 0.9 ? pick(open) : pick(jobs);
          if (await attempt(manager.connect(pick(oracles)).fulfillJob(job.id, H.CID_1, rand() < 0.8 ? 0 : 1))) {
            job.status = 2;
            counts.fulfil++;
          }
        } else if (r < 0.68) {
          const job = open.length && rand() < 0.9 ? pick(open) : pick(jobs);
          if (await attempt(manager.connect(pick(oracles)).failJob(job.id, "no"))) {
            job.status = 3;
            counts.fail++;
          }
        } else if (r < 0.8) {
          const job = open.length && rand() < 0.9 ? pick(open) : pick(jobs);
          const who = rand() < 0.85 ? job.requester : pick(requesters);
          if (await attempt(manager.connect(who).cancelJob(job.id))) {
            job.status = 4;
            counts.cancel++;
          }
        } else if (r < 0.93) {
          const who = pick([...requesters, ...oracles]);
          const to = rand() < 0.5 ? who.address : pick(requesters).address;
          if (await attempt(rand() < 0.5 ? manager.connect(who).withdraw() : manager.connect(who).withdrawTo(to))) {
            counts.withdraw++;
          }
        } else {
          await time.increase(Math.floor(rand() * Number(H.JOB_WINDOW) * 1.5));
          counts.warp++;
        }
        if (i % 10 === 0) await check();
      }
      await check();
      for (const j of jobs) expect((await manager.getJob(j.id)).status).to.equal(BigInt(j.status));
      // every kind of operation actually happened
      for (const k of ["request", "fulfil", "fail", "cancel", "withdraw"]) expect(counts[k]).to.be.greaterThan(0);
    });
  }
});

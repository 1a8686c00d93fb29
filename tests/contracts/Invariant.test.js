// Property test: random sequences of operations — requests (from EOAs and from a chaining consumer
// contract, including requests made inside callbacks), fulfilments, failures, cancellations,
// withdrawals, refunds claimed by a consumer, fee and pause changes, and time travel — keep, after
// every operation:
//   balance(JobManager) == totalEscrowed + sum(withdrawable)
//   totalEscrowed       == sum of the fees of Requested jobs
//   withdrawable[a]     == what the fee rules give a, for every account a
// (each job's failure split uses the failureFee in force when it was requested; callback gas is
// priced, so some random requests pay too little and must revert), and every JobRequested carries
// the requestHash the model computes, every JobCompleted / JobFailed the oracle that sent it.
// The model computes the money on its own from the fee rules; the chain's events only say which
// jobs changed. A reverted operation must change nothing.
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
const REQUESTED = 1n;
const COMPLETED = 2n;
const FAILED = 3n;
const CANCELLED = 4n;

describe("JobManager invariant (random operation sequences)", function () {
  for (const seed of SEEDS) {
    it(`holds after each of ${OPS} random operations (seed ${seed})`, async function () {
      const rand = prng(seed);
      const pick = (xs) => xs[Math.floor(rand() * xs.length)];
      const gasPrice = 10n ** 9n; // 1 gwei per callback gas: 50k gas adds 5e13 wei to the fee
      const { manager, owner, oracle, oracle2 } = await H.deployManager(gasPrice);
      await manager.connect(owner).setOracle(oracle2.address, true);
      await time.increase(await manager.ORACLE_DELAY());
      await manager.activateOracle(oracle2.address);
      const managerAddr = await manager.getAddress();
      const signers = await ethers.getSigners();
      const requesters = signers.slice(5, 9);
      const oracles = [oracle, oracle2];
      const consumers = [
        ethers.ZeroAddress,
        await (await ethers.getContractFactory("RevertingConsumer")).deploy().then((c) => c.getAddress()),
        await (await ethers.getContractFactory("GasProbeConsumer")).deploy().then((c) => c.getAddress()),
      ];
      // a JobConsumer that requests its stage 2 from inside the stage-1 callback
      const stageFee = H.MIN_FEE + H.DEFAULT_CALLBACK_GAS * gasPrice;
      const pipeline = await (await ethers.getContractFactory("TwoStagePipeline")).deploy(
        managerAddr, H.specPrefix(1), H.SPEC_SUFFIX, H.specPrefix(2), H.SPEC_SUFFIX, stageFee, H.DEFAULT_CALLBACK_GAS,
      );
      const pipelineAddr = await pipeline.getAddress();

      // the model
      const jobs = new Map(); // id → {requester, fee, failureFee, status}
      const owed = new Map(); // account → wei the fee rules say it can withdraw
      let failureFee = 0n;
      const credit = (account, amount) => owed.set(account, (owed.get(account) || 0n) + amount);
      const accounts = [...requesters, ...oracles].map((s) => s.address).concat(pipelineAddr);
      const counts = {
        request: 0, fulfil: 0, fail: 0, cancel: 0, withdraw: 0, chained: 0, pipelineCancel: 0,
        claimRefunds: 0, failureFee: 0, pause: 0, warp: 0, reverted: 0,
      };

      /** Applies the fee rules to the jobs the receipt's events say changed. */
      async function apply(receipt, sender) {
        for (const log of receipt.logs) {
          if (log.address !== managerAddr) continue;
          const ev = manager.interface.parseLog(log);
          if (!ev) continue;
          const id = ev.args.jobId;
          if (ev.name === "JobRequested") {
            expect(jobs.has(id)).to.equal(false);
            const { requester, consumer, spec, fee, callbackGasLimit } = ev.args;
            expect(fee).to.be.gte(await manager.quoteFee(consumer, callbackGasLimit), "fee below the quote");
            expect(ev.args.requestHash).to.equal(H.requestHash(id, requester, consumer, spec, fee, callbackGasLimit));
            jobs.set(id, { requester, fee, failureFee, status: REQUESTED });
            if (ev.args.requester === pipelineAddr && receipt.to === managerAddr) counts.chained++;
            continue;
          }
          if (!["JobCompleted", "JobFailed", "JobCancelled"].includes(ev.name)) continue;
          const job = jobs.get(id);
          expect(job.status).to.equal(REQUESTED, `job ${id} settled twice`);
          if (ev.name !== "JobCancelled") expect(ev.args.oracle).to.equal(sender, "event names another oracle");
          if (ev.name === "JobCompleted") {
            job.status = COMPLETED;
            credit(sender, job.fee);
          } else if (ev.name === "JobFailed") {
            job.status = FAILED;
            const share = job.failureFee; // fixed at request, never above the fee
            credit(sender, share);
            credit(job.requester, job.fee - share);
          } else {
            job.status = CANCELLED;
            credit(job.requester, job.fee);
          }
        }
        for (const log of receipt.logs) {
          if (log.address !== managerAddr) continue;
          const ev = manager.interface.parseLog(log);
          if (ev && ev.name === "Withdrawn") {
            expect(ev.args.amount).to.equal(owed.get(ev.args.account), "withdrew other than owed");
            owed.set(ev.args.account, 0n);
          }
        }
      }

      async function check() {
        let sumWithdrawable = 0n;
        for (const a of accounts) {
          const w = await manager.withdrawable(a);
          expect(w).to.equal(owed.get(a) || 0n, `withdrawable(${a})`);
          sumWithdrawable += w;
        }
        const escrowed = await manager.totalEscrowed();
        const expectedEscrow = [...jobs.values()].filter((j) => j.status === REQUESTED).reduce((s, j) => s + j.fee, 0n);
        expect(escrowed).to.equal(expectedEscrow);
        expect(await ethers.provider.getBalance(managerAddr)).to.equal(escrowed + sumWithdrawable);
        expect(await manager.nextJobId()).to.equal(BigInt(jobs.size + 1));
      }

      // a revert is an allowed outcome of a random op; it must change nothing (checked by check())
      async function attempt(sender, send) {
        try {
          const receipt = await (await send()).wait();
          await apply(receipt, sender.address);
          return receipt;
        } catch (e) {
          if (e.name === "AssertionError") throw e;
          counts.reverted++;
          return null;
        }
      }

      const openJob = () => {
        const all = [...jobs.entries()];
        const open = all.filter(([, j]) => j.status === REQUESTED);
        const [id] = open.length && rand() < 0.9 ? pick(open) : pick(all);
        return id;
      };

      for (let i = 0; i < OPS; i++) {
        const r = rand();
        if (r < 0.25 || jobs.size === 0) {
          const who = pick(requesters);
          const fee = H.MIN_FEE + BigInt(Math.floor(rand() * 1000)) * 10n ** 12n;
          const consumer = pick(consumers);
          if (await attempt(who, () => manager.connect(who).requestJob("{}", consumer, 50_000, { value: fee }))) {
            counts.request++;
          }
        } else if (r < 0.32) {
          const who = pick(requesters);
          if (await attempt(who, () => pipeline.connect(who).start(H.CID_IN, { value: 2n * stageFee }))) counts.request++;
        } else if (r < 0.5) {
          const who = pick(oracles);
          const id = openJob();
          if (await attempt(who, async () => manager.connect(who).fulfillJob(id, await H.rh(manager, id), H.CID_1, rand() < 0.8 ? 0 : 1))) counts.fulfil++;
        } else if (r < 0.6) {
          const who = pick(oracles);
          const id = openJob();
          if (await attempt(who, async () => manager.connect(who).failJob(id, await H.rh(manager, id), "no"))) counts.fail++;
        } else if (r < 0.7) {
          const id = openJob();
          const who = rand() < 0.85 ? signers.find((s) => s.address === jobs.get(id).requester) || pick(requesters) : pick(requesters);
          if (await attempt(who, () => manager.connect(who).cancelJob(id))) counts.cancel++;
        } else if (r < 0.74) {
          const who = pick(requesters);
          const runs = await pipeline.runCount();
          const runId = runs === 0n ? 1n : BigInt(1 + Math.floor(rand() * Number(runs)));
          if (await attempt(who, () => pipeline.connect(who).cancelStalled(runId))) counts.pipelineCancel++;
        } else if (r < 0.77) {
          const who = pick(requesters);
          if (await attempt(who, () => pipeline.connect(who).claimRefunds())) counts.claimRefunds++;
        } else if (r < 0.88) {
          const who = pick([...requesters, ...oracles]);
          const to = rand() < 0.5 ? who : pick(requesters.filter((s) => s !== who));
          const before = await ethers.provider.getBalance(to.address);
          const receipt = await attempt(who, () =>
            to === who ? manager.connect(who).withdraw() : manager.connect(who).withdrawTo(to.address));
          if (receipt) {
            counts.withdraw++;
            if (to !== who) {
              const sent = manager.interface.parseLog(receipt.logs.find((l) => l.address === managerAddr)).args.amount;
              expect((await ethers.provider.getBalance(to.address)) - before).to.equal(sent);
            }
          }
        } else if (r < 0.91) {
          const next = BigInt(Math.floor(rand() * 4)) * (H.MIN_FEE / 3n); // 0, 1/3, 2/3 or all of minFee
          if (await attempt(owner, () => manager.connect(owner).setFailureFee(next))) {
            failureFee = next;
            counts.failureFee++;
          }
        } else if (r < 0.93) {
          if (await attempt(owner, () => manager.connect(owner).pause())) counts.pause++;
        } else {
          await time.increase(Math.floor(rand() * Number(H.JOB_WINDOW) * 1.5));
          counts.warp++;
        }
        // pauses are short: requests revert while paused, everything else keeps working
        if (rand() < 0.2 && (await manager.paused())) await attempt(owner, () => manager.connect(owner).unpause());
        await check();
      }
      console.log(`      seed ${seed}: ${JSON.stringify(counts)}`);
      for (const [id, j] of jobs) expect((await manager.getJob(id)).status).to.equal(j.status);
      // every kind of operation actually happened, including requests made inside callbacks
      for (const k of ["request", "fulfil", "fail", "cancel", "withdraw", "chained", "failureFee", "pause", "warp"]) {
        expect(counts[k], k).to.be.greaterThan(0);
      }
    });
  }
});

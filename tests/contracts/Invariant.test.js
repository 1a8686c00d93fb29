// Property test (JobManager v2): random sequences of operations — requests (from EOAs and from a
// chaining consumer contract, including requests made inside callbacks), claims (including
// take-overs of lapsed leases, which slash the lapsed operator to the requester), fulfilments,
// failures, cancellations (which slash a lapsed claimer too), withdrawals, refunds claimed by a
// consumer, penalty and pause changes, and time travel — keep, after every operation:
//   balance(JobManager) == sum(fees of open jobs) + sum(stakes) + sum(withdrawable)
//   withdrawable[a]     == what the fee and slashing rules give a, for every account a
//   stake[o]            == what the slashing rules leave o, for every operator o
// and every JobCompleted / JobFailed names the claimer that sent it, and a job settles once.
// The model computes the money on its own from the rules; the chain's events only say which jobs
// changed. A reverted operation must change nothing.
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
const { Requested: REQUESTED, Claimed: CLAIMED, Completed: COMPLETED, Failed: FAILED, Cancelled: CANCELLED } = H.S;

describe("JobManager invariant (random operation sequences)", function () {
  for (const seed of SEEDS) {
    it(`holds after each of ${OPS} random operations (seed ${seed})`, async function () {
      const rand = prng(seed);
      const pick = (xs) => xs[Math.floor(rand() * xs.length)];
      const gasPrice = 10n ** 9n; // 1 gwei per callback gas: 50k gas adds 5e13 wei to the fee
      const { manager, owner, oracle, oracle2 } = await H.deployManager(gasPrice, true);
      await manager.connect(owner).setDefaultLease(300); // leases lapse within the time warps
      const managerAddr = await manager.getAddress();
      const signers = await ethers.getSigners();
      const requesters = signers.slice(6, 10);
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
      const jobs = new Map(); // id → {terms, requester, fee, status, claimer}
      const owed = new Map(); // account → wei the rules say it can withdraw
      const stake = new Map(oracles.map((o) => [o.address, H.MIN_STAKE]));
      let lapsePenalty = await manager.lapsePenalty();
      const credit = (account, amount) => owed.set(account, (owed.get(account) || 0n) + amount);
      const accounts = [...requesters, ...oracles].map((s) => s.address).concat(pipelineAddr);
      const counts = {
        request: 0, claim: 0, takeover: 0, fulfil: 0, fail: 0, cancel: 0, withdraw: 0, chained: 0,
        pipelineCancel: 0, claimRefunds: 0, penalties: 0, pause: 0, warp: 0, reverted: 0,
      };

      /** Applies the rules to the jobs the receipt's events say changed. */
      async function apply(receipt, sender) {
        for (const log of receipt.logs) {
          if (log.address !== managerAddr) continue;
          const ev = manager.interface.parseLog(log);
          if (!ev) continue;
          const id = ev.args.jobId;
          if (ev.name === "JobRequested") {
            expect(jobs.has(id)).to.equal(false);
            const terms = H.plain(ev.args.terms);
            const [requester, consumer, fee, , callbackGasLimit] = terms;
            expect(fee).to.be.gte(await manager.quoteFee(consumer, callbackGasLimit, 1), "fee below the quote");
            expect(terms[8]).to.equal(H.requestHash(id, ev.args.spec));
            jobs.set(id, { terms, requester, fee, status: REQUESTED, claimer: null });
            if (requester === pipelineAddr && receipt.to === managerAddr) counts.chained++;
            continue;
          }
          if (ev.name === "Slashed") {
            const job = jobs.get(id);
            const before = stake.get(ev.args.operator);
            expect(ev.args.amount).to.equal(before < lapsePenalty ? before : lapsePenalty, "slash amount");
            expect(ev.args.reason).to.equal(1n);
            expect(ev.args.operator).to.equal(job.claimer, "slashed another than the lapsed claimer");
            stake.set(ev.args.operator, before - ev.args.amount);
            credit(job.requester, ev.args.amount);
            continue;
          }
          if (ev.name === "JobClaimed") {
            const job = jobs.get(id);
            expect([REQUESTED, CLAIMED]).to.include(job.status);
            if (job.status === CLAIMED) counts.takeover++;
            job.status = CLAIMED;
            job.claimer = ev.args.operator;
            job.leaseEnd = ev.args.leaseEnd;
            expect(ev.args.operator).to.equal(sender);
            continue;
          }
          if (!["JobCompleted", "JobFailed", "JobCancelled"].includes(ev.name)) continue;
          const job = jobs.get(id);
          expect([REQUESTED, CLAIMED]).to.include(job.status, `job ${id} settled twice`);
          if (ev.name !== "JobCancelled") {
            expect(ev.args.operator).to.equal(sender, "event names another operator");
            expect(job.claimer).to.equal(sender, "settled by another than its claimer");
          }
          if (ev.name === "JobCompleted") {
            job.status = COMPLETED;
            credit(sender, job.fee);
          } else if (ev.name === "JobFailed") {
            job.status = FAILED;
            credit(job.requester, job.fee);
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
        let sumStakes = 0n;
        for (const [a, st] of stake) {
          expect((await manager.getOperator(a)).stake).to.equal(st, `stake(${a})`);
          sumStakes += st;
        }
        const escrow = [...jobs.values()].filter((j) => j.status === REQUESTED || j.status === CLAIMED)
          .reduce((s, j) => s + j.fee, 0n);
        expect(await ethers.provider.getBalance(managerAddr)).to.equal(escrow + sumStakes + sumWithdrawable);
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

      // mostly jobs in the wanted states and before their deadline; sometimes any job at all
      const openJob = async (states = [REQUESTED, CLAIMED], extra = () => true) => {
        const now = BigInt(await time.latest());
        const all = [...jobs.entries()];
        const open = all.filter(([, j]) => states.includes(j.status) && j.terms[3] > now && extra(j, now));
        const [id] = open.length && rand() < 0.9 ? pick(open) : pick(all);
        return id;
      };
      const signerOf = (address) => signers.find((s) => s.address === address);

      for (let i = 0; i < OPS; i++) {
        const r = rand();
        if (r < 0.16 || jobs.size === 0) {
          const who = pick(requesters);
          const fee = H.MIN_FEE + BigInt(Math.floor(rand() * 1000)) * 10n ** 12n;
          const consumer = pick(consumers);
          if (await attempt(who, () => manager.connect(who).requestJob("{}", consumer, 50_000, { value: fee }))) {
            counts.request++;
          }
        } else if (r < 0.24) {
          const who = pick(requesters);
          if (await attempt(who, () => pipeline.connect(who).start(H.CID_IN, { value: 2n * stageFee }))) counts.request++;
        } else if (r < 0.4) {
          let who = pick(oracles);
          const c = rand();
          const id = c < 0.4 ? await openJob([REQUESTED])
            : c < 0.6 ? await openJob([REQUESTED], (j) => j.requester === pipelineAddr)
              : await openJob([CLAIMED], (j, now) => j.leaseEnd < now); // a lapsed lease: take it over
          const holder = jobs.get(id).claimer;
          if (holder === who.address && rand() < 0.9) who = oracles.find((o) => o.address !== holder);
          if (await attempt(who, () => manager.connect(who).claimJob(id, jobs.get(id).terms))) counts.claim++;
        } else if (r < 0.52) {
          const id = await openJob([CLAIMED]);
          const holder = jobs.get(id).claimer;
          const sender = holder && rand() < 0.85 ? signerOf(holder) : pick(oracles);
          if (await attempt(sender, () => manager.connect(sender).fulfillJob(id, jobs.get(id).terms, H.CID_1,
            rand() < 0.8 ? 0 : 1, rand() < 0.5 ? "0x" : "0x2a"))) counts.fulfil++;
        } else if (r < 0.58) {
          const id = await openJob([CLAIMED]);
          const holder = jobs.get(id).claimer;
          const sender = holder && rand() < 0.85 ? signerOf(holder) : pick(oracles);
          if (await attempt(sender, () => manager.connect(sender).failJob(id, jobs.get(id).terms, "no"))) counts.fail++;
        } else if (r < 0.66) {
          const id = [...jobs.keys()][Math.floor(rand() * jobs.size)];
          const who = rand() < 0.85 ? signers.find((s) => s.address === jobs.get(id).requester) || pick(requesters) : pick(requesters);
          if (await attempt(who, () => manager.connect(who).cancelJob(id, jobs.get(id).terms))) counts.cancel++;
        } else if (r < 0.7) {
          const who = pick(requesters);
          const runs = await pipeline.runCount();
          const runId = runs === 0n ? 1n : BigInt(1 + Math.floor(rand() * Number(runs)));
          const run = runs === 0n ? null : await pipeline.getRun(runId);
          const jobId = run ? (run.status === 2n ? run.stage2JobId : run.stage1JobId) : 0n;
          const terms = jobs.has(jobId) ? jobs.get(jobId).terms : H.plain(Array(9).fill(0)).map((x, k) => (k < 2 ? ethers.ZeroAddress : k === 7 ? false : k === 8 ? ethers.ZeroHash : 0));
          if (await attempt(who, () => pipeline.connect(who).cancelStalled(runId, terms))) counts.pipelineCancel++;
        } else if (r < 0.73) {
          const who = pick(requesters);
          if (await attempt(who, () => pipeline.connect(who).claimRefunds())) counts.claimRefunds++;
        } else if (r < 0.85) {
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
        } else if (r < 0.88) {
          const next = BigInt(Math.floor(rand() * 4)) * (H.MIN_STAKE / 4n); // 0, 1/4, 1/2, 3/4 of minStake
          if (await attempt(owner, () => manager.connect(owner).setPenalties(next, H.MIN_STAKE / 2n))) {
            lapsePenalty = next;
            counts.penalties++;
          }
        } else if (r < 0.9) {
          if (await attempt(owner, () => manager.connect(owner).pause())) counts.pause++;
        } else {
          await time.increase(Math.floor(rand() * Number(H.JOB_WINDOW) * 0.25));
          counts.warp++;
        }
        // pauses are short: requests revert while paused, everything else keeps working
        if (rand() < 0.2 && (await manager.paused())) await attempt(owner, () => manager.connect(owner).unpause());
        await check();
      }
      console.log(`      seed ${seed}: ${JSON.stringify(counts)}`);
      for (const [id, j] of jobs) expect((await manager.getJob(id)).status).to.equal(j.status);
      // every kind of operation actually happened, including requests made inside callbacks
      for (const k of ["request", "claim", "takeover", "fulfil", "fail", "cancel", "withdraw", "chained", "penalties",
        "pause", "warp"]) {
        expect(counts[k], k).to.be.greaterThan(0);
      }
    });
  }
});

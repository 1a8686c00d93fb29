"""Renders `bench.run_all`'s report (a JSON-able dict) as markdown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.stats import STAGES, Throughput, headline, table

GAS_MD = Path(__file__).parent / "results" / "gas.md"


def _f(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "–" if value != value else f"{value:.{digits}f}"
    return str(value)


def render(report: dict[str, Any]) -> str:
    out: list[str] = ["# cod benchmarks", ""]
    if report.get("throughput"):
        rows = [Throughput(r["parallelism"], r["fulfilled_per_s"], r["docker_run_per_s"])
                for r in report["throughput"]]
        out += [f"**{headline(rows)}** (at parallelism {max(r.parallelism for r in rows)})", ""]
    m = report["machine"]
    out += [f"Command: `{report['command']}` — started {report['started']}, "
            f"took {report.get('elapsed_s', '?')} s.",
            f"Machine: {m['cpu']}, {m['nproc']} cores (nproc), {m['memory']} RAM, Linux "
            f"{m['kernel']}, Python {m['python']}, Docker {m['docker']}, Kubo {m['kubo']}.", ""]
    if report.get("merged_from"):
        out += ["Kept from the earlier run (`--merge`): " + ", ".join(
            f"{phase} (started {started})" for phase, started in report["merged_from"].items())
            + ".", ""]
    if "overhead" in report:
        out += _overhead(report["overhead"])
    if "throughput" in report:
        out += _throughput(report["throughput"])
    if "burst" in report:
        out += _burst(report["burst"])
    if "cli" in report:
        out += _cli(report["cli"])
    if "data" in report:
        out += _data(report["data"])
    if "locality" in report:
        out += _locality(report["locality"])
    if "bridge" in report:
        out += _bridge(report["bridge"])
    out += _gas()
    return "\n".join(out) + "\n"


def _overhead(o: dict[str, Any]) -> list[str]:
    direct = o["executor_direct"]
    lines = ["## Overhead per job (trivial busybox `echo hi`)", "",
             f"Medians of {o['runs']} jobs each, seconds.", "",
             table(["path", "median s", "× docker run"], [
                 ["(a) `docker run --rm --network none` alone", o["docker_run_s"], 1.0],
                 ["(b) executor runner directly (the Celery task's body)", direct["total"],
                  direct["total"] / o["docker_run_s"]],
                 *[[f"(c) end to end, {c} confirmation(s): requestJob sent → fulfillJob mined",
                    e["median"].get("total", float("nan")),
                    e["median"].get("total", float("nan")) / o["docker_run_s"]]
                   for c, e in o["e2e"].items()],
             ]), "",
             "(b) split by Docker's own container events: "
             f"before the container {_f(direct['before container'])} s, the container "
             f"{_f(direct['container'])} s, after it (logs, Kubo add + pin + stat) "
             f"{_f(direct['after container'])} s.", "",
             "### End to end, per stage (medians)", ""]
    confs = list(o["e2e"])
    names = [s[0] for s in STAGES] + ["total", "overhead"]
    lines.append(table(["stage", *[f"{c} conf. (s)" for c in confs]],
                       [[n, *[o["e2e"][c]["median"].get(n, float("nan")) for c in confs]]
                        for n in names]))
    plain_extra = o["docker_run_s"] - direct["container"]  # what `docker run` costs around the work
    lines += ["", "`overhead` = total − request inclusion − confirmations − fulfil inclusion − "
              "container: what "
              "the bridge and executor add beyond the chain and the work (target < 0.5 s). "
              "It includes Docker's own cost of creating, starting and removing a container, "
              f"which a plain `docker run` pays too ({_f(plain_extra)} s here: docker run's "
              "median minus the container's run time); beyond that: "
              + ", ".join(f"{_f(o['e2e'][c]['median'].get('overhead', float('nan')) - plain_extra)}"
                          f" s at {c} confirmation(s)" for c in confs) + ".", ""]
    return lines


def _throughput(rows: list[dict[str, Any]]) -> list[str]:
    return ["## Throughput (trivial jobs, sustained)", "",
            table(["parallelism", "docker run alone (jobs/s)", "cod fulfilled on-chain (jobs/s)",
                   "cod executed (jobs/s)", "ratio cod / docker run"],
                  [[r["parallelism"], r["docker_run_per_s"], r["fulfilled_per_s"],
                    r["executed_per_s"], r["ratio"]] for r in rows]), ""]


def _burst(b: dict[str, Any]) -> list[str]:
    return [f"## A burst: {b['jobs']} trivial jobs at once, until every one is settled", "",
            f"Medians of {b['rounds']} round(s), interleaved; `.venv/bin/python -m bench.burst`.",
            "", table(["path", "median s", "× docker run"], [
                [f"bare `docker run`, {b['parallel']} at a time", b["docker_run_s"], 1.0],
                [f"cod: {b['jobs']} requests from one key, a worker of concurrency "
                 f"{b['parallel']}; first send → last completed", b["cod_s"], b["ratio"]],
            ]), ""]


def _cli(c: dict[str, Any]) -> list[str]:
    rows = [["`cod --help`", c["help"]["median_s"], c["help"]["min_s"]],
            ["`cod docker run --dry-run …`", c["dry_run"]["median_s"], c["dry_run"]["min_s"]]]
    lines = ["## The command line: whole processes", "",
             f"Medians of {c['help']['runs']} runs; `.venv/bin/python -m bench.cli_bench`.", "",
             table(["command", "median s", "min s"], rows), ""]
    if "concurrent" in c:
        k = c["concurrent"]
        lines += [f"{k['processes']} `cod docker run` started at once from one key: "
                  f"{k['accepted']} accepted, {k['completed']} completed"
                  + (f" (errors: {'; '.join(k['errors'])})" if k["errors"] else "") + ".", ""]
    return lines


def _data(rows: list[dict[str, Any]]) -> list[str]:
    return ["## Data scaling (N MB input read, N MB output written)", "",
            table(["size", "runs", "cod runner (s)", "ipfs get + docker run + ipfs add (s)",
                   "ratio", "worker RSS before (MB)", "worker peak RSS (MB)"],
                  [[f"{r['size_mb']} MB", r["runs"], r["cod_s"], r["baseline_s"], r["ratio"],
                    r["worker_rss_before_mb"], r["worker_peak_rss_mb"]] for r in rows]), ""]


def _locality(loc: dict[str, Any]) -> list[str]:
    rows = []
    for label in ("local", "non_local"):
        if label in loc:
            r = loc[label]
            rows.append([label.replace("_", "-"), r["node"], r["end_to_end_s"], r["executor_s"],
                         r["input_fetch_s"], f"{r['bytes_moved']:,}"])
    return [f"## Locality: one job over a {loc['size_mb']} MB dataset pinned on node-b", "",
            table(["routing", "ran on", "end to end (s)", "executor (s)", "input fetch + setup (s)",
                   "bytes moved (bitswap)"], rows), ""]


def _bridge(b: dict[str, Any]) -> list[str]:
    note = ([f"Measured by its own command: `.venv/bin/python -m bench.bridge_bench "
             f"--requests {b['requests']} --blocks {b.get('blocks', '?')}` "
             "(bench/results/bridge.md).", ""] if b.get("separate_run") else [])
    return ["## Bridge scaling", "", *note,
            table(["measure", "value"], [
                ["backlog", f"{b['requests']} requests over {b['backlog_blocks']} blocks "
                            f"(built in {b['backlog_build_s']} s)"],
                ["listener catch-up", f"{b['listener_s']} s: {b['listener_events_per_s']} "
                                      f"events/s, {b['listener_blocks_per_s']} blocks/s"],
                ["dispatch to Celery", f"{b['dispatch_s']} s: {b['dispatch_jobs_per_s']} jobs/s"],
                ["submitter", f"{b['fulfilled']} fulfilments in {b['submit_s']} s: "
                              f"{b['fulfilments_per_s']} /s"],
                ["bridge RSS (MB): start → after catch-up → every 500 dispatched",
                 " → ".join(str(x) for x in b["rss_series_mb"])],
            ]), ""]


def _gas() -> list[str]:
    if not GAS_MD.exists():
        return []
    text = GAS_MD.read_text().splitlines()
    start = next(i for i, line in enumerate(text) if line.startswith("| operation"))
    end = next((i for i in range(start, len(text)) if not text[i].startswith("|")), len(text))
    return ["## Gas (from `scripts/gas-report.js`, [bench/results/gas.md](gas.md))", "",
            *text[start:end], ""]


def main() -> None:
    """Render bench/results/report.json again (after a change to this module)."""
    import json

    results = Path(__file__).parent / "results"
    text = render(json.loads((results / "report.json").read_text()))
    (results / "report.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()

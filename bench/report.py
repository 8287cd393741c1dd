#!/usr/bin/env python3
"""OUT_DIR of bench/run.sh -> Markdown (results.md) on stdout.

Usage: python3 bench/report.py OUT_DIR

Reads OUT_DIR/settings.json, versions.txt and, per pass, pass-X/{runs,startups,pss,checks,
failures}.jsonl.  Writes: the targets of issue 5 as same-pass ratios, one table per pass,
both passes side by side with their spread (the machine's noise), start-up and PSS, and the
raw label table of ../shared/bench/summarize.py.  Stdlib only.
"""

import json
import os
import statistics
import subprocess
import sys

SERVERS = ("hookserve", "torchserve", "litserve")
NAMES = {"hookserve": "hookserve", "torchserve": "TorchServe 0.12", "litserve": "LitServe 0.2.19"}
HS, TS, LS = SERVERS


def load(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip().startswith("{")]


def fmt(v, spec=".0f"):
    return "-" if v is None else format(v, spec)


def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


def joined(values):
    """One cell for all passes: "pass A / pass B"."""
    return " / ".join(values)


def batching_name(bs, delay):
    return "bs 1" if bs == 1 else f"bs {bs} / {delay} ms"


class Pass:
    def __init__(self, out, name):
        d = os.path.join(out, "pass-" + name)
        self.name = name
        self.runs = {(r["server"], r["batch_size"], r["concurrency"]): r for r in load(os.path.join(d, "runs.jsonl"))}
        self.startup = load(os.path.join(d, "startups.jsonl"))
        self.mem = load(os.path.join(d, "pss.jsonl"))
        self.checks = load(os.path.join(d, "checks.jsonl"))
        self.failures = load(os.path.join(d, "failures.jsonl"))

    def run(self, server, bs, conc, key):
        r = self.runs.get((server, bs, conc))
        return None if r is None else r[key]

    def cell(self, server, bs, conc, key, spec):
        return fmt(self.run(server, bs, conc, key), spec)

    def run_ratio(self, a, b, bs_a, bs_b, conc, key):
        return ratio(self.run(a, bs_a, conc, key), self.run(b, bs_b, conc, key))

    def startup_median(self, server, key="first_200_s"):
        xs = [float(s[key]) for s in self.startup if s["server"] == server and s.get(key) not in (None, "-")]
        return statistics.median(xs) if xs else None

    def startup_list(self, server):
        return ", ".join(f"{s['first_200_s']:.2f}" for s in self.startup if s["server"] == server) or "-"

    def pss(self, server, bs=None):
        """PSS after load; bs=None: the larger of the batch configurations (the worst case)."""
        xs = [m["mem"]["pss_mib"] for m in self.mem if m["server"] == server and (bs is None or m["batch_size"] == bs)]
        return max(xs) if xs else None

    def idle_pss(self, server):
        xs = [s["idle_mem"]["pss_mib"] for s in self.startup if s["server"] == server]
        return statistics.median(xs) if xs else None

    def nprocs(self, server):
        return max((m["mem"]["nprocs"] for m in self.mem if m["server"] == server), default=0)

    def errors(self, server):
        rs = [r for (s, _, _), r in self.runs.items() if s == server]
        return sum(r["errors"] for r in rs) if rs else None


def header(out, settings, passes):
    print(f"# hookserve vs TorchServe 0.12 vs LitServe 0.2.19 — one run, {len(passes)} pass(es)\n")
    dirty = " + uncommitted changes" if settings["repo_dirty"] else ""
    names = settings["passes"]
    order = ""
    if len(names) > 1:
        order = f' (later passes: {settings["pass_b_order"]} order). Cells with several values: "pass {" / pass ".join(names)}"'
    print(
        f"Started {settings['started']}, {settings.get('wall_s', 0)} s wall clock; hookserve tree "
        f"{settings['repo_commit']}{dirty}. Passes: {', '.join(names)}{order}.\n"
    )
    print(
        "Setup: model = ../shared/bench MLP 64→128→128→10 (eager, `mlp.mar` built by torch-model-archiver 0.12; "
        f"LitServe loads the same `mlp_state.pt`), body = `sample.json` (64 floats), {settings['workers']} model "
        "workers per server, `OMP_NUM_THREADS=1` for all (hookserve also `--torch-threads 1`), hookserve "
        f"`--frontend-workers {settings['hs_frontend_workers']}`, TorchServe with `log4j2-quiet.xml`. Load: wrk "
        f"(`../shared/bench/load.sh`), 1 thread, closed loop, keep-alive, {settings['duration_s']} s per run after "
        f'{settings["warmup_s"]} s warm-up + 2 s drain. Batching "bs 8" = batch size 8, max delay 5 ms '
        "(LitServe: `max_batch_size=8, batch_timeout=0.005`).\n"
    )
    vpath = os.path.join(out, "versions.txt")
    if os.path.exists(vpath):
        with open(vpath) as f:
            print("Versions: " + "; ".join(line.strip() for line in f if line.strip()) + ".\n")
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
        mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        print(f"Machine: {os.cpu_count()} CPUs ({cpu}), {mem_gib:.0f} GiB; wrk and the server share the CPUs.\n")
    except (OSError, StopIteration, ValueError):
        pass


def problems(passes):
    bad = [f for p in passes for f in p.failures]
    badchecks = [c for p in passes for c in p.checks if not c["ok"]]
    if bad or badchecks:
        items = [f"pass {f['pass']} {f['server']}: {f['what']}" for f in bad]
        items += [f"pass {c['pass']} check {c['label']} failed" for c in badchecks]
        print("**Failures:** " + "; ".join(items) + "\n")
    logged = [(p.name, m) for p in passes for m in p.mem if m.get("log_problems")]
    if logged:
        items = [
            f"pass {n} {m['label']}: {m['log_problems']} line(s) (`{os.path.basename(m.get('log', ''))}`)"
            for n, m in logged
        ]
        print(
            "**Problems in the servers' logs during load ladders** (tracebacks, worker exits; wrk may not see "
            "them when requests are re-sent): " + "; ".join(items) + ".\n"
        )
    good = [c for p in passes for c in p.checks if c["ok"]]
    if good:
        print(
            "Correctness (`check_server.py`, 128 requests of 32 distinct inputs at concurrency 16, before every "
            f"load ladder): {len(good)} of {len(good) + len(badchecks)} configurations fully correct.\n"
        )


def targets(settings, passes, b1, b8):
    def met(r, limit, better):
        if r is None:
            return "-"
        return "✓" if (r <= limit if better == "lower" else r >= limit) else "✗"

    def ahead(r, better):
        if r is None:
            return "-"
        return f"{r:.2f} " + ("✓" if (r < 1 if better == "lower" else r > 1) else "✗")

    # (measure, target text, limit, lower/higher is better, same-pass ratio hookserve / other)
    rows = []
    if b1 is not None:
        rows.append(
            ("p50 latency, conc 1, bs 1", "≤ 0.3", 0.3, "lower", lambda p, o: p.run_ratio(HS, o, b1, b1, 1, "p50_ms"))
        )
        rows.append(("req/s, conc 8, bs 1", "≥ 3", 3, "higher", lambda p, o: p.run_ratio(HS, o, b1, b1, 8, "rps")))
    if b8 is not None:
        rows.append(
            ("req/s, conc 64, bs 8 / 5 ms", "≥ 2", 2, "higher", lambda p, o: p.run_ratio(HS, o, b8, b8, 64, "rps"))
        )
    rows.append(
        (
            f"start-up to first 200 (median of {settings['startup_reps']})",
            "≤ 0.6",
            0.6,
            "lower",
            lambda p, o: ratio(p.startup_median(HS), p.startup_median(o)),
        )
    )
    rows.append(("PSS of all processes after load", "≤ 0.6", 0.6, "lower", lambda p, o: ratio(p.pss(HS), p.pss(o))))

    print("## Targets (issue 5): same-pass ratios hookserve / other\n")
    print("| measure | target vs TorchServe | hookserve / TorchServe | met | hookserve / LitServe (ahead?) |")
    print("|---|---|---:|:---:|---:|")
    for name, text, limit, better, fn in rows:
        rts = [fn(p, TS) for p in passes]
        rls = [fn(p, LS) for p in passes]
        print(
            f"| {name} | {text} | {joined(fmt(r, '.2f') for r in rts)} | "
            f"{joined(met(r, limit, better) for r in rts)} | {joined(ahead(r, better) for r in rls)} |"
        )
    if b1 is not None and b8 is not None:
        own = [p.run_ratio(HS, HS, b8, b1, 1, "p50_ms") for p in passes]
        others = {s: joined(fmt(p.run_ratio(s, s, b8, b1, 1, "p50_ms"), ".2f") for p in passes) for s in (TS, LS)}
        print(
            f"| hookserve p50 conc 1: bs 8 / 5 ms ÷ bs 1 (TorchServe: {others[TS]}, LitServe: {others[LS]}) "
            f"| ≤ 1.2 | {joined(fmt(r, '.2f') for r in own)} | {joined(met(r, 1.2, 'lower') for r in own)} | - |"
        )
    errs = {s: [p.errors(s) for p in passes] for s in SERVERS}
    print(
        f"| errors, all hookserve runs (TorchServe: {joined(fmt(e, 'd') for e in errs[TS])}, "
        f"LitServe: {joined(fmt(e, 'd') for e in errs[LS])}) | 0 | {joined(fmt(e, 'd') for e in errs[HS])} | "
        f"{joined('-' if e is None else ('✓' if e == 0 else '✗') for e in errs[HS])} | - |"
    )
    print()
    print(
        'PSS for a server = the larger of its two "after the load ladder" samples (bs 1, bs 8) in that pass; '
        "a ratio < 1 in the LitServe column means hookserve is lower (better) for latency, start-up and memory, "
        "and > 1 means higher (better) for req/s.\n"
    )


def pass_tables(passes, servers, batchings, concs):
    for p in passes:
        print(f"## Pass {p.name}\n")
        print("| batching | conc | server | req/s | p50 ms | p90 ms | p99 ms | errors |")
        print("|---|---:|---|---:|---:|---:|---:|---:|")
        for bs, delay in batchings:
            for c in concs:
                for s in servers:
                    print(
                        f"| {batching_name(bs, delay)} | {c} | {NAMES[s]} | {p.cell(s, bs, c, 'rps', '.0f')} | "
                        f"{p.cell(s, bs, c, 'p50_ms', '.2f')} | {p.cell(s, bs, c, 'p90_ms', '.2f')} | "
                        f"{p.cell(s, bs, c, 'p99_ms', '.2f')} | {p.cell(s, bs, c, 'errors', 'd')} |"
                    )
        print()


def side_by_side(passes, servers, batchings, concs):
    print(f'## Both passes side by side ("{" / ".join(p.name for p in passes)}"), with the spread between passes\n')
    print("spread = (max − min) / mean of the passes' req/s: the machine's noise for that cell.\n")
    print("| batching | conc | server | req/s | spread | p50 ms | p99 ms | errors |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    spreads = {s: [] for s in servers}
    for bs, delay in batchings:
        for c in concs:
            for s in servers:
                xs = [p.run(s, bs, c, "rps") for p in passes]
                spread = "-"
                if all(x is not None for x in xs) and statistics.mean(xs) > 0:
                    sp = (max(xs) - min(xs)) / statistics.mean(xs)
                    spreads[s].append(sp)
                    spread = f"{100 * sp:.0f} %"

                def cells(key, spec, s=s, bs=bs, c=c):
                    return joined(p.cell(s, bs, c, key, spec) for p in passes)

                print(
                    f"| {batching_name(bs, delay)} | {c} | {NAMES[s]} | {cells('rps', '.0f')} | {spread} | "
                    f"{cells('p50_ms', '.2f')} | {cells('p99_ms', '.2f')} | {cells('errors', 'd')} |"
                )
    print()
    noise = "; ".join(
        f"{NAMES[s]} median {100 * statistics.median(v):.0f} %, max {100 * max(v):.0f} %"
        for s, v in spreads.items()
        if v
    )
    print(
        f"Machine noise (req/s spread between passes over the {len(batchings) * len(concs)} load cells of "
        f"each server): {noise}.\n"
    )


def startup_memory(settings, passes, servers, b1, b8):
    print("## Start-up and memory\n")
    print(
        f"Start-up = launch → first HTTP 200 of `POST /predictions/mlp` (model loaded at start, {settings['workers']} "
        'workers, polled every 50 ms); "all ready" = every worker READY in the management API (LitServe: '
        "`/health`). PSS = sum of `/proc/PID/smaps_rollup` Pss over the server's process group (shared pages "
        "counted once); TorchServe: Java + its Python workers (the `torchserve --foreground` launcher, which only "
        "waits for Java, is left out); hookserve: gunicorn master + frontends + model manager + workers; "
        "LitServe: every process of the server.\n"
    )
    print(
        "| server | first 200, s (median) | each run, s | all ready, s (median) | idle PSS MiB | "
        "PSS after bs-1 load MiB | PSS after bs-8 load MiB | processes |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for s in servers:
        after_b1 = joined(fmt(p.pss(s, b1)) for p in passes) if b1 else "-"
        after_b8 = joined(fmt(p.pss(s, b8)) for p in passes) if b8 else "-"
        print(
            f"| {NAMES[s]} | {joined(fmt(p.startup_median(s), '.2f') for p in passes)} | "
            f"{joined(p.startup_list(s) for p in passes)} | "
            f"{joined(fmt(p.startup_median(s, 'all_ready_s'), '.2f') for p in passes)} | "
            f"{joined(fmt(p.idle_pss(s)) for p in passes)} | {after_b1} | {after_b8} | "
            f"{joined(str(p.nprocs(s)) for p in passes)} |"
        )
    print()
    print(f"Per process (last sample of each server, pass {passes[-1].name}):\n")
    for s in servers:
        ms = [m for m in passes[-1].mem if m["server"] == s]
        if ms:
            m = ms[-1]["mem"]
            parts = [f"{q['comm']} {q['pid']}: {q['pss_mib']:.0f} (RSS {q['rss_mib']:.0f})" for q in m["procs"]]
            parts += [f"{q['comm']} {q['pid']}: {q['pss_mib']:.0f}, not counted" for q in m["excluded"]]
            print(f"* {NAMES[s]} ({ms[-1]['label']}), PSS MiB: {'; '.join(parts)}")
    print()


def raw_table(out, passes):
    here = os.path.dirname(os.path.abspath(__file__))
    shared = os.environ.get("SHARED_BENCH", os.path.join(here, "..", "..", "shared", "bench"))
    summarize = os.path.join(shared, "summarize.py")
    if not os.path.exists(summarize):
        return
    dirs = [os.path.join(out, "pass-" + p.name) for p in passes]
    res = subprocess.run([sys.executable, summarize, *dirs], capture_output=True, text=True)
    if res.returncode == 0 and res.stdout.strip():
        print(f"## Raw runs (`../shared/bench/summarize.py {' '.join('pass-' + p.name for p in passes)}`)\n")
        print(res.stdout)


def main():
    out = sys.argv[1]
    with open(os.path.join(out, "settings.json")) as f:
        settings = json.load(f)
    passes = [Pass(out, p) for p in settings["passes"]]
    servers = [s for s in SERVERS if s in settings["servers"]]
    batchings = [tuple(int(x) for x in b.split(":")) for b in settings["batchings"]]
    concs = settings["concurrencies"]
    b1 = 1 if any(bs == 1 for bs, _ in batchings) else None
    b8 = next((bs for bs, _ in batchings if bs > 1), None)

    header(out, settings, passes)
    problems(passes)
    targets(settings, passes, b1, b8)
    pass_tables(passes, servers, batchings, concs)
    if len(passes) > 1:
        side_by_side(passes, servers, batchings, concs)
    startup_memory(settings, passes, servers, b1, b8)
    raw_table(out, passes)


if __name__ == "__main__":
    main()

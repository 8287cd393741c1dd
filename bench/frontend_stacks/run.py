#!/usr/bin/env python3
"""Measure HTTP frontend stacks in front of the SAME running hookserve model workers.

    python3 bench/frontend_stacks/run.py [--out DIR] [--duration 10] [--warmup 2] [--drain 1] [--passes 2]
        [--stacks asgi-1,asgi-2,...] [--concurrencies 1,8,64] [--rev HEAD|COMMIT|worktree] [--table-only]

1. takes hookserve as committed at ``--rev`` (``git archive``; others edit the working tree meanwhile)
   into DIR/src and puts it first on PYTHONPATH for every process it starts;
2. builds the benchmark MLP and its sample bodies (/work/shared/bench/make_models.py) and packs
   them with ``hookserve archive`` (handler and model from the snapshot's demo/);
3. starts ``hookserve serve`` (2 model workers, 1 torch thread each, 1 gunicorn ``asgi`` frontend)
   on free loopback ports, with a private TMPDIR so that its run folder (``hookserve-*``, the one
   whose config.json has our inference port) is found without guessing;
4. for each pass and each stack: starts that frontend on another free loopback port with
   ``HOOKSERVE_RUN_DIR`` = the serve's run folder (stack ``asgi-1`` is the serve's own frontend),
   checks replies (sample.json's "class" == sample_expected.json, and check_server.py's 32
   distinct inputs at concurrency 8), and per concurrency runs /work/shared/bench/load.sh (wrk):
   a warm-up run, a drain pause, then the measured run, with the CPU seconds of the frontend
   processes, of the model workers and of the rest of the machine read around it; then it stops
   that frontend. Pass 2 runs the stacks in reverse order (A B C .. C B A).
5. writes DIR/runs.jsonl (load.sh's JSON line per measured run + stack, pass, CPU figures),
   DIR/meta.json (commit, worker pids at start and end, reply checks) and DIR/results.md.

Every process is started in its own session and stopped through its recorded process group.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BENCH = Path(os.environ.get("BENCH_DIR", "/work/shared/bench"))
VENV_BIN = Path(os.environ.get("VENV_BIN", "/tmp/dev/bin"))
UVLOOP_PATH = os.environ.get("UVLOOP_PATH", "/tmp/fs-uvloop")  # pip install --target, not in the venv
APP = "hookserve.app:create_app()"
COMMON = ["--keep-alive", "75", "--graceful-timeout", "30", "--no-control-socket"]  # as hookserve serve

# name -> (description, gunicorn arguments after -b ADDR, extra env) ; asgi-1 is the serve itself.
STACKS = {
    "asgi-1": ("gunicorn asgi, 1 worker (= hookserve serve)", None, {}),
    "asgi-2": ("gunicorn asgi, 2 workers", ["-k", "asgi", "--asgi-loop", "asyncio", "-w", "2", APP], {}),
    "asgi-1-uvloop": (
        "gunicorn asgi + uvloop, 1 worker",
        ["-k", "asgi", "--asgi-loop", "uvloop", "-w", "1", APP],
        {"PYTHONPATH": UVLOOP_PATH},
    ),
    "uvicorn-1": (
        "gunicorn + uvicorn.workers.UvicornWorker (h11, asyncio), 1 worker",
        ["-k", "uvicorn.workers.UvicornWorker", "-w", "1", APP],
        {},
    ),
    "uvicorn-2": (
        "gunicorn + uvicorn.workers.UvicornWorker (h11, asyncio), 2 workers",
        ["-k", "uvicorn.workers.UvicornWorker", "-w", "2", APP],
        {},
    ),
    "gthread-1x8": (
        "WSGI prototype, gunicorn gthread 1 worker x 8 threads",
        ["-k", "gthread", "-w", "1", "--threads", "8", "--chdir", str(HERE), "wsgi_frontend:create_app()"],
        {},
    ),
    "gthread-1x32": (
        "WSGI prototype, gunicorn gthread 1 worker x 32 threads",
        ["-k", "gthread", "-w", "1", "--threads", "32", "--chdir", str(HERE), "wsgi_frontend:create_app()"],
        {},
    ),
    "gthread-2x16": (
        "WSGI prototype, gunicorn gthread 2 workers x 16 threads",
        ["-k", "gthread", "-w", "2", "--threads", "16", "--chdir", str(HERE), "wsgi_frontend:create_app()"],
        {},
    ),
    "sync-5": (
        "WSGI prototype, gunicorn sync 5 workers (no keep-alive)",
        ["-k", "sync", "-w", "5", "--chdir", str(HERE), "wsgi_frontend:create_app()"],
        {},
    ),
}
DEFAULT_STACKS = "asgi-1,asgi-2,asgi-1-uvloop,uvicorn-1,uvicorn-2,gthread-1x8,gthread-1x32,gthread-2x16,sync-5"

STARTED: list[subprocess.Popen] = []


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], logfile: Path, env: dict | None = None) -> subprocess.Popen:
    out = open(logfile, "ab")
    merged = {**os.environ, **(env or {})}
    if env and "PYTHONPATH" in env and os.environ.get("PYTHONPATH"):
        merged["PYTHONPATH"] = env["PYTHONPATH"] + os.pathsep + os.environ["PYTHONPATH"]
    proc = subprocess.Popen(
        cmd, stdout=out, stderr=subprocess.STDOUT, env=merged, start_new_session=True
    )  # own process group: pgid == pid
    out.close()
    STARTED.append(proc)
    log(f"started pid {proc.pid}: {' '.join(cmd)}")
    return proc


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def stop(proc: subprocess.Popen, grace_s: float = 40) -> None:
    """SIGTERM the leader (gunicorn master: graceful; it stops the model manager), then its group."""
    pgid = proc.pid
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            log(f"pid {pgid} still running after {grace_s}s")
    for sig, wait_s in ((signal.SIGTERM, 5), (signal.SIGKILL, 2)):
        if not group_alive(pgid):
            break
        log(f"sending {sig.name} to process group {pgid}")
        os.killpg(pgid, sig)
        deadline = time.time() + wait_s
        while group_alive(pgid) and time.time() < deadline:
            time.sleep(0.1)
    if proc.poll() is None:
        proc.wait(5)
    if proc in STARTED:
        STARTED.remove(proc)
    log(f"stopped pid {pgid} (group gone: {not group_alive(pgid)})")


def post(url: str, body: bytes, timeout: float = 10) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


def wait_ready(url: str, body: bytes, proc: subprocess.Popen, timeout_s: float) -> float:
    t0 = time.time()
    while time.time() - t0 < timeout_s:
        if proc.poll() is not None:
            raise RuntimeError(f"pid {proc.pid} exited with {proc.returncode} before answering")
        if post(url, body, timeout=5)[0] == 200:
            return time.time() - t0
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout_s}s")


def check_replies(url: str, work: Path) -> dict:
    status, data = post(url, (work / "sample.json").read_bytes())
    expected = json.loads((work / "sample_expected.json").read_text())
    got = json.loads(data) if status == 200 else {}
    one = status == 200 and got.get("class") == expected["class"]
    r = subprocess.run(
        [
            sys.executable,
            str(BENCH / "check_server.py"),
            url,
            str(work / "samples_check.json"),
            "--concurrency",
            "8",
            "--rounds",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    result = {
        "sample_class": got.get("class"),
        "expected_class": expected["class"],
        "sample_ok": one,
        "check_server_ok": r.returncode == 0,
        "check_server": (r.stdout.strip().splitlines() or [""])[-1],
    }
    log(f"check {url}: {result}")
    return result


CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pgids: set[int]) -> dict[int, tuple[float, str, int]]:
    """pid -> (user+system CPU seconds, cmdline, pgid) for every live process in the given process groups."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) not in pgids:  # fields[0] is the state: pgrp is field 5 of stat
                continue
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            found[int(entry)] = ((int(fields[11]) + int(fields[12])) / CLK_TCK, cmd, int(fields[2]))
        except (OSError, ValueError, IndexError):
            continue
    return found


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / CLK_TCK, sum(values[:8]) / CLK_TCK


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def load_sh(url: str, conc: int, seconds: int, work: Path, label: str) -> dict:
    r = subprocess.run(
        [str(BENCH / "load.sh"), url, str(conc), str(seconds), str(work / "sample.json"), label],
        capture_output=True,
        text=True,
        env={**os.environ, "WARMUP_S": "0"},
        timeout=seconds + 120,
    )
    if r.returncode != 0:
        log(f"load.sh failed ({r.returncode}): {r.stderr[-2000:]}")
        return {"label": label, "concurrency": conc, "failed": True, "stderr": r.stderr[-500:]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def run_load(url: str, conc: int, args, work: Path, label: str, roles: dict) -> dict:
    """Warm-up run, drain pause, then the measured load.sh run with CPU accounting around it.

    ``roles`` maps process group -> function(pid, cmdline) -> "frontend" | "model" | "other".
    Per measured run: CPU seconds per role / requests (µs per request), and the share of the
    machine's busy CPU that was neither ours (server processes, wrk) = other sessions' load."""
    if args.warmup:
        load_sh(url, conc, args.warmup, work, label + "-warmup")
        time.sleep(args.drain)
    before, m0, c0 = proc_cpu(set(roles)), machine_cpu(), children_cpu()
    r = load_sh(url, conc, args.duration, work, label)
    after, m1, c1 = proc_cpu(set(roles)), machine_cpu(), children_cpu()
    if r.get("failed"):
        return r
    used = {"frontend": 0.0, "model": 0.0, "other": 0.0}
    for pid, (cpu, cmd, pgid) in after.items():
        used[roles[pgid](pid, cmd)] += cpu - before.get(pid, (0.0,))[0]
    load_gen = c1 - c0  # load.sh, curl and wrk (waited children)
    busy, total = m1[0] - m0[0], m1[1] - m0[1]
    foreign = max(0.0, busy - sum(used.values()) - load_gen)
    n = max(1, r["requests"])
    r.update(
        frontend_us_per_req=round(used["frontend"] / n * 1e6, 1),
        model_us_per_req=round(used["model"] / n * 1e6, 1),
        wrk_us_per_req=round(load_gen / n * 1e6, 1),
        machine_busy_pct=round(100 * busy / total, 1) if total else None,
        foreign_cpu_pct=round(100 * foreign / total, 1) if total else None,
        loadavg_1m=os.getloadavg()[0],
    )
    return r


def snapshot(rev: str, dest: Path) -> str:
    """hookserve as committed at ``rev`` (others edit the working tree while this runs), laid out as
    the installed package (core -> hookserve, plugins -> hookserve.plugins, handlers -> hookserve.handlers),
    to be put first on PYTHONPATH (ahead of the venv's editable finder). ``rev`` "worktree": no snapshot."""
    if rev == "worktree":
        return ""
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", rev], check=True, capture_output=True, text=True
    ).stdout.strip()
    raw = dest / "raw"
    shutil.rmtree(dest, ignore_errors=True)
    raw.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", commit, "core", "plugins", "handlers"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(raw)], input=archive, check=True)
    shutil.move(str(raw / "core"), str(dest / "hookserve"))
    shutil.move(str(raw / "plugins"), str(dest / "hookserve" / "plugins"))
    shutil.move(str(raw / "handlers"), str(dest / "hookserve" / "handlers"))
    raw.rmdir()
    return commit


def build(work: Path, src: Path) -> Path:
    subprocess.run(
        [str(VENV_BIN / "python"), str(BENCH / "make_models.py"), str(work), "--no-mar"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    store = work / "store"
    store.mkdir(exist_ok=True)
    subprocess.run(
        [
            str(VENV_BIN / "hookserve"),
            "archive",
            "--model-name",
            "mlp",
            "--version",
            "1.0",
            "--model-file",
            str(src / "demo/model.py"),
            "--serialized-file",
            str(work / "artifacts/mlp_state.pt"),
            "--handler",
            str(src / "demo/handler.py"),
            "--export-path",
            str(store),
            "--force",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return store


def find_run_dir(tmpdir: Path, port: int) -> str:
    for cfg in glob.glob(str(tmpdir / "hookserve-*" / "config.json")):
        data = json.loads(Path(cfg).read_text())
        if tuple(data["inference_address"]) == ("127.0.0.1", port):
            return str(Path(cfg).parent)
    raise RuntimeError(f"no hookserve-* run folder with inference port {port} under {tmpdir}")


def serve_role(model_pids: set[int], frontend_measured: bool):
    """Roles in the serve's process group: model workers, the manager, the gunicorn master + asgi worker."""

    def role(pid: int, cmd: str) -> str:
        if pid in model_pids:
            return "model"
        if "hookserve.manager" in cmd:
            return "other"  # the manager: idle while serving
        return "frontend" if frontend_measured else "other"  # its own asgi frontend, idle unless asgi-1

    return role


def measure_stack(stack, p, serve, model_pids, serve_port, run_dir, body, work, logs, runs, concs, args, rows, checks):
    """Start the stack's frontend (unless it is the serve's own), check replies, run the ladder, stop it."""
    desc, gargs, env = STACKS[stack]
    proc = None
    port = serve_port
    if gargs is not None:
        port = free_port()
        proc = start(
            [str(VENV_BIN / "gunicorn"), "-b", f"127.0.0.1:{port}", *COMMON, *gargs],
            logs / f"{stack}.log",
            env={"HOOKSERVE_RUN_DIR": run_dir, **env},
        )
    url = f"http://127.0.0.1:{port}/predictions/mlp"
    roles = {serve.pid: serve_role(model_pids, frontend_measured=proc is None)}
    if proc is not None:
        roles[proc.pid] = lambda pid, cmd: "frontend"
    try:
        if proc is not None:
            wait_ready(url, body, proc, 60)
        checks.setdefault(stack, []).append({"pass": p, **check_replies(url, work)})
        for c in concs:
            t0 = time.time()
            r = run_load(url, c, args, work, stack, roles)
            r.update(stack=stack, description=desc, **{"pass": p}, wall_s=round(time.time() - t0, 1))
            rows.append(r)
            with open(runs, "a") as f:
                f.write(json.dumps(r) + "\n")
            log(
                f"pass {p} {stack} c={c}: {r.get('rps', 0):.0f} req/s p50 {r.get('p50_ms')} "
                f"p99 {r.get('p99_ms')} errors {r.get('errors')} frontend {r.get('frontend_us_per_req')} us/req "
                f"model {r.get('model_us_per_req')} us/req foreign {r.get('foreign_cpu_pct')}% cpu"
            )
    finally:
        if proc is not None:
            stop(proc)


def fmt(v, nd=1):
    return "-" if v is None else f"{v:.{nd}f}"


def write_table(rows: list[dict], out: Path, stacks: list[str], concs: list[int], passes: int) -> str:
    """Two Markdown tables: load (req/s, latency, errors) and CPU per request, one column per pass."""
    ps = range(1, passes + 1)

    def get(stack, p, c):
        r = next((x for x in rows if x["stack"] == stack and x["pass"] == p and x["concurrency"] == c), None)
        return None if r is None or r.get("failed") else r

    load = [
        "| stack | conc | " + " | ".join(f"pass {p}: req/s / p50 / p99 ms / errors" for p in ps) + " | mean req/s |",
        "|---|---:|" + "---|" * passes + "---:|",
    ]
    cpu = [
        "| stack | conc | "
        + " | ".join(f"pass {p}: frontend / model µs per req, foreign CPU %" for p in ps)
        + " | mean frontend µs/req | frontend ÷ model |",
        "|---|---:|" + "---|" * passes + "---:|---:|",
    ]
    for stack in stacks:
        for c in concs:
            found = [get(stack, p, c) for p in ps]
            ok = [r for r in found if r]
            mean_rps = f"{sum(r['rps'] for r in ok) / len(ok):.0f}" if ok else "-"
            mean_fe = f"{sum(r['frontend_us_per_req'] for r in ok) / len(ok):.0f}" if ok else "-"
            # the model workers are the same processes for every stack: their µs/req tracks how slow
            # the (shared) machine was during that run, so this ratio is the steadier comparison
            ratio = f"{sum(r['frontend_us_per_req'] / r['model_us_per_req'] for r in ok) / len(ok):.2f}" if ok else "-"
            load.append(
                f"| {stack} | {c} | "
                + " | ".join(
                    f"{r['rps']:.0f} / {fmt(r['p50_ms'])} / {fmt(r['p99_ms'])} / {r['errors']}" if r else "failed"
                    for r in found
                )
                + f" | {mean_rps} |"
            )
            cpu.append(
                f"| {stack} | {c} | "
                + " | ".join(
                    f"{r['frontend_us_per_req']:.0f} / {r['model_us_per_req']:.0f}, {fmt(r['foreign_cpu_pct'], 0)}"
                    if r
                    else "failed"
                    for r in found
                )
                + f" | {mean_fe} | {ratio} |"
            )
    text = "\n".join(load) + "\n\n" + "\n".join(cpu) + "\n"
    (out / "results.md").write_text(text)
    return text


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None, help="results folder (default: a new /tmp/frontend-stacks-*)")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--drain", type=int, default=1)
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--stacks", default=DEFAULT_STACKS)
    ap.add_argument("--concurrencies", default="1,8,64")
    ap.add_argument("--table-only", action="store_true", help="only rewrite OUT/results.md from OUT/runs.jsonl")
    ap.add_argument("--rev", default="HEAD", help="hookserve commit to measure (git archive), or 'worktree'")
    args = ap.parse_args()
    stacks = args.stacks.split(",")
    for s in stacks:
        if s not in STACKS:
            sys.exit(f"unknown stack {s}; known: {', '.join(STACKS)}")
    if "asgi-1-uvloop" in stacks and not Path(UVLOOP_PATH, "uvloop").is_dir():
        sys.exit(
            f"asgi-1-uvloop needs uvloop in {UVLOOP_PATH}: "
            f"{VENV_BIN}/python -m pip install --target {UVLOOP_PATH} uvloop (or drop the stack)"
        )
    concs = [int(c) for c in args.concurrencies.split(",")]
    if args.table_only:
        rows = [json.loads(line) for line in Path(args.out, "runs.jsonl").read_text().splitlines()]
        print(write_table(rows, Path(args.out), stacks, concs, args.passes))
        return 0
    out = Path(args.out or tempfile.mkdtemp(prefix="frontend-stacks-"))
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    work.mkdir(exist_ok=True)
    tmpdir = out / "tmp"  # the serve's private TMPDIR: its run folder is the only hookserve-* there
    tmpdir.mkdir(exist_ok=True)
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    runs = out / "runs.jsonl"
    log(f"results in {out}")

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    t_start = time.time()
    rows: list[dict] = []
    serve = None
    try:
        commit = snapshot(args.rev, out / "src")
        if commit:
            os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(out / "src"), os.environ.get("PYTHONPATH")]))
        imported = subprocess.run(
            [str(VENV_BIN / "python"), "-c", "import hookserve; print(hookserve.__file__)"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        log(f"hookserve {commit or 'working tree'} from {imported}")
        src = Path(imported).parent
        store = build(work, src)
        body = (work / "sample.json").read_bytes()
        port, mport, xport = free_port(), free_port(), free_port()
        serve = start(
            [
                str(VENV_BIN / "hookserve"),
                "serve",
                "--model-store",
                str(store),
                "--models",
                "mlp=mlp.mar",
                "--workers",
                "2",
                "--torch-threads",
                "1",
                "--frontend-workers",
                "1",
                "--inference-address",
                f"127.0.0.1:{port}",
                "--management-address",
                f"127.0.0.1:{mport}",
                "--metrics-address",
                f"127.0.0.1:{xport}",
            ],
            logs / "serve.log",
            env={"TMPDIR": str(tmpdir)},
        )
        ready_s = wait_ready(f"http://127.0.0.1:{port}/predictions/mlp", body, serve, 180)
        run_dir = find_run_dir(tmpdir, port)
        log(f"hookserve serve ready in {ready_s:.1f}s on {port}; run dir {run_dir}")
        routes = json.loads(Path(run_dir, "routes.json").read_text())
        workers = [w["pid"] for v in routes["models"]["mlp"]["versions"].values() for w in v["workers"]]
        meta = {
            "commit": commit or "worktree",
            "hookserve_from": imported,
            "serve_port": port,
            "run_dir": run_dir,
            "model_worker_pids": workers,
            "args": vars(args),
            "nproc": os.cpu_count(),
        }
        checks: dict[str, list] = {}
        for p in range(1, args.passes + 1):
            for stack in stacks if p % 2 else list(reversed(stacks)):
                try:
                    measure_stack(
                        stack, p, serve, set(workers), port, run_dir, body, work, logs, runs, concs, args, rows, checks
                    )
                except RuntimeError as exc:
                    log(f"pass {p} {stack} failed: {exc}")
                    checks.setdefault(stack, []).append({"pass": p, "failed": str(exc)})
        # the model workers must be the same ones at the end (no restart in between)
        routes = json.loads(Path(run_dir, "routes.json").read_text())
        meta["model_worker_pids_end"] = [
            w["pid"] for v in routes["models"]["mlp"]["versions"].values() for w in v["workers"]
        ]
        meta["checks"] = checks
        meta["total_s"] = round(time.time() - t_start, 1)
        (out / "meta.json").write_text(json.dumps(meta, indent=1))
        print(write_table(rows, out, stacks, concs, args.passes))
        log(
            f"done in {meta['total_s']}s; same model workers throughout: "
            f"{meta['model_worker_pids'] == meta['model_worker_pids_end']}"
        )
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        for proc in list(STARTED):
            if proc is not serve:
                stop(proc)
        if serve is not None:
            stop(serve)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One measured load step against a running server: wrk, plus what the server spent on it.

    python3 step.py URL BODY CONCURRENCY DURATION_S WARMUP_S PGID BATCH_LOG EXTRA_JSON

Runs ``WARMUP_S`` of unrecorded load and a 2 s drain, then ``DURATION_S`` measured with wrk
(one thread, keep-alive connections, ``post_body.lua``: the body as application/octet-stream),
and prints one JSON line: wrk's figures (as ``../shared/bench/load.sh``), the CPU seconds the
server's whole process group used during the measured run divided by the requests
(``cpu_ms_per_request``; user + system time of every live process of group PGID, from
/proc), and the batches the handler ran during it from BATCH_LOG: hookserve's batch log
(``<pid> <size>`` per line) or TorchServe's ``model_metrics.log`` (the request ids of each
``HandlerTime`` line). Stdlib only.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

LUA = Path(__file__).with_name("post_body.lua")
TICKS = os.sysconf("SC_CLK_TCK")
TS_BATCH = re.compile(r"HandlerTime.*requestID:([0-9a-f-]{36}(?:,[0-9a-f-]{36})*)")


def group_cpu_s(pgid: int) -> float:
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        if int(fields[2]) == pgid:  # field 5 of stat: the process group
            total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / TICKS


def batch_sizes(log: Path, skip: int) -> tuple[list[int], int]:
    """Batch sizes logged after the first ``skip`` lines, and the number of lines now."""
    if not log.exists():
        return [], 0
    lines = log.read_text().splitlines()
    sizes = []
    for line in lines[skip:]:
        if m := TS_BATCH.search(line):
            sizes.append(len(m.group(1).split(",")))
        elif re.fullmatch(r"\d+ \d+", line):
            sizes.append(int(line.split()[1]))
    return sizes, len(lines)


def wrk(url: str, body: str, concurrency: int, seconds: float) -> dict:
    env = dict(os.environ, WRK_BODY_FILE=body)
    cmd = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "--timeout", "30s", "--latency", "-s", str(LUA), url]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.split("WRK_RESULT ", 1)[1].splitlines()[0])


def main(url: str, body: str, conc: int, duration: float, warmup: float, pgid: int, log: str, extra: str) -> None:
    if warmup > 0:
        wrk(url, body, conc, warmup)
        time.sleep(2)
    _, skip = batch_sizes(Path(log), 0)
    cpu0 = group_cpu_s(pgid)
    r = wrk(url, body, conc, duration)
    cpu = group_cpu_s(pgid) - cpu0
    time.sleep(0.5)  # the last batches' log lines
    sizes, _ = batch_sizes(Path(log), skip)
    errors = r["err_connect"] + r["err_read"] + r["err_write"] + r["err_timeout"] + r["err_status"]
    out = {
        **json.loads(extra),
        "concurrency": conc,
        **{k: r[k] for k in ("requests", "duration_s", "rps", "p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms")},
        "errors": errors,
        "cpu_s": round(cpu, 3),
        "cpu_ms_per_request": round(1000 * cpu / max(1, r["requests"]), 2),
        "batches": len(sizes),
        "mean_batch": round(sum(sizes) / len(sizes), 2) if sizes else None,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    a = sys.argv[1:]
    main(a[0], a[1], int(a[2]), float(a[3]), float(a[4]), int(a[5]), a[6], a[7])

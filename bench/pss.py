#!/usr/bin/env python3
"""Memory of one server: the sum of PSS over every process of its process group.

Usage: python3 pss.py PGID [--exclude PID ...] [--label TEXT]

PSS (proportional set size, /proc/PID/smaps_rollup "Pss:") charges each shared page to the
processes that map it in equal parts, so the sum over a set of processes counts the pages
they share once (torch's libraries mapped by every worker, pages shared after a fork) and
does not double-count them as RSS sums do.  Prints one JSON line:
  {"pgid": .., "pss_mib": total, "rss_mib": total (for reference), "procs": [{"pid", "ppid",
   "comm", "pss_mib", "rss_mib"}, ...], "excluded": [...same for --exclude pids...]}
Linux only; stdlib only.
"""

import argparse
import json
import os


def kib(path, key):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def proc_info(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2 :].split()
    state, ppid, pgid = fields[0], int(fields[1]), int(fields[2])
    return {"pid": pid, "ppid": ppid, "pgid": pgid, "state": state, "comm": comm}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pgid", type=int)
    ap.add_argument("--exclude", type=int, nargs="*", default=[])
    ap.add_argument("--label", default="")
    a = ap.parse_args()
    procs, excluded = [], []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        info = proc_info(int(name))
        if info is None or info["pgid"] != a.pgid or info["state"] == "Z":
            continue
        pid = info["pid"]
        info["pss_kib"] = kib(f"/proc/{pid}/smaps_rollup", "Pss:")
        info["rss_kib"] = kib(f"/proc/{pid}/status", "VmRSS:")
        del info["pgid"], info["state"]
        (excluded if pid in a.exclude else procs).append(info)
    procs.sort(key=lambda p: p["pid"])
    pss, rss = sum(p["pss_kib"] for p in procs), sum(p["rss_kib"] for p in procs)
    for p in procs + excluded:
        p["pss_mib"], p["rss_mib"] = round(p.pop("pss_kib") / 1024, 1), round(p.pop("rss_kib") / 1024, 1)
    out = {
        "label": a.label,
        "pgid": a.pgid,
        "pss_mib": round(pss / 1024, 1),
        "rss_mib": round(rss / 1024, 1),
        "nprocs": len(procs),
        "procs": procs,
        "excluded": excluded,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()

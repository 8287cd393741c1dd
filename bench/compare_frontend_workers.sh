#!/usr/bin/env bash
# Which --frontend-workers is better for hookserve here: 1 or 2?  Runs run.sh for hookserve only,
# alternating the two settings (1 2, 2 1, 1 2 ...), and prints one table (req/s and p50 per round).
#
#   bash bench/compare_frontend_workers.sh OUT_DIR      (OUT_DIR/venvs from an earlier run.sh)
#
# Env: ROUNDS=2, DURATION=8, WARMUP=2, CONCURRENCIES="1 8 64", BATCHINGS="1:0 8:5".
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$(cd "${1:?usage: compare_frontend_workers.sh OUT_DIR}" && pwd)
ROUNDS=${ROUNDS:-2}
for r in $(seq 1 "$ROUNDS"); do
  order="1 2"; [ $((r % 2)) = 0 ] && order="2 1"   # alternate which setting goes first
  for fw in $order; do
    SKIP_SETUP=1 VENVS="$OUT/venvs" SERVERS=hookserve PASSES=A STARTUP_REPS=0 HS_FRONTEND_WORKERS=$fw \
      DURATION=${DURATION:-8} WARMUP=${WARMUP:-2} bash "$HERE/run.sh" "$OUT/frontend-workers/fw$fw-r$r"
  done
done
python3 - "$OUT/frontend-workers" "$ROUNDS" <<'PY'
import json, os, statistics, sys
base, rounds = sys.argv[1], int(sys.argv[2])
rows = {}
for fw in (1, 2):
    for r in range(1, rounds + 1):
        for line in open(os.path.join(base, "fw%d-r%d" % (fw, r), "pass-A", "runs.jsonl")):
            d = json.loads(line)
            rows.setdefault((d["batch_size"], d["concurrency"], fw), []).append(d)
print("| batching | conc | frontend workers | req/s (each round) | mean req/s | p50 ms (each round) | errors |")
print("|---|---:|---:|---|---:|---|---:|")
for (bs, c, fw), ds in sorted(rows.items()):
    print("| bs %d | %d | %d | %s | %.0f | %s | %d |" % (bs, c, fw, " / ".join("%.0f" % d["rps"] for d in ds),
          statistics.mean(d["rps"] for d in ds), " / ".join("%.2f" % d["p50_ms"] for d in ds), sum(d["errors"] for d in ds)))
PY

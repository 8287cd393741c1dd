#!/usr/bin/env bash
# Paired A/B of two hookserve variants: both servers run side by side and wrk alternates
# between them, round after round, so the machine's drift (2x between days, ±10 % within
# minutes here) hits both alike. Reports req/s and p50 per round and the median B/A ratio.
#
#   bash bench/ab/run.sh OUT_DIR [BATCH_SIZE] [CONCURRENCY] [ROUNDS]
#
#   A_REV / B_REV   git revision of each variant (default: the working tree)
#   A_FLAGS / B_FLAGS   extra `hookserve serve` flags, e.g. B_FLAGS=--no-batch-scheduling
#   DURATION (s per wrk run, default 4)   DELAY (max batch delay ms, default 5)
#   STARTUPS (default 0): first paired start-ups (A first, then B first, ...), each timed from launch to the first
#     200 of a prediction, then 2 s idle and the PSS of its process group (bench/pss.py);
#     ROUNDS=0 stops after them
#
# Each variant is a copy of core/, plugins/ and handlers/ laid out as the `hookserve`
# package, with a dist-info declaring its builtin plugins, put first on PYTHONPATH; the
# python must have hookserve's dependencies and hookserve-ts (PYTHON, default python3 on PATH). Needs wrk, curl, bc and ../shared/bench.
set -euo pipefail
OUT=$(realpath -m "$1"); BS=${2:-8}; C=${3:-64}; ROUNDS=${4:-5}
DURATION=${DURATION:-4}; DELAY=${DELAY:-5}
PYTHON=${PYTHON:-python3}
HERE=$(cd "$(dirname "$0")" && pwd); REPO=$(cd "$HERE/../.." && pwd); SHARED=$(cd "$REPO/../shared/bench" && pwd)
mkdir -p "$OUT"; cd "$OUT"

variant() { # NAME REV: OUT/NAME/hookserve from the revision (or the working tree)
  local dst="$OUT/$1" src="$REPO"
  rm -rf "$dst"; mkdir -p "$dst"
  if [ -n "$2" ]; then
    src="$dst/src"; mkdir -p "$src"
    git -C "$REPO" archive "$2" core plugins handlers pyproject.toml | tar -x -C "$src"
  fi
  cp -r "$src/core" "$dst/hookserve"
  cp -r "$src/plugins" "$dst/hookserve/plugins"
  cp -r "$src/handlers" "$dst/hookserve/handlers"
  find "$dst/hookserve" -name __pycache__ -prune -exec rm -rf {} +
  # the variant's own builtin plugins: its pyproject's entry points, found before the installed ones
  "$PYTHON" - "$src/pyproject.toml" "$dst/hookserve-0.1.0.dist-info" <<'PY'
import os, sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
os.makedirs(sys.argv[2])
open(os.path.join(sys.argv[2], "METADATA"), "w").write(f"Metadata-Version: 2.1\nName: hookserve\nVersion: {project['version']}\n")
groups = project.get("entry-points", {})
open(os.path.join(sys.argv[2], "entry_points.txt"), "w").write(
    "".join(f"[{g}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n" for g, eps in groups.items()))
PY
}
variant a "${A_REV:-}"; variant b "${B_REV:-}"

[ -f work/sample.json ] || "$PYTHON" "$SHARED/make_models.py" work --no-mar >/dev/null
mkdir -p store
PYTHONPATH="$OUT/a" "$PYTHON" -m hookserve.cli archive --model-name mlp --version 1.0 --model-file "$SHARED/model.py" \
  --serialized-file work/artifacts/mlp_state.pt --handler "$SHARED/handler_mlp.py" --export-path store --force >/dev/null

free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
MASTERS=()
trap 'for m in "${MASTERS[@]}"; do kill -TERM -- "-$m" 2>/dev/null || true; done; wait' EXIT
start() { # NAME FLAGS PORT
  # shellcheck disable=SC2086  # FLAGS is a list of flags
  PYTHONPATH="$OUT/$1" OMP_NUM_THREADS=1 setsid "$PYTHON" -m hookserve.cli serve --ncs --model-store store \
    --models mlp=mlp.mar --workers 2 --torch-threads 1 --batch-size "$BS" --max-batch-delay "$DELAY" \
    --frontend-workers 2 $2 --inference-address "127.0.0.1:$3" --management-address "127.0.0.1:$(free_port)" \
    --metrics-address "127.0.0.1:$(free_port)" > "$1.log" 2>&1 &
  MASTERS+=($!)
}
startup() { # NAME -> "seconds-to-first-200 idle-PSS-MiB": launch, wait, 2 s idle, measure, stop
  local port; port=$(free_port); local t0; t0=$(date +%s.%N)
  start "$1" "${2:-}" "$port"; local master=${MASTERS[-1]}
  for _ in $(seq 600); do
    curl -sf -o /dev/null -H 'Content-Type: application/json' --data-binary @work/sample.json \
      "http://127.0.0.1:$port/predictions/mlp" && break; sleep 0.02
  done
  local t1; t1=$(date +%s.%N); sleep 2
  local pss; pss=$("$PYTHON" "$REPO/bench/pss.py" "$master")
  kill -TERM -- "-$master"; wait "$master" 2>/dev/null || true; MASTERS=("${MASTERS[@]:0:${#MASTERS[@]}-1}")
  echo "$(echo "$t1 - $t0" | bc) $(echo "$pss" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["pss_mib"])')"
}
if [ "${STARTUPS:-0}" -gt 0 ]; then  # paired start-ups, alternating A and B
  echo "start-up (s to the first 200) and idle PSS (MiB), A: ${A_REV:-working tree}  B: ${B_REV:-working tree}" | tee startups.txt
  for r in $(seq "$STARTUPS"); do  # alternate which goes first: the second starts amid the first's teardown
    if [ $((r % 2)) = 1 ]; then sa=$(startup a "${A_FLAGS:-}"); sb=$(startup b "${B_FLAGS:-}")
    else sb=$(startup b "${B_FLAGS:-}"); sa=$(startup a "${A_FLAGS:-}"); fi
    echo "start-up $r  A $sa  B $sb" | tee -a startups.txt
  done
  "$PYTHON" - startups.txt <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1]).readlines()[1:]]
for label, i in (("start-up s", 3), ("idle PSS MiB", 4)):
    a = [float(w[i]) for w in rows]; b = [float(w[i + 3]) for w in rows]
    print(f"{label}: median A {statistics.median(a):.2f}, B {statistics.median(b):.2f}; "
          f"B/A per run {', '.join(f'{y / x:.3f}' for x, y in zip(a, b))}; median B/A {statistics.median(y / x for x, y in zip(a, b)):.3f}")
PY
fi
[ "$ROUNDS" -gt 0 ] || exit 0
PA=$(free_port); start a "${A_FLAGS:-}" "$PA"
PB=$(free_port); start b "${B_FLAGS:-}" "$PB"
for port in $PA $PB; do
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/ping" >/dev/null && break; sleep 0.1; done
  curl -sf "http://127.0.0.1:$port/ping" >/dev/null || { echo "a server did not start, see $OUT/*.log" >&2; exit 1; }
done
load() { # PORT SECONDS -> "req/s p50"
  WRK_BODY_FILE=work/sample.json wrk -t1 -c"$C" -d"$2s" --latency -s "$SHARED/post.lua" "http://127.0.0.1:$1/predictions/mlp" \
    | awk '/Requests\/sec/ {r=$2} / 50%/ {p=$2} /Non-2xx|Socket errors/ {e=1} END {if (e) print "errors"; else print r, p}'
}
load "$PA" 2 >/dev/null; load "$PB" 2 >/dev/null   # warm-up
echo "A: ${A_REV:-working tree} ${A_FLAGS:-}  B: ${B_REV:-working tree} ${B_FLAGS:-}  (batch size $BS, concurrency $C)" | tee rounds.txt
for r in $(seq "$ROUNDS"); do
  echo "round $r  A $(load "$PA" "$DURATION")  B $(load "$PB" "$DURATION")" | tee -a rounds.txt
done
"$PYTHON" - rounds.txt <<'PY'
import statistics, sys
pairs = []
for line in open(sys.argv[1]).readlines()[1:]:
    words = line.split()
    if "errors" in words:
        sys.exit("a round had errors: " + line.strip())
    pairs.append((float(words[3]), float(words[6])))
ratios = [b / a for a, b in pairs]
print(f"median req/s A {statistics.median(a for a, _ in pairs):.0f}, B {statistics.median(b for _, b in pairs):.0f}; "
      f"B/A per round {', '.join(f'{x:.3f}' for x in ratios)}; median B/A {statistics.median(ratios):.3f}")
PY

#!/usr/bin/env bash
# hookserve vs TorchServe 0.12 on ResNet-18 with JPEG bodies: the whole benchmark, one command.
#
#   bash bench/resnet/run.sh OUT_DIR
#
# 1. setup_envs.sh: two venvs with torch 2.14.1 + torchvision 0.29.1 (reused when present)
# 2. make_workload.py (TorchServe venv: the real torch-model-archiver, --handler image_classifier)
#    -> OUT_DIR/models: resnet18.mar (seeded random weights), the JPEGs
# 3. passes (default A then B, B in reverse server order); in each pass first floor.py (the
#    in-process floor and the reference top-5), then per server and batching: start it, check
#    every JPEG's top-5 against the reference (check_top5.py), then for every JPEG and
#    concurrency one step.py (warm-up, drain, measured wrk run, CPU of the server's process
#    group, batch sizes its handler received), then stop it
# 4. report.py -> OUT_DIR/results.md
#
# Settings (environment, defaults):
#   PASSES="A B"   PASS_B_ORDER=reverse (or same)   SERVERS="hookserve hookserve-fast torchserve"
#   BATCHINGS="1:0 8:10" (batch_size:max_batch_delay_ms)   CONCURRENCIES="1 4 16"
#   FAST_BATCHINGS="8:10" (hookserve-fast: hookserve with handler.fast_decode on)
#   IMAGES="640x480 1280x720 1920x1080"   DURATION=15   WARMUP=3   WORKERS=2
#   HS_FRONTEND_WORKERS=2   FLOOR_REPS=30   SKIP_SETUP=1 (venvs as they are; VENVS=dir)
#   HS_ARGS (extra `hookserve serve` flags)   SHARED_BENCH (default ../shared/bench)
# Smoke run (every column, about 6 minutes once the venvs exist):
#   PASSES=A DURATION=3 WARMUP=1 FLOOR_REPS=5 bash bench/resnet/run.sh /tmp/hsr
set -euo pipefail
RES=$(cd "$(dirname "$0")" && pwd)
HERE=$(cd "$RES/.." && pwd)   # bench/: servers.sh and pss.py
REPO=$(cd "$HERE/.." && pwd)
OUT=${1:?usage: bash bench/resnet/run.sh OUT_DIR}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
SHARED=$(cd "${SHARED_BENCH:-$REPO/../shared/bench}" && pwd)
VENVS=${VENVS:-$OUT/venvs}; MODELS="$OUT/models"
PASSES=${PASSES:-"A B"}
PASS_B_ORDER=${PASS_B_ORDER:-reverse}
SERVERS=${SERVERS:-"hookserve hookserve-fast torchserve"}
BATCHINGS=${BATCHINGS:-"1:0 8:10"}
FAST_BATCHINGS=${FAST_BATCHINGS:-"8:10"}
CONCURRENCIES=${CONCURRENCIES:-"1 4 16"}
IMAGES=${IMAGES:-"640x480 1280x720 1920x1080"}
DURATION=${DURATION:-15}
WARMUP=${WARMUP:-3}
WORKERS=${WORKERS:-2}
HS_FRONTEND_WORKERS=${HS_FRONTEND_WORKERS:-2}
FLOOR_REPS=${FLOOR_REPS:-30}
# one torch (OpenMP) thread per worker for both servers: TorchServe's workers inherit the
# environment and torch reads it at start; hookserve also gets --torch-threads 1
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
# servers.sh's workload settings
export BENCH_MODEL=resnet18 POST_TYPE=application/octet-stream POST_BODY="$MODELS/images/640x480.jpg"
export HS_VENV="$VENVS/hookserve-tv" TS_VENV_DIR="$VENVS/torchserve-tv" TS_LOG4J="$RES/log4j2-batches.xml"
# hookserve_bench_batch_log (setup_envs.sh installs it) appends one line per batch here
export HOOKSERVE_BENCH_BATCH_LOG="$OUT/run/hookserve-batches.log"
mkdir -p "$OUT/logs" "$OUT/run"

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install -y wrk" >&2; exit 2; }
command -v java >/dev/null || { echo "TorchServe needs Java >= 11 on PATH" >&2; exit 2; }

# shellcheck source=../servers.sh
source "$HERE/servers.sh"
trap server_stop EXIT
trap 'log "interrupted"; exit 130' INT TERM

T_START=$(date +%s)
if [ "${SKIP_SETUP:-0}" != 1 ]; then
  [ "$VENVS" = "$OUT/venvs" ] || { echo "VENVS is only for SKIP_SETUP=1" >&2; exit 2; }
  bash "$RES/setup_envs.sh" "$OUT"
fi
for v in hookserve-tv torchserve-tv; do
  [ -x "$VENVS/$v/bin/python" ] || { echo "missing venv $VENVS/$v (run without SKIP_SETUP)" >&2; exit 2; }
done

log "building the model, archive and JPEGs (make_workload.py)"
"$VENVS/torchserve-tv/bin/python" "$RES/make_workload.py" "$MODELS" >"$OUT/logs/make_workload.log" 2>&1 \
  || { tail -n 20 "$OUT/logs/make_workload.log" >&2; exit 1; }
sed 's/^/  /' "$OUT/logs/make_workload.log" | grep '\.jpg:' >&2 || true

python3 - "$OUT/settings.json" <<PY
import json, sys
json.dump({"workload": "resnet18", "passes": "$PASSES".split(), "pass_b_order": "$PASS_B_ORDER",
           "servers": "$SERVERS".split(), "batchings": "$BATCHINGS".split(), "fast_batchings": "$FAST_BATCHINGS".split(),
           "concurrencies": [int(c) for c in "$CONCURRENCIES".split()], "images": "$IMAGES".split(),
           "duration_s": $DURATION, "warmup_s": $WARMUP, "workers": $WORKERS,
           "hs_frontend_workers": $HS_FRONTEND_WORKERS, "hs_args": "${HS_ARGS:-}", "omp_num_threads": 1,
           "repo_commit": "$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')",
           "repo_dirty": bool("$(git -C "$REPO" status --porcelain 2>/dev/null | head -c1)"),
           "started": "$(date -Is)"}, open(sys.argv[1], "w"), indent=1)
PY

measure() {  # SERVER BS DELAY PASS_DIR PASS
  local s=$1 bs=$2 delay=$3 dir=$4 pass=$5 batch_log check img c
  batch_log=$HOOKSERVE_BENCH_BATCH_LOG; : >"$batch_log"
  [ "$s" = torchserve ] && batch_log="$OUT/run/torchserve/logs/model_metrics.log"
  server_start "$s" "$bs" "$delay" load || return 1
  server_wait_200 300 >/dev/null || return 1
  server_wait_all_ready >/dev/null || return 1
  local tolerance=1e-4; [ "$s" = hookserve-fast ] && tolerance=1e-3  # other pixels, same top 5
  check=$(python3 "$RES/check_top5.py" "$SRV_URL" "$MODELS" "$dir/floor.json" "$tolerance") \
    || { log "  top-5 check FAILED: $check"; printf '%s\n' "$check" >>"$dir/checks.jsonl"; return 1; }
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d.update(pass_=sys.argv[2], server=sys.argv[3], batch_size=int(sys.argv[4])); print(json.dumps(d))' \
    "$check" "$pass" "$s" "$bs" >>"$dir/checks.jsonl"
  log "  top-5 of every JPEG as the in-process reference"
  for img in $IMAGES; do
    for c in $CONCURRENCIES; do
      python3 "$RES/step.py" "$SRV_URL" "$MODELS/images/$img.jpg" "$c" "$DURATION" "$WARMUP" "$SRV_PGID" "$batch_log" \
        "$(printf '{"pass":"%s","server":"%s","image":"%s","batch_size":%d,"max_batch_delay_ms":%d}' "$pass" "$s" "$img" "$bs" "$delay")" \
        >>"$dir/runs.jsonl" 2>>"$SRV_LOG" || { log "  step failed: $s $img c=$c (see $SRV_LOG)"; return 1; }
      tail -n 1 "$dir/runs.jsonl" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("    %-9s c=%-3d %7.1f req/s  p50 %7.1f ms  p99 %7.1f ms  cpu %6.1f ms/req  batch %s  errors %d" % (d["image"], d["concurrency"], d["rps"], d["p50_ms"], d["p99_ms"], d["cpu_ms_per_request"], d["mean_batch"], d["errors"]))' >&2
    done
  done
  server_stop
}

for pass in $PASSES; do
  dir="$OUT/pass-$pass"
  rm -rf "$dir"; mkdir -p "$dir"
  log "pass $pass: the floor, in-process (floor.py, $FLOOR_REPS reps)"
  bss=$(for b in $BATCHINGS $FAST_BATCHINGS; do echo "${b%%:*}"; done | sort -nu | tr '\n' ' ')
  "$VENVS/hookserve-tv/bin/python" "$RES/floor.py" "$MODELS" "$bss" "$FLOOR_REPS" >"$dir/floor.json" 2>>"$OUT/logs/floor.log"
  order=$SERVERS
  if [ "$pass" != "$(echo "$PASSES" | awk '{print $1}')" ] && [ "$PASS_B_ORDER" = reverse ]; then
    order=$(echo "$SERVERS" | awk '{for (i = NF; i > 0; i--) printf "%s ", $i}')
  fi
  for s in $order; do
    batchings=$BATCHINGS; [ "$s" = hookserve-fast ] && batchings=$FAST_BATCHINGS
    for b in $batchings; do
      bs=${b%%:*}; delay=${b##*:}
      log "pass $pass, $s: batch size $bs$([ "$bs" -gt 1 ] && echo ", max delay $delay ms"), concurrency $CONCURRENCIES"
      measure "$s" "$bs" "$delay" "$dir" "$pass" \
        || { printf '{"pass":"%s","server":"%s","batch_size":%d}\n' "$pass" "$s" "$bs" >>"$dir/failures.jsonl"; server_stop; }
    done
  done
done

python3 - "$OUT/settings.json" "$(( $(date +%s) - T_START ))" <<'PY'
import json, sys
p = sys.argv[1]; d = json.load(open(p)); d["wall_s"] = int(sys.argv[2]); json.dump(d, open(p, "w"), indent=1)
PY
python3 "$RES/report.py" "$OUT" >"$OUT/results.md"
log "done in $(( $(date +%s) - T_START )) s: $OUT/results.md"

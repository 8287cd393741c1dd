#!/usr/bin/env bash
# hookserve vs TorchServe 0.12 vs LitServe 0.2.19: the whole side-by-side benchmark, one command.
#
#   bash bench/run.sh OUT_DIR
#
# 1. setup_envs.sh: three virtual environments in OUT_DIR/venvs (reused when present)
# 2. ../shared/bench/make_models.py (TorchServe venv: the real torch-model-archiver) -> OUT_DIR/models
# 3. passes (default A then B); in each pass, one server after the other (pass B in reverse
#    order): start-up runs, then for batch size 1 and for batch size 8 / 5 ms: start the server,
#    check_server.py, the wrk ladder (../shared/bench/bench_url.sh), PSS after load, stop
# 4. report.py -> OUT_DIR/results.md
#
# Settings (environment, defaults):
#   PASSES="A B"   PASS_B_ORDER=reverse (or same)   SERVERS="hookserve torchserve litserve"
#   BATCHINGS="1:0 8:5" (batch_size:max_batch_delay_ms)   CONCURRENCIES="1 8 64"
#   DURATION=15 (s per load run)   WARMUP=3 (s unrecorded load before each run)
#   STARTUP_REPS=3   WORKERS=2 (model workers per model)   HS_FRONTEND_WORKERS=2 (see README)
#   SKIP_SETUP=1 (use the venvs as they are)   VENVS (default OUT_DIR/venvs)
#   SHARED_BENCH (default ../shared/bench)   LS_ARGS (extra litserve_mlp.py flags, e.g. --no-fast-queue)
# Everything listens on 127.0.0.1 (free ports); each server runs in its own process group
# and is stopped through it, also on error or Ctrl-C.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
OUT=${1:?usage: bash bench/run.sh OUT_DIR}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
SHARED=$(cd "${SHARED_BENCH:-$REPO/../shared/bench}" && pwd)
VENVS=${VENVS:-$OUT/venvs}; MODELS="$OUT/models"
PASSES=${PASSES:-"A B"}
PASS_B_ORDER=${PASS_B_ORDER:-reverse}
SERVERS=${SERVERS:-"hookserve torchserve litserve"}
BATCHINGS=${BATCHINGS:-"1:0 8:5"}
export CONCURRENCIES=${CONCURRENCIES:-"1 8 64"}
DURATION=${DURATION:-15}
WARMUP=${WARMUP:-3}
STARTUP_REPS=${STARTUP_REPS:-3}
WORKERS=${WORKERS:-2}
HS_FRONTEND_WORKERS=${HS_FRONTEND_WORKERS:-2}
# one torch (OpenMP) thread per worker, for every server; workers inherit it
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p "$OUT/logs" "$OUT/run"

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install -y wrk" >&2; exit 2; }
command -v java >/dev/null || { echo "TorchServe needs Java >= 11 on PATH" >&2; exit 2; }

# shellcheck source=servers.sh
source "$HERE/servers.sh"
LADDER_PGID=""
on_exit() {
  if [ -n "$LADDER_PGID" ]; then kill -TERM -- "-$LADDER_PGID" 2>/dev/null || true; wait "$LADDER_PGID" 2>/dev/null || true; fi
  server_stop
}
trap on_exit EXIT
trap 'log "interrupted"; exit 130' INT TERM

T_START=$(date +%s)
# 1. environments
if [ "${SKIP_SETUP:-0}" != 1 ]; then
  [ "$VENVS" = "$OUT/venvs" ] || { echo "VENVS is only for SKIP_SETUP=1" >&2; exit 2; }
  bash "$HERE/setup_envs.sh" "$OUT"
fi
for v in hookserve torchserve litserve; do
  [ -x "$VENVS/$v/bin/python" ] || { echo "missing venv $VENVS/$v (run without SKIP_SETUP)" >&2; exit 2; }
done

# 2. model, sample bodies and archives (deterministic; 3 s)
log "building the model and archives with $SHARED/make_models.py"
"$VENVS/torchserve/bin/python" "$SHARED/make_models.py" "$MODELS" >"$OUT/logs/make_models.log" 2>&1 \
  || { tail -n 20 "$OUT/logs/make_models.log" >&2; exit 1; }
cmp -s "$MODELS/sample.json" "$SHARED/sample.json" || log "warning: $MODELS/sample.json differs from $SHARED/sample.json"

# settings of this run, for the report
python3 - "$OUT/settings.json" <<PY
import json, sys
json.dump({"passes": "$PASSES".split(), "pass_b_order": "$PASS_B_ORDER", "servers": "$SERVERS".split(),
           "batchings": "$BATCHINGS".split(), "concurrencies": [int(c) for c in "$CONCURRENCIES".split()],
           "duration_s": $DURATION, "warmup_s": $WARMUP, "startup_reps": $STARTUP_REPS, "workers": $WORKERS,
           "hs_frontend_workers": $HS_FRONTEND_WORKERS, "omp_num_threads": 1,
           "repo_commit": "$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')",
           "repo_dirty": bool("$(git -C "$REPO" status --porcelain 2>/dev/null | head -c1)"),
           "started": "$(date -Is)"}, open(sys.argv[1], "w"), indent=1)
PY

# 3. measurements
measure_startup() {  # SERVER PASS_DIR PASS
  local s=$1 dir=$2 pass=$3 i t_first t_all mem
  for i in $(seq 1 "$STARTUP_REPS"); do
    server_start "$s" 1 0 preload || return 1
    t_first=$(server_wait_200 180) || return 1
    t_all=$(server_wait_all_ready) || return 1
    sleep 2
    mem=$(server_mem "$s-idle") || return 1
    server_stop
    printf '{"pass":"%s","server":"%s","rep":%d,"first_200_s":%s,"all_ready_s":"%s","idle_mem":%s}\n' \
      "$pass" "$s" "$i" "$t_first" "$t_all" "$mem" >>"$dir/startups.jsonl"
    log "  $s start-up $i: first 200 after ${t_first} s, all workers ready after ${t_all} s"
  done
}

measure_load() {  # SERVER BS DELAY PASS_DIR PASS
  local s=$1 bs=$2 delay=$3 dir=$4 pass=$5 label check mem problems
  label="$s-bs$bs"; [ "$bs" -gt 1 ] && label="$label-d${delay}ms"
  server_start "$s" "$bs" "$delay" load || return 1
  server_wait_200 180 >/dev/null || return 1
  server_wait_all_ready >/dev/null || return 1
  check=$(python3 "$SHARED/check_server.py" "$SRV_URL" "$MODELS/samples_check.json" --concurrency 16 2>&1) \
    || { echo "$check" >&2; printf '{"pass":"%s","label":"%s","ok":false,"out":%s}\n' "$pass" "$label" \
           "$(printf '%s' "$check" | tail -n 3 | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')" \
           >>"$dir/checks.jsonl"; return 1; }
  printf '{"pass":"%s","label":"%s","ok":true,"out":"%s"}\n' "$pass" "$label" "$check" >>"$dir/checks.jsonl"
  log "  $check"
  EXTRA_JSON=$(printf '{"pass":"%s","server":"%s","model":"mlp","batch_size":%d,"max_batch_delay_ms":%d,"workers":%d,"frontend_workers":%s}' \
                 "$pass" "$s" "$bs" "$delay" "$WORKERS" "$([ "$s" = hookserve ] && echo "$HS_FRONTEND_WORKERS" || echo null)") \
    DURATION_S=$DURATION WARMUP_S=$WARMUP \
    setsid bash "$SHARED/bench_url.sh" "$SRV_URL" "$label" "$dir/runs.jsonl" "$MODELS/sample.json" >"$dir/.ladder.out" 2>>"$SRV_LOG" &
  LADDER_PGID=$!   # its own group (wrk included), so that Ctrl-C / SIGTERM can stop it at once
  wait "$LADDER_PGID" || { LADDER_PGID=""; log "  load ladder failed for $label (see $SRV_LOG)"; server_stop; return 1; }
  LADDER_PGID=""
  python3 -c 'import json,sys
for l in open(sys.argv[1]):
    d = json.loads(l); print("    c=%-3d %8.0f req/s  p50 %6.2f ms  p99 %6.2f ms  errors %d" % (d["concurrency"], d["rps"], d["p50_ms"], d["p99_ms"], d["errors"]))' \
    "$dir/.ladder.out" >&2
  sleep 1
  server_wait_all_ready >/dev/null || return 1   # a worker restarting after a crash would be missing
  mem=$(server_mem "$label") || return 1
  # crashes that the load generator may not see (a restarted worker, requests re-sent):
  # tracebacks, hookserve's "worker ... exited", TorchServe's "Backend worker process died"
  problems=$(cat "$SRV_LOG" "$OUT"/run/torchserve/logs/*.log 2>/dev/null | grep -cE "$LOG_PROBLEMS" || true)
  [ "$s" = torchserve ] || problems=$(grep -cE "$LOG_PROBLEMS" "$SRV_LOG" || true)
  [ "$problems" -gt 0 ] && log "  $problems problem line(s) in the server's log ($SRV_LOG)"
  printf '{"pass":"%s","server":"%s","label":"%s","batch_size":%d,"log_problems":%d,"log":"%s","mem":%s}\n' \
    "$pass" "$s" "$label" "$bs" "$problems" "$SRV_LOG" "$mem" >>"$dir/pss.jsonl"
  log "  PSS after load: $(printf '%s' "$mem" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["pss_mib"], "MiB over", d["nprocs"], "processes")')"
  server_stop
}

LOG_PROBLEMS='Traceback|exited with exit code|worker process died'

fail() {  # PASS_DIR PASS SERVER WHAT
  printf '{"pass":"%s","server":"%s","what":"%s"}\n' "$2" "$3" "$4" >>"$1/failures.jsonl"
  log "  FAILED: $3 $4 (pass $2); going on"
  server_stop
}

for pass in $PASSES; do
  dir="$OUT/pass-$pass"
  rm -rf "$dir"; mkdir -p "$dir"
  order=$SERVERS
  if [ "$pass" != "$(echo "$PASSES" | awk '{print $1}')" ] && [ "$PASS_B_ORDER" = reverse ]; then
    order=$(echo "$SERVERS" | awk '{for (i = NF; i > 0; i--) printf "%s ", $i}')
  fi
  log "pass $pass: $order"
  for s in $order; do
    log "$s: start-up x$STARTUP_REPS"
    measure_startup "$s" "$dir" "$pass" || fail "$dir" "$pass" "$s" "start-up"
    for b in $BATCHINGS; do
      bs=${b%%:*}; delay=${b##*:}
      log "$s: batch size $bs$([ "$bs" -gt 1 ] && echo ", max delay $delay ms"), concurrency $CONCURRENCIES, ${DURATION} s each"
      measure_load "$s" "$bs" "$delay" "$dir" "$pass" || fail "$dir" "$pass" "$s" "load bs$bs"
    done
  done
done

# 4. report
python3 - "$OUT/settings.json" "$(( $(date +%s) - T_START ))" <<'PY'
import json, sys
p = sys.argv[1]; d = json.load(open(p)); d["wall_s"] = int(sys.argv[2]); json.dump(d, open(p, "w"), indent=1)
PY
python3 "$HERE/report.py" "$OUT" >"$OUT/results.md"
log "done in $(( $(date +%s) - T_START )) s: $OUT/results.md"

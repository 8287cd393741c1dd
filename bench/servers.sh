# Start / wait / stop / measure the three servers.  Sourced by run.sh (bash), not run itself.
#
# Needs: OUT (results dir), VENVS (OUT/venvs), MODELS (make_models.py output dir), SHARED
# (../shared/bench), HERE (this folder), HS_FRONTEND_WORKERS, WORKERS.
# Workload (defaults: the MLP of run.sh): BENCH_MODEL=mlp (model name, archive BENCH_MODEL.mar
# in MODELS/model_store), POST_BODY=MODELS/sample.json, POST_TYPE=application/json (the body
# and content type of the readiness polls), HS_VENV / TS_VENV_DIR (default VENVS/hookserve,
# VENVS/torchserve), TS_LOG4J (default SHARED/log4j2-quiet.xml), HS_ARGS (more `hookserve serve` flags).
#
#   server_start SERVER BS DELAY_MS MODE   MODE=preload: model loaded at start (start-up runs)
#                                          MODE=load: the load-matrix configuration
#   server_wait_200 TIMEOUT_S              polls POST every 50 ms; prints seconds since launch
#   server_wait_all_ready                  every worker of the model up (hookserve, TorchServe)
#   server_mem LABEL                       one JSON line: PSS summed over the process group
#   server_stop                            graceful stop, then the process group (TERM, KILL)
#
# Every server runs in its own session (setsid), so its process group id is the pid of what we
# launched; nothing is ever stopped by name.  Listeners: 127.0.0.1 only, free ports.

SRV_NAME=""; SRV_PGID=""; SRV_URL=""; SRV_MGMT=""; SRV_T0=""; SRV_LOG=""; SRV_EXCLUDE=""

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.2f", b-a}'; }
BENCH_MODEL=${BENCH_MODEL:-mlp}
post_code() {
  curl -s -o /dev/null -w '%{http_code}' -m 5 -X POST -H "Content-Type: ${POST_TYPE:-application/json}" \
    --data-binary @"${POST_BODY:-$MODELS/sample.json}" "$1" 2>/dev/null || true
}
# any process of group $1 that is not a zombie (an exited leader stays a zombie until `wait`)
group_alive() { [ -n "${1:-}" ] && ps -e -o pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ {f=1} END {exit !f}'; }
check_own_group() {  # setsid must make the launched pid a group leader (true without job control)
  local g i
  for i in $(seq 1 40); do
    g=$(ps -o pgid= "$SRV_PGID" 2>/dev/null | tr -d ' ')
    { [ -z "$g" ] || [ "$g" = "$SRV_PGID" ]; } && return 0
    sleep 0.05   # forked, setsid not yet run
  done
  echo "pid $SRV_PGID is in group $g, not its own: run without job control" >&2; return 1
}

server_start() {
  local server=$1 bs=$2 delay=$3 mode=$4
  local p1 p2 p3 p4 p5
  p1=$(free_port); p2=$(free_port); p3=$(free_port)
  SRV_NAME=$server; SRV_URL="http://127.0.0.1:$p1/predictions/$BENCH_MODEL"; SRV_MGMT="http://127.0.0.1:$p2"
  SRV_LOG="$OUT/logs/$server-$(date +%H%M%S)-$mode-bs$bs.log"; SRV_EXCLUDE=""
  mkdir -p "$OUT/run/$server"
  SRV_T0=$(now)
  case $server in
    hookserve|hookserve-fast)
      # model always loaded at start: hookserve takes batch size / delay as flags;
      # hookserve-fast serves BENCH_MODEL_fast.mar under the same name (bench/resnet)
      local batch=(--batch-size "$bs"); [ "$bs" -gt 1 ] && batch+=(--max-batch-delay "$delay")
      local mar=$BENCH_MODEL.mar; [ "$server" = hookserve-fast ] && mar=${BENCH_MODEL}_fast.mar
      mkdir -p "$OUT/run/hookserve/tmp"
      TMPDIR="$OUT/run/hookserve/tmp" setsid "${HS_VENV:-$VENVS/hookserve}/bin/hookserve" serve --ncs \
        --model-store "$MODELS/model_store" --models "$BENCH_MODEL=$mar" --workers "$WORKERS" --torch-threads 1 \
        "${batch[@]}" --frontend-workers "$HS_FRONTEND_WORKERS" ${HS_ARGS:-} \
        --inference-address "127.0.0.1:$p1" --management-address "127.0.0.1:$p2" \
        --metrics-address "127.0.0.1:$p3" >"$SRV_LOG" 2>&1 </dev/null &
      SRV_PGID=$!; check_own_group
      ;;
    torchserve)
      p4=$(free_port); p5=$(free_port)
      local models=(); [ "$mode" = preload ] && models=("$BENCH_MODEL=$BENCH_MODEL.mar")
      rm -rf "$OUT/run/torchserve/logs"
      # run_torchserve.sh launches `torchserve --foreground` with nohup and returns (TS_NO_WAIT=1);
      # the launcher, Java and its Python workers stay in the session setsid made here.
      TS_VENV="${TS_VENV_DIR:-$VENVS/torchserve}" TS_WORKDIR="$OUT/run/torchserve" TS_LOG_CONFIG="${TS_LOG4J:-$SHARED/log4j2-quiet.xml}" \
        TS_INFERENCE_PORT=$p1 TS_MANAGEMENT_PORT=$p2 TS_METRICS_PORT=$p3 TS_GRPC_INFERENCE_PORT=$p4 \
        TS_GRPC_MANAGEMENT_PORT=$p5 TS_WORKERS=$WORKERS TS_NO_WAIT=1 \
        setsid bash "$SHARED/run_torchserve.sh" start "$MODELS/model_store" "${models[@]}" >"$SRV_LOG" 2>&1 </dev/null &
      SRV_PGID=$!
      wait "$SRV_PGID" || { echo "run_torchserve.sh start failed, see $SRV_LOG" >&2; return 1; }
      # the `torchserve --foreground` launcher only waits for Java: not counted in PSS
      SRV_EXCLUDE=$(cat "$OUT/run/torchserve/launcher.pid")
      if [ "$mode" = load ]; then
        local deadline=$(( $(date +%s) + 180 ))
        until curl -sf -m 2 "http://127.0.0.1:$p1/ping" 2>/dev/null | grep -q Healthy; do
          [ "$(date +%s)" -ge "$deadline" ] && { echo "TorchServe: no /ping" >&2; return 1; }
          sleep 0.1
        done
        # as bench_torchserve.sh: register through the management API with the batching settings
        curl -sf -X POST "$SRV_MGMT/models?url=$BENCH_MODEL.mar&model_name=$BENCH_MODEL&batch_size=$bs&max_batch_delay=$delay&initial_workers=$WORKERS&synchronous=true" \
          >>"$SRV_LOG" || { echo "TorchServe: register failed" >&2; return 1; }
      fi
      ;;
    litserve)
      local batch=(); [ "$bs" -gt 1 ] && batch=(--max-batch-size "$bs" --batch-timeout "$(awk -v d="$delay" 'BEGIN{print d/1000}')")
      SRV_MGMT="http://127.0.0.1:$p1"   # /health: 200 once every inference worker is set up
      (cd "$OUT/run/litserve" && exec setsid "$VENVS/litserve/bin/python" "$HERE/litserve_mlp.py" --port "$p1" \
        --workers "$WORKERS" --state "$MODELS/artifacts/mlp_state.pt" --model-py "$SHARED/model.py" \
        "${batch[@]}" ${LS_ARGS:-} >"$SRV_LOG" 2>&1 </dev/null) &
      SRV_PGID=$!; check_own_group
      ;;
    *) echo "unknown server $server" >&2; return 2 ;;
  esac
}

server_wait_200() {  # prints seconds from launch to the first HTTP 200
  local timeout=${1:-180}
  until [ "$(post_code "$SRV_URL")" = 200 ]; do
    if ! group_alive "$SRV_PGID"; then echo "$SRV_NAME exited; log $SRV_LOG:" >&2; tail -n 30 "$SRV_LOG" >&2; return 1; fi
    if awk -v a="$SRV_T0" -v b="$(now)" -v t="$timeout" 'BEGIN{exit !(b-a>t)}'; then
      echo "$SRV_NAME: no HTTP 200 within $timeout s; log $SRV_LOG" >&2; tail -n 30 "$SRV_LOG" >&2; return 1
    fi
    sleep 0.05
  done
  elapsed "$SRV_T0"
}

ready_workers() {  # READY workers of the model in the management API's description (hookserve, TorchServe)
  curl -s -m 2 "$SRV_MGMT/models/$BENCH_MODEL" 2>/dev/null | python3 -c '
import json, sys
try:
    d = json.load(sys.stdin)
    print(sum(w.get("status") == "READY" for m in d for w in m.get("workers", [])))
except Exception:
    print(0)'
}

all_ready() {
  if [ "$SRV_NAME" = litserve ]; then curl -sf -m 2 "$SRV_MGMT/health" >/dev/null 2>&1
  else [ "$(ready_workers)" -ge "$WORKERS" ]; fi
}

server_wait_all_ready() {  # prints seconds from launch until all WORKERS are READY
  local deadline=$(( $(date +%s) + 120 ))
  until all_ready; do
    [ "$(date +%s)" -ge "$deadline" ] && { echo "$SRV_NAME: workers not READY" >&2; return 1; }
    sleep 0.05
  done
  elapsed "$SRV_T0"
}

server_mem() {
  local excl=(); [ -n "$SRV_EXCLUDE" ] && excl=(--exclude "$SRV_EXCLUDE")
  python3 "$HERE/pss.py" "$SRV_PGID" "${excl[@]}" --label "$1"
}

server_stop() {
  [ -n "$SRV_PGID" ] || return 0
  local pg=$SRV_PGID i
  case $SRV_NAME in
    torchserve)  # its own stop: SIGTERM to the recorded Java pid, then workers, then launcher
      TS_WORKDIR="$OUT/run/torchserve" bash "$SHARED/run_torchserve.sh" stop >>"$SRV_LOG" 2>&1 || true ;;
    *)  # hookserve (gunicorn master) and LitServe (uvicorn main process) stop on SIGTERM
      kill -TERM "$pg" 2>/dev/null || true ;;
  esac
  for i in $(seq 1 300); do group_alive "$pg" || break; sleep 0.1; done
  if group_alive "$pg"; then
    echo "$SRV_NAME: process group $pg still alive after 30 s, TERM to the group" >&2
    kill -TERM -- "-$pg" 2>/dev/null || true
    for i in $(seq 1 50); do group_alive "$pg" || break; sleep 0.1; done
    group_alive "$pg" && kill -KILL -- "-$pg" 2>/dev/null || true
  fi
  wait "$pg" 2>/dev/null || true
  SRV_PGID=""
}

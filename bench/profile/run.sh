#!/usr/bin/env bash
# Where the time per request goes: CPU microseconds per request of every hookserve process
# (frontend, each model worker) and py-spy's hottest frames of the frontend and a worker,
# under wrk at one concurrency. Loopback only.
#
#   bash bench/profile/run.sh OUT_DIR [CONCURRENCY] [BATCH_SIZE] [MAX_BATCH_DELAY_MS]
#
# FRONTEND_WORKERS (default 2, as bench/run.sh) sets --frontend-workers; py-spy samples the first.
# NATIVE=1 samples C frames too (py-spy --native): system calls, uvloop, the garbage collector
# and torch show up by name instead of inside the Python line that called them. Idle time is
# then sampled as epoll_pwait.
#
# Needs: a python with hookserve, hookserve-ts and torch (PYTHON, default: python3 on PATH),
# py-spy in that environment (pip install py-spy), wrk, and ../shared/bench beside the repo.
set -euo pipefail
OUT=$(realpath -m "$1"); C=${2:-64}; BS=${3:-8}; DELAY=${4:-5}
PYTHON=${PYTHON:-python3}
HERE=$(cd "$(dirname "$0")" && pwd); REPO=$(cd "$HERE/../.." && pwd); SHARED=$(cd "$REPO/../shared/bench" && pwd)
BIN=$(dirname "$(command -v "$PYTHON")")
mkdir -p "$OUT"; cd "$OUT"
[ -f work/sample.json ] || "$PYTHON" "$SHARED/make_models.py" work --no-mar >/dev/null
mkdir -p store
"$BIN/hookserve" archive --model-name mlp --version 1.0 --model-file "$SHARED/model.py" \
  --serialized-file work/artifacts/mlp_state.pt --handler "$SHARED/handler_mlp.py" --export-path store --force >/dev/null
PORT=$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
OMP_NUM_THREADS=1 setsid "$BIN/hookserve" serve --ncs --model-store store --models mlp=mlp.mar --workers 2 \
  --torch-threads 1 --batch-size "$BS" --max-batch-delay "$DELAY" --frontend-workers "${FRONTEND_WORKERS:-2}" --inference-address "127.0.0.1:$PORT" \
  --management-address "127.0.0.1:$((PORT+1))" --metrics-address "127.0.0.1:$((PORT+2))" > server.log 2>&1 &
MASTER=$!
trap 'kill -TERM $MASTER 2>/dev/null || true; wait $MASTER 2>/dev/null || true' EXIT
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$PORT/ping" >/dev/null && break; sleep 0.1; done
tree() { echo "$1"; for c in $(pgrep -P "$1"); do tree "$c"; done; }
role() { if grep -q hookserve.manager "/proc/$1/cmdline"; then [ "$(ps -o ppid= "$1" | tr -d ' ')" = "$MASTER" ] && echo manager || echo model-worker; else [ "$1" = "$MASTER" ] && echo gunicorn-master || echo frontend; fi; }
URL="http://127.0.0.1:$PORT/predictions/mlp"
WRK_BODY_FILE=work/sample.json wrk -t1 -c"$C" -d3s -s "$SHARED/post.lua" "$URL" >/dev/null 2>&1   # warm-up
declare -A BEFORE; PIDS=$(tree $MASTER)
for p in $PIDS; do BEFORE[$p]=$(awk '{print $14+$15}' /proc/$p/stat); done
first_of() { for p in $PIDS; do if [ "$(role "$p")" = "$1" ]; then echo "$p"; return; fi; done; }
FRONTEND=$(first_of frontend)
WORKER=$(first_of model-worker)
"$BIN/py-spy" record ${NATIVE:+--native} -p "$FRONTEND" -d 8 -r 500 -f raw -o frontend.spy >/dev/null 2>&1 &
"$BIN/py-spy" record ${NATIVE:+--native} -p "$WORKER" -d 8 -r 500 -f raw -o worker.spy >/dev/null 2>&1 &
WRK_BODY_FILE=work/sample.json wrk -t1 -c"$C" -d10s --latency -s "$SHARED/post.lua" "$URL" > wrk.txt 2>&1
wait %2 %3 2>/dev/null || true
REQUESTS=$(awk '/requests in/ {print $1}' wrk.txt)
TICK=$(getconf CLK_TCK)
{
  echo "# Where the time per request goes (concurrency $C, batch size $BS, delay $DELAY ms)"
  echo
  grep -E "Requests/sec|50%|99%" wrk.txt | sed 's/^ */    /'
  echo
  echo "| process | pid | CPU µs per request |"
  echo "|---|---:|---:|"
  for p in $PIDS; do
    [ -r /proc/$p/stat ] || continue
    d=$(( $(awk '{print $14+$15}' /proc/$p/stat) - ${BEFORE[$p]} ))
    echo "| $(role $p) | $p | $(( d * 1000000 / TICK / REQUESTS )) |"
  done
  for name in frontend worker; do
    echo; echo "## $name: hottest frames (self time share of py-spy samples)"; echo
    "$PYTHON" - "$name.spy" <<'PY'
import collections, sys
own, total = collections.Counter(), 0
for line in open(sys.argv[1]):
    stack, _, count = line.rstrip().rpartition(" ")
    total += int(count)
    own[stack.split(";")[-1]] += int(count)
for frame, count in own.most_common(15):
    print(f"    {count / total:6.1%}  {frame}")
PY
  done
} > profile.md
cat profile.md

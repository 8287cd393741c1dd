#!/usr/bin/env bash
# Create (or reuse) the three virtual environments of the benchmark under OUT_DIR/venvs/.
#
#   bench/setup_envs.sh OUT_DIR
#
#   OUT_DIR/venvs/hookserve   hookserve + hookserve-ts (from this checkout) + torch==2.13.0
#   OUT_DIR/venvs/torchserve  torch==2.13.0 torchserve==0.12.0 torch-model-archiver==0.12.0 pyyaml numpy
#                             (exactly ../shared/bench/README.md §1)
#   OUT_DIR/venvs/litserve    litserve==0.2.19 torch==2.13.0 numpy (numpy as in the TorchServe venv:
#                             without it torch warns "Failed to initialize NumPy" in every worker)
#
# A venv that already exists and imports its packages is reused.  hookserve itself is
# re-installed on every call (its new dependencies if any, then its code; seconds) from a
# copy of the working tree in OUT_DIR/src, so the benchmark always measures the current code
# and pip never writes build/ folders into the repository.  torch is pinned everywhere: a
# loose requirement would pull a multi-GB CUDA build.  The system Python is only used to run
# `python3 -m venv`.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
OUT=${1:?usage: setup_envs.sh OUT_DIR}
mkdir -p "$OUT/venvs" "$OUT/logs"
OUT=$(cd "$OUT" && pwd)
PY=${PYTHON:-python3}
TORCH_PIN="torch==2.13.0"

# shellcheck source=lib/venvs.sh
source "$HERE/lib/venvs.sh"
SRC=$(snapshot_repo)
make_venv hookserve "import hookserve, ts.torch_handler.base_handler, torch; assert torch.__version__.startswith('2.13.0')" \
  "$SRC" "$SRC/contrib/hookserve-ts" "$TORCH_PIN"
reinstall_hookserve hookserve "$SRC" "$TORCH_PIN"

make_venv torchserve "import ts, model_archiver, yaml, numpy, torch; assert torch.__version__.startswith('2.13.0')" \
  "$TORCH_PIN" torchserve==0.12.0 torch-model-archiver==0.12.0 pyyaml numpy

make_venv litserve "import litserve, torch; assert litserve.__version__ == '0.2.19' and torch.__version__.startswith('2.13.0')" \
  litserve==0.2.19 "$TORCH_PIN" numpy

: > "$OUT/versions.txt"
for v in hookserve torchserve litserve; do
  "$OUT/venvs/$v/bin/python" - "$v" <<'PY' >>"$OUT/versions.txt"
import importlib.metadata as md, sys, platform
name = sys.argv[1]
pk = {"hookserve": ["hookserve", "hookserve-ts"], "torchserve": ["torchserve", "torch-model-archiver"],
      "litserve": ["litserve", "fastapi", "uvicorn"]}[name] + ["torch"]
print(f"{name}: python {platform.python_version()}, " + ", ".join(f"{p} {md.version(p)}" for p in pk))
PY
done
log "versions:"; cat "$OUT/versions.txt" >&2

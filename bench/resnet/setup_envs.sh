#!/usr/bin/env bash
# Create (or reuse) the two virtual environments of the ResNet-18 benchmark under OUT_DIR/venvs/.
#
#   bench/resnet/setup_envs.sh OUT_DIR
#
#   OUT_DIR/venvs/torchserve-tv  torch==2.14.1 torchvision==0.29.1 torchserve==0.12.0
#                                torch-model-archiver==0.12.0 pyyaml numpy pillow captum (TorchServe's
#                                vision_handler imports captum at module level)
#   OUT_DIR/venvs/hookserve-tv   torch==2.14.1 torchvision==0.29.1 numpy pillow, then hookserve +
#                                hookserve-ts from this checkout (re-installed on every call, as in
#                                ../setup_envs.sh) and bench/resnet/batch_log (the batch-size log)
#
# Both run the same torch. The pair torch 2.14.1 / torchvision 0.29.1 is the one pip takes from
# this machine's disk (about 5.5 GB per venv: a CUDA build that runs on the CPU).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUT=${1:?usage: setup_envs.sh OUT_DIR}
mkdir -p "$OUT/venvs" "$OUT/logs"
OUT=$(cd "$OUT" && pwd)
PY=${PYTHON:-python3}
PINS=(torch==2.14.1 torchvision==0.29.1)
CHECK="import torch, torchvision; assert torch.__version__.startswith('2.14.1') and torchvision.__version__.startswith('0.29.1')"

# shellcheck source=../lib/venvs.sh
source "$HERE/../lib/venvs.sh"
make_venv torchserve-tv "$CHECK; import ts.torch_handler.image_classifier, model_archiver, yaml" \
  "${PINS[@]}" torchserve==0.12.0 torch-model-archiver==0.12.0 pyyaml numpy pillow captum
make_venv hookserve-tv "$CHECK" "${PINS[@]}" numpy pillow
reinstall_hookserve hookserve-tv "$(snapshot_repo)" "${PINS[@]}"
"$OUT/venvs/hookserve-tv/bin/pip" install -q --no-deps --force-reinstall "$HERE/batch_log" \
  >>"$OUT/logs/pip-hookserve-tv.log" 2>&1 || { tail -n 20 "$OUT/logs/pip-hookserve-tv.log" >&2; exit 1; }

for v in hookserve-tv torchserve-tv; do
  "$OUT/venvs/$v/bin/python" - "$v" <<'PY'
import importlib.metadata as md, platform, sys
pk = {"hookserve-tv": ["hookserve", "hookserve-ts"], "torchserve-tv": ["torchserve", "torch-model-archiver"]}[sys.argv[1]]
print(f"{sys.argv[1]}: python {platform.python_version()}, "
      + ", ".join(f"{p} {md.version(p)}" for p in pk + ["torch", "torchvision", "pillow"]))
PY
done >"$OUT/versions.txt"
log "versions:"; cat "$OUT/versions.txt" >&2

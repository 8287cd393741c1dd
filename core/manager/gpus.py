"""How many GPUs the model workers will see, counted without touching CUDA in the manager."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

log = logging.getLogger("hookserve.manager")

# Files that exist when a GPU driver torch could use is installed (NVIDIA, or AMD's ROCm).
GPU_DRIVER_FILES = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/kfd")
# Run in a short-lived interpreter: torch counts the GPUs a worker will see (it honours
# CUDA_VISIBLE_DEVICES), through NVML rather than the CUDA runtime.
GPU_PROBE = "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)"
GPU_PROBE_TIMEOUT_S = 120


def gpu_driver_present() -> bool:
    return any(os.path.exists(path) for path in GPU_DRIVER_FILES)


def visible_gpu_count() -> int:
    """The GPUs a worker will see, counted without calling into ``torch.cuda`` here.

    The manager forks workers, and a CUDA context (or even the driver state that
    ``torch.cuda.is_available()`` sets up when it falls back to ``cudaGetDeviceCount``)
    cannot be used by a forked child. Without a GPU driver the answer is 0 at once;
    with one, a short-lived subprocess asks torch (with NVML-based checks) and exits.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if (visible is not None and visible.strip() in ("", "-1")) or not gpu_driver_present():
        return 0
    env = dict(os.environ, PYTORCH_NVML_BASED_CUDA_CHECK="1")
    try:
        probe = subprocess.run(
            [sys.executable, "-c", GPU_PROBE],
            env=env,
            capture_output=True,
            text=True,
            timeout=GPU_PROBE_TIMEOUT_S,
            check=True,
        )
        return int(probe.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
        detail = getattr(exc, "stderr", None) or exc
        log.error("cannot count the GPUs (workers run on CPU): %s", str(detail).strip()[-500:])
        return 0

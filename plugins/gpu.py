"""Round-robin placement of model workers over the visible GPUs, CPU when there are none."""

from __future__ import annotations

from hookserve.hookspecs import hookimpl
from hookserve.plugin_types import DeviceRequest


def allowed_gpus(request: DeviceRequest) -> list[int]:
    """GPU ids this model may use: visible, under ``number_of_gpu``, within ``deviceIds``."""
    count = request.gpu_count
    if request.number_of_gpu is not None:
        count = min(count, request.number_of_gpu)
    gpus = list(range(count))
    if request.device_ids:
        gpus = [g for g in request.device_ids if g in gpus]
    return gpus


@hookimpl(trylast=True)
def hookserve_select_device(request: DeviceRequest) -> str:
    if (request.device_type or "").lower() == "cpu":
        return "cpu"
    gpus = allowed_gpus(request)
    if not gpus:
        return "cpu"
    return f"cuda:{gpus[request.worker_index % len(gpus)]}"

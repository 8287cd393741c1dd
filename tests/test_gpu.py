"""Device selection: the builtin round-robin policy with simulated GPU counts, and the hook
that lets a plugin override it."""

from __future__ import annotations

import pytest
import torch

from hookserve.hookspecs import hookimpl
from hookserve.plugin_types import DeviceRequest
from hookserve.pluginmanager import Hooks


def place(hooks: Hooks, workers: int, **request) -> list[str]:
    return [
        hooks.select_device(request=DeviceRequest(model_name="m", worker_index=i, **request)) for i in range(workers)
    ]


def test_round_robin_over_visible_gpus(hooks):
    assert place(hooks, 5, gpu_count=2) == ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]


def test_no_gpu_means_cpu(hooks):
    assert place(hooks, 3, gpu_count=0) == ["cpu"] * 3


def test_number_of_gpu_caps_the_gpus_used(hooks):
    assert place(hooks, 4, gpu_count=4, number_of_gpu=2) == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert place(hooks, 2, gpu_count=4, number_of_gpu=0) == ["cpu", "cpu"]


def test_device_ids_restrict_the_model_to_some_gpus(hooks):
    assert place(hooks, 4, gpu_count=4, device_ids=(1, 3)) == ["cuda:1", "cuda:3", "cuda:1", "cuda:3"]
    # ids that are not visible (or beyond number_of_gpu) are ignored, falling back to CPU
    assert place(hooks, 2, gpu_count=2, device_ids=(5,)) == ["cpu", "cpu"]
    assert place(hooks, 2, gpu_count=4, number_of_gpu=2, device_ids=(0, 3)) == ["cuda:0", "cuda:0"]


def test_device_type_cpu_keeps_the_model_off_gpus(hooks):
    assert place(hooks, 2, gpu_count=2, device_type="cpu") == ["cpu", "cpu"]
    assert place(hooks, 2, gpu_count=2, device_type="gpu") == ["cuda:0", "cuda:1"]


def test_a_plugin_can_place_workers_before_the_builtin(hooks):
    class PinToLast:
        @hookimpl
        def hookserve_select_device(self, request):
            return f"cuda:{request.gpu_count - 1}" if request.gpu_count else None

    hooks.pm.register(PinToLast())
    assert place(hooks, 3, gpu_count=4) == ["cuda:3"] * 3
    assert place(hooks, 2, gpu_count=0) == ["cpu", "cpu"]  # "not mine": the builtin answers


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_worker_model_lands_on_its_gpu(tmp_path, hooks):
    from helpers import folder_archive
    from hookserve.worker.bootstrap import load_model

    (tmp_path / "model.py").write_text(
        "import torch\nclass M(torch.nn.Linear):\n    def __init__(self):\n        super().__init__(2, 2)\n"
    )
    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "w.pt")
    archive = folder_archive(tmp_path, handler="base_handler", modelFile="model.py", serializedFile="w.pt")
    model, context = load_model(archive, hooks, gpu_id=0)
    assert next(model.loaded.parameters()).device == torch.device("cuda:0")

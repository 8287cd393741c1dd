"""No CUDA before the fork (issue 12, item 6).

The model manager forks model workers, and CUDA state set up in a parent cannot be used by
a forked child. On a machine without a GPU ``torch.cuda.is_initialized()`` stays false
whatever the manager does, so these tests catch the calls themselves: a test-only
``sitecustomize`` on the server's ``PYTHONPATH`` wraps ``torch.cuda``'s entry points as soon
as ``torch.cuda`` is imported, and records every call with the process it came from and
whether that process is a forked child (a model worker, where CUDA belongs).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import requests

from helpers import Server, archive, pythonpath, serving, wait_for

SITECUSTOMIZE = """
    import importlib.machinery
    import json
    import os
    import sys

    LOG = os.environ.get("HOOKSERVE_TEST_CUDA_LOG")
    WATCHED = (
        "is_available", "device_count", "init", "_lazy_init", "current_device", "set_device",
        "get_device_name", "get_device_properties", "get_device_capability", "mem_get_info",
        "synchronize", "_device_count_nvml", "_raw_device_count_nvml", "_device_count_amdsmi",
    )
    forked = False


    def _mark_forked():
        global forked
        forked = True


    os.register_at_fork(after_in_child=_mark_forked)


    def _record(name):
        with open(f"/proc/{os.getpid()}/cmdline", "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\\0") if a]
        with open(LOG, "a") as out:
            out.write(json.dumps({"pid": os.getpid(), "forked": forked, "argv": argv, "call": name}) + "\\n")


    def _wrap(module):
        for name in WATCHED:
            original = getattr(module, name, None)
            if callable(original):
                def wrapper(*args, _original=original, _name=name, **kwargs):
                    _record(_name)
                    return _original(*args, **kwargs)
                setattr(module, name, wrapper)


    class _WatchTorchCuda:
        def find_spec(self, name, path, target=None):
            if name != "torch.cuda":
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is None:
                return None
            execute = spec.loader.exec_module

            def exec_module(module):
                execute(module)
                _wrap(module)

            spec.loader.exec_module = exec_module
            return spec


    if LOG:
        sys.meta_path.insert(0, _WatchTorchCuda())
"""

# Calls torch.cuda in a model worker, as a GPU handler does: proves the recorder works there.
CUDA_HANDLER = """
    import torch


    class UsesCuda:
        def initialize(self, context):
            self.cuda = torch.cuda.is_available()

        def handle(self, data, context):
            return [{"cuda": self.cuda} for _ in data]
"""


def calls(log: Path) -> list[dict]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def is_manager(record: dict) -> bool:
    return "hookserve.manager" in record["argv"]


def test_the_manager_never_calls_torch_cuda(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(SITECUSTOMIZE))
    log = tmp_path / "cuda-calls.jsonl"
    archive(tmp_path, "cuda", "handler.py", files={"handler.py": CUDA_HANDLER})
    env = {"PYTHONPATH": pythonpath(site), "HOOKSERVE_TEST_CUDA_LOG": str(log)}
    args = ["--model-store", str(tmp_path / "store"), "--models", "cuda=cuda.mar", "--workers", "2"]
    with serving(Server(args, tmp_path, env=env)) as server:
        reply = requests.post(server.url("/predictions/cuda"), data=b"x", timeout=30)
        assert reply.status_code == 200, reply.text
        # scale up: more forks from the same manager
        reply = requests.put(server.url("/models/cuda?min_worker=3&synchronous=true", "management"), timeout=60)
        assert reply.status_code == 200, reply.text
        recorded = wait_for(lambda: [c for c in calls(log) if c["forked"]], what="a worker's torch.cuda call")
    # the recorder sees calls in forked workers (the handler's), so it would see the manager's
    assert {c["call"] for c in recorded} >= {"is_available"}
    assert all(is_manager(c) for c in recorded)
    in_manager = [c for c in calls(log) if is_manager(c) and not c["forked"]]
    assert in_manager == [], f"the model manager called into torch.cuda before forking workers: {in_manager}"


def test_gpu_count_with_a_driver_asks_a_subprocess(monkeypatch):
    """Where a GPU driver exists, the count comes from a short-lived interpreter."""
    import torch

    from hookserve.manager import gpus as manager

    def forbidden(*args, **kwargs):
        raise AssertionError("torch.cuda was called in the manager's process")

    monkeypatch.setattr(manager, "gpu_driver_present", lambda: True)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    for name in ("is_available", "device_count", "init", "_lazy_init"):
        monkeypatch.setattr(torch.cuda, name, forbidden)
    assert manager.visible_gpu_count() == 0  # the CPU build of torch, in the subprocess


@pytest.mark.parametrize("visible", ["", "-1"])
def test_no_visible_devices_means_no_gpu(monkeypatch, visible):
    from hookserve.manager import gpus as manager

    monkeypatch.setattr(manager, "gpu_driver_present", lambda: True)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert manager.visible_gpu_count() == 0

"""A model worker: one process, one model version, one device.

It is forked by the model manager (which has already imported torch), loads the model
through the handler and the hooks, listens on its own Unix socket, collects requests from
every frontend into batches and answers each request with one reply frame.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import uvloop

from hookserve.archive.reading import ModelArchive
from hookserve.context import Context
from hookserve.plugin_types import BatchSettings
from hookserve.pluginmanager import Hooks
from hookserve.tuning.garbage_collection import settle_heap
from hookserve.tuning.scheduling import use_batch_scheduling
from hookserve.worker.batch import BatchRunner
from hookserve.worker.handler_entry import HandlerEntry, resolve_handler
from hookserve.worker.server import WorkerServer


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a new worker needs; built by the manager before the fork."""

    worker_id: str
    archive: ModelArchive
    socket_path: str
    gpu_id: int | None
    batch_size: int
    max_batch_delay: int
    torch_threads: int | None = None
    busy_poll_s: float = 0.0
    batch_scheduling: bool = False


def load_model(
    archive: ModelArchive, hooks: Hooks, *, gpu_id: int | None = None, batch_size: int = 1
) -> tuple[HandlerEntry, Context]:
    """Resolve the archive's handler, register its overrides as this model's plugin and
    initialize it: what every worker does before serving."""
    context = Context(
        archive.name, str(archive.model_dir), archive.manifest, batch_size, gpu_id, model_yaml_config=archive.config
    )
    context.hooks = hooks
    context.archive = archive
    entry = resolve_handler(archive, hooks)
    plugin = hooks.handler_plugin(handler=entry.handler)
    if plugin is not None:
        hooks.pm.register(plugin, name=f"handler:{archive.name}")
    entry.initialize(context)
    return entry, context


def start_worker(spec: WorkerSpec, hooks: Hooks, report: Any) -> None:
    """Load the model and serve until killed. ``report(line)`` tells the manager our state."""
    archive = spec.archive
    logging.getLogger().handlers[:] = []
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s [worker {spec.worker_id} pid {os.getpid()}] %(levelname)s %(name)s: %(message)s",
    )
    if spec.batch_scheduling:
        use_batch_scheduling()
    if spec.torch_threads:
        import torch

        torch.set_num_threads(spec.torch_threads)
    entry, context = load_model(archive, hooks, gpu_id=spec.gpu_id, batch_size=spec.batch_size)
    batcher = hooks.batcher(settings=BatchSettings(archive.name, spec.batch_size, spec.max_batch_delay))
    settle_heap()
    server = WorkerServer(BatchRunner(entry, context), batcher, spec.busy_poll_s)
    uvloop.run(server.serve(spec.socket_path, lambda: report("READY")))

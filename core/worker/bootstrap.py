"""A model worker: one process, one model version, one device.

It is forked by the model manager (which has already imported torch), loads the model
(the handler's ``initialize``, which reaches ``hookserve_load`` only through the
``context.load_model()`` loader bound here), listens on its own Unix socket, collects
requests from every frontend into batches, runs each through ``hookserve_handle_batch``
and answers each request with one reply frame.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import uvloop

from hookserve.archive.reading import ModelArchive
from hookserve.context import Context
from hookserve.pipeline_types import Model
from hookserve.plugin_types import BatchSettings, ModelEnvironment
from hookserve.pluginmanager import Hooks
from hookserve.tuning.garbage_collection import settle_heap
from hookserve.tuning.scheduling import use_batch_scheduling
from hookserve.worker.batch import BatchRunner
from hookserve.worker.batch_metrics import metered
from hookserve.worker.handler_entry import HandlerEntry, resolve_handler
from hookserve.worker.model_environment import enter_model_environment
from hookserve.worker.model_files import worker_device
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
    environment: ModelEnvironment = field(default_factory=ModelEnvironment)


class ArchiveLoader:
    """``context.model_loader`` of a worker: ``hookserve_load`` for its archive, called at
    most once (the first caller loads, later callers get the same object).

    Handlers get this narrow callable (through ``context.load_model()``) instead of the
    plugin manager: they can load their model and nothing else.
    """

    __slots__ = ("_hooks", "_archive", "_context", "_model")

    def __init__(self, hooks: Hooks, archive: ModelArchive, context: Context):
        self._hooks = hooks
        self._archive = archive
        self._context = context
        self._model: Any = None

    def __call__(self) -> Any:
        if self._model is None:
            archive = self._archive
            self._model = self._hooks.load(archive=archive, context=self._context)
            if self._model is None:
                raise RuntimeError(
                    f"no plugin could load model {archive.name!r}: serialized file "
                    f"{archive.serialized_file!r}, model file {archive.model_file!r} in {archive.model_dir}"
                )
        return self._model


def load_model(
    archive: ModelArchive,
    hooks: Hooks,
    *,
    gpu_id: int | None = None,
    batch_size: int = 1,
    entry: HandlerEntry | None = None,
) -> tuple[Model, Context]:
    """Resolve the archive's handler (unless ``entry`` is given), register its adapter as
    this model's plugin and initialize it: what every worker does before serving."""
    context = Context(
        archive.name, str(archive.model_dir), archive.manifest, batch_size, gpu_id, model_yaml_config=archive.config
    )
    context.model_loader = ArchiveLoader(hooks, archive, context)
    entry = entry or resolve_handler(archive, hooks)
    device = str(worker_device(context))
    model = Model(archive.name, archive.version, archive, entry.handler, device, hooks)
    plugin = hooks.handler_plugin(model=model)
    if plugin is not None:
        hooks.pm.register(plugin, name=f"handler:{archive.name}")
    entry.initialize(context)
    return model, context


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
    enter_model_environment(spec.environment)
    model, context = load_model(archive, hooks, gpu_id=spec.gpu_id, batch_size=spec.batch_size)
    batcher = hooks.batcher(settings=BatchSettings(archive.name, spec.batch_size, spec.max_batch_delay))
    settle_heap()
    server = WorkerServer(
        metered(BatchRunner(model, context), hooks, context, archive.version), batcher, spec.busy_poll_s
    )
    uvloop.run(server.serve(spec.socket_path, lambda: report("READY")))

"""Serve model archives in this process: the model worker's own code, no process, no socket.

For notebooks, tests and programs that embed a model server::

    from hookserve.app import create_app
    from hookserve.inprocess import InProcessService

    with InProcessService() as service:
        service.add("store/mlp.mar")
        app = create_app(service=service)  # falcon.testing.TestClient(app), any ASGI server

It is a :class:`hookserve.model_service.ModelService`, as the model client of
``hookserve serve`` is. Each model version is loaded as a model worker loads it (its own
plugin manager, so its handler's overrides apply to it alone) and gets one batch thread:
requests queue up, the batching plugin's policy decides when a batch runs, the worker's
batch code runs it, and each reply goes back to the event loop of its request. A request
whose client has gone away before its batch starts is dropped.

Management acts on this registry: ``register`` loads an archive under the server's URL rules
(the model store, ``allowed_urls``), ``unregister`` and ``set_default`` behave as the
server's. Each version has exactly one worker, this process: asking for another worker
count is refused with :class:`hookserve.errors.NotSupportedInProcess` (501). Models load on
the CPU; ``responseTimeout`` does not apply (a running batch cannot be stopped from outside).
A handler's intermediate replies (``Context.send_intermediate_reply``) reach the client as
the chunks of a streamed reply, as from ``hookserve serve``, but only once its batch is done.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from hookserve.archive.reading import ModelArchive
from hookserve.config import ServerConfig
from hookserve.errors import (
    Conflict,
    InvalidModelVersion,
    ModelNotFound,
    ModelVersionNotFound,
    NotSupportedInProcess,
    ServiceUnavailable,
)
from hookserve.frontend.reply_stream import ReplyStream
from hookserve.manager.model_sources import check_registration, model_settings, open_model, validate_name
from hookserve.model_service import (
    HEALTHY,
    UNHEALTHY,
    ManagementAnswer,
    ModelDescription,
    ModelRef,
    ModelSummary,
    WorkerDescription,
)
from hookserve.plugin_types import Batcher, BatchSettings
from hookserve.pluginmanager import Hooks, create_plugin_manager
from hookserve.wire.control import RegisterModel, ScaleWorkers
from hookserve.wire.framing import Reply, WorkRequest
from hookserve.wire.routes import ModelSettings
from hookserve.worker.batch import BatchRunner
from hookserve.worker.bootstrap import load_model

log = logging.getLogger("hookserve.inprocess")

# Queued on a batch thread: a request and the future its reply goes to (``None`` stops it).
Queued = tuple[WorkRequest, "Future[Reply]"]


def load_batch_runner(archive: ModelArchive, hooks: Hooks, batch_size: int) -> BatchRunner:
    """What a model worker does before it serves (load the handler, register its overrides,
    initialize it), here in the calling process: the one call into the worker's pipeline."""
    model, context = load_model(archive, hooks, batch_size=batch_size)
    return BatchRunner(model, context)


def streamed(parts: list[Reply], final: Reply) -> Reply:
    """The reply of a request whose handler streamed ``parts`` before ``final``: the first
    part's status and headers, a stream of every part and then the final reply's body."""
    first = parts[0]
    stream = ReplyStream(first.body, detach=lambda: None)  # nothing more will come to drop
    for part in parts[1:]:
        stream.put(part.body)
    stream.finish(final)
    return dataclasses.replace(first, more=False, stream=stream)


class BatchThread:
    """A model version's worker as a thread: queued requests in, batches run, replies out."""

    def __init__(self, name: str, runner: BatchRunner, batcher: Batcher):
        self.runner = runner
        self.batcher = batcher
        self.queue: queue.SimpleQueue[Queued | None] = queue.SimpleQueue()
        self.stopped = False
        self.held: Queued | None = None  # taken from the queue, of another kind than its batch
        self.thread = threading.Thread(target=self._serve, name=f"hookserve-batches-{name}", daemon=True)
        self.thread.start()

    def submit(self, request: WorkRequest) -> Future[Reply]:
        if self.stopped:
            raise ServiceUnavailable(f"the batch thread of {self.thread.name} has stopped")
        future: Future[Reply] = Future()
        self.queue.put((request, future))
        return future

    def stop(self) -> None:
        """Finish what is queued, then end (without waiting for it)."""
        self.stopped = True
        self.queue.put(None)

    def _serve(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._run(batch)
        # anything that slipped in behind the stop gets an answer rather than a wait forever
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                item[1].set_exception(ServiceUnavailable("the model was unregistered before this request ran"))

    def _next_batch(self) -> list[Queued] | None:
        """The next batch, as a worker forms it: what is queued, plus what the batcher finds
        worth waiting for, up to ``batch_size``, all of one kind (predict, explain, describe)."""
        first = self.held if self.held is not None else self._take(None)
        self.held = None
        if first is None:
            return None
        batch = [first]
        started = time.monotonic()
        while len(batch) < self.batcher.batch_size:
            wait = self.batcher.wait_time(len(batch), time.monotonic() - started)
            try:
                item = self._take(wait)
            except queue.Empty:
                if wait:
                    continue  # the batcher decides again with the time waited
                break
            if item is None:
                self.queue.put(None)  # stop after this batch
                break
            if item[0].kind != first[0].kind:
                self.held = item  # it starts the next batch
                break
            batch.append(item)
        return batch

    def _take(self, wait: float | None) -> Queued | None:
        """The next queued item: waiting for it (``None``), up to ``wait`` seconds, or not at
        all (0, ``queue.Empty`` when there is none)."""
        item = self.queue.get(timeout=wait) if wait != 0 else self.queue.get_nowait()
        if item is not None:
            self.batcher.on_arrival()
        return item

    def _run(self, batch: list[Queued]) -> None:
        # a request whose caller has cancelled it (its client went away) does not run
        batch = [(request, future) for request, future in batch if future.set_running_or_notify_cancel()]
        if not batch:
            return
        parts: dict[int, list[Reply]] = {}
        try:
            replies = self.runner.run(
                [request for request, _ in batch], lambda position, part: parts.setdefault(position, []).append(part)
            )
        except Exception as exc:  # the runner answers handler failures: this is one of its own
            log.exception("%s: the batch runner failed", self.thread.name)
            for _, future in batch:
                future.set_exception(exc)
        else:
            for position, ((_, future), reply) in enumerate(zip(batch, replies, strict=True)):
                future.set_result(streamed(parts[position], reply) if position in parts else reply)
        self.batcher.on_replied(len(batch))


@dataclass
class LoadedVersion:
    """A model version served in this process (a :class:`~hookserve.model_service.ModelRef`)."""

    model: str
    version: str
    url: str
    archive: ModelArchive
    settings: ModelSettings
    batches: BatchThread
    loaded_at: float
    at_startup: bool  # added by the program (``add``) rather than through the management API
    pending: int = 0


class InProcessService:
    """Model archives served in this process (see the module doc). Close it (or use it as a
    context manager) to stop its batch threads and remove the archives it extracted."""

    def __init__(self, config: ServerConfig | None = None):
        self.config = config or ServerConfig()
        self.work_dir = Path(tempfile.mkdtemp(prefix="hookserve-inprocess-")).resolve()
        self.models: dict[str, dict[str, LoadedVersion]] = {}
        self.defaults: dict[str, str] = {}
        self.keys = itertools.count()
        self.closed = False

    def __enter__(self) -> InProcessService:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the batch threads (each finishes what it has queued) and take back what
        loading put in this process: extracted archives, their folders on ``sys.path`` and
        the modules imported from them."""
        self.closed = True
        for versions in self.models.values():
            for loaded in versions.values():
                loaded.batches.stop()
        self.models.clear()
        self.defaults.clear()
        shutil.rmtree(self.work_dir, ignore_errors=True)
        sys.path[:] = [entry for entry in sys.path if not Path(entry).is_relative_to(self.work_dir)]
        for name, module in list(sys.modules.items()):
            if Path(getattr(module, "__file__", None) or "/").is_relative_to(self.work_dir):
                del sys.modules[name]

    def add(
        self, source: str | os.PathLike, *, name: str | None = None, handler: str | None = None
    ) -> ModelDescription:
        """Load an archive (a ``.mar``, ``.tar.gz`` or folder; any local path, trusted as
        ``--models`` is) and serve it, as a start-up model of the server would be."""
        url = os.fspath(source)
        archive = open_model(url, self.config, self.work_dir, name, handler, trusted=True)
        self._check_new(archive)
        loaded = self._add(self._load(archive, url, RegisterModel(url=url), at_startup=True))
        return self.describe(loaded.model, loaded.version)

    # --- ModelService: inference ------------------------------------------------------

    def health(self) -> tuple[str, list[str]]:
        """Healthy while open: every registered version is loaded before it is listed."""
        if self.closed:
            return UNHEALTHY, ["the in-process model service is closed"]
        return HEALTHY, []

    async def resolve_when_ready(self, model: str, version: str | None = None) -> LoadedVersion:
        return self._find(model, version, missing_version=ModelNotFound)

    async def submit(self, ref: ModelRef, request: WorkRequest) -> Reply:
        loaded = self._find(ref.model, ref.version, missing_version=ModelNotFound)
        if loaded.pending >= self.config.job_queue_size:
            raise ServiceUnavailable(
                f"Model {loaded.model} version {loaded.version} has {loaded.pending} requests queued "
                f"(job_queue_size={self.config.job_queue_size}); try again later"
            )
        request.key = next(self.keys)
        loaded.pending += 1
        try:
            # cancelling this await (the client went away) cancels the future: not yet
            # started, the request is dropped
            return await asyncio.wrap_future(loaded.batches.submit(request))
        finally:
            loaded.pending -= 1

    # --- ModelService: description ----------------------------------------------------

    def list_models(self) -> list[ModelSummary]:
        return [ModelSummary(name, self.models[name][self.defaults[name]].url) for name in sorted(self.models)]

    def versions(self, model: str) -> list[str]:
        return list(self.models.get(model, {}))

    def describe(self, model: str, version: str | None = None) -> ModelDescription:
        loaded = self._find(model, version, missing_version=ModelNotFound)
        settings = loaded.settings
        return ModelDescription(
            model=loaded.model,
            version=loaded.version,
            url=loaded.url,
            runtime=loaded.archive.runtime or "python",
            settings=dataclasses.replace(settings, min_worker=1, max_worker=1),
            device_type="cpu",
            loaded_at_startup=loaded.at_startup,
            workers=(WorkerDescription("inprocess", os.getpid(), "READY", "cpu", loaded.loaded_at),),
            pending_requests=loaded.pending,
            queue_capacity=self.config.job_queue_size - loaded.pending,
        )

    # --- ModelService: management -----------------------------------------------------

    async def register(self, registration: RegisterModel) -> ManagementAnswer:
        """Load the archive ``registration.url`` names, under the server's URL rules; the
        answer comes once it is loaded, whether or not ``synchronous`` is set."""
        check_registration(registration.url, registration.model_name, registration.runtime)
        self._check_one_worker("initial_workers", registration.initial_workers)
        archive = await asyncio.to_thread(
            open_model, registration.url, self.config, self.work_dir, registration.model_name, registration.handler
        )
        self._check_new(archive)
        loaded = self._add(
            await asyncio.to_thread(self._load, archive, registration.url, registration, at_startup=False)
        )
        return ManagementAnswer(
            200, f'Model "{loaded.model}" Version: {loaded.version} registered with 1 initial workers'
        )

    async def scale(self, scaling: ScaleWorkers) -> ManagementAnswer:
        loaded = self._find(scaling.model, scaling.version)
        self._check_one_worker("min_worker", scaling.min_worker)
        self._check_one_worker("max_worker", scaling.max_worker)
        done = f"Workers scaled to 1 for model: {loaded.model}"
        if scaling.version:  # the server's words: the version only when the path named it
            done += f", version: {loaded.version}"
        return ManagementAnswer(200, done)

    async def unregister(self, model: str, version: str | None = None) -> ManagementAnswer:
        loaded = self._find(model, version)
        versions = self.models[model]
        if self.defaults[model] == loaded.version and len(versions) > 1:
            raise InvalidModelVersion(
                f"Cannot remove default version {loaded.version} for model {model}; set another version as default first"
            )
        del versions[loaded.version]
        if not versions:
            del self.models[model], self.defaults[model]
        loaded.batches.stop()
        self._discard(loaded.archive)
        return ManagementAnswer(200, f'Model "{model}" unregistered')

    async def set_default(self, model: str, version: str) -> ManagementAnswer:
        loaded = self._find(model, version)
        self.defaults[model] = loaded.version
        return ManagementAnswer(200, f'Default version successfully updated for model "{model}" to "{version}"')

    # --- the registry -----------------------------------------------------------------

    def _find(
        self, model: str, version: str | None, *, missing_version: type[ModelNotFound] = ModelVersionNotFound
    ) -> LoadedVersion:
        """As the server answers: an unknown version is a ``ModelNotFound`` where a request
        names it, a ``ModelVersionNotFound`` in a management call."""
        versions = self.models.get(model)
        if not versions:
            raise ModelNotFound(f"Model not found: {model}")
        number = version or self.defaults[model]
        loaded = versions.get(number)
        if loaded is None:
            raise missing_version(f"Model version: {number} does not exist for model: {model}")
        return loaded

    def _check_new(self, archive: ModelArchive) -> None:
        if archive.version in self.models.get(archive.name, {}):
            self._discard(archive)
            raise Conflict(f"Model version {archive.version} for model {archive.name} already registered.")

    @staticmethod
    def _check_one_worker(parameter: str, count: int | None) -> None:
        if count not in (None, 1):
            raise NotSupportedInProcess(
                f"Parameter {parameter}={count}: an in-process model service runs one worker per model "
                "version (this process); serve the model with 'hookserve serve' to run more"
            )

    def _load(self, archive: ModelArchive, url: str, registration: RegisterModel, *, at_startup: bool) -> LoadedVersion:
        """Load ``archive`` with its own plugin manager and start its batch thread (slow: it
        runs the handler's initialize; the caller keeps its event loop free of it)."""
        try:
            validate_name("model version", archive.version)
            settings = model_settings(archive, self.config, 0, registration.settings())
            hooks = Hooks(
                create_plugin_manager(disabled=self.config.disabled_plugins, strict=self.config.strict_plugins)
            )
            runner = load_batch_runner(archive, hooks, settings.batch_size)
        except BaseException:
            self._discard(archive)
            raise
        batcher = hooks.batcher(settings=BatchSettings(archive.name, settings.batch_size, settings.max_batch_delay))
        batches = BatchThread(f"{archive.name}-{archive.version}", runner, batcher)
        return LoadedVersion(archive.name, archive.version, url, archive, settings, batches, time.time(), at_startup)

    def _add(self, loaded: LoadedVersion) -> LoadedVersion:
        """Put a loaded version in the registry (a model's first version is its default)."""
        try:
            self._check_new(loaded.archive)
        except Conflict:
            loaded.batches.stop()  # registered meanwhile by another call
            raise
        self.models.setdefault(loaded.model, {})[loaded.version] = loaded
        self.defaults.setdefault(loaded.model, loaded.version)
        return loaded

    def _discard(self, archive: ModelArchive) -> None:
        """Remove an archive's extracted copy; a folder served in place is never touched."""
        if Path(archive.model_dir).is_relative_to(self.work_dir):
            shutil.rmtree(
                self.work_dir / Path(archive.model_dir).relative_to(self.work_dir).parts[0], ignore_errors=True
            )

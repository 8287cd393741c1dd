"""Typed objects that hooks take and return."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import argparse

    from hookserve.config import ServerConfig
    from hookserve.model_service import ModelService


@dataclass(frozen=True)
class HandlerClass:
    """A handler class known by a short name (``--handler image_classifier``)."""

    name: str
    cls: type


@dataclass(frozen=True)
class DeviceRequest:
    """What a device policy needs to place one new model worker."""

    model_name: str
    worker_index: int
    gpu_count: int
    device_type: str | None = None  # model-config.yaml ``deviceType``: "cpu" or "gpu"
    device_ids: tuple[int, ...] = ()  # model-config.yaml ``deviceIds``
    number_of_gpu: int | None = None  # server cap (config.properties ``number_of_gpu``)


@dataclass
class Routes:
    """Where ``hookserve_http_routes`` implementations put their resources.

    ``models`` is the service that runs the models (resources depend on its protocol only,
    so the same routes serve worker processes or an in-process service); ``config`` the
    server config.
    """

    models: ModelService
    config: ServerConfig
    table: dict[str, list[tuple[str, Any, dict]]] = field(default_factory=dict)

    LISTENERS = ("inference", "management", "metrics")

    def add(self, listener: str, uri_template: str, resource: Any, **kwargs: Any) -> None:
        if listener not in self.LISTENERS:
            raise ValueError(f"unknown listener {listener!r}; expected one of {self.LISTENERS}")
        self.table.setdefault(listener, []).append((uri_template, resource, kwargs))


@dataclass(frozen=True)
class BatchSettings:
    model_name: str
    batch_size: int
    max_batch_delay: int


class Batcher(Protocol):
    """A worker's batching policy. The worker tells it what happens and asks how long to wait.

    ``wait_time`` returns 0 to run the queued requests now, or the seconds it is still worth
    waiting for more (the worker runs the batch as soon as it is full, whatever is returned).
    ``arriving`` is how many requests frontends have already sent to this worker that it
    has not read whole yet (a large body takes many socket reads); 0 where nothing tells.
    It is optional: a ``wait_time(queued, waited)`` without it is called as it always was.
    """

    batch_size: int

    def on_arrival(self) -> None: ...

    def on_replied(self, count: int) -> None: ...

    def wait_time(self, queued: int, waited: float, arriving: int = 0) -> float: ...


@dataclass(frozen=True)
class ModelEnvironment:
    """What a model version's workers add to their interpreter before importing its handler.

    ``hookserve_install_dependencies`` returns one: where it installed the archive's
    requirements (``sys_path`` folders, put in front of the server's own packages) and the
    environment variables the model needs (``environ``). The default adds nothing.
    """

    sys_path: tuple[str, ...] = ()
    environ: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CliCommand:
    """A ``hookserve NAME`` subcommand supplied by a plugin.

    ``add_arguments(parser)`` declares its flags on its ``argparse`` subparser; ``run(args)``
    runs it with the parsed arguments and returns the process's exit code.
    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class MetricRecord:
    """One measurement handed to ``hookserve_record_metrics``.

    ``name`` and ``unit`` are TorchServe's where it has the metric (``HandlerTime`` in
    ``ms`` from ``context.metrics``, ``PredictionTime`` per batch, the frontend's
    ``ts_inference_latency_microseconds`` per request); ``dimensions`` are extra labels
    (``{"status": "200"}``); ``metric_type`` is TorchServe's ``COUNTER``, ``GAUGE`` or
    ``HISTOGRAM``.
    """

    name: str
    value: float
    unit: str
    model_name: str
    model_version: str | None = None
    dimensions: dict[str, str] = field(default_factory=dict)
    metric_type: str = "GAUGE"

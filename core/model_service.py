"""The model-service protocol: everything the HTTP frontend asks of the models it serves.

The HTTP plugin (and any ``hookserve_http_routes`` implementation, through
``routes.models``) depends on :class:`ModelService` alone, never on how models run. Two
implementations exist:

* :class:`hookserve.frontend.model_client.ModelClient`, what ``hookserve serve`` runs: it
  forwards requests to model-worker processes over Unix sockets and management calls to the
  model manager's control channel;
* :class:`hookserve.inprocess.InProcessService`, which loads archives and runs their
  batches in the calling process (notebooks, tests, embedding).

Requests and replies are the wire's dataclasses (:class:`~hookserve.wire.framing.WorkRequest`
in, :class:`~hookserve.wire.framing.Reply` out), so a request reaches a handler the same way
whichever service runs it. Errors are raised as :class:`hookserve.errors.HookserveError`
subclasses, which the HTTP layer turns into TorchServe's error bodies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from hookserve.wire.control import RegisterModel, ScaleWorkers
from hookserve.wire.framing import Reply, WorkRequest
from hookserve.wire.routes import ModelSettings

# /ping's answers, in TorchServe's words
HEALTHY, PARTIAL, UNHEALTHY = "Healthy", "Partial Healthy", "Unhealthy"


class ModelRef(Protocol):
    """One resolved model version, as :meth:`ModelService.resolve_when_ready` returns it."""

    @property
    def model(self) -> str: ...

    @property
    def version(self) -> str: ...


@dataclass(frozen=True)
class ModelSummary:
    """One line of the model list: a model by name, with its default version's url."""

    name: str
    url: str


@dataclass(frozen=True)
class WorkerDescription:
    id: str
    pid: int
    state: str  # STARTING, READY, DEAD, STOPPING
    device: str  # "cpu", "cuda:0", ...
    started_at: float  # seconds since the epoch


@dataclass(frozen=True)
class ModelDescription:
    """A model version as the management API describes it (``GET /models/{name}``)."""

    model: str
    version: str
    url: str
    runtime: str
    settings: ModelSettings
    device_type: str  # "cpu" or "gpu"
    loaded_at_startup: bool
    workers: tuple[WorkerDescription, ...]
    pending_requests: int
    queue_capacity: int  # how many more requests the version's queue takes


@dataclass(frozen=True)
class ManagementAnswer:
    """What a management operation that succeeded answers: an HTTP status (200, or 202 when
    the change goes on after the answer) and TorchServe's ``status`` sentence."""

    status: int
    message: str


@runtime_checkable
class ModelService(Protocol):
    """The models an HTTP frontend serves: inference, health, description and management."""

    def health(self) -> tuple[str, list[str]]:
        """``/ping``'s status (:data:`HEALTHY`, :data:`PARTIAL` or :data:`UNHEALTHY`) and one
        line per shortfall, e.g. ``("Partial Healthy", ["mlp/1.0: 1 of 2 workers ready"])``."""
        ...

    async def resolve_when_ready(self, model: str, version: str | None = None) -> ModelRef:
        """The version a request names (``None``: the default one); raises ``ModelNotFound``.
        May wait while the service is starting and the model may still come."""
        ...

    async def submit(self, ref: ModelRef, request: WorkRequest) -> Reply:
        """Run ``request`` on the resolved version and return its reply (a handler's failure
        is a reply with an error status; a service that cannot run it raises)."""
        ...

    def list_models(self) -> list[ModelSummary]:
        """Every model, sorted by name."""
        ...

    def versions(self, model: str) -> list[str]:
        """The versions of ``model`` (empty when it is unknown)."""
        ...

    def describe(self, model: str, version: str | None = None) -> ModelDescription:
        """One version (``None``: the default one); raises ``ModelNotFound``."""
        ...

    async def register(self, message: RegisterModel) -> ManagementAnswer:
        """``POST /models``, as the control message the manager takes."""
        ...

    async def scale(self, message: ScaleWorkers) -> ManagementAnswer:
        """``PUT /models/{name}[/{version}]``, as the control message the manager takes."""
        ...

    async def unregister(self, model: str, version: str | None = None) -> ManagementAnswer: ...

    async def set_default(self, model: str, version: str) -> ManagementAnswer: ...

"""The typed objects of a model worker's pipeline hooks: :class:`Model`, :class:`Request`,
:class:`Batch` and :class:`EncodedOutput`.

They give plugins named, typed fields while a TorchServe handler still gets exactly what it
expects: ``batch.data`` is the list of one dict per request that ``handle(data, context)``
takes, and the ``Context`` is passed beside the batch unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from hookserve.errors import PredictionError

if TYPE_CHECKING:
    from hookserve.archive.reading import ModelArchive
    from hookserve.pluginmanager import Hooks

# What a batch asks for; the frontend sets it per request (``/predictions``,
# ``/explanations``, the management API's customized describe) and a batch has one kind.
BatchKind = Literal["predict", "explain", "describe"]
PREDICT: BatchKind = "predict"
EXPLAIN: BatchKind = "explain"
DESCRIBE: BatchKind = "describe"


# Request and EncodedOutput are built per request: slots, and not frozen, whose __init__
# is several times slower.


@dataclass(slots=True)
class Request:
    """One request of a batch: its id, its client headers and its decoded fields
    (``{"body": ...}`` or one entry per form field)."""

    id: str
    headers: dict[str, str]
    inputs: dict[str, Any]


@dataclass(frozen=True)
class Batch:
    """The requests a model worker runs together; all of one ``kind``.

    ``data`` is ``[request.inputs for request in requests]``: the list a TorchServe
    handler's ``handle(data, context)`` takes, built once per batch.
    """

    kind: BatchKind
    requests: list[Request]
    data: list[dict[str, Any]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", [request.inputs for request in self.requests])

    def __len__(self) -> int:
        return len(self.requests)

    def check_replies(self, replies: Any) -> list:
        """``replies`` if it is a list with one item per request; else a :class:`PredictionError`
        that says what came back instead."""
        if not isinstance(replies, list):
            raise PredictionError(
                f"handler returned {type(replies).__name__}, expected a list with one item "
                f"per request ({len(self.requests)} in this batch)"
            )
        if len(replies) != len(self.requests):
            raise PredictionError(f"handler returned {len(replies)} items for a batch of {len(self.requests)} requests")
        return replies


@dataclass(eq=False)
class Model:
    """The model a worker serves, as the pipeline hooks see it.

    ``handler`` is the handler instance, or the entry function of a function handler.
    ``hooks`` is the typed hook caller, so a whole-batch implementation can run the stage
    hooks of this model (as pytest's ``item.ihook``); handlers never see it.
    """

    name: str
    version: str
    archive: ModelArchive
    handler: Any
    device: str  # "cpu" or "cuda:N"
    hooks: Hooks = field(repr=False)

    @property
    def loaded(self) -> Any:
        """The loaded model object: the handler's ``model`` attribute (``None`` if it has none)."""
        return getattr(self.handler, "model", None)


@dataclass(slots=True)
class EncodedOutput:
    """One reply body and the content type it gets unless the handler set one."""

    body: bytes
    content_type: str

"""The ``context`` a handler receives, with TorchServe's attributes and methods.

``system_properties`` holds ``model_dir``, ``gpu_id`` (``None`` on CPU), ``batch_size``,
``server_name``, ``server_version`` and ``limit_max_image_pixels``. Per request ``idx`` of
the current batch: request id, request headers, and the response status, headers and
content type that the handler may set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hookserve import __version__
from hookserve.handler_metrics import HandlerMetrics


class RequestProcessor:
    """Request headers in, response status and headers out, for one request of a batch."""

    __slots__ = ("_request_header", "_status_code", "_reason_phrase", "_response_header")

    def __init__(self, request_header: dict[str, str]):
        self._request_header = request_header
        self._status_code = 200
        self._reason_phrase: str | None = None
        self._response_header: dict[str, str] = {}

    def get_request_property(self, key: str) -> str | None:
        value = self._request_header.get(key)
        return value if value is not None else self._request_header.get(key.lower())

    def get_request_properties(self) -> dict[str, str]:
        return self._request_header

    def report_status(self, code: int, reason_phrase: str | None = None) -> None:
        self._status_code = int(code)
        self._reason_phrase = reason_phrase

    def get_response_status_code(self) -> int:
        return self._status_code

    def get_response_status_phrase(self) -> str | None:
        return self._reason_phrase

    def add_response_property(self, key: str, value: str) -> None:
        self._response_header[key] = value

    def get_response_headers(self) -> dict[str, str]:
        return self._response_header

    def get_response_header(self, key: str) -> str | None:
        return self._response_header.get(key)


class Context:
    """What a handler knows about its model, its worker and the current batch."""

    def __init__(
        self,
        model_name: str,
        model_dir: str,
        manifest: dict,
        batch_size: int,
        gpu: int | None,
        mms_version: str = __version__,
        limit_max_image_pixels: bool = True,
        metrics: HandlerMetrics | None = None,
        model_yaml_config: dict | None = None,
    ):
        self.model_name = model_name
        self.manifest = manifest
        self._system_properties = {
            "model_dir": model_dir,
            "gpu_id": gpu,
            "batch_size": batch_size,
            "server_name": "hookserve",
            "server_version": mms_version,
            "limit_max_image_pixels": limit_max_image_pixels,
        }
        self.request_ids: dict[int, str] | None = None
        self._request_processor: list[RequestProcessor] | None = None
        self.metrics = metrics if metrics is not None else HandlerMetrics(model_name)
        self.model_yaml_config = model_yaml_config or {}
        # hookserve's own: set by the worker to a loader bound to this archive (see load_model)
        self.model_loader: Callable[[], Any] | None = None
        # hookserve's own: set by the batch runner, sends request idx's next part (see
        # send_intermediate_reply)
        self.intermediate_sender: Callable[[int, Any], None] | None = None

    def load_model(self) -> Any:
        """The model object of this worker's archive, built by the ``hookserve_load`` hook.

        The one way a handler reaches the loading plugins: the worker binds the loader to
        this archive and it loads at most once, so ``BaseHandler.initialize`` and a subclass
        calling ``super().initialize`` share one model, and a handler that never asks (a
        function handler, a class that sets ``self.model`` itself) causes no load.
        """
        if self.model_loader is None:
            raise RuntimeError(
                f"model {self.model_name!r}: this context has no model loader; hookserve's worker "
                "sets one (hookserve.worker.bootstrap.load_model) so BaseHandler can load through hookserve_load"
            )
        return self.model_loader()

    def send_intermediate_reply(self, idx: int, item: Any) -> None:
        """Send ``item`` now to the client of request ``idx`` of the current batch, as the
        next part of a streamed reply (TorchServe's ``send_intermediate_predict_response``).

        The item is encoded like a reply ``handle`` returns, with the status, headers and
        content type the handler has set for that request so far; the first part starts a
        chunked HTTP response with them, each part is one chunk, and what ``handle`` returns
        for the request is the last. Parts of a client that has gone away are dropped.
        """
        if self.intermediate_sender is None:
            raise RuntimeError(
                f"model {self.model_name!r}: no batch is running on this context, so there is no "
                "request to stream to; call send_intermediate_reply from handle()"
            )
        self.intermediate_sender(idx, item)

    @property
    def system_properties(self) -> dict:
        return self._system_properties

    @property
    def request_processor(self) -> list[RequestProcessor] | None:
        return self._request_processor

    @request_processor.setter
    def request_processor(self, value: list[RequestProcessor] | None) -> None:
        self._request_processor = value

    def start_batch(self, request_ids: list[str], headers: list[dict[str, str]]) -> None:
        """Point the context at a new batch (called by the worker before ``handle``)."""
        self.request_ids = dict(enumerate(request_ids))
        self._request_processor = [RequestProcessor(h) for h in headers]

    def get_request_id(self, idx: int = 0) -> str | None:
        return self.request_ids.get(idx) if self.request_ids else None

    def get_request_header(self, idx: int, key: str) -> str | None:
        return self._request_processor[idx].get_request_property(key)

    def get_all_request_header(self, idx: int) -> dict[str, str]:
        return self._request_processor[idx].get_request_properties()

    def set_response_content_type(self, idx: int, value: str) -> None:
        self.set_response_header(idx, "content-type", value)

    def get_response_content_type(self, idx: int) -> str | None:
        return self.get_response_headers(idx).get("content-type")

    def get_response_status(self, idx: int) -> tuple[int, str | None]:
        processor = self._request_processor[idx]
        return processor.get_response_status_code(), processor.get_response_status_phrase()

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        if self._request_processor is not None and self._request_processor[idx] is not None:
            self._request_processor[idx].report_status(code, reason_phrase=phrase)

    def set_all_response_status(self, code: int = 200, phrase: str = "") -> None:
        for idx in range(len(self._request_processor or ())):
            self.set_response_status(code, phrase, idx)

    def get_response_headers(self, idx: int) -> dict[str, str]:
        return self._request_processor[idx].get_response_headers()

    def set_response_header(self, idx: int, key: str, value: str) -> None:
        self._request_processor[idx].add_response_property(key, value)

    def __repr__(self) -> str:
        return f"Context(model_name={self.model_name!r}, system_properties={self._system_properties!r})"

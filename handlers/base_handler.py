"""``BaseHandler``: TorchServe 0.12's base handler.

The API and behaviour are TorchServe's (``initialize``, ``preprocess``, ``inference``,
``postprocess``, ``handle``, ``explain_handle``, ``describe_handle`` and the attributes),
so subclasses written for TorchServe run unchanged; ``handle`` runs the stages as plain
method calls, as TorchServe's does, so a subclass may call ``super().handle(data, context)``.

A model worker does not call ``handle`` of a subclass that keeps it: it runs the stage hooks
(``hookserve_preprocess`` / ``_infer`` / ``_postprocess`` / ``_explain`` / ``_describe``),
where the methods the subclass overrides are ``tryfirst`` implementations
(``hookserve.plugins.handler_plugin``), installed plugins come next and this class's own
methods are the ``trylast`` defaults (``hookserve.plugins.stages``), so wrappers see every
stage. The model comes from ``context.load_model()``, which the worker binds to
``hookserve_load`` for this archive; this class never reaches the plugin manager.
"""

from __future__ import annotations

import os
import time
from typing import Any

import torch

from hookserve.handlers.label_mapping import load_label_mapping
from hookserve.worker.model_files import load_eager, load_torchscript, worker_device


class BaseHandler:
    """Loads the archive's model through ``context.load_model()``; preprocess -> inference -> postprocess."""

    def __init__(self) -> None:
        self.model: Any = None
        self.mapping: dict[str, str] | None = None
        self.device: torch.device | None = None
        self.initialized = False
        self.context: Any = None
        self.manifest: dict | None = None
        self.model_pt_path: str | None = None
        self.map_location: str | None = None
        self.explain = False
        self.target = 0
        self.model_yaml_config: dict = {}

    def initialize(self, context: Any) -> None:
        """Pick the device, load the model (``context.load_model()``) and the label mapping."""
        self.model_yaml_config = context.model_yaml_config
        self.device = worker_device(context)
        self.map_location = self.device.type
        self.manifest = context.manifest
        model_dir = context.system_properties["model_dir"]
        serialized_file = self.manifest["model"].get("serializedFile")
        self.model_pt_path = os.path.join(model_dir, serialized_file) if serialized_file else None

        self.model = context.load_model()
        if isinstance(self.model, torch.nn.Module):
            try:
                self.model.eval()
            except NotImplementedError:
                pass  # torch.export modules fix their train/eval mode at export time and refuse eval()
        self.mapping = load_label_mapping(os.path.join(model_dir, "index_to_name.json"))
        self.initialized = True

    # TorchServe's loading helpers, which handlers with their own initialize call.

    def _load_torchscript_model(self, model_pt_path: str) -> Any:
        return load_torchscript(model_pt_path, self.device)

    def _load_pickled_model(self, model_dir: str, model_file: str, model_pt_path: str | None) -> Any:
        """The one nn.Module class in ``model_file``; the state dict is loaded ``weights_only``."""
        return load_eager(model_dir, model_file, model_pt_path, self.device)

    def preprocess(self, data: list) -> Any:
        """The batch of request inputs as one tensor on the handler's device."""
        return torch.as_tensor(data, device=self.device)

    def inference(self, data: Any, *args: Any, **kwargs: Any) -> Any:
        """The model's output for the preprocessed batch."""
        with torch.inference_mode():
            return self.model(data.to(self.device), *args, **kwargs)

    def postprocess(self, data: Any) -> list:
        """One reply per request: the output tensor as nested lists."""
        return data.tolist()

    def handle(self, data: list, context: Any) -> list:
        """Run one batch as TorchServe does: describe, explain or preprocess -> inference ->
        postprocess, chosen by the ``describe`` / ``explain`` request headers."""
        start = time.time()
        self.context = context
        if self._is_describe():
            output = [self.describe_handle()]
        else:
            preprocessed = self.preprocess(data)
            if self._is_explain():
                output = self.explain_handle(preprocessed, data)
            else:
                output = self.postprocess(self.inference(preprocessed))
        context.metrics.add_time("HandlerTime", round((time.time() - start) * 1000, 2), None, "ms")
        return output

    def explain_handle(self, data_preprocess: Any, raw_data: list) -> Any:
        """Explanations from ``get_insights``, for the target named in the first request (default 0)."""
        inputs = None
        target = 0
        row = raw_data[0]
        if isinstance(row, dict):
            inputs = row.get("data") or row.get("body")
            target = row.get("target") or 0
        return self.get_insights(data_preprocess, inputs, target)

    def get_insights(self, tensor_data: Any, raw_data: Any, target: Any) -> Any:
        raise NotImplementedError(
            f"{type(self).__name__} cannot explain: a handler that serves /explanations must "
            "implement get_insights(tensor_data, raw_data, target)"
        )

    def describe_handle(self) -> Any:
        """What a ``describe: True`` request gets; ``None`` unless a subclass says more."""
        return None

    def get_device(self) -> torch.device | None:
        return self.device

    def _is_explain(self) -> bool:
        if self.context and self.context.get_request_header(0, "explain") == "True":
            self.explain = True
            return True
        return False

    def _is_describe(self) -> bool:
        return bool(self.context and self.context.get_request_header(0, "describe") == "True")

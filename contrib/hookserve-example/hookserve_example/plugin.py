"""The plugin module named by the ``hookserve`` entry point."""

from __future__ import annotations

import time

from hookserve.hookspecs import hookimpl
from hookserve.plugin_types import HandlerClass

INFER_TIME_HEADER = "x-example-infer-ms"


@hookimpl(wrapper=True)
def hookserve_infer(model, data, context):
    started = time.perf_counter()
    result = yield
    elapsed_ms = f"{(time.perf_counter() - started) * 1000:.3f}"
    for idx in range(len(context.request_ids or {})):
        context.set_response_header(idx, INFER_TIME_HEADER, elapsed_ms)
    return result


class EchoHandler:
    """Answers every request with what it received and the model's name."""

    def initialize(self, context):
        self.model_name = context.model_name

    def handle(self, data, context):
        return [{"model": self.model_name, "echo": _jsonable(row)} for row in data]


def _jsonable(row: dict) -> dict:
    return {k: v.decode("latin-1") if isinstance(v, bytes) else v for k, v in row.items()}


@hookimpl
def hookserve_handler_classes():
    return [HandlerClass(name="example_echo", cls=EchoHandler)]

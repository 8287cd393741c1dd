"""A frontend's measurements for ``hookserve_record_metrics``: each request's latency.

Only used when a plugin implements the hook. Records are gathered and handed over once per
turn of the event loop, so many requests finishing together cost the plugins one call.
"""

from __future__ import annotations

import asyncio
import time

from hookserve.errors import HookserveError
from hookserve.frontend.model_client import ModelClient, VersionRoute
from hookserve.plugin_types import MetricRecord
from hookserve.pluginmanager import Hooks
from hookserve.wire.framing import Reply, WorkRequest


class MeteredModelClient(ModelClient):
    """A ``ModelClient`` that reports ``ts_inference_latency_microseconds`` (TorchServe's
    name) for every request it forwards, from its arrival to its reply, with its status."""

    def __init__(self, hooks: Hooks, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.hooks = hooks
        self.finished: list[MetricRecord] = []

    async def submit(self, route: VersionRoute, request: WorkRequest) -> Reply:
        started = time.perf_counter()
        status = "500"
        try:
            reply = await super().submit(route, request)
            status = str(reply.status)
            return reply
        except HookserveError as exc:
            status = str(exc.code)
            raise
        except asyncio.CancelledError:
            status = "cancelled"  # the client went away
            raise
        finally:
            elapsed_us = (time.perf_counter() - started) * 1e6
            if not self.finished:
                asyncio.get_running_loop().call_soon(self._hand_over)
            self.finished.append(
                MetricRecord(
                    "ts_inference_latency_microseconds",
                    round(elapsed_us, 1),
                    "us",
                    route.model,
                    route.version,
                    {"status": status},
                )
            )

    def _hand_over(self) -> None:
        records, self.finished = self.finished, []
        self.hooks.record_metrics(metrics=records)


def model_client(hooks: Hooks, run_dir: str, job_queue_size: int, busy_poll_s: float) -> ModelClient:
    """The frontend's client to the model workers, measured only when a plugin takes metrics."""
    if hooks.records_metrics():
        return MeteredModelClient(hooks, run_dir, job_queue_size, busy_poll_s)
    return ModelClient(run_dir, job_queue_size, busy_poll_s)

"""``MicroBatching``: TorchServe 0.12's pipeline of micro-batches inside one batch.

A handler sets ``self.handle = MicroBatching(self)``; each batch is then cut into
micro-batches of ``micro_batch_size`` requests that flow through ``preprocess``,
``inference`` and ``postprocess`` on threads of their own (``parallelism``: threads per
stage, default 1 each), so one micro-batch's preprocessing overlaps another's inference. The
replies come back in request order. TorchServe's handlers read the settings from the
``micro_batching`` section of ``model-config.yaml`` and assign them in ``initialize``.

Unlike TorchServe's, a stage that raises fails the batch with that exception (TorchServe's
thread dies and the batch waits forever), and the threads are daemons, so a worker that
exits is not held up by them.
"""

from __future__ import annotations

import queue
import threading
import time
from copy import copy
from dataclasses import dataclass
from typing import Any

HANDLER_METHODS = ["preprocess", "inference", "postprocess"]


@dataclass
class WorkerThread:
    """One stage thread and the event that stops it."""

    event: threading.Event
    thread: threading.Thread


@dataclass
class _Failed:
    """A micro-batch whose stage raised: passed on untouched to the end of the pipeline."""

    error: BaseException


def execute_call(
    in_queue: queue.Queue,
    out_queue: queue.Queue,
    handle: Any,
    thread_local_data: threading.local,
    event: threading.Event,
) -> None:
    """A stage thread: take ``(index, data)``, run the stage on it, pass the result on."""
    while not event.is_set():
        try:
            idx, in_data = in_queue.get(timeout=0.5)
        except queue.Empty:
            continue
        thread_local_data.micro_batch_idx = idx
        if isinstance(in_data, _Failed):
            out_queue.put((idx, in_data))
            continue
        try:
            out_queue.put((idx, handle(in_data)))
        except BaseException as exc:  # noqa: BLE001 - handed to the batch's caller, who re-raises it
            out_queue.put((idx, _Failed(exc)))


class MicroBatching:
    """Callable as a handler's ``handle(data, context)``; see the module docstring."""

    def __init__(self, parent_handler: Any, micro_batch_size: int = 1, parallelism: dict | None = None):
        self.handler = parent_handler
        self.micro_batch_size = micro_batch_size
        self._parallelism = dict(parallelism or {})
        self.thread_groups: dict[str, list[WorkerThread]] = {method: [] for method in HANDLER_METHODS}
        self.thread_local_data = threading.local()
        # each stage's "out" queue is the next stage's "in" queue
        chain = [queue.Queue() for _ in range(len(HANDLER_METHODS) + 1)]
        self.queues = {}
        for i, method in enumerate(HANDLER_METHODS):
            self.queues[f"{method}_in"], self.queues[f"{method}_out"] = chain[i], chain[i + 1]
        self._lock = threading.Lock()  # one batch in the pipeline at a time
        self._update_threads()

    def __del__(self) -> None:
        self.shutdown()

    @property
    def parallelism(self) -> dict:
        return copy(self._parallelism)

    @parallelism.setter
    def parallelism(self, parallelism: dict) -> None:
        """Threads per stage (``{"preprocess": 2, ...}``); threads start or stop to match."""
        unknown = set(parallelism) - set(HANDLER_METHODS)
        if unknown:
            raise ValueError(f"micro_batching parallelism: unknown stages {sorted(unknown)}; use {HANDLER_METHODS}")
        self._parallelism.update(parallelism)
        self._update_threads()

    def shutdown(self) -> None:
        """Stop every stage thread."""
        for group in self.thread_groups.values():
            while group:
                self._stop(group.pop())

    def handle(self, data: list) -> list:
        """``data`` cut into micro-batches, run through the stage threads; the replies in order."""
        with self._lock:
            count = 0
            for idx, start in enumerate(range(0, len(data), self.micro_batch_size)):
                self.queues[f"{HANDLER_METHODS[0]}_in"].put_nowait((idx, data[start : start + self.micro_batch_size]))
                count = idx + 1
            done = sorted((self.queues[f"{HANDLER_METHODS[-1]}_out"].get() for _ in range(count)), key=lambda r: r[0])
        for _, output in done:
            if isinstance(output, _Failed):
                raise output.error
        return [item for _, output in done for item in output]

    def get_micro_batch_idx(self) -> int | None:
        """The index of the micro-batch the calling stage thread is working on."""
        return getattr(self.thread_local_data, "micro_batch_idx", None)

    def __call__(self, data: list, context: Any) -> list:
        """The handler's ``handle``: describe and explain as ``BaseHandler.handle`` does,
        predictions through the micro-batch pipeline; timed as ``HandlerTime``."""
        started = time.time()
        handler = self.handler
        handler.context = context
        if handler._is_describe():
            output = [handler.describe_handle()]
        elif handler._is_explain():
            output = handler.explain_handle(handler.preprocess(data), data)
        else:
            output = self.handle(data)
        context.metrics.add_time("HandlerTime", round((time.time() - started) * 1000, 2), None, "ms")
        return output

    def _update_threads(self) -> None:
        for method in HANDLER_METHODS:
            wanted = self._parallelism.get(method, 1)
            if wanted < 0:
                raise ValueError(f"micro_batching parallelism of {method} must be 0 or more, got {wanted}")
            group = self.thread_groups[method]
            while len(group) < wanted:
                event = threading.Event()
                thread = threading.Thread(
                    target=execute_call,
                    args=(
                        self.queues[f"{method}_in"],
                        self.queues[f"{method}_out"],
                        getattr(self.handler, method),
                        self.thread_local_data,
                        event,
                    ),
                    name=f"micro-batching-{method}-{len(group)}",
                    daemon=True,
                )
                thread.start()
                group.append(WorkerThread(event, thread))
            while len(group) > wanted:
                self._stop(group.pop())

    @staticmethod
    def _stop(worker: WorkerThread) -> None:
        worker.event.set()
        worker.thread.join()

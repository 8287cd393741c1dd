"""``ts.handler_utils.micro_batching.MicroBatching`` on a real server: TorchServe 0.12's
micro-batching example handler (``self.handle = MicroBatching(self)``, parallelism and
micro-batch size from ``model-config.yaml``), with a ``postprocess`` that says which stage
thread and micro-batch answered; a bad image among good ones fails alone."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from test_bad_input_in_a_batch import png
from test_default_handlers import MeanColor

from helpers import Server, archive, post, serving

# TorchServe's examples/micro_batching/mnist_handler.py, then a postprocess of the test's.
HANDLER = """
import logging
import threading

from ts.handler_utils.micro_batching import MicroBatching
from ts.torch_handler.image_classifier import ImageClassifier

logger = logging.getLogger(__name__)


class MicroBatchingHandler(ImageClassifier):
    def __init__(self):
        mb_handle = MicroBatching(self)
        self.handle = mb_handle

    def initialize(self, ctx):
        super().initialize(ctx)

        parallelism = ctx.model_yaml_config.get("micro_batching", {}).get(
            "parallelism", None
        )
        if parallelism:
            logger.info(
                f"Setting micro batching parallelism  from model_config_yaml: {parallelism}"
            )
            self.handle.parallelism = parallelism

        micro_batch_size = ctx.model_yaml_config.get("micro_batching", {}).get(
            "micro_batch_size", 1
        )
        logger.info(f"Setting micro batching size: {micro_batch_size}")
        self.handle.micro_batch_size = micro_batch_size

    def postprocess(self, data):
        return [
            {"scores": scores, "thread": threading.current_thread().name, "micro_batch": self.handle.get_micro_batch_idx()}
            for scores in super().postprocess(data)
        ]
"""
CONFIG = """
minWorkers: 1
maxWorkers: 1
batchSize: 8
maxBatchDelay: 3000
micro_batching:
  micro_batch_size: 2
  parallelism:
    preprocess: 2
    inference: 1
    postprocess: 2
"""
COLORS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}


def test_micro_batching_handler_serves_through_stage_threads(tmp_path: Path) -> None:
    torch.jit.script(MeanColor().eval()).save(str(tmp_path / "colors.pt"))
    archive(
        tmp_path,
        "mb",
        "handler.py",
        files={"handler.py": HANDLER, "index_to_name.json": '{"0": "red", "1": "green", "2": "blue"}', "model-config.yaml": CONFIG},
        flags=["--serialized-file", str(tmp_path / "colors.pt"), "--extra-files", "index_to_name.json", "--config-file", "model-config.yaml"],
    )  # fmt: skip
    names = ["red", "green", "blue", "green", "red", "blue", "blue", "red"]
    server = Server(["--model-store", str(tmp_path / "store"), "--models", "mb=mb.mar"], tmp_path)
    with serving(server), ThreadPoolExecutor(8) as pool:

        def predict(body: bytes):
            return post(server, "/predictions/mb", data=body)

        # Rounds, so hookserve's batcher (which waits only for requests that replies let
        # come) forms batches of several micro-batches.
        for _ in range(3):
            replies = list(pool.map(predict, [png(COLORS[name]) for name in names]))
            assert [reply.status_code for reply in replies] == [200] * 8, [reply.text for reply in replies]
            for name, reply in zip(names, replies, strict=True):
                answer = reply.json()
                assert max(answer["scores"], key=answer["scores"].get) == name
                assert answer["thread"].startswith("micro-batching-postprocess-")
        assert max(reply.json()["micro_batch"] for reply in replies) >= 1

        bad = list(pool.map(predict, [png(COLORS["red"]), b"no image", png(COLORS["blue"])]))
        assert [reply.status_code for reply in bad] == [200, 400, 200], [reply.text for reply in bad]
        assert "not an image" in bad[1].json()["message"]

"""One bad request in a batch gets its own 4xx, and the good requests batched with it get
their replies: a real server (batchSize 4, a long maxBatchDelay so the requests share one
batch) serving the default ``image_classifier`` a PNG, bytes that are no image, and a
truncated PNG at once."""

from __future__ import annotations

import io
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from PIL import Image
from test_default_handlers import MeanColor

from helpers import Server, archive, post, serving


def png(color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(out, "PNG")
    return out.getvalue()


def test_a_bad_image_fails_alone_in_its_batch(tmp_path: Path) -> None:
    torch.jit.script(MeanColor().eval()).save(str(tmp_path / "colors.pt"))
    archive(
        tmp_path,
        "colors",
        "image_classifier",
        files={"index_to_name.json": '{"0": "red", "1": "green", "2": "blue"}', "model-config.yaml": "batchSize: 4\nmaxBatchDelay: 3000\nminWorkers: 1\nmaxWorkers: 1\n"},
        flags=["--serialized-file", str(tmp_path / "colors.pt"), "--extra-files", "index_to_name.json", "--config-file", "model-config.yaml"],
    )  # fmt: skip
    bodies = [png((255, 0, 0)), b"not an image at all", png((0, 0, 255))[:60], png((0, 255, 0))]
    server = Server(["--model-store", str(tmp_path / "store"), "--models", "colors=colors.mar"], tmp_path)
    with serving(server), ThreadPoolExecutor(len(bodies)) as pool:
        # A round of good requests first: hookserve's batcher waits for more requests only
        # after replies went out (a lone first request runs at once).
        warm = list(pool.map(lambda body: post(server, "/predictions/colors", data=body), [png((9, 9, 9))] * 4))
        assert [reply.status_code for reply in warm] == [200] * 4
        replies = list(pool.map(lambda body: post(server, "/predictions/colors", data=body), bodies))
        statuses = [reply.status_code for reply in replies]
        assert statuses == [200, 400, 400, 200], [reply.text for reply in replies]
        assert max(replies[0].json(), key=replies[0].json().get) == "red"
        assert max(replies[3].json(), key=replies[3].json().get) == "green"
        assert "not an image" in replies[1].json()["message"]
        assert "truncated or corrupt" in replies[2].json()["message"]
        # Good and bad shared a batch: the worker says it ran that batch's requests one by one.
        assert re.search(r"batch (\S+,)+\S+ failed with 400 .* running its requests one by one", server.log())

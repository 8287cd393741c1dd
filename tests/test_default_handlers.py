"""The default handlers (``image_classifier``, ``text_classifier``) resolved by name and run
as a worker runs them, on real models and a real PNG."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
import torch
from PIL import Image

from helpers import folder_archive
from hookserve.context import Context
from hookserve.handlers.image_transforms import image_tensor
from hookserve.pipeline_types import Model
from hookserve.pluginmanager import Hooks, create_plugin_manager
from hookserve.worker.bootstrap import load_model

pytestmark = pytest.mark.usefixtures("forget_archive_modules")

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
NORMALIZED_RED = ((1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (0 - 0.406) / 0.225)
TEXT_MODEL_SOURCE = """
import torch



class BagOfWords(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = torch.nn.Embedding(3, 2)

    def forward(self, tokens):
        return self.embedding(tokens).sum(dim=1)
"""


class MeanColor(torch.nn.Module):
    """Logits = each channel's mean: the class of a plain image is its dominant colour."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        self.pool = torch.nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(x)).flatten(1)


def start_model(model_dir: Path, files: dict[str, str], **model: str) -> tuple[Model, Context]:
    """Write the archive folder and load its handler exactly as a worker does."""
    archive = folder_archive(model_dir, files, **model)
    served, context = load_model(archive, Hooks(create_plugin_manager(third_party=False)), batch_size=2)
    context.start_batch(["id1", "id2"], [{"content-type": "application/octet-stream"}] * 2)
    return served, context


def png(size: tuple[int, int], color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


# --- image_classifier ------------------------------------------------------------------


def test_image_classifier_top_k_labels(tmp_path: Path) -> None:
    torch.jit.script(MeanColor()).save(str(tmp_path / "model.pt"))
    files = {
        "index_to_name.json": '{"0": "red", "1": "green", "2": "blue"}',
        "model-config.yaml": "handler:\n  topk: 2\n",
    }
    model, context = start_model(
        tmp_path, files, handler="image_classifier", serializedFile="model.pt", configFile="model-config.yaml"
    )
    image = png((320, 280), RED)

    replies = model.handler.handle([{"body": image}, {"data": base64.b64encode(image).decode()}], context)

    probs = torch.softmax(torch.tensor(NORMALIZED_RED), dim=0).tolist()
    expected = {"red": probs[0], "blue": probs[2]}  # topk 2: green is the least likely
    assert len(replies) == 2
    for reply in replies:
        assert list(reply) == ["red", "blue"]
        assert reply == pytest.approx(expected, abs=1e-5)


def test_image_classifier_without_mapping_caps_topk_at_class_count(tmp_path: Path) -> None:
    torch.jit.script(MeanColor()).save(str(tmp_path / "model.pt"))
    model, context = start_model(tmp_path, {}, handler="image_classifier", serializedFile="model.pt")
    context.start_batch(["id1"], [{}])

    (reply,) = model.handler.handle([{"body": png((224, 224), GREEN)}], context)
    assert list(reply) == ["1", "2", "0"]  # default topk 5 > 3 classes


def test_image_tensor_resizes_crops_and_normalizes() -> None:
    # Left half red, right half blue; shorter side 512 -> 256, then the center 224 columns.
    image = Image.new("RGB", (1024, 512), RED)
    image.paste(Image.new("RGB", (512, 512), BLUE), (512, 0))
    tensor = image_tensor(image)

    assert tensor.shape == (3, 224, 224)
    red = torch.tensor(NORMALIZED_RED).view(3, 1, 1)
    blue = torch.tensor(((0 - 0.485) / 0.229, (0 - 0.456) / 0.224, (1 - 0.406) / 0.225)).view(3, 1, 1)
    # Columns next to the colour edge are blended by the resize filter.
    assert torch.allclose(tensor[:, :, :108], red.expand(3, 224, 108), atol=1e-4)
    assert torch.allclose(tensor[:, :, 116:], blue.expand(3, 224, 108), atol=1e-4)
    assert image_tensor(Image.new("L", (300, 600))).shape == (3, 224, 224)


# --- text_classifier -------------------------------------------------------------------


def test_text_classifier(tmp_path: Path) -> None:
    torch.save({"embedding.weight": torch.tensor([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])}, tmp_path / "weights.pt")
    files = {
        "model.py": TEXT_MODEL_SOURCE,
        "vocab.json": '{"good": 1, "bad": 2}',
        "index_to_name.json": '{"0": "positive", "1": "negative"}',
    }
    model, context = start_model(
        tmp_path, files, handler="text_classifier", modelFile="model.py", serializedFile="weights.pt"
    )

    replies = model.handler.handle([{"body": b"Good movie"}, {"data": "bad BAD plot, really bad"}], context)

    # "plot," and "really" are unknown (id 0), as is the padding of the shorter text.
    positive = torch.softmax(torch.tensor([5.0, 0.0]), dim=0).tolist()
    negative = torch.softmax(torch.tensor([0.0, 15.0]), dim=0).tolist()
    assert replies[0] == pytest.approx({"positive": positive[0], "negative": positive[1]})
    assert replies[1] == pytest.approx({"positive": negative[0], "negative": negative[1]})


def test_text_classifier_needs_vocab(tmp_path: Path) -> None:
    torch.save({"embedding.weight": torch.zeros(3, 2)}, tmp_path / "weights.pt")
    with pytest.raises(RuntimeError, match="vocab.json .* is missing from the archive"):
        start_model(
            tmp_path,
            {"model.py": TEXT_MODEL_SOURCE},
            handler="text_classifier",
            modelFile="model.py",
            serializedFile="weights.pt",
        )

"""``ImageClassifier``: TorchServe's default image classification handler, without torchvision.

Each request's image (``data`` or ``body``: bytes, or base64 text) is resized so its shorter
side is 256, center-cropped to 224x224 and normalized with the ImageNet statistics, exactly
as ``transforms.Resize(256), CenterCrop(224), ToTensor(), Normalize(...)``. The reply is the
``topk`` most probable classes (``handler: {topk: N}`` in model-config.yaml, default 5) as
``{label: probability}``.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import torch
from PIL import Image

from hookserve.handlers.base_handler import BaseHandler
from hookserve.handlers.label_mapping import map_class_to_label

RESIZE = 256
CROP = 224
# Plain tuples, not tensors: workers are forked from a parent that must have run no torch op.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def image_tensor(image: Image.Image) -> torch.Tensor:
    """A normalized 3x224x224 float tensor of ``image``."""
    image = image.convert("RGB")
    width, height = image.size
    scale = RESIZE / min(width, height)
    # torchvision truncates the longer side (int(), not round()).
    width, height = (RESIZE, int(height * scale)) if width <= height else (int(width * scale), RESIZE)
    image = image.resize((width, height), Image.Resampling.BILINEAR)
    left, top = int(round((width - CROP) / 2.0)), int(round((height - CROP) / 2.0))
    image = image.crop((left, top, left + CROP, top + CROP))
    pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    tensor = pixels.view(CROP, CROP, 3).permute(2, 0, 1).float().div(255)
    return (tensor - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)


class ImageClassifier(BaseHandler):
    """Classifies images; replies with the ``topk`` classes and their probabilities."""

    topk = 5

    def initialize(self, context: Any) -> None:
        super().initialize(context)
        topk = (self.model_yaml_config.get("handler") or {}).get("topk")
        if topk is not None:
            self.topk = int(topk)
        if not context.system_properties.get("limit_max_image_pixels"):
            Image.MAX_IMAGE_PIXELS = None

    def set_max_result_classes(self, topk: int) -> None:
        self.topk = topk

    def get_max_result_classes(self) -> int:
        return self.topk

    def preprocess(self, data: list[dict]) -> torch.Tensor:
        images = []
        for row in data:
            image = row.get("data") or row.get("body")
            if isinstance(image, str):
                image = base64.b64decode(image)
            if isinstance(image, (bytes, bytearray)):
                images.append(image_tensor(Image.open(io.BytesIO(image))))
            else:  # already pixels, as nested lists
                images.append(torch.as_tensor(image, dtype=torch.float32))
        return torch.stack(images).to(self.device)

    def postprocess(self, data: torch.Tensor) -> list[dict[str, float]]:
        probabilities = torch.softmax(data, dim=1)
        # A model with fewer classes than topk replies with all of them.
        probs, classes = torch.topk(probabilities, min(self.topk, probabilities.shape[1]), dim=1)
        return map_class_to_label(probs.tolist(), self.mapping, classes.tolist())

"""``ImageSegmenter``: TorchServe's default semantic segmentation handler, without torchvision.

Images are processed as the image classifier's (224x224, ImageNet-normalized). The model
returns a dict whose ``out`` is ``[N, classes, H, W]`` logits, as torchvision's segmentation
models do; each reply is ``H x W`` pairs ``[class, probability]`` of the most likely class
of each pixel (TorchServe's shape: the full per-class map would be tens of megabytes).
"""

from __future__ import annotations

from typing import Any

import torch

from hookserve.handlers.image_transforms import image_tensor
from hookserve.handlers.vision_handler import VisionHandler


class ImageSegmenter(VisionHandler):
    """Segments images; replies with each pixel's class and its probability."""

    image_processing = staticmethod(image_tensor)

    def postprocess(self, data: dict[str, Any]) -> list:
        probabilities = torch.softmax(data["out"], dim=1)
        best = torch.max(probabilities, dim=1)
        return torch.stack([best.indices.to(best.values.dtype), best.values], dim=3).tolist()

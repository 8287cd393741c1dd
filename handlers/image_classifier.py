"""``ImageClassifier``: TorchServe's default image classification handler, without torchvision.

A :class:`~hookserve.handlers.vision_handler.VisionHandler`: each image goes through
``image_processing``, by default :func:`~hookserve.handlers.image_transforms.image_tensor`
(``Resize(256), CenterCrop(224), ToTensor(), Normalize(ImageNet)``); a subclass sets its own,
as TorchServe's MNIST example does. The reply is the ``topk`` most probable classes
(``handler: {topk: N}`` in model-config.yaml, default 5) as ``{label: probability}``.
"""

from __future__ import annotations

from typing import Any

import torch

from hookserve.handlers.image_transforms import image_tensor
from hookserve.handlers.label_mapping import map_class_to_label
from hookserve.handlers.vision_handler import VisionHandler


class ImageClassifier(VisionHandler):
    """Classifies images; replies with the ``topk`` classes and their probabilities."""

    image_processing = staticmethod(image_tensor)
    topk = 5

    def initialize(self, context: Any) -> None:
        super().initialize(context)
        topk = (self.model_yaml_config.get("handler") or {}).get("topk")
        if topk is not None:
            self.topk = int(topk)

    def set_max_result_classes(self, topk: int) -> None:
        self.topk = topk

    def get_max_result_classes(self) -> int:
        return self.topk

    def postprocess(self, data: torch.Tensor) -> list[dict[str, float]]:
        probabilities = torch.softmax(data, dim=1)
        # A model with fewer classes than topk replies with all of them.
        probs, classes = torch.topk(probabilities, min(self.topk, probabilities.shape[1]), dim=1)
        return map_class_to_label(probs.tolist(), self.mapping, classes.tolist())

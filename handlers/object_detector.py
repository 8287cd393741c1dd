"""``ObjectDetector``: TorchServe's default object detection handler, without torchvision.

Images go to the model as ``ToTensor()`` makes them (unresized, unnormalized), one batch
tensor. The model returns one dict per image with ``boxes`` ``[K, 4]``, ``labels`` ``[K]`` and
``scores`` ``[K]``, as torchvision's detection models do; each reply lists the detections
scoring at least ``threshold`` as ``{label name: [x1, y1, x2, y2], "score": score}``, the
name coming from ``index_to_name.json`` (the class id as text without one).
"""

from __future__ import annotations

import torch

from hookserve.handlers.vision_handler import VisionHandler


class ObjectDetector(VisionHandler):
    """Detects objects; replies with each confident detection's label, box and score."""

    threshold = 0.5

    def postprocess(self, data: list[dict[str, torch.Tensor]]) -> list[list[dict]]:
        mapping = self.mapping or {}
        replies = []
        for detections in data:
            keep = detections["scores"] >= self.threshold
            boxes, labels, scores = (detections[key][keep].tolist() for key in ("boxes", "labels", "scores"))
            replies.append(
                [
                    {mapping.get(str(label), str(label)): box, "score": score}
                    for label, box, score in zip(labels, boxes, scores, strict=True)
                ]
            )
        return replies

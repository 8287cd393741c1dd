"""The demo handler: a JSON list of 64 numbers in, ``{"class", "scores"}`` out, batched."""

import torch

from hookserve.handlers.base_handler import BaseHandler


class MLPHandler(BaseHandler):
    def preprocess(self, data):
        rows = [row.get("data") or row.get("body") for row in data]
        return torch.tensor(rows, dtype=torch.float32, device=self.device)

    def postprocess(self, data):
        scores = data.float().cpu()
        return [
            {"class": int(c), "scores": s} for c, s in zip(scores.argmax(dim=1).tolist(), scores.tolist(), strict=False)
        ]

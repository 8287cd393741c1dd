"""``fast_decode`` on a real model: a seeded torchvision ``resnet18`` served by the default
``image_classifier`` answers large JPEGs, decoded at a reduced scale, with the top 5 of the full
decode (which ``test_image_transforms_torchvision`` proves is torchvision's), though the
probabilities move."""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision

from helpers import Server, archive, photo_like, post, serving


def test_fast_decode_keeps_resnet18s_top_5(tmp_path: Path) -> None:
    torch.manual_seed(0)
    weights = tmp_path / "resnet18.pt"
    torch.jit.script(torchvision.models.resnet18(weights=None).eval()).save(str(weights))
    configs = {"fast": "handler:\n  fast_decode: true\n", "full": "handler: {}\n"}
    for name, config in configs.items():
        archive(
            tmp_path,
            name,
            "image_classifier",
            files={"model-config.yaml": config},
            flags=["--serialized-file", str(weights), "--config-file", "model-config.yaml"],
        )
    args = ["--model-store", str(tmp_path / "store"), "--workers", "1", "--models", "fast=fast.mar", "full=full.mar"]
    with serving(Server(args, tmp_path)) as server:
        for size in [(1920, 1080), (1080, 1920), (4000, 3000)]:
            data = photo_like(*size)
            replies = {}
            for name in configs:
                reply = post(server, f"/predictions/{name}", data=data, headers={"Content-Type": "image/jpeg"})
                assert reply.status_code == 200, reply.text
                replies[name] = reply.json()
            assert list(replies["fast"]) == list(replies["full"]), size
            assert replies["fast"] != replies["full"], size

"""The ResNet-18 workload, built from nothing: model file, seeded state dict, labels, JPEGs,
and the archive packed by the real torch-model-archiver 0.12 with ``--handler image_classifier``.

    python make_workload.py OUT_DIR      (the TorchServe venv's python: torchvision + the archiver)

OUT_DIR gets ``artifacts/`` (model.py, resnet18_state.pt, index_to_name.json),
``model_store/resnet18.mar``, ``model_store/resnet18_fast.mar`` (the same with a
model-config.yaml of ``handler: {fast_decode: true}``, for hookserve), ``images/<name>.jpg`` and ``images.json`` (name, size, bytes,
quality). The JPEGs are a smooth picture (gradients and a few discs) under seeded noise, so
they compress like photographs; the quality is searched until each file is about its target
size. Everything is deterministic: two runs give the same bytes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

MODEL_PY = '''from torchvision.models.resnet import BasicBlock, ResNet


class ImageClassifier(ResNet):
    """torchvision's ResNet-18 (the shape of TorchServe's own resnet-18 example)."""

    def __init__(self):
        super().__init__(BasicBlock, [2, 2, 2, 2])
'''

# name: (width, height, target bytes)
IMAGES = {"640x480": (640, 480, 168_000), "1280x720": (1280, 720, 330_000), "1920x1080": (1920, 1080, 1_100_000)}


def picture(width: int, height: int, noise: float, seed: int) -> Image.Image:
    """Gradients, discs and Gaussian noise of std ``noise`` (0-255 scale)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack([255 * x / width, 255 * y / height, 128 + 100 * np.sin(x / 37 + y / 53)], axis=-1)
    for _ in range(12):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(20, height / 3)
        img[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = rng.uniform(0, 255, 3)
    img += rng.normal(0, noise, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def jpeg_near(width: int, height: int, target: int, seed: int) -> tuple[bytes, int, float]:
    """The JPEG closest to ``target`` bytes: more noise until quality 95 can reach it, then
    the quality that lands nearest."""
    import io

    def encode(img: Image.Image, quality: int) -> bytes:
        out = io.BytesIO()
        img.save(out, "JPEG", quality=quality)
        return out.getvalue()

    noise = 4.0
    while len(encode(img := picture(width, height, noise, seed), 95)) < target and noise < 64:
        noise *= 1.5
    best = min(((abs(len(b := encode(img, q)) - target), b, q) for q in range(40, 96)), key=lambda t: t[0])
    return best[1], best[2], noise


def main(out: Path) -> None:
    art, store, images = out / "artifacts", out / "model_store", out / "images"
    for d in (art, store, images):
        d.mkdir(parents=True, exist_ok=True)
    (art / "model.py").write_text(MODEL_PY)
    sys.path.insert(0, str(art))
    from model import ImageClassifier  # noqa: PLC0415 - written just above

    torch.manual_seed(0)
    torch.save(ImageClassifier().eval().state_dict(), art / "resnet18_state.pt")
    (art / "index_to_name.json").write_text(json.dumps({str(i): f"class_{i:03d}" for i in range(1000)}))
    # hookserve's fast_decode variant: the same archive with a model-config.yaml that turns it on
    (art / "model-config.yaml").write_text("handler:\n  fast_decode: true\n")
    for name, config in (("resnet18", []), ("resnet18_fast", ["--config-file", art / "model-config.yaml"])):
        (store / f"{name}.mar").unlink(missing_ok=True)
        subprocess.run(
            [
                Path(sys.executable).with_name("torch-model-archiver"),
                "--model-name",
                name,
                "--version",
                "1.0",
                "--model-file",
                art / "model.py",
                "--serialized-file",
                art / "resnet18_state.pt",
                "--handler",
                "image_classifier",
                "--extra-files",
                art / "index_to_name.json",
                *config,
                "--export-path",
                store,
            ],
            check=True,
        )
    listing = []
    for seed, (name, (w, h, target)) in enumerate(IMAGES.items()):
        data, quality, noise = jpeg_near(w, h, target, seed)
        (images / f"{name}.jpg").write_bytes(data)
        listing.append({"name": name, "width": w, "height": h, "bytes": len(data), "quality": quality, "noise": noise})
        print(f"{name}.jpg: {len(data)} bytes (quality {quality}, noise {noise:.1f})")
    (out / "images.json").write_text(json.dumps(listing, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]))

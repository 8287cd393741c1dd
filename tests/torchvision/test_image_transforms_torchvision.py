"""hookserve's torch-free ``image_processing`` of the default handlers against torchvision's
transforms, which TorchServe's handlers use.

torchvision hands a PIL image to the same Pillow calls (``Image.resize`` with BILINEAR, then
``Image.crop``) and does the same float32 arithmetic (``/255``, ``- mean``, ``/ std``), so the
tensors must be *equal*, not merely close: any difference means another size, crop box or
resampling, which moves pixels by far more than float rounding.
"""

from __future__ import annotations

import io
import random

import pytest
import torch
from PIL import Image
from torchvision import transforms

from hookserve.handlers.image_transforms import image_tensor, resized_size, to_tensor

IMAGENET = transforms.Compose(
    [
        transforms.Resize(256),
        transforms.CenterCrop(224),
        transforms.ToTensor(),
        transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ]
)


def noise(size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> Image.Image:
    """Random pixels: every resampling or crop offset difference shows."""
    generator = torch.Generator().manual_seed(seed)
    bands = len(Image.new(mode, (1, 1)).getbands())
    pixels = torch.randint(0, 256, (size[1], size[0], bands), dtype=torch.uint8, generator=generator)
    return Image.frombytes(mode, size, pixels.numpy().tobytes())


def through(image: Image.Image, fmt: str) -> Image.Image:
    """``image`` as a client sends it: encoded, then decoded as the handler decodes it."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return Image.open(io.BytesIO(buffer.getvalue()))


# 49x49 and 49x98 are sizes where scaling by 256/short before multiplying gave a side one short.
@pytest.mark.parametrize("size", [(49, 49), (49, 98), (224, 224), (256, 256), (300, 375), (640, 480), (41, 700)])
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_image_tensor_is_torchvisions(size, fmt):
    image = through(noise(size), fmt)
    ours, theirs = image_tensor(image), IMAGENET(image)
    assert ours.shape == theirs.shape == (3, 224, 224)
    assert torch.equal(ours, theirs), (ours - theirs).abs().max()


def test_resized_size_is_torchvisions():
    """The longer side's arithmetic on many sizes, among them every one below 600 where the
    earlier formula was off by one."""
    pairs = [(w, h) for w in range(40, 600) for h in range(w, 600) if int(h * (256 / w)) != int(256 * h / w)]
    assert pairs, "the sizes that tell the two formulas apart"
    sampler = random.Random(14)
    pairs += [(sampler.randrange(1, 900), sampler.randrange(1, 900)) for _ in range(300)]
    for width, height in pairs:
        for size in ((width, height), (height, width)):
            assert resized_size(*size) == transforms.Resize(256)(Image.new("L", size)).size, size


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "LA", "P", "CMYK", "YCbCr", "1"])
def test_to_tensor_is_torchvisions(mode):
    """``ToTensor()`` (the object detector's ``image_processing``) on every byte-per-band mode."""
    image = noise((37, 23), "L").convert(mode) if mode in ("1", "P") else noise((37, 23), mode)
    ours, theirs = to_tensor(image), transforms.ToTensor()(image)
    assert ours.dtype == theirs.dtype and torch.equal(ours, theirs)

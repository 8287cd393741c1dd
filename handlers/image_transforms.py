"""Image to tensor conversions that match torchvision's, with Pillow and torch only.

The default handlers' ``image_processing`` are built from these, so serving an image model
needs no torchvision; a user's handler may still set torchvision transforms.
"""

from __future__ import annotations

import torch
from PIL import Image

RESIZE = 256
CROP = 224
# Plain tuples, not tensors: workers are forked from a parent that must have run no torch op.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
# Modes whose pixels are one byte a band, as ``tobytes`` lays them out.
_BYTE_MODES = frozenset({"L", "LA", "P", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"})


def to_tensor(image: Image.Image) -> torch.Tensor:
    """``transforms.ToTensor()``: a bands x height x width float tensor in [0, 1].

    Bilevel images become 0/1 greyscale and wide-integer or float modes RGB, so the
    result is always bytes scaled by 1/255.
    """
    if image.mode == "1":
        image = image.convert("L")
    elif image.mode not in _BYTE_MODES:
        image = image.convert("RGB")
    width, height = image.size
    pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return pixels.view(height, width, len(image.getbands())).permute(2, 0, 1).float().div(255)


def resized_size(width: int, height: int, short: int = RESIZE) -> tuple[int, int]:
    """``transforms.Resize(short)``'s output size: the shorter side ``short``, the longer
    ``int(short * long / shorter)``, torchvision's arithmetic exactly (scaling by
    ``short / shorter`` first rounds differently: a 49x49 image would become 256x255)."""
    if width <= height:
        return short, int(short * height / width)
    return int(short * width / height), short


def image_tensor(image: Image.Image) -> torch.Tensor:
    """``Resize(256), CenterCrop(224), ToTensor(), Normalize(ImageNet mean, std)`` of ``image``
    as RGB: the 3x224x224 input of TorchServe's image classifier and segmenter."""
    image = image.convert("RGB")
    width, height = resized_size(*image.size)
    image = image.resize((width, height), Image.Resampling.BILINEAR)
    left, top = int(round((width - CROP) / 2.0)), int(round((height - CROP) / 2.0))
    tensor = to_tensor(image.crop((left, top, left + CROP, top + CROP)))
    return (tensor - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)

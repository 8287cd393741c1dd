"""Opt-in fast JPEG decoding for the default vision pipeline: the ``fast_decode`` handler
setting and the reduced-scale decode it turns on.

libjpeg can decode a JPEG at 1/2, 1/4 or 1/8 of its size by scaling in the DCT domain (Pillow's
``Image.draft``), which skips most of the decoding work: a 1920x1080 photo decodes at 480x270.
``Resize(256)`` then has far fewer pixels to reduce. The pixels differ slightly from a full
decode followed by the resize, so the replies are no longer torchvision's bit for bit: the
setting is off by default and an archive opts in with ``handler: {fast_decode: true}`` in its
model-config.yaml.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PIL import Image

from hookserve.handlers.image_transforms import CROP, RESIZE, image_tensor

SETTING = "fast_decode"


def fast_decode_setting(handler_config: dict[str, Any], handler_name: str, image_processing: Callable) -> bool:
    """Whether the archive asked for fast decoding, checked when the model loads so a wrong
    value is an error naming the setting rather than a silently full decode.

    Only the default ``image_processing`` (:func:`image_tensor`) can use it: its target size is
    known (short side ``RESIZE``). A handler's own processing, such as torchvision transforms,
    may resize to anything or not at all (the object detector keeps the full image), and a
    reduced decode would change its input's size, so asking for it there is refused too.

    >>> fast_decode_setting({"fast_decode": True}, "ImageClassifier", image_tensor)
    True
    """
    value = handler_config.get(SETTING, False)
    if not isinstance(value, bool):
        raise ValueError(f"model-config.yaml: handler.{SETTING} must be true or false; got {value!r}")
    if value and image_processing is not image_tensor:
        raise ValueError(
            f"model-config.yaml: handler.{SETTING}: true needs the default image_processing "
            f"(Resize({RESIZE}), CenterCrop({CROP}), ToTensor, Normalize) of image_classifier and "
            f"image_segmenter; {handler_name} sets its own, whose target size is unknown"
        )
    return value


def draft_for_resize(image: Image.Image) -> None:
    """Have a JPEG ``image`` (opened, pixels not yet loaded) decode at the smallest of 1/1, 1/2,
    1/4 and 1/8 of its size whose shorter side is still at least ``RESIZE``, so the resize that
    follows only ever reduces. Pillow's ``draft`` picks the largest reduction keeping both sides
    at least the requested ones; asking for ``RESIZE`` on both bounds it by the shorter side.
    The mode is kept: greyscale and CMYK JPEGs are converted to RGB afterwards, as in full.
    Other formats have no reduced decode and are left as they are."""
    if image.format == "JPEG":
        image.draft(image.mode, (RESIZE, RESIZE))

"""``VisionHandler``: TorchServe 0.12's base of the image handlers.

Each request's image (``data`` or ``body``: bytes, base64 text, or pixels as a nested list
channels x height x width) becomes a tensor: bytes are opened with Pillow and passed to
``self.image_processing`` (any callable on a PIL image, such as a subclass's torchvision
``transforms.Compose``), lists are taken as they are. The batch is their stack on the
handler's device. With ``handler: {fast_decode: true}`` in model-config.yaml and the default
``image_processing``, JPEGs are decoded at a reduced scale (:mod:`~hookserve.handlers.fast_decode`).

Input a client got wrong (not an image, a truncated one, one over Pillow's pixel limit,
a ragged list) is a :class:`~hookserve.errors.BadRequest` naming the request, so the client
gets a 400 saying what was wrong and the worker goes on serving.

``/explanations`` answers each request with Captum's Integrated Gradients attributions of its
image tensor (its shape, as nested lists) for the class its ``target`` field names (default 0),
as TorchServe's ``get_insights`` does; Captum is the optional extra ``hookserve[explain]``.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Callable
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError

from hookserve.errors import BadRequest
from hookserve.handlers.base_handler import BaseHandler
from hookserve.handlers.explanations import request_input, request_target
from hookserve.handlers.fast_decode import draft_for_resize, fast_decode_setting
from hookserve.handlers.image_transforms import image_tensor, to_tensor
from hookserve.handlers.integrated_gradients import captum_integrated_gradients, integrated_gradients


def open_image(data: bytes, index: int, *, reduced: bool = False) -> Image.Image:
    """The decoded image of request ``index``; its pixels are read now, so a broken file
    is the client's error here rather than a failure inside ``image_processing``.
    ``reduced`` lets a JPEG decode at a reduced scale fit for the default resize
    (:func:`~hookserve.handlers.fast_decode.draft_for_resize`)."""
    try:
        image = Image.open(io.BytesIO(data))
        if reduced:
            draft_for_resize(image)
        image.load()
    except Image.DecompressionBombError as exc:
        raise BadRequest(f"request {index}: the image has too many pixels: {exc}") from None
    except UnidentifiedImageError:
        raise BadRequest(f"request {index}: the body is not an image Pillow can read ({len(data)} bytes)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        # Pillow reports a cut-off or corrupt file in these three ways, by format.
        raise BadRequest(f"request {index}: the image is truncated or corrupt: {exc}") from None
    return image


def pixels_tensor(pixels: Any, index: int) -> torch.Tensor:
    """Pixels sent as a nested list: a float channels x height x width tensor."""
    try:
        tensor = torch.tensor(pixels, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise BadRequest(
            f"request {index}: expected an image (bytes or base64 text) or pixels as a nested list "
            f"of numbers, channels x height x width; got {type(pixels).__name__}: {exc}"
        ) from None
    if tensor.dim() != 3:
        raise BadRequest(
            f"request {index}: pixels must be a nested list channels x height x width; got shape {list(tensor.shape)}"
        )
    return tensor


class VisionHandler(BaseHandler):
    """Images in, one batch tensor to the model; subclasses say what the reply is."""

    # A staticmethod so ``self.image_processing(image)`` passes the image alone, as it does
    # for the transform objects TorchServe handlers set here.
    image_processing: Callable[[Image.Image], torch.Tensor] = staticmethod(to_tensor)

    _ig: Any = None
    # handler.fast_decode in model-config.yaml: JPEGs decoded at a reduced scale (fast_decode.py).
    fast_decode = False

    def initialize(self, context: Any) -> None:
        super().initialize(context)
        if not context.system_properties.get("limit_max_image_pixels"):
            Image.MAX_IMAGE_PIXELS = None
        handler_config = self.model_yaml_config.get("handler")
        if isinstance(handler_config, dict):
            self.fast_decode = fast_decode_setting(handler_config, type(self).__name__, self.image_processing)

    @property
    def ig(self) -> Any:
        """Captum's ``IntegratedGradients(self.model)``: TorchServe's ``initialize`` sets it, and
        handlers copied from TorchServe call ``self.ig.attribute(...)`` in their ``get_insights``.
        Made on first use, so a server without Captum still serves predictions."""
        if self._ig is None:
            self._ig = captum_integrated_gradients(self.model)
        return self._ig

    @ig.setter
    def ig(self, explainer: Any) -> None:
        # A handler's own initialize may set its own, as it would under TorchServe.
        self._ig = explainer

    def preprocess(self, data: list[dict]) -> torch.Tensor:
        images = [self._image_tensor(row, index) for index, row in enumerate(data)]
        try:
            batch = torch.stack(images)
        except RuntimeError:
            shapes = ", ".join(f"request {i}: {list(image.shape)}" for i, image in enumerate(images))
            raise BadRequest(f"the images of one batch must have one shape after processing; got {shapes}") from None
        return batch.to(self.device)

    def explain_handle(self, data_preprocess: torch.Tensor, raw_data: list) -> list:
        """Each request explained for its own ``target``: TorchServe's ``BaseHandler`` takes the
        first request's target for the whole batch, which would answer a batched client about
        a class it did not ask for. ``get_insights`` is called once per request, with that
        request's tensor (a batch of one), so a subclass's override keeps TorchServe's contract."""
        explanations = []
        for index, row in enumerate(raw_data):
            target = request_target(row, index)
            raw = request_input(row)
            try:
                explanations.extend(self.get_insights(data_preprocess[index : index + 1], raw, target))
            except BadRequest as exc:
                raise BadRequest(f"request {index}: {exc.message}") from None
        return explanations

    def get_insights(self, tensor_data: torch.Tensor, raw_data: Any, target: int = 0) -> list:
        """Integrated Gradients attributions of ``tensor_data`` for class ``target``, one nested
        list per image."""
        return integrated_gradients(self.model, tensor_data, target).tolist()

    def _image_tensor(self, row: dict, index: int) -> torch.Tensor:
        image = request_input(row)
        if isinstance(image, str):
            try:
                image = base64.b64decode(image)
            except binascii.Error as exc:
                raise BadRequest(f"request {index}: text that is not base64 cannot be an image: {exc}") from None
        if isinstance(image, (bytes, bytearray)):
            # Checked per image too: a subclass may set its own image_processing after initialize.
            reduced = self.fast_decode and self.image_processing is image_tensor
            return self.image_processing(open_image(bytes(image), index, reduced=reduced))
        return pixels_tensor(image, index)

"""Captum's Integrated Gradients for ``/explanations``, as TorchServe 0.12's vision handler runs it.

Captum is the optional extra ``hookserve[explain]``: it is imported when a request asks for
an explanation, so a server without it serves predictions as before and answers
explanations with :class:`~hookserve.errors.ExplanationsUnavailable` (501).
"""

from __future__ import annotations

from typing import Any

import torch

from hookserve.errors import BadRequest, ExplanationsUnavailable

# TorchServe's VisionHandler.get_insights uses 15 steps: coarse, but fast enough per request.
N_STEPS = 15


def explanation_target(value: Any, index: int) -> int:
    """The class request ``index`` wants explained: its ``target`` field (a query parameter
    or form field arrives as text), 0 when it names none."""
    if value is None or value == "" or value == b"":
        return 0
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8", "replace")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise BadRequest(f"request {index}: target must be a class index (an integer), got {value!r}") from None


def captum_integrated_gradients(model: Any) -> Any:
    """Captum's ``IntegratedGradients(model)``; without Captum, the 501 that says to install it."""
    try:
        from captum.attr import IntegratedGradients
    except ImportError as exc:
        raise ExplanationsUnavailable(
            f"explanations need Captum, which this server cannot import ({exc}); "
            "install it with: pip install hookserve[explain]"
        ) from None
    return IntegratedGradients(model)


def integrated_gradients(model: Any, inputs: torch.Tensor, target: int) -> torch.Tensor:
    """Attributions of ``inputs`` (shape kept) for the model's output ``target``.

    The target is checked against one forward pass first, so a wrong one is the client's
    400 naming the number of classes rather than an indexing error deep inside Captum.
    """
    explainer = captum_integrated_gradients(model)
    with torch.no_grad():
        classes = model(inputs).shape[-1]
    if not 0 <= target < classes:
        raise BadRequest(f"target {target} is out of range: the model has {classes} classes (0 to {classes - 1})")
    return explainer.attribute(inputs, target=target, n_steps=N_STEPS)

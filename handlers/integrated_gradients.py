"""Captum's Integrated Gradients for ``/explanations``, as TorchServe 0.12's vision handler runs it
(Captum is imported per request: :func:`hookserve.handlers.explanations.captum_attr`)."""

from __future__ import annotations

import torch

from hookserve.handlers.explanations import captum_attr, check_target

# TorchServe's VisionHandler.get_insights uses 15 steps: coarse, but fast enough per request.
N_STEPS = 15


def captum_integrated_gradients(model: torch.nn.Module) -> object:
    """Captum's ``IntegratedGradients(model)``; without Captum, the 501 that says to install it."""
    return captum_attr().IntegratedGradients(model)


def integrated_gradients(model: torch.nn.Module, inputs: torch.Tensor, target: int) -> torch.Tensor:
    """Attributions of ``inputs`` (shape kept) for the model's output ``target``, which is
    checked against one forward pass first."""
    explainer = captum_integrated_gradients(model)
    with torch.no_grad():
        check_target(target, model(inputs).shape[-1])
    return explainer.attribute(inputs, target=target, n_steps=N_STEPS)

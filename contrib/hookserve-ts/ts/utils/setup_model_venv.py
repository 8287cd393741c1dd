"""``ts.utils.setup_model_venv``: not supported, see the ImportError."""

from ts._unsupported import refuse

raise refuse(
    __name__,
    "TorchServe's server creates a model's virtual environment with it; hookserve does that itself "
    "for useVenv: true in model-config.yaml",
)

"""``ts.handler_utils.preprocess.dali``: not supported, see the ImportError."""

from ts._unsupported import refuse

raise refuse(__name__, "NVIDIA DALI preprocessing pipelines need TorchServe's DALI integration and a CUDA GPU")

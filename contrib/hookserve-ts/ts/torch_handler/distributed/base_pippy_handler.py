"""``ts.torch_handler.distributed.base_pippy_handler``: not supported, see the ImportError."""

from ts._unsupported import refuse

raise refuse(
    __name__,
    "PiPPy pipeline-parallel handlers need one worker spread over several processes started by torchrun, and hookserve runs each worker as one process",
)

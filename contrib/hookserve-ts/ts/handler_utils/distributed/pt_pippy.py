"""``ts.handler_utils.distributed.pt_pippy``: not supported, see the ImportError."""

from ts._unsupported import refuse

raise refuse(
    __name__,
    "PiPPy needs one worker spread over several processes started by torchrun, and hookserve runs each worker as one process",
)

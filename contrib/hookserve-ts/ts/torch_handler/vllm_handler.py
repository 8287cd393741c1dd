"""``ts.torch_handler.vllm_handler``: not supported, see the ImportError."""

from ts._unsupported import refuse

raise refuse(
    __name__,
    "it drives a vLLM engine with continuous batching, which hookserve's workers do not provide",
)

"""``ts.torch_handler.trt_llm_handler``: not supported, see the ImportError."""

from ts._unsupported import refuse

raise refuse(
    __name__,
    "it drives a TensorRT-LLM engine with continuous batching, which hookserve's workers do not provide",
)

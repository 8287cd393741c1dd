"""``ts.handler_utils.micro_batching``: not supported yet, see the ImportError."""

from ts._unsupported import refuse

raise refuse(
    __name__,
    "MicroBatching runs preprocess, inference and postprocess of one batch on parallel threads, "
    "configured by the model-config.yaml micro_batching section; hookserve-ts does not provide it yet, "
    "so use hookserve's own batching (batchSize, maxBatchDelay)",
)

"""``ts.torch_handler.request_envelope.kservev2``: not supported yet, see the ImportError."""

from ts._unsupported import refuse

raise refuse(
    __name__,
    "hookserve has no KServe inference protocol endpoints; hookserve-ts provides the body and json envelopes only",
)

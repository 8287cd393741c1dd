"""``ts.model_service.model_service``: not supported, see the ImportError."""

from ts._unsupported import refuse

raise refuse(
    __name__,
    "ModelService / SingleNodeService are the legacy MXNet Model Server service API, which TorchServe's own "
    "worker no longer calls; write a handler (handle(data, context), or a BaseHandler subclass)",
)

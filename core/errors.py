"""Typed errors. Each carries the HTTP status and the TorchServe exception type name.

The HTTP frontend turns any :class:`HookserveError` into the TorchServe error body
``{"code": ..., "type": ..., "message": ...}``; other layers raise these and never build
HTTP responses themselves.
"""

from __future__ import annotations


class HookserveError(Exception):
    """Base of every error hookserve reports to a client or an operator."""

    code: int = 500
    type: str = "InternalServerException"

    def __init__(self, message: str, *, code: int | None = None, type: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if type is not None:
            self.type = type

    def to_dict(self) -> dict:
        return {"code": self.code, "type": self.type, "message": self.message}


class ModelNotFound(HookserveError):
    code = 404
    type = "ModelNotFoundException"


class BadRequest(HookserveError):
    code = 400
    type = "BadRequestException"


class RequestTooLarge(HookserveError):
    code = 413
    type = "RequestEntityTooLargeException"


class ServiceUnavailable(HookserveError):
    code = 503
    type = "ServiceUnavailableException"


class PredictionError(HookserveError):
    """The handler failed or broke the handler contract for one request."""

    code = 500
    type = "PredictionException"


class WorkerDied(HookserveError):
    code = 500
    type = "WorkerDiedException"


class ArchiveError(HookserveError):
    """An archive cannot be read or written; the message names the archive."""

    code = 400
    type = "InvalidModelException"


class ConfigError(HookserveError):
    """Server configuration is invalid (bad flag, bad config.properties value)."""

    code = 500
    type = "ConfigurationException"


class PluginError(HookserveError):
    """A plugin could not be loaded or registered; the message names its distribution."""

    code = 500
    type = "PluginException"

"""Typed errors. Each carries the HTTP status and the TorchServe exception type name.

The HTTP frontend turns any :class:`HookserveError` into the TorchServe error body
``{"code": ..., "type": ..., "message": ...}``; other layers raise these and never build
HTTP responses themselves.
"""

from __future__ import annotations

import json
import re
from http import HTTPStatus


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

    def to_json(self) -> bytes:
        """The body of every error reply: ``{"code": ..., "type": ..., "message": ...}``."""
        return json.dumps(self.to_dict()).encode()


class ModelNotFound(HookserveError):
    code = 404
    type = "ModelNotFoundException"


class ModelVersionNotFound(HookserveError):
    code = 404
    type = "ModelVersionNotFoundException"


class Unauthorized(HookserveError):
    """A management call without the right bearer token."""

    code = 401
    type = "TokenAuthorizationException"


class InvalidModelVersion(HookserveError):
    """A version that cannot be changed so (the default version of a model with others)."""

    code = 403
    type = "InvalidModelVersionException"


class ModelApiDisabled(HookserveError):
    code = 405
    type = "MethodNotAllowedException"


class NotSupportedInProcess(HookserveError):
    """A management operation an in-process service cannot do (another worker count than
    its one worker per model version: the calling process)."""

    code = 501
    type = "NotImplementedException"


class ExplanationsUnavailable(HookserveError):
    """``/explanations`` on a server without the optional Captum (``hookserve[explain]``)."""

    code = 501
    type = "ExplanationsNotSupportedException"


class Conflict(HookserveError):
    code = 409
    type = "ConflictStatusException"


class DownloadArchiveError(HookserveError):
    code = 400
    type = "DownloadArchiveException"


class BadRequest(HookserveError):
    code = 400
    type = "BadRequestException"


class RequestTooLarge(HookserveError):
    code = 413
    type = "RequestEntityTooLargeException"


class ServiceUnavailable(HookserveError):
    code = 503
    type = "ServiceUnavailableException"


class ResponseTimeout(HookserveError):
    """A started request ran past its model's ``responseTimeout``."""

    code = 504
    type = "ResponseTimeoutException"


class ManagerTimeout(HookserveError):
    """The model manager did not answer a management call in time."""

    code = 504
    type = "RequestTimeoutException"


class InsufficientMemory(HookserveError):
    """New workers would not fit in the memory the machine has now."""

    code = 507
    type = "InsufficientMemoryException"


class WorkerOutOfMemory(HookserveError):
    """A batch ran out of memory in its model worker."""

    code = 507
    type = "WorkerOutOfMemoryException"


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


# Replies that no typed error raises, the HTTP layers' own (falcon: no route, bad method;
# gunicorn: a request line or header past its limits), in TorchServe's words where it has them.
STATUS_TYPES = {
    400: BadRequest.type,
    404: "ResourceNotFoundException",
    405: ModelApiDisabled.type,
    413: RequestTooLarge.type,
    414: "RequestUriTooLongException",
    431: "RequestHeaderFieldsTooLargeException",
    500: HookserveError.type,
    501: NotSupportedInProcess.type,
}


def error_for_status(status: int, message: str) -> HookserveError:
    """The error for a reply the HTTP layer makes itself; a status TorchServe has no name for
    is named after its phrase (415: ``UnsupportedMediaTypeException``)."""
    kind = STATUS_TYPES.get(status)
    if kind is None:
        try:
            phrase = HTTPStatus(status).phrase
            kind = "".join(word.capitalize() for word in re.findall(r"[A-Za-z]+", phrase)) + "Exception"
        except ValueError:
            kind = BadRequest.type if status < 500 else HookserveError.type
    return HookserveError(message, code=status, type=kind)

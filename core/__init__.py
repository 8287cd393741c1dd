"""hookserve: serve PyTorch models and TorchServe archives over HTTP, built on pluggy.

The public names are importable from here: ``from hookserve import Context, BadRequest``.
They are loaded on first use (PEP 562), so ``import hookserve`` stays as cheap as it was
in every process (frontends included) and never imports torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hookserve.lazy_exports import lazy_exports

__version__ = "0.1.0"

# public name -> the module that defines it
_PUBLIC = {
    "Context": "hookserve.context",
    "hookimpl": "hookserve.hookspecs",
    "HookserveError": "hookserve.errors",
    "ModelNotFound": "hookserve.errors",
    "BadRequest": "hookserve.errors",
    "RequestTooLarge": "hookserve.errors",
    "ServiceUnavailable": "hookserve.errors",
    "PredictionError": "hookserve.errors",
    "WorkerDied": "hookserve.errors",
    "ArchiveError": "hookserve.errors",
    "ConfigError": "hookserve.errors",
    "PluginError": "hookserve.errors",
    "ModelVersionNotFound": "hookserve.errors",
    "Unauthorized": "hookserve.errors",
    "InvalidModelVersion": "hookserve.errors",
    "ModelApiDisabled": "hookserve.errors",
    "NotSupportedInProcess": "hookserve.errors",
    "ExplanationsUnavailable": "hookserve.errors",
    "Conflict": "hookserve.errors",
    "DownloadArchiveError": "hookserve.errors",
    "ResponseTimeout": "hookserve.errors",
    "ManagerTimeout": "hookserve.errors",
    "InsufficientMemory": "hookserve.errors",
    "WorkerOutOfMemory": "hookserve.errors",
}

# a literal list, so linters and IDEs see the names
__all__ = [
    "__version__",
    "Context",
    "hookimpl",
    "HookserveError",
    "ModelNotFound",
    "BadRequest",
    "RequestTooLarge",
    "ServiceUnavailable",
    "PredictionError",
    "WorkerDied",
    "ArchiveError",
    "ConfigError",
    "PluginError",
    "ModelVersionNotFound",
    "Unauthorized",
    "InvalidModelVersion",
    "ModelApiDisabled",
    "NotSupportedInProcess",
    "ExplanationsUnavailable",
    "Conflict",
    "DownloadArchiveError",
    "ResponseTimeout",
    "ManagerTimeout",
    "InsufficientMemory",
    "WorkerOutOfMemory",
]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ loads them
    from hookserve.context import Context
    from hookserve.errors import (
        ArchiveError,
        BadRequest,
        ConfigError,
        Conflict,
        DownloadArchiveError,
        ExplanationsUnavailable,
        HookserveError,
        InsufficientMemory,
        InvalidModelVersion,
        ManagerTimeout,
        ModelApiDisabled,
        ModelNotFound,
        ModelVersionNotFound,
        NotSupportedInProcess,
        PluginError,
        PredictionError,
        RequestTooLarge,
        ResponseTimeout,
        ServiceUnavailable,
        Unauthorized,
        WorkerDied,
        WorkerOutOfMemory,
    )
    from hookserve.hookspecs import hookimpl

__getattr__, __dir__ = lazy_exports(globals(), _PUBLIC)

"""TorchServe's ``ts`` import path, served by hookserve.

Only the modules TorchServe handlers import are here, and each re-exports hookserve's own
objects. Nothing heavy is imported at this level.
"""

from ts.version import __version__

__all__ = ["__version__"]

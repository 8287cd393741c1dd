"""TorchServe's ``ts`` import path, served by hookserve.

Only the modules TorchServe handlers import are here, and each re-exports hookserve's own
objects. Nothing heavy is imported at this level.
"""

# The TorchServe handler API this package mirrors (TorchServe's ``ts.__version__``).
__version__ = "0.12.0"

"""``ts.version.__version__``: the TorchServe handler API this package mirrors."""

__version__ = "0.12.0"

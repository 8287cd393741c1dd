"""``ts.context``: the handler's ``Context`` and per-request ``RequestProcessor`` (hookserve's)."""

from hookserve.context import Context, RequestProcessor

__all__ = ["Context", "RequestProcessor"]

"""Why some of TorchServe's ``ts`` modules refuse to import under hookserve-ts.

A handler that imports one of them needs a runtime hookserve does not have (a GPU data
loader, a distributed launcher, an LLM engine). Failing at import with the reason is
clearer than a module that imports and then breaks on the first request.
"""

from __future__ import annotations


def refuse(module: str, why: str) -> ImportError:
    """The ImportError for ``module``, saying hookserve does not support it and ``why``."""
    return ImportError(f"{module} is not supported by hookserve (hookserve-ts): {why}", name=module)

"""``ts.handler_utils``: the helpers TorchServe handlers import (``timer``, ``utils`` ...)."""

"""``ts.utils``: the helpers TorchServe handlers import (``ts.utils.util``)."""
